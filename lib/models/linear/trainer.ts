/**
 * Training of the linear model by SGD in passes (epochs) over processed files, streamed.
 *
 * Memory does not grow with the number of reviews: each epoch reads the files again in 4 MB chunks,
 * hashes tokens straight from the bytes ({@linkcode featuresOfBytes}), and keeps at most one shuffle block
 * of feature ids ({@linkcode LinearParams.shuffleRows} reviews). SGD needs its examples in random order, so
 * each epoch visits the files in a seeded random order and each block of reviews in a seeded random order;
 * a file larger than a block is therefore shuffled locally, which is enough because the batches are cut
 * from the already shuffled dataset and whole files are shuffled too.
 *
 * The learning rate decays linearly from {@linkcode LinearParams.learningRate} to 0 over all epochs, as in
 * fastText. With {@linkcode LinearParams.nbWeighting} above 0 a counting pass comes first: how many positive
 * and negative training reviews have each bucket gives its naive-Bayes log-count ratio r (Wang & Manning
 * 2012), and each bucket's embedding then learns at `|r|^(2·nbWeighting)` times the rate. That is NB-SVM's
 * input scaling (feature × |r|^nbWeighting) folded into the learning rate: a model whose inputs are scaled
 * by s and trained from zero equals one with unscaled inputs whose updates are scaled by s², so the saved
 * model needs no ratios and scores, and explains itself, exactly as an unweighted one. A run is deterministic: same files, same parameters, same seed give the same model bit for
 * bit, since it is single-threaded (tuning runs trials in parallel instead, see `lib/models/tuning.ts`).
 *
 * A hold-out split ({@linkcode HoldoutSplit}) carves a validation set out of the same files by a hash of
 * each review's position, so every trial of a search holds out exactly the same reviews without any
 * extra file being written.
 *
 * @module
 */
import { PipelineError } from "../../core/errors.ts";
import { FeatureBuffer, featuresOfBytes, type HashingConfig } from "./hashing.ts";
import { LinearModel, type Pooling, POOLINGS, SeededRandom } from "./model.ts";
import { fmix32 } from "./hashing.ts";
import { openInput } from "../../core/read_guard.ts";

/** Training parameters of the linear model. */
export interface LinearParams {
  /** Embedding size. @default {10} */
  dim: number;
  /** Hash buckets (rows of the embedding table). @default {2097152} */
  buckets: number;
  /** 1 = words; 2 = words and adjacent word pairs. @default {2} */
  ngrams: 1 | 2;
  /** How a review's feature embeddings are pooled: their sum over n (the mean) or over √n. @default {"sqrt"} */
  pooling: Pooling;
  /**
   * Naive-Bayes weighting: each feature's input is, in effect, scaled by |r|^nbWeighting, r its log-count
   * ratio on the training reviews (0 = off, 1 = NB-SVM's scaling). @default {0.5}
   */
  nbWeighting: number;
  /** Passes over the training files. @default {5} */
  epochs: number;
  /** Initial learning rate, decayed linearly to 0. @default {0.05} */
  learningRate: number;
  /** Seed of the initial weights and of the shuffling. @default {42} */
  seed: number;
  /** Reviews per shuffle block: the memory bound of training (about 0.7 KB per review). @default {100000} */
  shuffleRows: number;
}

/**
 * The defaults of {@linkcode LinearParams}: fastText's shape for this dataset (Joulin et al. 2016, table 1:
 * dim 10, words and pairs, 5 epochs) with √n pooling and naive-Bayes weighting (exponent 0.5), which
 * together need a lower learning rate (0.05). `deno task feature_study` measures each change against the
 * previous defaults (mean pooling, no weighting, 10 epochs at 0.25) on the real development reviews; the
 * figures are in `docs/model/index.md`.
 */
export const DEFAULT_LINEAR_PARAMS: Readonly<LinearParams> = Object.freeze({
  dim: 10,
  buckets: 2_097_152,
  ngrams: 2,
  pooling: "sqrt",
  nbWeighting: 0.5,
  epochs: 5,
  learningRate: 0.05,
  seed: 42,
  shuffleRows: 100_000,
});

/** The largest table accepted: 2^31 floats is where typed arrays stop. */
const MAX_TABLE_FLOATS = 2 ** 31 - 1;

/**
 * Fills in defaults and validates parameters.
 *
 * @param params Any subset of the parameters.
 * @returns The complete, validated parameters.
 * @throws {RangeError} naming the first invalid parameter.
 *
 * @example Usage
 * ```ts
 * import { resolveLinearParams } from "./trainer.ts";
 * console.assert(resolveLinearParams({ epochs: 2 }).dim === 10);
 * ```
 */
export function resolveLinearParams(params: Partial<LinearParams> = {}): LinearParams {
  const resolved: LinearParams = { ...DEFAULT_LINEAR_PARAMS, ...params };
  const integer = (name: keyof LinearParams, min: number, max: number) => {
    const value = resolved[name];
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      throw new RangeError(
        `linear parameter ${name} must be an integer between ${min} and ${max}, got ${value}`,
      );
    }
  };
  integer("dim", 1, 1000);
  integer("buckets", 1, 2 ** 30);
  integer("epochs", 1, 1000);
  integer("seed", -(2 ** 31), 2 ** 32 - 1);
  integer("shuffleRows", 1, 10_000_000);
  if (resolved.ngrams !== 1 && resolved.ngrams !== 2) {
    throw new RangeError(`linear parameter ngrams must be 1 or 2, got ${resolved.ngrams}`);
  }
  if (!POOLINGS.includes(resolved.pooling)) {
    throw new RangeError(
      `linear parameter pooling must be one of ${POOLINGS.join(", ")}, got ${resolved.pooling}`,
    );
  }
  if (!(resolved.nbWeighting >= 0 && resolved.nbWeighting <= 2)) {
    throw new RangeError(`linear parameter nbWeighting must be in [0, 2], got ${resolved.nbWeighting}`);
  }
  if (!(resolved.learningRate > 0 && resolved.learningRate <= 10)) {
    throw new RangeError(`linear parameter learningRate must be in (0, 10], got ${resolved.learningRate}`);
  }
  if (resolved.buckets * resolved.dim > MAX_TABLE_FLOATS) {
    throw new RangeError(
      `linear buckets x dim must be at most ${MAX_TABLE_FLOATS}, got ${resolved.buckets} x ${resolved.dim}`,
    );
  }
  return resolved;
}

/** A processed file to read: `<polarity>\t<tok tok ...>\n` lines (see `lib/data/processed_data.ts`). */
export interface TrainingFile {
  /** Path of the `.tsv`. */
  path: string;
  /** Lines in the file (from its meta), for the learning-rate schedule and progress. */
  rows: number;
  /** A stable number of the file (the batch index), which the hold-out split hashes. */
  key: number;
}

/** A deterministic split of the reviews into training and hold-out (validation) reviews. */
export interface HoldoutSplit {
  /** Share of the reviews held out, in (0, 1). */
  fraction: number;
  /** Seed of the split; the same seed holds out the same reviews. */
  seed: number;
}

/**
 * Whether the review on line `row` (0-based) of file `key` is held out. Depends only on the split, the
 * file key and the line, never on the order reviews are read in.
 *
 * @param split Fraction and seed.
 * @param key The file's key.
 * @param row The 0-based line number.
 */
export function isHoldoutRow(split: HoldoutSplit, key: number, row: number): boolean {
  const h = fmix32(fmix32(split.seed ^ Math.imul(key + 1, 0x9e3779b1)) ^ Math.imul(row + 1, 0x85ebca77));
  return h / 4294967296 < split.fraction;
}

/** Which reviews of the files a pass reads. */
export type RowFilter = { holdout: HoldoutSplit; side: "train" | "holdout" } | undefined;

function keeps(filter: RowFilter, key: number, row: number): boolean {
  if (filter === undefined) return true;
  return isHoldoutRow(filter.holdout, key, row) === (filter.side === "holdout");
}

/** Number of reviews of `files` that a filter keeps, computed from the row counts alone. */
export function countRows(files: readonly TrainingFile[], filter: RowFilter): number {
  if (filter === undefined) return files.reduce((sum, file) => sum + file.rows, 0);
  let count = 0;
  for (const file of files) {
    for (let row = 0; row < file.rows; row++) if (keeps(filter, file.key, row)) count++;
  }
  return count;
}

/** Called for each kept review with its label (1 = positive) and its feature ids `ids[0, count)`. */
type RowVisitor = (label: 0 | 1, ids: Int32Array, count: number) => void;

const CHUNK_BYTES = 1 << 22;
const LF = 0x0a;
const TAB = 0x09;
const ONE = 0x31;
const TWO = 0x32;

/**
 * Reads a processed file in chunks and calls `visit` for each kept line. Lines are parsed from the bytes:
 * no string is decoded, which is most of why an epoch is fast.
 *
 * @throws {PipelineError} for a missing file, a line that is not `<1|2>\t...`, or a file cut short.
 */
async function forEachRow(
  file: TrainingFile,
  hashing: HashingConfig,
  filter: RowFilter,
  visit: RowVisitor,
  signal?: AbortSignal,
): Promise<number> {
  let handle: Deno.FsFile;
  try {
    handle = await openInput(file.path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new PipelineError(`${file.path} is missing; preprocess the batch again`, { cause: error });
    }
    throw error;
  }
  const features = new FeatureBuffer();
  let buffer = new Uint8Array(CHUNK_BYTES);
  let filled = 0;
  let row = 0;
  try {
    while (true) {
      signal?.throwIfAborted();
      if (filled === buffer.length) {
        // One line longer than the buffer: grow it rather than split the line.
        const grown = new Uint8Array(buffer.length * 2);
        grown.set(buffer);
        buffer = grown;
      }
      const read = await handle.read(buffer.subarray(filled));
      if (read === null) break;
      filled += read;
      let start = 0;
      let newline = buffer.indexOf(LF, start);
      while (newline !== -1 && newline < filled) {
        if (keeps(filter, file.key, row)) {
          const label = buffer[start];
          if ((label !== ONE && label !== TWO) || buffer[start + 1] !== TAB || newline < start + 2) {
            throw new PipelineError(
              `${file.path} line ${
                row + 1
              } is not "<1|2>\\t<tokens>"; rerun its preprocess stage with --force`,
            );
          }
          featuresOfBytes(buffer, start + 2, newline, hashing, features);
          visit(label === TWO ? 1 : 0, features.ids, features.length);
        }
        row++;
        start = newline + 1;
        newline = start < filled ? buffer.indexOf(LF, start) : -1;
      }
      buffer.copyWithin(0, start, filled);
      filled -= start;
    }
  } finally {
    handle.close();
  }
  if (filled > 0) {
    throw new PipelineError(
      `${file.path} ends in the middle of line ${
        row + 1
      } (truncated?); rerun its preprocess stage with --force`,
    );
  }
  return row;
}

/** A block of reviews held for shuffling: flat ids plus offsets. */
class ShuffleBlock {
  ids = new Int32Array(1 << 20);
  starts: Int32Array;
  labels: Uint8Array;
  size = 0;
  #used = 0;

  constructor(readonly capacity: number) {
    this.starts = new Int32Array(capacity + 1);
    this.labels = new Uint8Array(capacity);
  }

  add(label: 0 | 1, ids: Int32Array, count: number): void {
    if (this.#used + count > this.ids.length) {
      const grown = new Int32Array(Math.max(this.ids.length * 2, this.#used + count));
      grown.set(this.ids.subarray(0, this.#used));
      this.ids = grown;
    }
    this.ids.set(ids.subarray(0, count), this.#used);
    this.labels[this.size] = label;
    this.starts[this.size] = this.#used;
    this.#used += count;
    this.size++;
    this.starts[this.size] = this.#used;
  }

  clear(): void {
    this.size = 0;
    this.#used = 0;
  }
}

/** Add-α smoothing of the naive-Bayes counts (Wang & Manning's α = 1). */
const NB_SMOOTHING = 1;

/**
 * The per-bucket learning-rate factors of naive-Bayes weighting, from one pass over the training reviews:
 * for each bucket b, r = log(((pos_b + α) / (P + 2α)) / ((neg_b + α) / (Q + 2α))) where pos_b and neg_b count
 * the positive and negative reviews that have a feature in b (once per review, as NB-SVM's binarised
 * features) and P and Q all positive and negative reviews; the factor is |r|^(2·power). A bucket no
 * training review has gets 0 (it is never updated anyway). The ratio of presence rates, rather than of
 * summed counts, keeps r independent of the number of buckets and of the class balance: a feature as
 * frequent in positive as in negative reviews gets r = 0.
 *
 * @param files The training files.
 * @param hashing Buckets and n-grams.
 * @param filter The reviews training reads.
 * @param power The weighting exponent ({@linkcode LinearParams.nbWeighting}), > 0.
 * @param signal Checked between chunks.
 * @returns One factor per bucket.
 */
export async function naiveBayesRateScale(
  files: readonly TrainingFile[],
  hashing: HashingConfig,
  filter: RowFilter,
  power: number,
  signal?: AbortSignal,
): Promise<Float32Array> {
  // Float32 counts are exact up to 2^24 reviews per bucket and class, and halve the memory of Float64.
  const positive = new Float32Array(hashing.buckets);
  const negative = new Float32Array(hashing.buckets);
  let positives = 0;
  let negatives = 0;
  let sorted = new Int32Array(256);
  for (const file of files) {
    await forEachRow(file, hashing, filter, (label, ids, count) => {
      if (sorted.length < count) sorted = new Int32Array(Math.max(count, 2 * sorted.length));
      const review = sorted.subarray(0, count);
      review.set(ids.subarray(0, count));
      review.sort();
      const counts = label === 1 ? positive : negative;
      for (let k = 0; k < count; k++) if (k === 0 || review[k] !== review[k - 1]) counts[review[k]!]!++;
      if (label === 1) positives++;
      else negatives++;
    }, signal);
  }
  const positiveRate = 1 / (positives + 2 * NB_SMOOTHING);
  const negativeRate = 1 / (negatives + 2 * NB_SMOOTHING);
  const exponent = 2 * power;
  // The factors overwrite the positive counts: one array less at the peak.
  const scale = positive;
  for (let b = 0; b < scale.length; b++) {
    const pos = positive[b]!;
    const neg = negative[b]!;
    if (pos === 0 && neg === 0) continue;
    const ratio = Math.log(((pos + NB_SMOOTHING) * positiveRate) / ((neg + NB_SMOOTHING) * negativeRate));
    scale[b] = Math.pow(Math.abs(ratio), exponent);
  }
  return scale;
}

/** Progress of {@linkcode trainLinear}. */
export interface LinearProgress {
  /** Current epoch, from 1. */
  epoch: number;
  /** Reviews trained on so far, over all epochs. */
  done: number;
  /** Reviews to train on, over all epochs. */
  total: number;
  /** Mean log loss of the current epoch so far (measured before each update). */
  loss: number;
}

/** Options of {@linkcode trainLinear}. */
export interface LinearTrainOptions {
  /** The processed files to train on. */
  files: readonly TrainingFile[];
  /** Training parameters. For a warm start, `dim`, `buckets` and `ngrams` must be the initial model's. */
  params: LinearParams;
  /** Continue training this model (it is copied, not changed). */
  initial?: LinearModel;
  /** Train only on the reviews this split does not hold out. */
  holdout?: HoldoutSplit;
  /** Checked between chunks; aborting throws `signal.reason`. */
  signal?: AbortSignal;
  /** Called after every shuffle block. */
  onProgress?: (progress: LinearProgress) => void;
}

/** A trained model and how training went. */
export interface LinearTrainResult {
  model: LinearModel;
  /** Reviews per epoch. */
  rows: number;
  /** Positive reviews per epoch. */
  positives: number;
  /** Mean training log loss of each epoch. */
  epochLosses: number[];
  /** Seconds spent training. */
  seconds: number;
}

/**
 * Trains (or continues training) a linear model on processed files.
 *
 * @param options Files, parameters, optional initial model and hold-out split.
 * @returns The model and training statistics.
 * @throws {PipelineError} when the files hold no training review, a file is malformed, or the initial
 *   model's shape differs from `params`.
 */
export async function trainLinear(options: LinearTrainOptions): Promise<LinearTrainResult> {
  const { params, files, signal } = options;
  const shape = { dim: params.dim, buckets: params.buckets, ngrams: params.ngrams, pooling: params.pooling };
  if (options.initial) {
    const s = options.initial.shape;
    if (
      s.dim !== shape.dim || s.buckets !== shape.buckets || s.ngrams !== shape.ngrams ||
      s.pooling !== shape.pooling
    ) {
      throw new PipelineError(
        `the warm-start model has dim ${s.dim}, buckets ${s.buckets}, ngrams ${s.ngrams}, pooling ${s.pooling}; ` +
          `train with those (or drop --warm-start-from)`,
      );
    }
  }
  const filter: RowFilter = options.holdout ? { holdout: options.holdout, side: "train" } : undefined;
  const rowsPerEpoch = countRows(files, filter);
  if (rowsPerEpoch === 0) {
    throw new PipelineError("the training files hold no reviews to train on; check data/processed");
  }
  const started = performance.now();
  const rateScale = params.nbWeighting > 0
    ? await naiveBayesRateScale(files, shape, filter, params.nbWeighting, signal)
    : undefined;
  const model = options.initial ? options.initial.clone() : LinearModel.create(shape, params.seed);
  model.history.sessions++;
  const random = new SeededRandom(params.seed ^ 0x1b873593 ^ Math.imul(model.history.sessions, 0x27d4eb2d));
  const total = rowsPerEpoch * params.epochs;
  const block = new ShuffleBlock(Math.min(params.shuffleRows, rowsPerEpoch));
  const order = new Int32Array(block.capacity);
  const epochLosses: number[] = [];
  let done = 0;
  let positives = 0;
  let epoch = 0;
  let lossSum = 0;
  let lossRows = 0;

  const trainBlock = () => {
    const n = block.size;
    for (let i = 0; i < n; i++) order[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = random.below(i + 1);
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    const { ids, starts, labels } = block;
    for (let i = 0; i < n; i++) {
      const r = order[i]!;
      const start = starts[r]!;
      const count = starts[r + 1]! - start;
      const label = labels[r] as 0 | 1;
      const rate = params.learningRate * Math.max(0, 1 - done / total);
      const p = model.trainStep(ids, start, count, label, rate, rateScale);
      lossSum -= Math.log(Math.min(1 - 1e-7, Math.max(1e-7, label === 1 ? p : 1 - p)));
      lossRows++;
      done++;
    }
    block.clear();
    options.onProgress?.({ epoch, done, total, loss: lossSum / lossRows });
  };

  for (epoch = 1; epoch <= params.epochs; epoch++) {
    lossSum = 0;
    lossRows = 0;
    const fileOrder = [...files];
    for (let i = fileOrder.length - 1; i > 0; i--) {
      const j = random.below(i + 1);
      [fileOrder[i], fileOrder[j]] = [fileOrder[j]!, fileOrder[i]!];
    }
    let epochPositives = 0;
    for (const file of fileOrder) {
      await forEachRow(file, shape, filter, (label, ids, count) => {
        epochPositives += label;
        block.add(label, ids, count);
        if (block.size === block.capacity) trainBlock();
      }, signal);
    }
    if (block.size > 0) trainBlock();
    positives = epochPositives;
    epochLosses.push(lossSum / Math.max(1, lossRows));
  }
  return {
    model,
    rows: rowsPerEpoch,
    positives,
    epochLosses,
    seconds: (performance.now() - started) / 1000,
  };
}

/** Accuracy and log loss of a model on some reviews. */
export interface LinearScore {
  /** Share of reviews whose predicted label (probability >= 0.5) is right. */
  accuracy: number;
  /** Mean log loss. */
  logLoss: number;
  /** Reviews scored. */
  rows: number;
}

/**
 * Scores a model on processed files, streamed; with `holdout`, only on the held-out reviews (validation).
 *
 * @param model The model.
 * @param files The files.
 * @param options A hold-out split to score on, a signal, and a callback for each review's prediction.
 * @returns Accuracy, log loss and the number of reviews.
 */
export async function scoreLinear(
  model: LinearModel,
  files: readonly TrainingFile[],
  options: {
    holdout?: HoldoutSplit;
    signal?: AbortSignal;
    /** Called for each scored review, in file order, with its label and the positive probability. */
    onRow?: (label: 0 | 1, probability: number) => void;
  } = {},
): Promise<LinearScore> {
  const filter: RowFilter = options.holdout ? { holdout: options.holdout, side: "holdout" } : undefined;
  let rows = 0;
  let correct = 0;
  let loss = 0;
  for (const file of files) {
    await forEachRow(file, model.shape, filter, (label, ids, count) => {
      const p = model.predictIds(ids, 0, count);
      options.onRow?.(label, p);
      rows++;
      if ((p >= 0.5 ? 1 : 0) === label) correct++;
      loss -= Math.log(Math.min(1 - 1e-7, Math.max(1e-7, label === 1 ? p : 1 - p)));
    }, options.signal);
  }
  return { accuracy: rows > 0 ? correct / rows : NaN, logLoss: rows > 0 ? loss / rows : NaN, rows };
}

/** Raw scores of held-out reviews, with their labels: what a calibrator is fitted on. */
export interface HeldOutScores {
  /** The model's logit of each held-out review. */
  scores: Float64Array;
  /** 1 = positive, 0 = negative, position for position. */
  labels: Uint8Array;
}

/**
 * The logits of the reviews a split held out of training, streamed from the files.
 *
 * @param model The model.
 * @param files The files it was trained on.
 * @param holdout The split that held the reviews out.
 * @param signal Aborts the read.
 */
export async function scoreHeldOut(
  model: LinearModel,
  files: readonly TrainingFile[],
  holdout: HoldoutSplit,
  signal?: AbortSignal,
): Promise<HeldOutScores> {
  const scores: number[] = [];
  const labels: number[] = [];
  for (const file of files) {
    await forEachRow(file, model.shape, { holdout, side: "holdout" }, (label, ids, count) => {
      scores.push(model.logitIds(ids, 0, count));
      labels.push(label);
    }, signal);
  }
  return { scores: Float64Array.from(scores), labels: Uint8Array.from(labels) };
}
