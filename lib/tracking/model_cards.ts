/**
 * Where model cards live in MLflow (`lib/models/model_card.ts` renders them): `model_card.json` (the facts)
 * and `model_card.md` (the card) beside `model/` in the artifacts of the run that trained the version, a
 * copy of both in the artifacts of the run that evaluated it, and the card in brief as the version's
 * description in the registry. Train publishes the first card; evaluate reads it back, completes it and
 * publishes it again.
 *
 * @module
 */
import type { MlflowClient } from "./mlflow_client.ts";
import { type ModelCard, renderModelCard, renderModelCardSummary } from "../models/model_card.ts";

/** The facts' artifact name. */
export const MODEL_CARD_JSON = "model_card.json";
/** The card's artifact name. */
export const MODEL_CARD_MARKDOWN = "model_card.md";

/** Where to publish a card. */
export interface ModelCardTarget {
  /** Registered model name. */
  name: string;
  /** The version the card describes. */
  version: string;
  /** Artifact URI of the run that trained the version. */
  trainingArtifactUri: string;
  /** Artifact URI of another run that should keep a copy (the evaluation's). */
  copyArtifactUri?: string;
}

/**
 * Uploads the card (facts and Markdown) to the training run, and to the copy's run if any, and sets the
 * version's description to the card in brief.
 *
 * @param client The MLflow client.
 * @param card The facts.
 * @param target The version and the runs.
 */
export async function publishModelCard(
  client: MlflowClient,
  card: ModelCard,
  target: ModelCardTarget,
): Promise<void> {
  const json = JSON.stringify(card, null, 2) + "\n";
  const markdown = renderModelCard(card);
  for (const uri of [target.trainingArtifactUri, target.copyArtifactUri]) {
    if (uri === undefined) continue;
    await client.uploadArtifact(uri, MODEL_CARD_JSON, json);
    await client.uploadArtifact(uri, MODEL_CARD_MARKDOWN, markdown);
  }
  const runId = card.training.model.run_id;
  await client.updateModelVersion(
    target.name,
    target.version,
    renderModelCardSummary(card, `runs:/${runId}/${MODEL_CARD_MARKDOWN}`),
  );
}

/**
 * Reads the card train published for a version, or `undefined` for a version trained before cards (or
 * whose card is not valid).
 *
 * @param client The MLflow client.
 * @param trainingArtifactUri Artifact URI of the run that trained the version.
 */
export async function readModelCard(
  client: MlflowClient,
  trainingArtifactUri: string,
): Promise<ModelCard | undefined> {
  const listed = await client.listArtifacts(trainingArtifactUri);
  if (!listed.some((entry) => entry.path === MODEL_CARD_JSON)) return undefined;
  const bytes = await client.downloadArtifact(trainingArtifactUri, MODEL_CARD_JSON);
  try {
    const card = JSON.parse(new TextDecoder().decode(bytes)) as ModelCard;
    return card?.format === "model-card/1" && card.training?.model ? card : undefined;
  } catch {
    return undefined;
  }
}
