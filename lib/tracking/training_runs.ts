/**
 * Training runs in MLflow, the train stage's work apart from its command line: a model trained inside a run
 * ({@linkcode trainForestRun}, {@linkcode trainLinearRun}), its params, metrics and training inputs logged,
 * its files uploaded into the run's `model/` folder and registered as a new version (artifacts first,
 * registration last, so a version never points at a missing model). With a search, the run is the parent
 * of one child run per trial; trials run in workers, and only the best is registered, retrained on all
 * the reviews unless `refit` is off. A share of the reviews can be held out to measure calibration (and fit
 * a calibrator saved in the model); every version gets a model card that evaluate completes.
 *
 * About 700 lines because the forest run, the linear run and the search share one sequence of run steps
 * (start, inputs, calibration, upload, register, card), which must stay the same for every family.
 *
 * @module
 */
import { PipelineError, UsageError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { APP_VERSION } from "../core/version.ts";
import { TOKENIZER_VERSION } from "../features/tokenizer.ts";
import type { VectorizerConfig } from "../features/vectorizer.ts";
import { buildModelFiles, sha256Hex } from "../models/artifact.ts";
import { buildTrainingCard } from "../models/model_card.ts";
import { type CalibrationDecision, calibrationMetricsForMlflow } from "../models/calibration.ts";
import { featureImportanceChart } from "../models/charts.ts";
import {
  type CalibrationSplit,
  datasetDigest,
  type ModelFamily,
  type TrainedLinearModel,
  type TrainingBatch,
  trainingFilesOf,
  type TrainingSelection,
  trainLinearModel,
  trainSentimentModel,
} from "../models/fit.ts";
import type { ForestParams } from "../models/forest/forest.ts";
import { LinearModel } from "../models/linear/model.ts";
import { deserializeLinear, LINEAR_ENGINE_NAME, serializeLinear } from "../models/linear/model_format.ts";
import {
  DEFAULT_LINEAR_PARAMS,
  type HoldoutSplit,
  type LinearParams,
  resolveLinearParams,
} from "../models/linear/trainer.ts";
import { type LinearTrialResult, runLinearTrialInWorker } from "../models/linear/trial.ts";
import {
  bestTrial,
  LINEAR_SEARCH_SPACE,
  planTrials,
  runTrials,
  trialBeats,
  withoutFixed,
} from "../models/tuning.ts";
import type { MlflowClient, ParamValue, Run } from "./mlflow_client.ts";
import { parseVersionSpec } from "./mlflow_registry.ts";
import { publishModelCard } from "./model_cards.ts";
import { loadRegisteredModel, MODEL_JSON_SHA256_TAG } from "./model_store.ts";
import { withRun, type WithRunOptions } from "./run_lifecycle.ts";

/** What `--search` reports. */
export interface SearchSummary {
  trials: number;
  best_trial: number;
  best_run_id: string;
  best_val_accuracy: number;
  refit: boolean;
}

/** What every family's run reports back (the `--json` object). */
export interface TrainOutcome {
  run_id: string;
  model_name: string;
  model_version: string;
  model: ModelFamily;
  search?: SearchSummary;
}

/** Everything a training run needs: where to log, what to train on, and the stage's logger and signal. */
export interface TrainingRunContext {
  /** The MLflow client. */
  client: MlflowClient;
  /** Registered model the new version goes to. */
  modelName: string;
  /** Experiment of the runs. */
  experimentId: string;
  /** The tracking server's URI, for the run's address in the log. */
  trackingUri: string;
  /** Tags every run gets: source, user, commit, stage. */
  tags: Record<string, string>;
  /** Tags the registered version gets besides its own, e.g. the orchestrator's run that trained it. */
  versionTags?: Record<string, string>;
  /** Name of the (parent) run; MLflow picks one when absent. */
  runName?: string;
  /** The processed batches to train on. */
  batches: TrainingBatch[];
  /** The split the batches belong to (from its manifest); absent when there is none to check against. */
  split?: TrainingSelection["split"];
  /** Parallel tree builders or search trials. */
  workers: number;
  /** Progress and results, on stderr. */
  log: Logger;
  /** The stage's Ctrl-C: runs end KILLED and no version is registered. */
  signal: AbortSignal;
  /** The calibration hold-out; absent with `--calibration-fraction 0`. */
  calibration?: CalibrationSplit;
}

// ---------------------------------------------------------------------------------------------------
// Shared MLflow steps

function startRun(
  context: TrainingRunContext,
  tags: Record<string, string> = {},
  runName?: string,
): WithRunOptions {
  const name = runName ?? context.runName;
  return {
    experimentId: context.experimentId,
    ...(name ? { runName: name } : {}),
    tags: { ...context.tags, "model.name": context.modelName, ...tags },
    signal: context.signal,
    log: context.log,
  };
}

function logRunUrl(context: TrainingRunContext, run: Run, what = "MLflow run"): void {
  context.log.info(`${what} ${run.info.runId}`, {
    url: `${context.trackingUri}/#/experiments/${context.experimentId}/runs/${run.info.runId}`,
  });
}

/**
 * Logs the training data as the run's dataset input: exactly the processed files trained on, each with its
 * source batch's checksum, and the split they belong to, so the run says which reviews made the model.
 */
async function logTrainingInputs(
  context: TrainingRunContext,
  runId: string,
  rows: number,
  positives: number,
) {
  const { batches, split } = context;
  await context.client.logInputs(runId, [{
    name: `train_batches_${batches.map((b) => b.index).join("_")}`.slice(0, 500),
    digest: datasetDigest(batches.map((b) => b.meta)),
    sourceType: "local",
    source: {
      uri: batches.map((b) => b.path).join(","),
      ...(split ? { split: { manifest: split.manifest, source_sha256: split.sourceSha256 } } : {}),
    },
    // Per-batch detail goes in the profile: MLflow caps a source at 64 KB, a profile at 16 MB. The counts
    // are the dataset's; fit_rows is what the model was fitted on (less a calibration hold-out).
    profile: {
      num_rows: batches.reduce((sum, b) => sum + b.meta.rows, 0),
      positives: batches.reduce((sum, b) => sum + (b.meta.labels["2"] ?? 0), 0),
      fit_rows: rows,
      fit_positives: positives,
      batches: batches.map((b) => ({ index: b.index, sha256: b.meta.sourceSha256, rows: b.meta.rows })),
    },
    context: "training",
  }]);
}

/**
 * Uploads the model files into the run's `model/` folder and registers them as a new version. Artifacts
 * first, registration last: a version never points at a model that is not there.
 */
async function registerModel(
  context: TrainingRunContext,
  run: Run,
  files: Map<string, Uint8Array>,
  engineName: string,
  card: CardFacts,
): Promise<string> {
  const { client, modelName } = context;
  for (const [name, bytes] of files) {
    await client.uploadArtifact(run.info.artifactUri, `model/${name}`, bytes);
  }
  await client.createRegisteredModel(modelName, {
    description: "Sentiment of Amazon product reviews (amazon-reviews-mlops)",
  });
  const version = await client.createModelVersion({
    name: modelName,
    source: `${run.info.artifactUri}/model`,
    runId: run.info.runId,
    tags: {
      engine: engineName,
      tokenizer_version: TOKENIZER_VERSION,
      // Verified on load: model.json cannot carry its own checksum.
      [MODEL_JSON_SHA256_TAG]: sha256Hex(files.get("model.json")!),
      ...context.versionTags,
    },
  });
  await client.setTag(run.info.runId, "registered_model_version", String(version.version));
  const training = buildTrainingCard({
    ...card,
    name: modelName,
    version: String(version.version),
    runId: run.info.runId,
    engine: engineName,
    appVersion: APP_VERSION,
    batches: context.batches,
    digest: datasetDigest(context.batches.map((b) => b.meta)),
  });
  await publishModelCard(client, { format: "model-card/1", training }, {
    name: modelName,
    version: String(version.version),
    trainingArtifactUri: run.info.artifactUri,
  });
  return String(version.version);
}

/** What a family's run tells the model card. */
interface CardFacts {
  family: ModelFamily;
  rows: number;
  positives: number;
  params: Record<string, ParamValue>;
  training: Record<string, number>;
  calibration?: CalibrationDecision;
}

/** Logs the calibration measured on the held-out reviews, and says what was decided. */
async function logCalibration(
  context: TrainingRunContext,
  runId: string,
  decision: CalibrationDecision | undefined,
) {
  if (!decision) return;
  await context.client.logBatch(runId, {
    metrics: calibrationMetricsForMlflow(decision),
    params: {
      calibration_fraction: context.calibration!.holdout.fraction,
      calibrator: decision.calibration?.method ?? "none",
    },
  });
  context.log.info(`calibration: ${decision.reason}`);
}

export interface ForestOptions {
  forest: Partial<ForestParams>;
  vectorizer: Partial<VectorizerConfig>;
}

export async function trainForestRun(
  context: TrainingRunContext,
  options: ForestOptions,
): Promise<TrainOutcome> {
  const { client, modelName, batches, workers, log, signal } = context;
  return await withRun(client, startRun(context), async (run) => {
    const runId = run.info.runId;
    logRunUrl(context, run);
    const trained = await trainSentimentModel({
      batches,
      vectorizer: options.vectorizer,
      forest: options.forest,
      workers,
      signal,
      ...(context.calibration ? { calibration: context.calibration } : {}),
      onPhase: (phase, detail) => log.info(`${phase}`, detail),
    });
    const p = trained.forestParams;
    const v = trained.vectorizerConfig;
    const forestParams = {
      trees: p.trees,
      max_depth: p.maxDepth,
      min_samples_leaf: p.minSamplesLeaf,
      max_features: String(p.maxFeatures),
      bootstrap: p.bootstrap,
      seed: p.seed,
      vocab_max_features: v.maxFeatures,
      vocab_min_df: v.minDf,
      vocab_ngram_max: v.ngramMax,
    };
    await client.logBatch(runId, {
      params: {
        model_family: "forest",
        engine: trained.engineName,
        batches: batches.map((b) => b.index).join(" "),
        trees: p.trees,
        max_depth: p.maxDepth,
        min_samples_leaf: p.minSamplesLeaf,
        max_features: String(p.maxFeatures),
        bootstrap: p.bootstrap,
        seed: p.seed,
        workers,
        vocab_max_features: v.maxFeatures,
        vocab_min_df: v.minDf,
        vocab_ngram_max: v.ngramMax,
        tokenizer_version: TOKENIZER_VERSION,
        app_version: APP_VERSION,
      },
    });
    await logTrainingInputs(context, runId, trained.rows, trained.positives);
    const stats = trained.forest.stats;
    await client.logBatch(runId, {
      metrics: {
        ...(trained.forest.oobAccuracy !== null ? { oob_accuracy: trained.forest.oobAccuracy } : {}),
        train_rows: trained.rows,
        train_positive_share: trained.positives / trained.rows,
        vocabulary_size: trained.vectorizer.size,
        forest_nodes: stats.nodes,
        forest_max_depth: stats.maxDepth,
        forest_mean_max_depth: stats.meanMaxDepth,
        vocabulary_seconds: trained.seconds.vocabulary,
        vectorize_seconds: trained.seconds.vectorize,
        fit_seconds: trained.seconds.fit,
        model_bytes: trained.engineBytes.length,
      },
    });
    await logCalibration(context, runId, trained.calibration);
    const files = buildModelFiles({
      engineName: trained.engineName,
      engineBytes: trained.engineBytes,
      vectorizer: trained.vectorizer,
      appVersion: APP_VERSION,
      runId,
      ...(trained.calibration?.calibration ? { calibration: trained.calibration.calibration } : {}),
      training: {
        family: "forest",
        batches: batches.map((b) => b.index),
        rows: trained.rows,
        oob_accuracy: trained.forest.oobAccuracy,
        params: p,
        vectorizer: v,
      },
    });
    const top = trained.forest.topFeatures(30, trained.vectorizer.terms).map((f) => ({
      word: f.name ?? String(f.feature),
      importance: f.importance,
    }));
    await client.uploadArtifact(
      run.info.artifactUri,
      "feature_importance.json",
      JSON.stringify(top, null, 2),
    );
    await client.uploadArtifact(
      run.info.artifactUri,
      "feature_importance.svg",
      await featureImportanceChart(top),
    );
    const version = await registerModel(context, run, files, trained.engineName, {
      family: "forest",
      rows: trained.rows,
      positives: trained.positives,
      params: forestParams,
      training: {
        ...(trained.forest.oobAccuracy !== null ? { oob_accuracy: trained.forest.oobAccuracy } : {}),
        fit_seconds: trained.seconds.fit,
      },
      ...(trained.calibration ? { calibration: trained.calibration } : {}),
    });
    log.info(`registered ${modelName} version ${version}`, {
      oob_accuracy: trained.forest.oobAccuracy ?? "n/a",
      seconds: trained.seconds.vocabulary + trained.seconds.vectorize + trained.seconds.fit,
    });
    return { run_id: runId, model_name: modelName, model_version: version, model: "forest" as const };
  });
}

// ---------------------------------------------------------------------------------------------------
// Linear

export interface LinearOptions {
  /** Parameters given on the command line (the rest are defaults, or tuned by --search). */
  params: Partial<LinearParams>;
  warmStartFrom?: string;
  search?: { trials: number; holdout: HoldoutSplit; refit: boolean };
}

/** MLflow params of a linear model. */
function linearParamsForMlflow(params: LinearParams): Record<string, ParamValue> {
  return {
    dim: params.dim,
    epochs: params.epochs,
    learning_rate: params.learningRate,
    pooling: params.pooling,
    nb_weighting: params.nbWeighting,
    buckets: params.buckets,
    ngrams: params.ngrams,
    seed: params.seed,
    shuffle_rows: params.shuffleRows,
  };
}

async function loadWarmStart(
  context: TrainingRunContext,
  spec: string,
): Promise<{ model: LinearModel; version: string; runId?: string }> {
  const { client, modelName } = context;
  const loaded = await loadRegisteredModel(client, modelName, parseVersionSpec(spec, "--warm-start-from"));
  const engine = loaded.model.engine;
  const version = String(loaded.version.version);
  if (!(engine instanceof LinearModel)) {
    throw new PipelineError(
      `--warm-start-from ${spec}: ${modelName} version ${version} is a ${loaded.model.manifest.engine} model; ` +
        `warm starts need a linear one (train it with --model linear)`,
    );
  }
  context.log.info(`warm start from ${modelName} version ${version}`, {
    examples: engine.history.examples,
    dim: engine.shape.dim,
    buckets: engine.shape.buckets,
  });
  return { model: engine, version, ...(loaded.version.runId ? { runId: loaded.version.runId } : {}) };
}

/** Logs a trained linear model to its run and registers it. */
async function finishLinearRun(
  context: TrainingRunContext,
  run: Run,
  trained: TrainedLinearModel,
  extra: { params?: Record<string, ParamValue>; training?: Record<string, unknown> } = {},
): Promise<string> {
  const { client } = context;
  const { batches } = context;
  const runId = run.info.runId;
  await client.logBatch(runId, {
    params: {
      model_family: "linear",
      engine: trained.engineName,
      batches: batches.map((b) => b.index).join(" "),
      ...linearParamsForMlflow(trained.params),
      tokenizer_version: TOKENIZER_VERSION,
      app_version: APP_VERSION,
      ...extra.params,
    },
  });
  await logTrainingInputs(context, runId, trained.rows, trained.positives);
  await client.logBatch(runId, {
    metrics: [
      ...trained.epochLosses.map((value, step) => ({ key: "train_log_loss", value, step: step + 1 })),
      { key: "train_rows", value: trained.rows },
      { key: "train_positive_share", value: trained.positives / trained.rows },
      { key: "embedding_rows_used", value: trained.model.countUsedRows() },
      { key: "trained_examples_total", value: trained.model.history.examples },
      { key: "fit_seconds", value: trained.seconds.fit },
      { key: "model_bytes", value: trained.engineBytes.length },
    ],
  });
  await logCalibration(context, runId, trained.calibration);
  const files = buildModelFiles({
    engineName: trained.engineName,
    engineBytes: trained.engineBytes,
    appVersion: APP_VERSION,
    runId,
    ...(trained.calibration?.calibration ? { calibration: trained.calibration.calibration } : {}),
    training: {
      family: "linear",
      batches: batches.map((b) => b.index),
      rows: trained.rows,
      params: trained.params,
      epoch_log_loss: trained.epochLosses,
      ...extra.training,
    },
  });
  return await registerModel(context, run, files, trained.engineName, {
    family: "linear",
    rows: trained.rows,
    positives: trained.positives,
    params: { ...linearParamsForMlflow(trained.params), ...extra.params },
    training: { final_train_log_loss: trained.epochLosses.at(-1)!, fit_seconds: trained.seconds.fit },
    ...(trained.calibration ? { calibration: trained.calibration } : {}),
  });
}

export async function trainLinearRun(
  context: TrainingRunContext,
  options: LinearOptions,
): Promise<TrainOutcome> {
  const { client, modelName, log, signal } = context;
  const warm = options.warmStartFrom !== undefined
    ? await loadWarmStart(context, options.warmStartFrom)
    : undefined;
  if (warm) {
    for (const key of ["dim", "buckets", "ngrams", "pooling"] as const) {
      const given = options.params[key];
      if (given !== undefined && given !== warm.model.shape[key]) {
        throw new UsageError(
          `--${key} ${given} conflicts with the warm-start model's ${key} ${
            warm.model.shape[key]
          }; drop --${key}`,
        );
      }
    }
  }
  const warmTags = warm
    ? { "warm_start.version": warm.version, ...(warm.runId ? { "warm_start.run_id": warm.runId } : {}) }
    : undefined;
  if (options.search) return await searchLinearRun(context, options, warm, warmTags);
  return await withRun(client, startRun(context, warmTags), async (run) => {
    logRunUrl(context, run);
    const trained = await trainLinearModel({
      batches: context.batches,
      params: options.params,
      ...(warm ? { initial: warm.model } : {}),
      ...(context.calibration ? { calibration: context.calibration } : {}),
      signal,
      onPhase: (phase, detail) => log.info(phase, detail),
    });
    const version = await finishLinearRun(context, run, trained, {
      ...(warm ? { params: { warm_start_from_version: warm.version } } : {}),
      ...(warm ? { training: { warm_start_from_version: warm.version } } : {}),
    });
    log.info(`registered ${modelName} version ${version}`, {
      final_train_log_loss: trained.epochLosses.at(-1)!,
      seconds: trained.seconds.fit,
    });
    return {
      run_id: run.info.runId,
      model_name: modelName,
      model_version: version,
      model: "linear" as const,
    };
  });
}

const EMPTY_ENGINE = new Uint8Array(0);
const PROGRESS_INTERVAL_MS = 15_000;

/** One finished trial, as the search keeps it. */
export interface TrialRecord {
  index: number;
  params: LinearParams;
  runId: string;
  /** The trial's result; its engine file is kept only while it is the best so far and may be needed. */
  result: LinearTrialResult;
}

/**
 * Keeps one trial's engine file at most: on the full dataset each is tens of MB. With `keep` (`--no-refit`,
 * where the best trial's model is registered as is) that is the best trial so far, by
 * {@linkcode trialBeats}; the engine of every other trial, and of a leader that is overtaken, is dropped.
 * Without `keep` (the best parameters are retrained) no engine is kept.
 *
 * @param leader The best trial so far, holding its engine, or `undefined`.
 * @param record The trial that just finished.
 * @param keep Whether the best trial's engine will be needed.
 * @returns The new leader.
 */
export function keepLeaderEngine(
  leader: TrialRecord | undefined,
  record: TrialRecord,
  keep: boolean,
): TrialRecord | undefined {
  const leads = leader === undefined ||
    trialBeats(record.result.validation, record.index, leader.result.validation, leader.index);
  if (keep && leads) {
    if (leader) leader.result.engineBytes = EMPTY_ENGINE;
    return record;
  }
  record.result.engineBytes = EMPTY_ENGINE;
  return leader;
}

async function searchLinearRun(
  context: TrainingRunContext,
  options: LinearOptions,
  warm: { model: LinearModel; version: string } | undefined,
  warmTags: Record<string, string> | undefined,
): Promise<TrainOutcome> {
  const { client, modelName, batches, workers, log, signal } = context;
  const search = options.search!;
  const space = withoutFixed(
    warm ? { ...LINEAR_SEARCH_SPACE, dim: undefined } : LINEAR_SEARCH_SPACE,
    options.params,
  );
  const base: Partial<LinearParams> = {
    ...options.params,
    ...(warm
      ? {
        dim: warm.model.shape.dim,
        buckets: warm.model.shape.buckets,
        ngrams: warm.model.shape.ngrams,
        pooling: warm.model.shape.pooling,
      }
      : {}),
  };
  const trials = planTrials(space, search.trials, base.seed ?? DEFAULT_LINEAR_PARAMS.seed);
  const concurrency = Math.min(workers, trials.length);
  const files = trainingFilesOf(batches);
  const initial = warm ? serializeLinear(warm.model) : undefined;

  return await withRun(
    client,
    startRun(context, { "search.strategy": "grid-sample", ...warmTags }),
    async (parent) => {
      const parentId = parent.info.runId;
      logRunUrl(context, parent, "MLflow parent run");
      log.info(`search: ${trials.length} trials, ${concurrency} at a time`, {
        space: Object.fromEntries(Object.entries(space).map(([k, v]) => [k, (v as unknown[]).join("|")])),
        validation_fraction: search.holdout.fraction,
      });
      await client.logBatch(parentId, {
        params: {
          search_trials: trials.length,
          search_space: JSON.stringify(space),
          validation_fraction: search.holdout.fraction,
          validation_seed: search.holdout.seed,
          search_concurrency: concurrency,
          refit: search.refit,
        },
      });
      let leader: TrialRecord | undefined;
      const records = await runTrials(trials, async (trial, trialSignal) => {
        const params = resolveLinearParams({ ...base, ...trial.params });
        const name = `trial-${trial.index}`;
        return await withRun(client, {
          ...startRun(context, {
            "mlflow.parentRunId": parentId,
            "search.trial": String(trial.index),
            "pipeline.stage": "train-trial",
          }, `${parent.info.runName || "search"}-${name}`),
          signal: trialSignal,
        }, async (child): Promise<TrialRecord> => {
          log.info(`${name} started`, { run: child.info.runId, ...trial.params });
          await client.logBatch(child.info.runId, {
            params: { model_family: "linear", trial: trial.index, ...linearParamsForMlflow(params) },
          });
          // Trials run side by side, so each reports plain log lines (at most every 15 s), not a redrawn bar.
          let reported = performance.now();
          const result = await runLinearTrialInWorker(
            {
              files,
              params,
              holdout: search.holdout,
              ...(initial ? { initial } : {}),
            },
            trialSignal,
            (p) => {
              if (performance.now() - reported < PROGRESS_INTERVAL_MS) return;
              reported = performance.now();
              log.info(`${name}: epoch ${p.epoch}/${params.epochs}`, {
                done: `${(100 * p.done / p.total).toFixed(1)}%`,
                loss: p.loss,
              });
            },
          );
          if (result.validation.rows === 0) {
            throw new PipelineError(
              `the validation split is empty (${search.holdout.fraction} of ${result.rows} reviews); raise --validation-fraction or add batches`,
            );
          }
          await client.logBatch(child.info.runId, {
            metrics: [
              { key: "val_accuracy", value: result.validation.accuracy },
              { key: "val_log_loss", value: result.validation.logLoss },
              { key: "val_rows", value: result.validation.rows },
              { key: "train_rows", value: result.rows },
              { key: "fit_seconds", value: result.seconds },
              ...result.epochLosses.map((value, step) => ({ key: "train_log_loss", value, step: step + 1 })),
            ],
          });
          log.info(`${name} done`, {
            val_accuracy: result.validation.accuracy,
            val_log_loss: result.validation.logLoss,
            seconds: result.seconds,
          });
          const record: TrialRecord = { index: trial.index, params, runId: child.info.runId, result };
          leader = keepLeaderEngine(leader, record, !search.refit);
          return record;
        });
      }, { concurrency, signal });

      const best = records[bestTrial(records.map((r) => r.result.validation))]!;
      log.info(`best: trial ${best.index}`, {
        val_accuracy: best.result.validation.accuracy,
        ...linearParamsForMlflow(best.params),
      });
      await client.logBatch(parentId, {
        metrics: {
          best_val_accuracy: best.result.validation.accuracy,
          best_val_log_loss: best.result.validation.logLoss,
        },
        tags: { "search.best_run_id": best.runId, "search.best_trial": String(best.index) },
      });
      await client.setTag(best.runId, "search.best", "true");

      let trained: TrainedLinearModel;
      if (search.refit) {
        log.info("refit: training the best parameters on all the reviews");
        trained = await trainLinearModel({
          batches,
          params: best.params,
          ...(warm ? { initial: warm.model } : {}),
          ...(context.calibration ? { calibration: context.calibration } : {}),
          signal,
          onPhase: (phase, detail) => log.info(phase, detail),
        });
      } else {
        trained = {
          model: deserializeLinear(best.result.engineBytes),
          engineName: LINEAR_ENGINE_NAME,
          engineBytes: best.result.engineBytes,
          params: best.params,
          rows: best.result.rows,
          positives: best.result.positives,
          epochLosses: best.result.epochLosses,
          seconds: { fit: best.result.seconds },
        };
      }
      const summary: SearchSummary = {
        trials: records.length,
        best_trial: best.index,
        best_run_id: best.runId,
        best_val_accuracy: best.result.validation.accuracy,
        refit: search.refit,
      };
      const version = await finishLinearRun(context, parent, trained, {
        params: warm ? { warm_start_from_version: warm.version } : {},
        training: { search: summary, ...(warm ? { warm_start_from_version: warm.version } : {}) },
      });
      log.info(`registered ${modelName} version ${version} (best of ${records.length} trials)`);
      return {
        run_id: parentId,
        model_name: modelName,
        model_version: version,
        model: "linear" as const,
        search: summary,
      };
    },
  );
}
