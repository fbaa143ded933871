/**
 * Stage `evaluate`: loads a registered model version from MLflow (any family: the artifact names its
 * engine), scores `data/processed/test.tsv`, and logs accuracy, precision, recall, F1, ROC AUC, log loss
 * and the confusion matrix with 95% intervals, the calibration of the served probabilities (expected
 * calibration error, Brier score), accuracy per review length (and per source with `--sources`) and the
 * behaviour checks passed to a new MLflow run (tagged with the model name and version), with
 * confusion-matrix, ROC-curve and reliability-diagram charts as artifacts. The metrics are also set as
 * `eval.*` tags on the model version, and the version's model card is completed (`model_card.md` and the
 * version's description).
 *
 * Then it decides the promotion (`lib/tracking/promotion.ts`): the version takes the `@champion` alias
 * when it beats the current champion on the same test set by the margin, else it becomes `@challenger`;
 * the decision, the reason and both scores are recorded as `promotion.*` tags. `--no-promote` only
 * evaluates. The run's steps live in `lib/tracking/evaluation_runs.ts`; this file is the command line.
 *
 * @example
 * ```sh
 * deno task evaluate --model_version 3
 * make evaluate model_version=latest
 * ```
 *
 * @module
 */
import { PipelineError, UsageError } from "../lib/core/errors.ts";
import { numberFlag } from "../lib/core/flags.ts";
import { PROCESSED_TEST_PATH, RAW_TEST_PATH } from "../lib/data/layout.ts";
import { checkTestSet } from "../lib/models/evaluate.ts";
import { evaluateVersionRun, promotionRecord } from "../lib/tracking/evaluation_runs.ts";
import { parseVersionSpec } from "../lib/tracking/mlflow_registry.ts";
import { MODEL_CARD_MARKDOWN } from "../lib/tracking/model_cards.ts";
import {
  DEFAULT_PROMOTION_POLICY,
  PROMOTION_METRICS,
  promotionLine,
  type PromotionMetric,
  type PromotionPolicy,
} from "../lib/tracking/promotion.ts";
import { defineStage, runStage, type StageContext, type StageResult } from "./_cli.ts";
import { connectMlflow, DEFAULT_MODEL_NAME, MLFLOW_ENV_USAGE, openExperiment } from "./_mlflow.ts";
import { modelVersionFlag } from "./_model_flags.ts";

const USAGE = `Usage: deno task evaluate --model_version V [options]

Scores a registered model version on ${PROCESSED_TEST_PATH}, logs the metrics to MLflow, and promotes
the version to @champion when it beats the current champion on the same test set by the margin
(otherwise it becomes @challenger). The last line says which, with both scores. A version trained with
other tokenizer settings than the test set's (one older than a change of defaults) is scored on
${RAW_TEST_PATH}, the test set's source, tokenised its own way.

Options:
  --model_version V        version number, "latest" or "@alias" (also --model-version; required)
  --model-name NAME        registered model (default ${DEFAULT_MODEL_NAME}, or MLFLOW_MODEL_NAME)
  --promotion-metric M     ${PROMOTION_METRICS.join(", ")} (default ${DEFAULT_PROMOTION_POLICY.metric})
  --promotion-margin X     how much better than the champion, in the metric's units (default ${DEFAULT_PROMOTION_POLICY.margin})
  --no-promote             only evaluate; leave the aliases alone
  --sources DIR            also score each CSV file of DIR (the dataset's format, one file per source) and
                           log the accuracy per source: how the version does on each kind of review.
                           Readable under data/external (or grant it: deno run -q -P=evaluate
                           --allow-read=DIR ...)
  --json                   print {"model_name","model_version","run_id","metrics":{...},"promotion":{...}}
  -h, --help               show this help

${MLFLOW_ENV_USAGE}

Example:
  deno task evaluate --model_version latest`;

/** The evaluate stage's command line. */
export const spec = defineStage({
  name: "evaluate",
  usage: USAGE,
  options: {
    model_version: { type: "string" },
    "model-version": { type: "string" },
    "model-name": { type: "string" },
    "promotion-metric": { type: "string" },
    "promotion-margin": { type: "string" },
    "no-promote": { type: "boolean" },
    sources: { type: "string" },
  },
});

type EvaluateContext = StageContext<typeof spec.options>;

function formatMetrics(metrics: Record<string, number>): string {
  return Object.entries(metrics)
    .map(([key, value]) => `  ${key.padEnd(18)} ${Number.isInteger(value) ? value : value.toFixed(4)}`)
    .join("\n");
}

/** Resolves the promotion flags; `undefined` with `--no-promote`. */
function parsePromotionFlags(values: EvaluateContext["values"]): PromotionPolicy | undefined {
  const metric = values["promotion-metric"];
  const margin = values["promotion-margin"];
  if (values["no-promote"] === true) {
    if (metric !== undefined || margin !== undefined) {
      throw new UsageError("--promotion-metric and --promotion-margin have no effect with --no-promote");
    }
    return undefined;
  }
  if (metric !== undefined && !(PROMOTION_METRICS as readonly string[]).includes(metric)) {
    throw new UsageError(
      `--promotion-metric expects ${PROMOTION_METRICS.join(", ")}, got ${JSON.stringify(metric)}`,
    );
  }
  return {
    metric: (metric ?? DEFAULT_PROMOTION_POLICY.metric) as PromotionMetric,
    margin: numberFlag("--promotion-margin", margin, { min: 0, max: 1 }) ?? DEFAULT_PROMOTION_POLICY.margin,
  };
}

/** Where the completed card is, for the log. */
const CARD_NOTE = `model card completed (${MODEL_CARD_MARKDOWN} and the version's description)`;

async function main(ctx: EvaluateContext): Promise<StageResult> {
  const { values, log, signal } = ctx;
  const version = parseVersionSpec(modelVersionFlag(values), "--model_version");
  const policy = parsePromotionFlags(values);
  const sourcesDir = values.sources;
  // The test set (and the sources) must be readable before anything is downloaded.
  await checkTestSet(PROCESSED_TEST_PATH);
  if (
    sourcesDir !== undefined &&
    (await Deno.permissions.query({ name: "read", path: sourcesDir })).state !== "granted"
  ) {
    throw new PipelineError(
      `evaluate may not read ${sourcesDir}; put the source files under data/external/, or add the grant: ` +
        `deno run -q -P=evaluate --allow-read=${sourcesDir} $MLFLOW_ALLOW_NET scripts/evaluate.ts ...`,
    );
  }
  const mlflow = await connectMlflow({ modelName: values["model-name"] }, log, signal);
  const experiment = await openExperiment(mlflow, log, "evaluate");
  const outcome = await evaluateVersionRun({
    client: mlflow.client,
    modelName: mlflow.modelName,
    experimentId: experiment.experimentId,
    tags: mlflow.sourceTags("scripts/evaluate.ts", "evaluate"),
    log,
    signal,
  }, {
    version,
    testPath: PROCESSED_TEST_PATH,
    ...(sourcesDir !== undefined ? { sourcesDir } : {}),
    ...(policy ? { policy } : {}),
  });
  const { modelName, runId, metrics, evaluation, sources, behaviour, decision } = outcome;
  log.info(CARD_NOTE, { model_version: outcome.version });
  if (decision) log.info(decision.reason);
  const line = decision ? promotionLine(decision) : "promotion: skipped (--no-promote)";

  return {
    json: {
      model_name: modelName,
      model_version: outcome.version,
      run_id: runId,
      metrics,
      promotion: decision ? promotionRecord(decision) : null,
    },
    text: `${modelName} version ${outcome.version} on ${PROCESSED_TEST_PATH} (run ${runId}):\n${
      formatMetrics({
        ...metrics,
        calibration_error: evaluation.calibration.ece,
        brier_score: evaluation.calibration.brier,
        ...(sources ? { accuracy_sources: sources.pooled.accuracy } : {}),
      })
    }\n  behaviour checks passed ${behaviour.passed} of ${behaviour.total}\n${line}`,
  };
}

if (import.meta.main) await runStage(spec, Deno.args, main);
