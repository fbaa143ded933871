/**
 * The evaluate stage's work, apart from MLflow: score a processed test set with a loaded model and
 * compute the metrics and charts that evaluate logs.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { confusionMatrixChart, rocCurveChart } from "./charts.ts";
import { Forest } from "./forest/forest.ts";
import { predictInWorkers } from "./forest/parallel_predict.ts";
import { SparseDatasetBuilder } from "./forest/sparse_dataset.ts";
import { PipelineError } from "../core/errors.ts";
import { type BinaryMetrics, MetricsAccumulator, type RocPoint } from "./classification_metrics.ts";
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

/** The processed test set, relative to the project root. */
export const TEST_SET_PATH = "data/processed/test.tsv";

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
  if (meta.rows === 0) throw new PipelineError(`${path} holds no reviews; check data/raw/test.csv`);
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
  const progress = createProgress("evaluate", { total: meta.rows, unit: "reviews", mode: options.progress });
  if (model.engine instanceof Forest && model.vectorizer) {
    // A deep forest costs ~100-300 ns per tree per review: score in workers on every core. Only the
    // feature ids are held (about 4 bytes per distinct term per review), never the text.
    const rows = new SparseDatasetBuilder(model.vectorizer.size);
    const labels: boolean[] = [];
    for await (const row of testRows(model, path, meta, options.signal)) {
      rows.addRow(model.vectorizer.transform(row.tokens), row.polarity === 2 ? 1 : 0);
      labels.push(row.polarity === 2);
    }
    const probabilities = await predictInWorkers(model.engine, rows.finish(), {
      ...(options.signal ? { signal: options.signal } : {}),
      onProgress: (done) => progress.update(done),
    });
    for (let i = 0; i < labels.length; i++) accumulator.add(labels[i]!, probabilities[i]!);
  } else {
    for await (const row of testRows(model, path, meta, options.signal)) {
      accumulator.add(row.polarity === 2, model.predictTokens(row.tokens).positiveProbability);
      progress.update(accumulator.count);
    }
  }
  progress.finish();
  const metrics = accumulator.result();
  const roc = accumulator.rocCurve();
  return {
    metrics,
    roc,
    meta,
    tokens: sameTokenizer(meta.tokenizer, model.manifest.tokenizer) ? "processed" : "source",
    seconds: (performance.now() - started) / 1000,
    charts: {
      "confusion_matrix.svg": await confusionMatrixChart(metrics.confusion),
      "roc_curve.svg": await rocCurveChart(roc, metrics.rocAuc),
    },
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
