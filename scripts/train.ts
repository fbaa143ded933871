/**
 * Stage `train`: fits the vocabulary and a random forest on processed batches, logs params, metrics and the
 * model to an MLflow run, and registers the model as a new version of the registered model.
 *
 * Reads `data/processed/train_batch_N.tsv`; writes nothing locally; reaches only the MLflow server.
 *
 * @example
 * ```sh
 * deno task train --batches 0 1 2
 * make train batches="0 1 2"
 * ```
 *
 * @module
 */
import { UsageError } from "../lib/errors.ts";
import { featureImportanceChart } from "../lib/charts.ts";
import type { ForestParams, MaxFeatures } from "../lib/forest/forest.ts";
import { parseIntegerFlag } from "../lib/flags.ts";
import { withRun } from "../lib/mlflow_client.ts";
import { buildModelFiles } from "../lib/model_artifact.ts";
import { datasetDigest, resolveTrainingBatches, trainSentimentModel } from "../lib/train.ts";
import { TOKENIZER_VERSION } from "../lib/text_features.ts";
import type { VectorizerConfig } from "../lib/vectorizer.ts";
import { APP_VERSION } from "../lib/version.ts";
import { runStage, type StageContext, type StageResult, type StageSpec } from "./_cli.ts";
import { connectMlflow, DEFAULT_MODEL_NAME, MLFLOW_ENV_USAGE } from "./_mlflow.ts";

const USAGE = `Usage: deno task train --batches N [N ...] [options]

Trains a sentiment model on processed batches, logs it to MLflow and registers a new model version.

Options:
  --batches N [N ...]      processed batches to train on: numbers (0 1 2 or 0,1,2) or "all"  (required)
  --model-name NAME        registered model (default ${DEFAULT_MODEL_NAME}, or MLFLOW_MODEL_NAME)
  --run-name NAME          MLflow run name (default: MLflow picks one)
  --trees N                trees in the forest (default 100)
  --max-depth N            maximum tree depth, 0 = unlimited (default 0)
  --min-samples-leaf N     minimum reviews per leaf (default 1)
  --max-features F         words tried per split: sqrt, log2, all or a number (default sqrt)
  --no-bootstrap           grow every tree on all reviews (no out-of-bag accuracy)
  --seed N                 random seed; same seed and data give the same model (default 42)
  --workers N              parallel tree builders (default: number of cores)
  --max-vocab N            vocabulary size (default 20000)
  --min-df N               minimum reviews a term must appear in (default 2)
  --ngrams 1|2             1 = words, 2 = words and adjacent pairs (default 2)
  --json                   print {"run_id","model_name","model_version"} on stdout
  -h, --help               show this help

${MLFLOW_ENV_USAGE}

Example:
  deno task train --batches 0 1 2 --trees 200`;

/** The train stage's command line. */
export const spec: StageSpec = {
  name: "train",
  usage: USAGE,
  allowPositionals: true,
  options: {
    batches: { type: "string" },
    "model-name": { type: "string" },
    "run-name": { type: "string" },
    trees: { type: "string" },
    "max-depth": { type: "string" },
    "min-samples-leaf": { type: "string" },
    "max-features": { type: "string" },
    "no-bootstrap": { type: "boolean" },
    seed: { type: "string" },
    workers: { type: "string" },
    "max-vocab": { type: "string" },
    "min-df": { type: "string" },
    ngrams: { type: "string" },
  },
};

/** Parses `--batches 0 1 2`, `--batches 0,1,2` or `--batches all` (positionals follow the flag). */
export function parseBatches(flag: string | undefined, positionals: string[]): (number | "all")[] {
  if (flag === undefined) {
    if (positionals.length > 0) {
      throw new UsageError(`unexpected argument "${positionals[0]}"; use --batches N`);
    }
    throw new UsageError("--batches is required, e.g. --batches 0 1 2 or --batches all");
  }
  const words = [flag, ...positionals].flatMap((word) => word.split(",")).map((word) => word.trim())
    .filter((word) => word !== "");
  if (words.length === 0) throw new UsageError("--batches needs at least one batch number or all");
  return words.map((word) => word === "all" ? "all" : parseIntegerFlag("--batches", word, { min: 0 }));
}

function parseMaxFeatures(value: string | undefined): MaxFeatures | undefined {
  if (value === undefined) return undefined;
  if (value === "sqrt" || value === "log2" || value === "all") return value;
  return parseIntegerFlag("--max-features", value, { min: 1 });
}

function optionalInt(values: StageContext["values"], name: string, min: number): number | undefined {
  const value = values[name];
  return typeof value === "string" ? parseIntegerFlag(`--${name}`, value, { min }) : undefined;
}

/** Drops undefined fields so defaults apply. */
function defined<T extends object>(object: T): Partial<T> {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined)) as Partial<T>;
}

async function main(ctx: StageContext): Promise<StageResult> {
  const { values, log, signal } = ctx;
  const requested = parseBatches(values.batches as string | undefined, ctx.positionals);
  const forest: Partial<ForestParams> = defined({
    trees: optionalInt(values, "trees", 1),
    maxDepth: optionalInt(values, "max-depth", 0),
    minSamplesLeaf: optionalInt(values, "min-samples-leaf", 1),
    maxFeatures: parseMaxFeatures(values["max-features"] as string | undefined),
    seed: optionalInt(values, "seed", 0),
    bootstrap: values["no-bootstrap"] === true ? false : undefined,
  });
  const ngrams = optionalInt(values, "ngrams", 1);
  if (ngrams !== undefined && ngrams > 2) throw new UsageError(`--ngrams must be 1 or 2, got ${ngrams}`);
  const vectorizer: Partial<VectorizerConfig> = defined({
    maxFeatures: optionalInt(values, "max-vocab", 1),
    minDf: optionalInt(values, "min-df", 1),
    ngramMax: ngrams as 1 | 2 | undefined,
  });
  const workers = optionalInt(values, "workers", 1) ?? navigator.hardwareConcurrency;

  // Cheap local checks and the MLflow health check come before any heavy work.
  const batches = await resolveTrainingBatches(requested);
  const mlflow = await connectMlflow({ modelName: values["model-name"] as string | undefined }, log, signal);
  const { client, config, modelName } = mlflow;
  const experiment = await client.getOrCreateExperiment(config.experimentName);
  log.info(`training on batches ${batches.map((b) => b.index).join(", ")}`, {
    reviews: batches.reduce((sum, b) => sum + b.meta.rows, 0),
    experiment: config.experimentName,
    tracking: config.trackingUri,
  });

  const runName = values["run-name"] as string | undefined;
  const result = await withRun(client, {
    experimentId: experiment.experimentId,
    ...(runName ? { runName } : {}),
    tags: { ...mlflow.sourceTags("scripts/train.ts", "train"), "model.name": modelName },
    signal,
    log,
  }, async (run) => {
    const runId = run.info.runId;
    log.info(`MLflow run ${runId}`, {
      url: `${config.trackingUri}/#/experiments/${experiment.experimentId}/runs/${runId}`,
    });
    const trained = await trainSentimentModel({
      batches,
      vectorizer,
      forest,
      workers,
      signal,
      onPhase: (phase, detail) => log.info(`${phase}`, detail),
    });
    const p = trained.forestParams;
    const v = trained.vectorizerConfig;
    await client.logBatch(runId, {
      params: {
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
    await client.logInputs(runId, [{
      name: `train_batches_${batches.map((b) => b.index).join("_")}`.slice(0, 500),
      digest: datasetDigest(batches.map((b) => b.meta)),
      sourceType: "local",
      source: { uri: batches.map((b) => b.path).join(",") },
      profile: { num_rows: trained.rows, positives: trained.positives },
      context: "training",
    }]);
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

    // Artifacts first, registration last: a version never points at a model that is not there.
    const files = buildModelFiles({
      engineName: trained.engineName,
      engineBytes: trained.engineBytes,
      vectorizer: trained.vectorizer,
      appVersion: APP_VERSION,
      runId,
      training: {
        batches: batches.map((b) => b.index),
        rows: trained.rows,
        oob_accuracy: trained.forest.oobAccuracy,
        params: p,
        vectorizer: v,
      },
    });
    for (const [name, bytes] of files) {
      await client.uploadArtifact(run.info.artifactUri, `model/${name}`, bytes);
    }
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

    await client.createRegisteredModel(modelName, {
      description: "Sentiment of Amazon product reviews (amazon-reviews-mlops)",
    });
    const version = await client.createModelVersion({
      name: modelName,
      source: `${run.info.artifactUri}/model`,
      runId,
      tags: { engine: trained.engineName, tokenizer_version: TOKENIZER_VERSION },
    });
    await client.setTag(runId, "registered_model_version", String(version.version));
    log.info(`registered ${modelName} version ${version.version}`, {
      oob_accuracy: trained.forest.oobAccuracy ?? "n/a",
      seconds: trained.seconds.vocabulary + trained.seconds.vectorize + trained.seconds.fit,
    });
    return { run_id: runId, model_name: modelName, model_version: String(version.version) };
  });
  return {
    json: result,
    text: `run ${result.run_id}: registered ${result.model_name} version ${result.model_version}`,
  };
}

if (import.meta.main) await runStage(spec, Deno.args, main);
