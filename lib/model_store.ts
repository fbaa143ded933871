/**
 * Loads a registered model version from MLflow: resolves `3`, `latest` or `@champion` to a version,
 * downloads its `model/` folder through the artifact proxy, and verifies and loads it. Evaluate, predict
 * and the HTTP API all load models through here.
 *
 * @module
 */
import { ENGINES } from "./engines.ts";
import type { MlflowClient, ModelVersion } from "./mlflow_client.ts";
import { resolveModelVersion, type VersionSpec } from "./mlflow_registry.ts";
import { type EngineCodec, loadModel, type SentimentModel } from "./model_artifact.ts";

/** A model loaded from the registry, with where it came from. */
export interface RegisteredSentimentModel {
  model: SentimentModel;
  version: ModelVersion;
  /** The artifact URI the files were downloaded from. */
  downloadUri: string;
}

/** A model artifact is a handful of files; anything far larger is not ours. */
const MAX_MODEL_BYTES = 2 ** 31 - 1;

/**
 * Resolves and loads a registered model version.
 *
 * @param client MLflow client.
 * @param name Registered model name.
 * @param spec `"3"`, `"latest"`, `"@champion"` or a parsed spec.
 * @param codecs Engines to accept. @default {ENGINES}
 * @throws {PipelineError} for an unknown version or alias, a missing or corrupt artifact.
 */
export async function loadRegisteredModel(
  client: MlflowClient,
  name: string,
  spec: string | VersionSpec,
  codecs: readonly EngineCodec[] = ENGINES,
): Promise<RegisteredSentimentModel> {
  const version = await resolveModelVersion(client, name, spec);
  const downloadUri = await client.getDownloadUri(version.name, version.version);
  const files = await client.downloadArtifactDir(downloadUri, "", {
    maxFiles: 64,
    maxBytes: MAX_MODEL_BYTES,
  });
  return { model: loadModel(files, codecs), version, downloadUri };
}
