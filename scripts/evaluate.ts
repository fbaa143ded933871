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
 * Then it decides the promotion (`lib/tracking/promotion.ts`): the version takes the `@champion` alias when it
 * beats the current champion on the same test set by the margin, else it becomes `@challenger`; the
 * decision, the reason and both scores are recorded as `promotion.*` tags. `--no-promote` only evaluates.
 *
 * @example
 * ```sh
 * deno task evaluate --model_version 3
 * make evaluate model_version=latest
 * ```
 *
 * @module
 */
import { UsageError } from "../lib/core/errors.ts";
import {
  checkTestSet,
  evaluateModel,
  evaluateSources,
  type Evaluation,
  evaluationMetricsForMlflow,
  metricsForMlflow,
} from "../lib/models/evaluate.ts";
import { runBehaviourChecks } from "../lib/models/behaviour.ts";
import { buildEvaluationCard, type ModelCard, trainingCardOfManifest } from "../lib/models/model_card.ts";
import { sliceMetricsForMlflow } from "../lib/models/slices.ts";
import { MODEL_CARD_MARKDOWN, publishModelCard, readModelCard } from "../lib/tracking/model_cards.ts";
import { PipelineError } from "../lib/core/errors.ts";
import type { Logger } from "../lib/core/log.ts";
import { numberFlag } from "../lib/core/flags.ts";
import { withRun } from "../lib/tracking/run_lifecycle.ts";
import { parseVersionSpec } from "../lib/tracking/mlflow_registry.ts";
import { loadRegisteredModel } from "../lib/tracking/model_store.ts";
import {
  applyPromotion,
  CHALLENGER_ALIAS,
  type ChampionState,
  decidePromotion,
  DEFAULT_PROMOTION_POLICY,
  findChampion,
  PROMOTION_METRICS,
  type PromotionDecision,
  promotionLine,
  type PromotionMetric,
  type PromotionPolicy,
} from "../lib/tracking/promotion.ts";
import { defineStage, runStage, type StageContext, type StageResult } from "./_cli.ts";
import { connectMlflow, DEFAULT_MODEL_NAME, MLFLOW_ENV_USAGE, openExperiment } from "./_mlflow.ts";
import { modelVersionFlag } from "./_model_flags.ts";
import { PROCESSED_TEST_PATH, RAW_TEST_PATH } from "../lib/data/layout.ts";

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

/** Says so when a version was scored on the raw test set because it predates the tokenizer's settings. */
function logRetokenised(log: Logger, what: string, evaluation: Evaluation): void {
  if (evaluation.tokens !== "source") return;
  log.info(
    `${what} was trained with other tokenizer settings than ${PROCESSED_TEST_PATH}: ` +
      `scored on ${evaluation.meta.source} tokenised its own way`,
  );
}

/** The `promotion` object of `--json`. */
function promotionJson(decision: PromotionDecision): Record<string, unknown> {
  return {
    promoted: decision.promoted,
    alias: decision.alias,
    decision: decision.decision,
    metric: decision.metric,
    margin: decision.margin,
    new: decision.new,
    champion: decision.champion,
    champion_version: decision.championVersion,
    reason: decision.reason,
  };
}

/**
 * Completes the version's model card with this evaluation and publishes it: beside the model in the
 * training run, in this run, and as the version's description. A version trained before model cards gets
 * one started from its manifest.
 */
async function completeModelCard(
  client: Parameters<typeof publishModelCard>[0],
  evaluateArtifactUri: string,
  facts: {
    modelName: string;
    version: string;
    runId: string | undefined;
    manifest: Parameters<typeof trainingCardOfManifest>[0];
    evaluation: ModelCard["evaluation"];
  },
): Promise<void> {
  const trainingArtifactUri = facts.runId ? (await client.getRun(facts.runId)).info.artifactUri : undefined;
  const previous = trainingArtifactUri ? await readModelCard(client, trainingArtifactUri) : undefined;
  const card: ModelCard = {
    format: "model-card/1",
    training: previous?.training ??
      trainingCardOfManifest(facts.manifest, {
        name: facts.modelName,
        version: facts.version,
        runId: facts.runId ?? "unknown",
      }),
    ...(facts.evaluation ? { evaluation: facts.evaluation } : {}),
  };
  await publishModelCard(client, card, {
    name: facts.modelName,
    version: facts.version,
    trainingArtifactUri: trainingArtifactUri ?? evaluateArtifactUri,
    ...(trainingArtifactUri ? { copyArtifactUri: evaluateArtifactUri } : {}),
  });
}

/** Where the completed card is, for the log. */
const CARD_NOTE = `model card completed (${MODEL_CARD_MARKDOWN} and the version's description)`;

async function main(ctx: EvaluateContext): Promise<StageResult> {
  const { values, log, signal } = ctx;
  const versionSpec = parseVersionSpec(modelVersionFlag(values), "--model_version");
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
  const { client, modelName } = mlflow;
  const loaded = await loadRegisteredModel(client, modelName, versionSpec);
  const version = String(loaded.version.version);
  log.info(`evaluating ${modelName} version ${version}`, {
    engine: loaded.model.manifest.engine,
    source: loaded.version.source,
  });

  const evaluation = await evaluateModel(loaded.model, PROCESSED_TEST_PATH, { signal });
  logRetokenised(log, `version ${version}`, evaluation);
  const sources = sourcesDir === undefined
    ? undefined
    : await evaluateSources(loaded.model, sourcesDir, { signal });
  const behaviour = runBehaviourChecks(loaded.model);
  const passed = behaviour.filter((check) => check.passed).length;
  const metrics = metricsForMlflow(evaluation.metrics);
  const extraMetrics: Record<string, number> = {
    ...evaluationMetricsForMlflow(evaluation),
    ...(sources ? sliceMetricsForMlflow([...sources.slices, sources.pooled]) : {}),
    behaviour_checks_passed: passed,
    behaviour_checks: behaviour.length,
  };
  const testSha256 = evaluation.meta.output.sha256;

  let champion: ChampionState | undefined;
  if (policy) {
    champion = await findChampion(client, modelName, {
      version,
      metric: policy.metric,
      testSha256,
      signal,
      score: async (championVersion) => {
        log.info(`scoring champion version ${championVersion} on the same test set`);
        const current = await loadRegisteredModel(client, modelName, championVersion);
        const scored = await evaluateModel(current.model, PROCESSED_TEST_PATH, { signal });
        logRetokenised(log, `champion version ${championVersion}`, scored);
        return metricsForMlflow(scored.metrics)[policy.metric]!;
      },
    });
  }
  const decision = policy && champion
    ? decidePromotion(version, metrics[policy.metric]!, champion, policy)
    : undefined;

  const experiment = await openExperiment(mlflow, log, "evaluate");
  const runId = await withRun(client, {
    experimentId: experiment.experimentId,
    runName: `evaluate-${modelName}-v${version}`,
    tags: {
      ...mlflow.sourceTags("scripts/evaluate.ts", "evaluate"),
      "model.name": modelName,
      "model.version": version,
      "model.engine": loaded.model.manifest.engine,
      ...(loaded.version.runId ? { "model.run_id": loaded.version.runId } : {}),
    },
    signal,
    log,
  }, async (run) => {
    const id = run.info.runId;
    await client.logBatch(id, {
      params: {
        model_name: modelName,
        model_version: version,
        test_set: PROCESSED_TEST_PATH,
        ...(sourcesDir !== undefined ? { sources: sourcesDir } : {}),
      },
      metrics: {
        ...metrics,
        ...extraMetrics,
        evaluate_seconds: evaluation.seconds,
        ...(decision?.champion != null ? { [`champion_${decision.metric}`]: decision.champion } : {}),
      },
    });
    await client.logInputs(id, [{
      name: "test",
      digest: testSha256.slice(0, 36),
      sourceType: "local",
      source: { uri: PROCESSED_TEST_PATH },
      profile: { num_rows: evaluation.meta.rows },
      context: "evaluation",
    }]);
    const report = {
      model_name: modelName,
      model_version: version,
      metrics,
      intervals: evaluation.intervals,
      calibration: evaluation.calibration,
      slices: evaluation.slices,
      ...(sources ? { sources } : {}),
      behaviour,
      roc_curve: evaluation.roc,
      ...(decision ? { promotion: promotionJson(decision) } : {}),
    };
    await client.uploadArtifact(run.info.artifactUri, "metrics.json", JSON.stringify(report, null, 2));
    for (const [name, svg] of Object.entries(evaluation.charts)) {
      await client.uploadArtifact(run.info.artifactUri, name, svg);
    }
    for (const [key, value] of Object.entries(metrics)) {
      await client.setModelVersionTag(modelName, version, `eval.${key}`, String(value));
    }
    // Lets a later evaluate reuse these scores when this version is the champion and the test set is the same.
    await client.setModelVersionTag(modelName, version, "eval.test_sha256", testSha256);
    await client.setModelVersionTag(modelName, version, "eval.run_id", id);
    await completeModelCard(client, run.info.artifactUri, {
      modelName,
      version,
      runId: loaded.version.runId,
      manifest: loaded.model.manifest,
      evaluation: buildEvaluationCard({
        runId: id,
        path: PROCESSED_TEST_PATH,
        evaluation,
        ...(sources ? { sources } : {}),
        behaviour,
      }),
    });
    if (decision) {
      const registered = await client.getRegisteredModel(modelName);
      const challenger = registered?.aliases[CHALLENGER_ALIAS];
      await applyPromotion(
        client,
        modelName,
        decision,
        challenger === undefined ? undefined : String(challenger),
      );
      await client.logBatch(id, {
        tags: {
          "promotion.decision": decision.decision,
          "promotion.reason": decision.reason,
          "promotion.alias": decision.alias,
        },
      });
    }
    return id;
  });
  const line = decision ? promotionLine(decision) : "promotion: skipped (--no-promote)";
  log.info(CARD_NOTE, { model_version: version });
  if (decision) log.info(decision.reason);

  return {
    json: {
      model_name: modelName,
      model_version: version,
      run_id: runId,
      metrics,
      promotion: decision ? promotionJson(decision) : null,
    },
    text: `${modelName} version ${version} on ${PROCESSED_TEST_PATH} (run ${runId}):\n${
      formatMetrics({
        ...metrics,
        calibration_error: evaluation.calibration.ece,
        brier_score: evaluation.calibration.brier,
        ...(sources ? { accuracy_sources: sources.pooled.accuracy } : {}),
      })
    }\n  behaviour checks passed ${passed} of ${behaviour.length}\n${line}`,
  };
}

if (import.meta.main) await runStage(spec, Deno.args, main);
