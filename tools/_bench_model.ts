/**
 * Benchmark helper, run by `tools/bench.ts` as a child process inside its scratch project root: the
 * MLflow-free work of `train`, `evaluate` and `predict`, as the stages do it (same library calls), timed
 * in process. The model goes to `data/bench/<dir>/` in the artifact layout train uploads to MLflow, so
 * evaluate and predict load exactly what they would download.
 *
 * - `train`: fits the vocabulary and the forest on every processed batch; writes the model and
 *   `terms.txt` (the vocabulary, one term per line, for scikit-learn's `CountVectorizer`).
 * - `evaluate`: loads the model and scores `data/processed/test.tsv`; with `--predictions FILE`, also writes
 *   each test review's positive probability, one a line in test order (the bench's paired margins).
 * - `predict`: loads the model and times single `predict` calls on reviews of `data/raw/test.csv`.
 *
 * Run: `deno run -q -P=bench_model tools/_bench_model.ts train|evaluate|predict [options] --json`
 * (reads data and lib, writes data/bench).
 *
 * @module
 */
import { join } from "node:path";
import { AtomicTextWriter, PARTIAL_SUFFIX } from "../lib/core/atomic_file.ts";
import { ENGINES } from "../lib/models/engines.ts";
import { PipelineError, UsageError } from "../lib/core/errors.ts";
import { evaluateModel, metricsForMlflow } from "../lib/models/evaluate.ts";
import { PROCESSED_TEST_PATH, RAW_TEST_PATH } from "../lib/data/layout.ts";
import { intFlag } from "../lib/core/flags.ts";
import { DEFAULT_FOREST_PARAMS } from "../lib/models/forest/forest.ts";
import { readProcessed } from "../lib/data/processed_data.ts";
import { buildModelFiles, loadModel, sha256Hex } from "../lib/models/artifact.ts";
import type { Review } from "../lib/data/review.ts";
import { fileStream, readReviews } from "../lib/data/review_reader.ts";
import { resolveTrainingBatches, trainLinearModel, trainSentimentModel } from "../lib/models/fit.ts";
import { APP_VERSION } from "../lib/core/version.ts";
import { quantile } from "./_bench_report.ts";
import { defineStage, runStage, type StageContext, type StageResult } from "../scripts/_cli.ts";

/** Where the helper writes, relative to the scratch root. */
export const BENCH_DIR = "data/bench";

/** Timed predict calls when `--calls` is not given. */
const DEFAULT_CALLS = 10_000;

const USAGE =
  `Usage: deno run -q -P=bench_model tools/_bench_model.ts train|evaluate|predict [options] [--json]

Benchmark helper of "deno task bench"; runs inside its scratch project root.

  train      fit vocabulary + forest on data/processed/train_batch_*.tsv, write ${BENCH_DIR}/<model>/
  evaluate   score data/processed/test.tsv with ${BENCH_DIR}/<model>/
  predict    time single predict calls on reviews of ${RAW_TEST_PATH}

Options:
  --model NAME     model folder under ${BENCH_DIR} (default model)
  --family F       train: forest (default) or linear (the fastText-style family, its defaults)
  --trees N        trees (train; default ${DEFAULT_FOREST_PARAMS.trees})
  --workers N      tree-building workers (train; default: number of cores)
  --calls N        timed predict calls (predict; default ${DEFAULT_CALLS})
  --explain        predict: time explain calls (the words' exact contributions) instead
  --predictions F  evaluate: also write each test review's positive probability to F (under ${BENCH_DIR})
  --json           print the figures as one JSON object on stdout
  -h, --help       show this help
`;

/** Command line of the helper. */
export const spec = defineStage({
  name: "bench_model",
  usage: USAGE,
  allowPositionals: true,
  options: {
    model: { type: "string" },
    trees: { type: "string" },
    workers: { type: "string" },
    calls: { type: "string" },
    family: { type: "string" },
    explain: { type: "boolean" },
    predictions: { type: "string" },
  },
});

type Ctx = StageContext<typeof spec.options>;

function modelDir(ctx: Ctx): string {
  const name = ctx.values.model ?? "model";
  if (!/^[\w.-]+$/.test(name)) throw new UsageError(`--model must be a folder name, got "${name}"`);
  return join(BENCH_DIR, name);
}

async function writeBytesAtomic(path: string, bytes: Uint8Array): Promise<void> {
  await Deno.writeFile(path + PARTIAL_SUFFIX, bytes);
  await Deno.rename(path + PARTIAL_SUFFIX, path);
}

/** The linear family with its defaults, as `train --model linear` trains it (single-threaded SGD). */
async function trainLinear(ctx: Ctx): Promise<StageResult> {
  const dir = modelDir(ctx);
  const { batches } = await resolveTrainingBatches(["all"]);
  const trained = await trainLinearModel({
    batches,
    signal: ctx.signal,
    onPhase: (phase, detail) => ctx.log.info(phase, detail),
  });
  const files = buildModelFiles({
    engineName: trained.engineName,
    engineBytes: trained.engineBytes,
    appVersion: APP_VERSION,
    training: { rows: trained.rows, params: trained.params },
  });
  await Deno.mkdir(dir, { recursive: true });
  for (const [name, bytes] of files) await writeBytesAtomic(join(dir, name), bytes);
  return {
    json: {
      rows: trained.rows,
      positives: trained.positives,
      seconds: trained.seconds,
      train_seconds: trained.seconds.fit,
      engine_sha256: sha256Hex(trained.engineBytes),
      engine_bytes: trained.engineBytes.length,
      epochs: trained.params.epochs,
      dim: trained.params.dim,
    },
    text: `trained the linear model on ${trained.rows} reviews in ${trained.seconds.fit.toFixed(1)} s`,
  };
}

async function train(ctx: Ctx): Promise<StageResult> {
  const family = ctx.values.family ?? "forest";
  if (family === "linear") return trainLinear(ctx);
  if (family !== "forest") throw new UsageError(`--family must be forest or linear, got "${family}"`);
  const trees = intFlag("--trees", ctx.values.trees, { min: 1 }) ?? DEFAULT_FOREST_PARAMS.trees;
  const workers = intFlag("--workers", ctx.values.workers, { min: 1, max: 64 }) ??
    navigator.hardwareConcurrency;
  const dir = modelDir(ctx);
  const { batches } = await resolveTrainingBatches(["all"]);
  const trained = await trainSentimentModel({
    batches,
    forest: { trees },
    workers,
    signal: ctx.signal,
    onPhase: (phase, detail) => ctx.log.info(phase, detail),
  });
  const files = buildModelFiles({
    engineName: trained.engineName,
    engineBytes: trained.engineBytes,
    vectorizer: trained.vectorizer,
    appVersion: APP_VERSION,
    training: { rows: trained.rows, params: trained.forestParams, vectorizer: trained.vectorizerConfig },
  });
  await Deno.mkdir(dir, { recursive: true });
  for (const [name, bytes] of files) await writeBytesAtomic(join(dir, name), bytes);
  await using terms = await AtomicTextWriter.create(join(dir, "terms.txt"));
  for (const term of trained.vectorizer.terms) {
    const pending = terms.write(term + "\n");
    if (pending) await pending;
  }
  await terms.commit();
  const { seconds } = trained;
  return {
    json: {
      rows: trained.rows,
      positives: trained.positives,
      vocabulary: trained.vectorizer.size,
      trees,
      workers,
      seconds,
      train_seconds: seconds.vocabulary + seconds.vectorize + seconds.fit,
      engine_sha256: sha256Hex(trained.engineBytes),
      engine_bytes: trained.engineBytes.length,
      oob_accuracy: trained.forest.oobAccuracy,
      nodes: trained.forest.stats.nodes,
    },
    text: `trained on ${trained.rows} reviews in ${(seconds.vectorize + seconds.fit).toFixed(1)} s`,
  };
}

async function load(dir: string) {
  const started = performance.now();
  const files = new Map<string, Uint8Array>();
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && entry.name !== "terms.txt") {
        files.set(entry.name, await Deno.readFile(join(dir, entry.name)));
      }
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new PipelineError(`${dir} not found; run the helper's train mode first`);
    }
    throw error;
  }
  const model = loadModel(files, ENGINES);
  return { model, loadSeconds: (performance.now() - started) / 1000 };
}

/** Writes the positive probability of every test review, one a line, in the order of the test set. */
async function writePredictions(
  model: Awaited<ReturnType<typeof load>>["model"],
  path: string,
  signal: AbortSignal,
): Promise<void> {
  if (!path.startsWith(BENCH_DIR + "/") || path.includes("..")) {
    throw new UsageError(`--predictions must be a path under ${BENCH_DIR}, got "${path}"`);
  }
  await using out = await AtomicTextWriter.create(path);
  for await (const row of readProcessed(PROCESSED_TEST_PATH, { signal })) {
    const flushed = out.write(model.predictTokens(row.tokens).positiveProbability.toFixed(6) + "\n");
    if (flushed) await flushed;
  }
  await out.commit();
}

async function evaluate(ctx: Ctx): Promise<StageResult> {
  const { model, loadSeconds } = await load(modelDir(ctx));
  const evaluation = await evaluateModel(model, PROCESSED_TEST_PATH, { signal: ctx.signal });
  const predictions = ctx.values.predictions;
  if (predictions !== undefined) await writePredictions(model, predictions, ctx.signal);
  const metrics = metricsForMlflow(evaluation.metrics);
  return {
    json: {
      rows: evaluation.metrics.support,
      seconds: evaluation.seconds,
      load_seconds: loadSeconds,
      metrics,
    },
    text: `accuracy ${metrics.accuracy!.toFixed(4)} on ${evaluation.metrics.support} reviews`,
  };
}

/** Up to `limit` reviews from the start of the raw test CSV: real inputs of the size users send. */
async function sampleReviews(limit: number): Promise<Review[]> {
  const reviews: Review[] = [];
  using file = await Deno.open(RAW_TEST_PATH);
  for await (const { review } of readReviews(fileStream(file), { limit })) reviews.push(review);
  if (reviews.length === 0) throw new PipelineError(`${RAW_TEST_PATH} holds no reviews`);
  return reviews;
}

async function predict(ctx: Ctx): Promise<StageResult> {
  const calls = intFlag("--calls", ctx.values.calls, { min: 10 }) ?? DEFAULT_CALLS;
  const { model, loadSeconds } = await load(modelDir(ctx));
  const reviews = await sampleReviews(2_000);
  const explain = ctx.values.explain === true;
  // Both give the probability of positive: explain's is the same served probability as predict's.
  const call = explain
    ? (review: Review) => model.explain(review).probability
    : (review: Review) => model.predict(review).positiveProbability;
  // Warm-up: let V8 optimise the tokenizer, vectorizer and tree walk, as in a long-running server.
  for (let i = 0; i < Math.min(2_000, calls); i++) call(reviews[i % reviews.length]!);
  const times = new Float64Array(calls);
  let positives = 0;
  for (let i = 0; i < calls; i++) {
    const review = reviews[i % reviews.length]!;
    const started = performance.now();
    const probability = call(review);
    times[i] = performance.now() - started;
    if (probability >= 0.5) positives++;
  }
  times.sort();
  const mean = times.reduce((sum, t) => sum + t, 0) / calls;
  return {
    json: {
      calls,
      distinct_reviews: reviews.length,
      median_ms: quantile(times, 0.5),
      p99_ms: quantile(times, 0.99),
      mean_ms: mean,
      load_seconds: loadSeconds,
      positive_share: positives / calls,
    },
    text: `${explain ? "explain" : "predict"}: median ${quantile(times, 0.5).toFixed(3)} ms, p99 ${
      quantile(times, 0.99).toFixed(3)
    } ms`,
  };
}

/** Runs one mode. */
export function main(ctx: Ctx): Promise<StageResult> {
  const [mode, ...rest] = ctx.positionals;
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  if (mode === "train") return train(ctx);
  if (mode === "evaluate") return evaluate(ctx);
  if (mode === "predict") return predict(ctx);
  throw new UsageError(`expected a mode, train, evaluate or predict, got ${mode ? `"${mode}"` : "none"}`);
}

if (import.meta.main) await runStage(spec, Deno.args, main);
