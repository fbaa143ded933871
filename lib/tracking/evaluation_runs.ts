/**
 * Evaluation runs in MLflow, the evaluate stage's work apart from its command line: a registered version
 * scored on the processed test set (and on per-source files when asked), its behaviour checked, all of it
 * logged to a new run with charts and a `metrics.json` report, its scores set as `eval.*` version tags, its
 * model card completed, and the promotion decided by `promotion.ts` and applied last, so a version is
 * never promoted on figures MLflow does not hold.
 *
 * @module
 */
import type { Logger } from "../core/log.ts";
import { runBehaviourChecks } from "../models/behaviour.ts";
import {
  evaluateModel,
  evaluateSources,
  type Evaluation,
  evaluationMetricsForMlflow,
  metricsForMlflow,
} from "../models/evaluate.ts";
import { buildEvaluationCard, type ModelCard, trainingCardOfManifest } from "../models/model_card.ts";
import { sliceMetricsForMlflow, type SliceReport } from "../models/slices.ts";
import type { MlflowClient } from "./mlflow_client.ts";
import type { VersionSpec } from "./mlflow_registry.ts";
import { publishModelCard, readModelCard } from "./model_cards.ts";
import { loadRegisteredModel } from "./model_store.ts";
import {
  applyPromotion,
  CHALLENGER_ALIAS,
  type ChampionState,
  decidePromotion,
  findChampion,
  type PromotionDecision,
  type PromotionPolicy,
} from "./promotion.ts";
import { withRun } from "./run_lifecycle.ts";

/** Where an evaluation is logged, and the stage's logger and signal. */
export interface EvaluationRunContext {
  /** The MLflow client. */
  client: MlflowClient;
  /** Registered model whose version is evaluated. */
  modelName: string;
  /** Experiment of the evaluation run. */
  experimentId: string;
  /** Tags the run gets: source, user, commit, stage. */
  tags: Record<string, string>;
  /** Progress and results, on stderr. */
  log: Logger;
  /** The stage's Ctrl-C: the run ends KILLED and no alias moves. */
  signal: AbortSignal;
}

/** What to evaluate, on what, and whether to promote. */
export interface EvaluationRunOptions {
  /** The version: a number, `latest` or an alias. */
  version: VersionSpec;
  /** The processed test set. */
  testPath: string;
  /** A folder of one CSV file per source, scored one by one; absent to skip. */
  sourcesDir?: string;
  /** The promotion rule; absent with `--no-promote`. */
  policy?: PromotionPolicy;
}

/** What an evaluation run reports back. */
export interface EvaluationOutcome {
  /** Registered model. */
  modelName: string;
  /** The version evaluated, resolved to its number. */
  version: string;
  /** The evaluation run. */
  runId: string;
  /** The headline metrics (accuracy, precision, recall, F1, ROC AUC, log loss, confusion counts). */
  metrics: Record<string, number>;
  /** The full evaluation: intervals, calibration, slices, charts. */
  evaluation: Evaluation;
  /** Accuracy per source, with `sourcesDir`. */
  sources?: { slices: SliceReport[]; pooled: SliceReport };
  /** Behaviour checks passed, of how many. */
  behaviour: { passed: number; total: number };
  /** The promotion applied; absent without a policy. */
  decision?: PromotionDecision;
}

/**
 * The `promotion` object of the `--json` output and of the run's `metrics.json`.
 *
 * @param decision The decision applied.
 * @returns Its fields under snake_case keys.
 */
export function promotionRecord(decision: PromotionDecision): Record<string, unknown> {
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

/** Says so when a version was scored on the raw test set because it predates the tokenizer's settings. */
function logRetokenised(log: Logger, what: string, testPath: string, evaluation: Evaluation): void {
  if (evaluation.tokens !== "source") return;
  log.info(
    `${what} was trained with other tokenizer settings than ${testPath}: ` +
      `scored on ${evaluation.meta.source} tokenised its own way`,
  );
}

/**
 * Completes the version's model card with this evaluation and publishes it: beside the model in the
 * training run, in the evaluation run, and as the version's description. A version trained before model
 * cards gets one started from its manifest.
 */
async function completeModelCard(
  client: MlflowClient,
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

/**
 * Evaluates a registered version in a new MLflow run, completes its model card and, with a policy,
 * promotes it to `@champion` or `@challenger` against the current champion scored on the same test set.
 *
 * @param context Where to log.
 * @param options The version, the test set, the sources and the policy.
 * @returns The run, the metrics and the decision.
 * @throws {PipelineError} for an unreadable test set or model; MLflow errors propagate.
 */
export async function evaluateVersionRun(
  context: EvaluationRunContext,
  options: EvaluationRunOptions,
): Promise<EvaluationOutcome> {
  const { client, modelName, log, signal } = context;
  const { testPath, sourcesDir, policy } = options;
  const loaded = await loadRegisteredModel(client, modelName, options.version);
  const version = String(loaded.version.version);
  log.info(`evaluating ${modelName} version ${version}`, {
    engine: loaded.model.manifest.engine,
    source: loaded.version.source,
  });

  const evaluation = await evaluateModel(loaded.model, testPath, { signal });
  logRetokenised(log, `version ${version}`, testPath, evaluation);
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
        const scored = await evaluateModel(current.model, testPath, { signal });
        logRetokenised(log, `champion version ${championVersion}`, testPath, scored);
        return metricsForMlflow(scored.metrics)[policy.metric]!;
      },
    });
  }
  const decision = policy && champion
    ? decidePromotion(version, metrics[policy.metric]!, champion, policy)
    : undefined;

  const runId = await withRun(client, {
    experimentId: context.experimentId,
    runName: `evaluate-${modelName}-v${version}`,
    tags: {
      ...context.tags,
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
        test_set: testPath,
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
      source: { uri: testPath },
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
      ...(decision ? { promotion: promotionRecord(decision) } : {}),
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
        path: testPath,
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

  return {
    modelName,
    version,
    runId,
    metrics,
    evaluation,
    ...(sources ? { sources } : {}),
    behaviour: { passed, total: behaviour.length },
    ...(decision ? { decision } : {}),
  };
}
