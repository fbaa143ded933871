/**
 * The evaluate stage's work, apart from MLflow: score a processed test set with a loaded model and
 * compute the metrics and charts that evaluate logs.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { confusionMatrixChart, reliabilityChart, rocCurveChart } from "./charts.ts";
import { CalibrationAccumulator, type CalibrationReport } from "./calibration.ts";
import { lengthBin, SliceAccumulator, sliceMetricsForMlflow, type SliceReport } from "./slices.ts";
import { Forest } from "./forest/forest.ts";
import { predictInWorkers } from "./forest/parallel_predict.ts";
import { SparseDatasetBuilder } from "./forest/sparse_dataset.ts";
import { PipelineError } from "../core/errors.ts";
import {
  type BinaryMetrics,
  type MetricIntervals,
  metricIntervals,
  MetricsAccumulator,
  type RocPoint,
} from "./classification_metrics.ts";
import type { SentimentModel } from "./artifact.ts";
import {
  type ProcessedMeta,
  type ProcessedRow,
  readProcessed,
  readProcessedMeta,
} from "../data/processed_data.ts";
import { fileStream, readReviews } from "../data/review_reader.ts";
import { describeTokenizerDifference, sameTokenizer } from "../features/tokenizer.ts";
import { createProgress, type ProgressOptions } from "../core/progress.ts";
import { openInput } from "../core/read_guard.ts";
import { RAW_TEST_PATH } from "../data/layout.ts";

/** What evaluation produced. */
export interface Evaluation {
  metrics: BinaryMetrics;
  roc: RocPoint[];
  meta: ProcessedMeta;
  /**
   * Where the tokens came from: the processed test set, or its source CSV tokenised again because the
   * model was trained with other tokenizer settings (see `evaluateModel`).
   */
  tokens: "processed" | "source";
  seconds: number;
  /** SVG documents by artifact name. */
  charts: Record<string, string>;
  /** 95% intervals of the main metrics. */
  intervals: MetricIntervals;
  /** Whether the served probabilities mean what they say on this test set. */
  calibration: CalibrationReport;
  /** Accuracy per review length (in tokens). */
  slices: SliceReport[];
}

/**
 * Reads the test set's meta and checks it was tokenised the way the model expects.
 *
 * @throws {PipelineError} when the test set is missing or was made by another tokenizer version.
 */
export async function checkTestSet(path: string, tokenizerVersion?: string): Promise<ProcessedMeta> {
  const meta = await readProcessedMeta(path);
  if (tokenizerVersion !== undefined && meta.tokenizer.version !== tokenizerVersion) {
    throw new PipelineError(
      `${path} was tokenised by tokenizer ${meta.tokenizer.version} but the model expects ${tokenizerVersion}; ` +
        `rerun "deno task preprocess_test --force" with the build that trained the model`,
    );
  }
  if (meta.rows === 0) throw new PipelineError(`${path} holds no reviews; check ${RAW_TEST_PATH}`);
  return meta;
}

/**
 * The test set's rows as the model's own tokenizer tokenises them: the processed file when it was made
 * with the model's tokenizer settings, else the processed file's source CSV tokenised again. The second
 * case is an older model (a champion trained before a tokenizer default changed) scored on the same
 * reviews as a new one; the source must still be the bytes the processed file was made from.
 *
 * @throws {PipelineError} when the source is gone or changed, or yields other rows than the processed file.
 */
async function* testRows(
  model: SentimentModel,
  path: string,
  meta: ProcessedMeta,
  signal: AbortSignal | undefined,
): AsyncGenerator<ProcessedRow> {
  if (sameTokenizer(meta.tokenizer, model.manifest.tokenizer)) {
    yield* readProcessed(path, signal ? { signal } : {});
    return;
  }
  let file: Deno.FsFile;
  try {
    file = await openInput(meta.source);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new PipelineError(
      `${path} was tokenised with other settings than the model's (${
        describeTokenizerDifference(meta.tokenizer, model.manifest.tokenizer)
      }) and its source ${meta.source} is gone to tokenise again; restore it`,
      { cause: error },
    );
  }
  const hash = createHash("sha256");
  let rows = 0;
  try {
    const source = fileStream(file, { onChunk: (chunk) => hash.update(chunk) });
    for await (const { review } of readReviews(source, signal ? { signal } : {})) {
      const tokens = model.tokenizer.tokenizeReview(review);
      // The preprocess stage drops reviews without tokens; so must this, to score the same rows.
      if (tokens.length === 0) continue;
      rows++;
      yield { polarity: review.polarity, tokens };
    }
  } finally {
    file.close();
  }
  if (hash.digest("hex") !== meta.sourceSha256 || rows !== meta.rows) {
    throw new PipelineError(
      `${meta.source} changed since ${path} was made from it (${rows} reviews now, ${meta.rows} then); ` +
        `rerun "deno task preprocess_test"`,
    );
  }
}

/**
 * Scores every review of a processed test set. A model trained with other tokenizer settings than the
 * test set's is scored on the set's source CSV, tokenised its own way (see `testRows`).
 */
export async function evaluateModel(
  model: SentimentModel,
  path: string,
  options: { signal?: AbortSignal; progress?: ProgressOptions["mode"] } = {},
): Promise<Evaluation> {
  const meta = await checkTestSet(path, model.manifest.tokenizer.version);
  const started = performance.now();
  const accumulator = new MetricsAccumulator();
  const calibration = new CalibrationAccumulator();
  const lengths = new SliceAccumulator("length");
  const add = (positive: boolean, probability: number, tokens: number) => {
    accumulator.add(positive, probability);
    calibration.add(probability, positive ? 1 : 0);
    lengths.add(lengthBin(tokens), (probability >= 0.5) === positive, positive);
  };
  const progress = createProgress("evaluate", { total: meta.rows, unit: "reviews", mode: options.progress });
  if (model.engine instanceof Forest && model.vectorizer) {
    // A deep forest costs ~100-300 ns per tree per review: score in workers on every core. Only the
    // feature ids are held (about 4 bytes per distinct term per review), never the text.
    const rows = new SparseDatasetBuilder(model.vectorizer.size);
    const labels: boolean[] = [];
    const tokenCounts: number[] = [];
    for await (const row of testRows(model, path, meta, options.signal)) {
      rows.addRow(model.vectorizer.transform(row.tokens), row.polarity === 2 ? 1 : 0);
      labels.push(row.polarity === 2);
      tokenCounts.push(row.tokens.length);
    }
    const probabilities = await predictInWorkers(model.engine, rows.finish(), {
      ...(options.signal ? { signal: options.signal } : {}),
      onProgress: (done) => progress.update(done),
    });
    // The workers score the engine; the model's calibrator, if any, is applied here.
    for (let i = 0; i < labels.length; i++) {
      add(labels[i]!, model.calibrate(probabilities[i]!), tokenCounts[i]!);
    }
  } else {
    for await (const row of testRows(model, path, meta, options.signal)) {
      add(row.polarity === 2, model.predictTokens(row.tokens).positiveProbability, row.tokens.length);
      progress.update(accumulator.count);
    }
  }
  progress.finish();
  const metrics = accumulator.result();
  const roc = accumulator.rocCurve();
  const calibrationReport = calibration.report();
  return {
    metrics,
    roc,
    meta,
    tokens: sameTokenizer(meta.tokenizer, model.manifest.tokenizer) ? "processed" : "source",
    seconds: (performance.now() - started) / 1000,
    charts: {
      "confusion_matrix.svg": await confusionMatrixChart(metrics.confusion),
      "roc_curve.svg": await rocCurveChart(roc, metrics.rocAuc),
      "reliability_diagram.svg": await reliabilityChart(calibrationReport.bins, calibrationReport.ece),
    },
    intervals: metricIntervals(metrics),
    calibration: calibrationReport,
    slices: lengths.report(),
  };
}

/**
 * Accuracy per source: each CSV file of a folder (the dataset's format) is one source, named after its
 * file, tokenised by the model's own tokenizer and scored. For a test set assembled from several
 * sources, this shows how a version does on each kind of review; a source missing from the training data
 * shows how it copes with a domain it never saw.
 *
 * @param model The model.
 * @param dir The folder of `*.csv` files.
 * @param options A signal.
 * @returns One slice per file (in name order) and all of them pooled.
 * @throws {PipelineError} when the folder is missing or holds no CSV file.
 */
export async function evaluateSources(
  model: SentimentModel,
  dir: string,
  options: { signal?: AbortSignal } = {},
): Promise<{ slices: SliceReport[]; pooled: SliceReport }> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && entry.name.endsWith(".csv")) names.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new PipelineError(`--sources ${dir} does not exist; give a folder of CSV files, one per source`);
  }
  if (names.length === 0) {
    throw new PipelineError(
      `--sources ${dir} holds no .csv file; give a folder of CSV files, one per source`,
    );
  }
  names.sort();
  const sources = new SliceAccumulator("source");
  const pooled = new SliceAccumulator("source");
  for (const name of names) {
    using file = await Deno.open(`${dir}/${name}`);
    for await (
      const { review } of readReviews(file.readable, options.signal ? { signal: options.signal } : {})
    ) {
      const tokens = model.tokenizer.tokenizeReview(review);
      // As preprocess does: a review without tokens is not scored.
      if (tokens.length === 0) continue;
      const positive = review.polarity === 2;
      const correct = (model.predictTokens(tokens).positiveProbability >= 0.5) === positive;
      sources.add(name.slice(0, -".csv".length), correct, positive);
      pooled.add("all sources", correct, positive);
    }
  }
  return { slices: sources.report(), pooled: pooled.report()[0]! };
}

/**
 * Everything evaluate logs as MLflow metrics beyond {@linkcode metricsForMlflow}: calibration, the 95%
 * intervals (`<metric>_ci_low` / `_ci_high`) and the slices.
 */
export function evaluationMetricsForMlflow(evaluation: Evaluation): Record<string, number> {
  const { calibration, intervals } = evaluation;
  const bounds = (name: string, [low, high]: [number, number]) => ({
    [`${name}_ci_low`]: low,
    [`${name}_ci_high`]: high,
  });
  return {
    calibration_error: calibration.ece,
    max_calibration_error: calibration.mce,
    brier_score: calibration.brier,
    ...bounds("accuracy", intervals.accuracy),
    ...bounds("precision", intervals.precision),
    ...bounds("recall", intervals.recall),
    ...bounds("roc_auc", intervals.rocAuc),
    ...sliceMetricsForMlflow(evaluation.slices),
  };
}

/** The metrics as flat MLflow metric keys. */
export function metricsForMlflow(metrics: BinaryMetrics): Record<string, number> {
  return {
    accuracy: metrics.accuracy,
    precision: metrics.precision,
    recall: metrics.recall,
    f1: metrics.f1,
    roc_auc: metrics.rocAuc,
    log_loss: metrics.logLoss,
    test_rows: metrics.support,
    true_positive: metrics.confusion.truePositive,
    false_positive: metrics.confusion.falsePositive,
    true_negative: metrics.confusion.trueNegative,
    false_negative: metrics.confusion.falseNegative,
  };
}
