/**
 * Champion/challenger promotion in the MLflow model registry. After evaluate scores a new version, the
 * version takes the `champion` alias (which the HTTP API serves) only when it beats the current champion
 * on the same test set by a margin; otherwise it becomes the `challenger`. Either way the version records
 * the decision, the reason and both scores in `promotion.*` tags, so the registry explains every move of
 * the alias.
 *
 * Why a margin: two models trained on the same data differ by noise of about ±0.1 to 0.3 accuracy
 * points on a few thousand test reviews; without a margin the alias would flap between equivalent models
 * and every reload of the API would swap models for nothing.
 *
 * {@linkcode decidePromotion} is pure; {@linkcode applyPromotion} writes the decision to MLflow.
 *
 * @module
 */
import { PipelineError } from "../core/errors.ts";
import { MlflowApiError, type MlflowClient, MlflowConnectionError } from "./mlflow_client.ts";

/** The alias the API serves. */
export const CHAMPION_ALIAS = "champion";
/** The alias of the latest version that was evaluated but not promoted. */
export const CHALLENGER_ALIAS = "challenger";

/** Metrics a promotion can be judged by (all: higher is better). */
export const PROMOTION_METRICS = ["accuracy", "f1", "roc_auc"] as const;

/** A metric a promotion is judged by. */
export type PromotionMetric = typeof PROMOTION_METRICS[number];

/** How promotions are decided. */
export interface PromotionPolicy {
  /** The metric compared. @default {"accuracy"} */
  metric: PromotionMetric;
  /** How much better the new version must be (absolute, in the metric's units). @default {0.002} */
  margin: number;
}

/** The defaults of {@linkcode PromotionPolicy}: 0.2 accuracy points. */
export const DEFAULT_PROMOTION_POLICY: Readonly<PromotionPolicy> = Object.freeze({
  metric: "accuracy",
  margin: 0.002,
});

/** The current champion as evaluate found it. */
export type ChampionState =
  | { kind: "none" }
  | { kind: "same"; version: string }
  | { kind: "scored"; version: string; score: number }
  | { kind: "unusable"; version: string; reason: string };

/** What was decided, and why. */
export interface PromotionDecision {
  /** Whether the new version took the champion alias now. */
  promoted: boolean;
  /** The alias the new version holds afterwards. */
  alias: typeof CHAMPION_ALIAS | typeof CHALLENGER_ALIAS;
  /** `promoted`, `challenger`, or `kept` (the version was the champion already). */
  decision: "promoted" | "challenger" | "kept";
  /** One sentence, stored as the `promotion.reason` tag. */
  reason: string;
  metric: PromotionMetric;
  margin: number;
  /** The new version. */
  version: string;
  /** The new version's score. */
  new: number;
  /** The champion's version before the decision, if there was one. */
  championVersion: string | null;
  /** The champion's score on the same test set, when it could be scored. */
  champion: number | null;
}

const fmt = (value: number): string => Number.isFinite(value) ? value.toFixed(4) : String(value);

/**
 * Decides whether a newly evaluated version becomes the champion.
 *
 * Rules: no champion yet → promote. The version is the champion already → keep. The champion cannot be
 * scored by this build (another tokenizer, an engine or format this build cannot read) → promote, since
 * the API could not serve it either. Otherwise promote when `new - champion >= margin`, else challenger.
 * A score that is not a number (e.g. ROC AUC of a one-class test set) never promotes over a champion.
 *
 * @param version The new version.
 * @param score The new version's score under `policy.metric`.
 * @param champion The current champion.
 * @param policy Metric and margin.
 * @returns The decision.
 *
 * @example Usage
 * ```ts
 * import { decidePromotion } from "./promotion.ts";
 * const d = decidePromotion("4", 0.91, { kind: "scored", version: "3", score: 0.905 }, {
 *   metric: "accuracy",
 *   margin: 0.002,
 * });
 * console.assert(d.promoted && d.alias === "champion");
 * ```
 */
export function decidePromotion(
  version: string,
  score: number,
  champion: ChampionState,
  policy: PromotionPolicy = DEFAULT_PROMOTION_POLICY,
): PromotionDecision {
  const { metric, margin } = policy;
  const base = { metric, margin, version, new: score };
  switch (champion.kind) {
    case "none":
      return {
        ...base,
        promoted: true,
        alias: CHAMPION_ALIAS,
        decision: "promoted",
        reason: `no champion yet; version ${version} (${metric} ${fmt(score)}) becomes the first`,
        championVersion: null,
        champion: null,
      };
    case "same":
      return {
        ...base,
        promoted: false,
        alias: CHAMPION_ALIAS,
        decision: "kept",
        reason: `version ${version} is already the champion (${metric} ${fmt(score)})`,
        championVersion: champion.version,
        champion: score,
      };
    case "unusable":
      return {
        ...base,
        promoted: true,
        alias: CHAMPION_ALIAS,
        decision: "promoted",
        reason: `champion version ${champion.version} cannot be scored by this build (${champion.reason}); ` +
          `version ${version} (${metric} ${fmt(score)}) replaces it`,
        championVersion: champion.version,
        champion: null,
      };
    case "scored": {
      const gain = score - champion.score;
      // The epsilon keeps a gain of exactly the margin (0.9120 - 0.9100) from failing on rounding.
      const better = gain >= margin - 1e-12;
      const comparison =
        `${metric} ${fmt(score)} vs ${fmt(champion.score)} of champion version ${champion.version}` +
        ` (${gain >= 0 ? "+" : ""}${fmt(gain)}, margin ${fmt(margin)})`;
      return {
        ...base,
        promoted: better,
        alias: better ? CHAMPION_ALIAS : CHALLENGER_ALIAS,
        decision: better ? "promoted" : "challenger",
        reason: better ? `promoted: ${comparison}` : `not promoted: ${comparison}; not better by the margin`,
        championVersion: champion.version,
        champion: champion.score,
      };
    }
  }
}

/**
 * The registry tags that record a decision on the new version.
 *
 * @param decision The decision.
 * @returns Tag key → value.
 */
export function promotionTags(decision: PromotionDecision): Record<string, string> {
  return {
    "promotion.decision": decision.decision,
    "promotion.reason": decision.reason,
    "promotion.metric": decision.metric,
    "promotion.margin": String(decision.margin),
    "promotion.new_score": String(decision.new),
    ...(decision.champion !== null ? { "promotion.champion_score": String(decision.champion) } : {}),
    ...(decision.championVersion !== null ? { "promotion.champion_version": decision.championVersion } : {}),
    "promotion.time": new Date().toISOString(),
  };
}

/**
 * Writes a decision to the registry: the alias the version takes, the `promotion.*` tags, and on the
 * replaced champion a `promotion.superseded_by` tag. A promoted version that was the challenger stops
 * being it.
 *
 * @param client MLflow client.
 * @param name Registered model name.
 * @param decision What {@linkcode decidePromotion} returned.
 * @param challengerVersion The version the challenger alias points at now, if any.
 */
export async function applyPromotion(
  client: MlflowClient,
  name: string,
  decision: PromotionDecision,
  challengerVersion?: string,
): Promise<void> {
  for (const [key, value] of Object.entries(promotionTags(decision))) {
    await client.setModelVersionTag(name, decision.version, key, value);
  }
  if (decision.decision === "kept") return;
  // The alias moves last: the API may reload at any moment, and must find the tags already there.
  await client.setAlias(name, decision.alias, decision.version);
  if (decision.promoted) {
    if (challengerVersion === decision.version) await client.deleteAlias(name, CHALLENGER_ALIAS);
    if (decision.championVersion !== null && decision.championVersion !== decision.version) {
      await client.setModelVersionTag(
        name,
        decision.championVersion,
        "promotion.superseded_by",
        decision.version,
      );
    }
  }
}

/**
 * The line `make pipeline-train` ends with.
 *
 * @param decision The decision.
 * @returns E.g. `promotion: version 5 is now @champion (accuracy 0.9312 vs 0.9120 of version 2)`.
 */
export function promotionLine(decision: PromotionDecision): string {
  const { metric, version } = decision;
  const score = `${metric} ${fmt(decision.new)}`;
  let versus: string;
  if (decision.championVersion === null) versus = "; there was no champion";
  else if (decision.champion === null) {
    versus = `; champion version ${decision.championVersion} could not be scored by this build`;
  } else versus = ` vs ${fmt(decision.champion)} of version ${decision.championVersion}`;
  switch (decision.decision) {
    case "promoted":
      return `promotion: PROMOTED version ${version} to @champion (${score}${versus})`;
    case "kept":
      return `promotion: version ${version} is already @champion (${score})`;
    case "challenger":
      return `promotion: NOT promoted; version ${version} is @challenger (${score}${versus}, needs +${
        fmt(decision.margin)
      })`;
  }
}

/** Options of {@linkcode findChampion}. */
export interface FindChampionOptions {
  /** The version being evaluated. */
  version: string;
  /** The metric compared. */
  metric: PromotionMetric;
  /** SHA-256 of the processed test set the new version was scored on. */
  testSha256: string;
  /**
   * Scores a version on that same test set; called only when the champion's recorded score is for
   * another test set. Throws `PipelineError` when the version cannot be loaded or scored by this build.
   */
  score: (version: string) => Promise<number>;
  /** The stage's Ctrl-C signal: an interrupted scoring is never mistaken for an unusable champion. */
  signal?: AbortSignal;
}

/**
 * Finds the current champion and its score on the same test set: its recorded `eval.<metric>` when its
 * `eval.test_sha256` tag names this test set, else a fresh score from `options.score`.
 *
 * @param client MLflow client.
 * @param name Registered model name.
 * @param options The version under evaluation, the metric, the test set and a scorer.
 * @returns The champion's state; `unusable` when this build cannot load or score it.
 * @throws The MLflow client's errors (an unreachable server must not read as "no champion").
 */
export async function findChampion(
  client: MlflowClient,
  name: string,
  options: FindChampionOptions,
): Promise<ChampionState> {
  const registered = await client.getRegisteredModel(name);
  const aliased = registered?.aliases[CHAMPION_ALIAS];
  if (aliased === undefined) return { kind: "none" };
  const version = String(aliased);
  if (version === options.version) return { kind: "same", version };
  const champion = await client.getModelVersion(name, version);
  const recorded = Number(champion.tags[`eval.${options.metric}`]);
  if (champion.tags["eval.test_sha256"] === options.testSha256 && Number.isFinite(recorded)) {
    return { kind: "scored", version, score: recorded };
  }
  try {
    return { kind: "scored", version, score: await options.score(version) };
  } catch (error) {
    // Only a model this build cannot read counts as unusable; MLflow failures and Ctrl-C propagate.
    if (options.signal?.aborted) throw error;
    if (error instanceof MlflowApiError || error instanceof MlflowConnectionError) throw error;
    if (!(error instanceof PipelineError)) throw error;
    return { kind: "unusable", version, reason: error.message };
  }
}
