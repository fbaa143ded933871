/**
 * A fastText-style linear classifier (Joulin et al. 2016, "Bag of Tricks for Efficient Text
 * Classification"): each hashed token and token pair has a small embedding, a review is the pooled
 * embedding of its features, and a logistic output layer scores it.
 *
 * Pooling ({@linkcode Pooling}) is the sum of the embeddings divided by the number of features n: by n
 * (the mean, fastText's choice and the only one of models saved before pooling was recorded) or by √n,
 * which lets a long review carry more evidence than a short one (better on the development reviews, see
 * `DEFAULT_LINEAR_PARAMS`). Either way the logit is exact sum over the review's features plus the bias:
 * feature k adds `scale(n) · (output · embedding_k)` ({@linkcode LinearModel.logitContributions}), which
 * is what an explanation of a prediction reads.
 *
 * Two departures from fastText:
 * - The embeddings start at zero and the output weights at small random values (fastText does the
 *   reverse). Either breaks the symmetry, and test accuracy on the development reviews was the same
 *   (mean of 3 seeds for each of 9 settings, within ±0.2 points), but this way a bucket no review ever
 *   touched stays exactly zero: the saved model holds only the rows that were trained (20 MB for the
 *   15,000 development reviews instead of 84 MB), and an unseen n-gram at prediction time adds nothing
 *   rather than random noise.
 * - Two classes use one logistic output with a bias instead of a two-way softmax; it is the same model
 *   with half the output weights.
 *
 * The update is plain SGD on the log loss, one review at a time; {@linkcode LinearModel.trainStep} is
 * the whole of it.
 *
 * @module
 */
import type { TokenScoringEngine } from "../artifact.ts";
import type { FeatureContribution, ScoreDecomposition } from "../explanation.ts";
import { FeatureBuffer, featuresOfTokenHashes, featuresOfTokens, type HashingConfig } from "./hashing.ts";

/** How a review's feature embeddings are pooled: their sum divided by n (the mean) or by √n. */
export type Pooling = "mean" | "sqrt";

/** The poolings this build knows. */
export const POOLINGS: readonly Pooling[] = ["mean", "sqrt"];

/**
 * The factor a review's summed feature embeddings are multiplied by.
 *
 * @param pooling The model's pooling.
 * @param count The review's number of features (repeats counted).
 * @returns 1/count or 1/√count; 0 for a review without features.
 */
export function poolingScale(pooling: Pooling, count: number): number {
  if (count <= 0) return 0;
  return pooling === "mean" ? 1 / count : 1 / Math.sqrt(count);
}

/** The model's shape: what is fixed once training starts, and what scoring needs besides the weights. */
export interface LinearShape extends HashingConfig {
  /** Embedding size. */
  dim: number;
  /** Pooling of the feature embeddings. @default {"mean"} (models saved before it was recorded) */
  pooling?: Pooling;
}

/** What a model remembers of its training, saved with it. */
export interface LinearHistory {
  /** Reviews it was trained on, summed over epochs and warm starts. */
  examples: number;
  /** Training sessions (1 + warm starts). */
  sessions: number;
}

/** A 32-bit generator (mulberry32) for initial weights and shuffling; deterministic, not cryptographic. */
export class SeededRandom {
  #state: number;

  /** @param seed Any integer; only its low 32 bits are used. */
  constructor(seed: number) {
    this.#state = seed | 0;
  }

  /** Next unsigned 32-bit integer. */
  nextUint32(): number {
    this.#state = (this.#state + 0x6d2b79f5) | 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/** Logistic function, clamped so that `Math.exp` never overflows. */
export function sigmoid(z: number): number {
  if (z >= 30) return 1;
  if (z <= -30) return 0;
  return 1 / (1 + Math.exp(-z));
}

/**
 * {@linkcode LinearModel.bucketScores} of these weights: per bucket, `output · embedding row`.
 *
 * @param shape The model's shape.
 * @param embeddings `buckets × dim` embeddings, row-major.
 * @param output The output weights.
 * @param rows When given, the only buckets whose rows may be non-zero (the rows a saved model stores): the
 *   others score 0, exactly what their zero rows give, and are neither read nor written, so a table that is
 *   mostly untouched memory stays untouched.
 * @returns `buckets` scores.
 */
export function bucketScoresOf(
  shape: Readonly<LinearShape>,
  embeddings: Float32Array,
  output: Float64Array,
  rows?: Uint32Array,
): Float64Array {
  const { buckets, dim } = shape;
  const scores = new Float64Array(buckets);
  const count = rows?.length ?? buckets;
  for (let r = 0; r < count; r++) {
    const bucket = rows ? rows[r]! : r;
    const row = bucket * dim;
    let dot = 0;
    for (let j = 0; j < dim; j++) dot += output[j]! * embeddings[row + j]!;
    scores[bucket] = dot;
  }
  return scores;
}

/**
 * The trained parameters and the arithmetic of the model. Not thread-safe; one trainer at a time.
 *
 * @example Usage
 * ```ts
 * import { LinearModel } from "./model.ts";
 * const model = LinearModel.create({ dim: 4, buckets: 1024, ngrams: 2 }, 42);
 * for (let i = 0; i < 200; i++) {
 *   model.trainTokens(["great"], 1, 0.5);
 *   model.trainTokens(["awful"], 0, 0.5);
 * }
 * console.assert(model.predictTokensProba(["great"]) > 0.9);
 * ```
 */
export class LinearModel implements TokenScoringEngine {
  /** Shape: dimension, buckets, n-grams, pooling. */
  readonly shape: Readonly<Required<LinearShape>>;
  /** `buckets × dim` embeddings, row-major. */
  readonly embeddings: Float32Array;
  /** Output weights, one per dimension. */
  readonly output: Float64Array;
  /** Training history. */
  history: LinearHistory;
  /** Output bias. */
  bias: number;
  // Scratch space of the hot loops, reused so that scoring allocates nothing.
  #hidden: Float64Array;
  #gradient: Float64Array;
  #features = new FeatureBuffer();
  /** Per bucket, `output · embedding row`: see {@linkcode LinearModel.bucketScores}. */
  #bucketScores: Float64Array | undefined;

  /**
   * Use {@linkcode LinearModel.create} or the decoder in `model_format.ts`.
   *
   * @param bucketScores What {@linkcode LinearModel.bucketScores} computed for these very weights (a
   *   worker thread that decoded the model hands them over), so that they are not computed again.
   */
  constructor(
    shape: LinearShape,
    embeddings: Float32Array,
    output: Float64Array,
    bias: number,
    history: LinearHistory,
    bucketScores?: Float64Array,
  ) {
    if (
      embeddings.length !== shape.buckets * shape.dim || output.length !== shape.dim ||
      (bucketScores !== undefined && bucketScores.length !== shape.buckets)
    ) {
      throw new RangeError(
        `linear model arrays do not match its shape (${shape.buckets} x ${shape.dim})`,
      );
    }
    if (shape.pooling !== undefined && !POOLINGS.includes(shape.pooling)) {
      throw new RangeError(
        `linear model pooling must be one of ${POOLINGS.join(", ")}, got ${shape.pooling}`,
      );
    }
    this.#bucketScores = bucketScores;
    this.shape = Object.freeze({ ...shape, pooling: shape.pooling ?? "mean" });
    this.embeddings = embeddings;
    this.output = output;
    this.bias = bias;
    this.history = { ...history };
    this.#hidden = new Float64Array(shape.dim);
    this.#gradient = new Float64Array(shape.dim);
  }

  /**
   * A new, untrained model: zero embeddings, output weights uniform in ±1/dim.
   *
   * @param shape Dimension, buckets, n-grams, pooling (mean when absent).
   * @param seed Seed of the initial output weights.
   */
  static create(shape: LinearShape, seed: number): LinearModel {
    const random = new SeededRandom(seed ^ 0x5bd1e995);
    const output = new Float64Array(shape.dim);
    for (let j = 0; j < shape.dim; j++) output[j] = (2 * random.next() - 1) / shape.dim;
    return new LinearModel(
      shape,
      new Float32Array(shape.buckets * shape.dim),
      output,
      0,
      { examples: 0, sessions: 0 },
    );
  }

  /** Pools the embeddings of `ids[start, start + count)` into the hidden vector; returns the score before the sigmoid. */
  #forward(ids: Int32Array, start: number, count: number): number {
    const dim = this.shape.dim;
    const hidden = this.#hidden;
    const embeddings = this.embeddings;
    hidden.fill(0);
    for (let k = start, end = start + count; k < end; k++) {
      const row = ids[k]! * dim;
      for (let j = 0; j < dim; j++) hidden[j]! += embeddings[row + j]!;
    }
    let z = this.bias;
    if (count > 0) {
      const scale = poolingScale(this.shape.pooling, count);
      const output = this.output;
      for (let j = 0; j < dim; j++) {
        hidden[j]! *= scale;
        z += output[j]! * hidden[j]!;
      }
    }
    return z;
  }

  /**
   * Probability that a review with these feature ids is positive.
   *
   * @param ids Feature ids (bucket numbers), repeats allowed.
   * @param start First id to use. @default {0}
   * @param count How many ids to use. @default {ids.length - start}
   */
  predictIds(ids: Int32Array, start = 0, count: number = ids.length - start): number {
    return sigmoid(this.#forward(ids, start, count));
  }

  /**
   * Per bucket, the dot product of its embedding row with the output weights, computed on first use and
   * again after training changed the weights. A review's logit is `bias + output · mean(rows)`, and the mean
   * is a sum, so it is `bias + mean(row scores)`: scoring a trained model reads one number per feature
   * instead of a row of `dim`, which also means one cache line instead of one or two in a table too large
   * for the caches. The same numbers are the explanation's per-feature terms
   * ({@linkcode LinearModel.logitContributions}).
   *
   * @returns `buckets` scores; not to be modified.
   */
  bucketScores(): Float64Array {
    this.#bucketScores ??= bucketScoresOf(this.shape, this.embeddings, this.output);
    return this.#bucketScores;
  }

  /**
   * The logit of `ids[0, count)` from the bucket scores: what {@linkcode LinearModel.logitIds} computes, in
   * another order of the same sums, pooled by the same {@linkcode poolingScale} (the two agree to about
   * 1e-15; a test holds them together for both poolings).
   */
  #logitFromScores(ids: Int32Array, count: number): number {
    if (count === 0) return this.bias;
    const scores = this.bucketScores();
    let sum = 0;
    for (let k = 0; k < count; k++) sum += scores[ids[k]!]!;
    return this.bias + sum * poolingScale(this.shape.pooling, count);
  }

  /** Probability that a review with these tokens is positive. */
  predictTokensProba(tokens: readonly string[]): number {
    featuresOfTokens(tokens, this.shape, this.#features);
    return sigmoid(this.#logitFromScores(this.#features.ids, this.#features.length));
  }

  /** The score before the sigmoid (the logit) of a review with these tokens. */
  logitTokens(tokens: readonly string[]): number {
    featuresOfTokens(tokens, this.shape, this.#features);
    return this.#logitFromScores(this.#features.ids, this.#features.length);
  }

  /**
   * {@linkcode LinearModel.predictTokensProba} of tokens given as their hashes (`hashToken`, as
   * `Tokenizer.tokenizeReviewHashes` writes them): the same features, so the same number.
   *
   * @param hashes The tokens' hashes.
   * @param count How many of them.
   */
  predictTokenHashesProba(hashes: Uint32Array, count: number): number {
    featuresOfTokenHashes(hashes, count, this.shape, this.#features);
    return sigmoid(this.#logitFromScores(this.#features.ids, this.#features.length));
  }

  /** {@linkcode LinearModel.logitTokens} of tokens given as their hashes. */
  logitTokenHashes(hashes: Uint32Array, count: number): number {
    featuresOfTokenHashes(hashes, count, this.shape, this.#features);
    return this.#logitFromScores(this.#features.ids, this.#features.length);
  }

  /** The score before the sigmoid (the logit) of a review with these feature ids. */
  logitIds(ids: Int32Array, start = 0, count: number = ids.length - start): number {
    return this.#forward(ids, start, count);
  }

  /**
   * Decomposes the logit of {@linkcode LinearModel.logitIds} exactly over the review's features: the
   * logit is `bias + output · (sum of embedding rows) · scale`, the scale 1/count or 1/√count by the model's
   * pooling ({@linkcode poolingScale}), so it splits into one term per feature, `(output · embedding row) ·
   * scale`. `bias + Σ out[k]` equals the logit up to floating-point rounding. It mirrors `#forward`: a change to how a review is scored must change both (tests hold them
   * equal).
   *
   * @param ids Feature ids.
   * @param start First id to use.
   * @param count How many ids to use.
   * @param out Receives the contribution of `ids[start + k]` at `out[k]`; at least `count` long.
   * @returns The bias (the logit of a review without features).
   */
  logitContributions(ids: Int32Array, start: number, count: number, out: Float64Array): number {
    const scores = this.bucketScores();
    const scale = poolingScale(this.shape.pooling, count);
    for (let k = 0; k < count; k++) out[k] = scores[ids[start + k]!]! * scale;
    return this.bias;
  }

  /**
   * The exact decomposition of a review's logit over its features (tokens and n-grams), through the same
   * featurisation as {@linkcode LinearModel.predictTokensProba}.
   *
   * @param tokens The review's tokens.
   * @returns One entry per feature occurrence (a word said twice is two), with the tokens it is made of.
   *
   * @example Usage
   * ```ts
   * import { LinearModel } from "./model.ts";
   * const model = LinearModel.create({ dim: 4, buckets: 1024, ngrams: 2 }, 42);
   * model.trainTokens(["not", "good"], 0, 0.5);
   * const { bias, features } = model.explainTokens(["not", "good"]);
   * features.map((f) => f.feature); // ["not", "good", "not good"]
   * const logit = bias + features.reduce((sum, f) => sum + f.contribution, 0);
   * ```
   */
  explainTokens(tokens: readonly string[]): ScoreDecomposition {
    const features = new FeatureBuffer();
    const origins: number[] = [];
    featuresOfTokens(tokens, this.shape, features, origins);
    const contributions = new Float64Array(features.length);
    const bias = this.logitContributions(features.ids, 0, features.length, contributions);
    const explained: FeatureContribution[] = [];
    for (let k = 0; k < features.length; k++) {
      const made: number[] = [];
      for (let i = origins[2 * k]!, last = origins[2 * k + 1]!; i <= last; i++) {
        if (tokens[i]!.length > 0) made.push(i);
      }
      explained.push({
        feature: made.map((i) => tokens[i]).join(" "),
        contribution: contributions[k]!,
        tokens: made,
      });
    }
    return { scale: "logit", bias, features: explained };
  }

  /**
   * One SGD step on the log loss for one review.
   *
   * @param ids Feature ids; a review without features trains only the bias.
   * @param start First id of the review in `ids`.
   * @param count How many ids the review has.
   * @param label 1 = positive, 0 = negative.
   * @param rate Learning rate of this step.
   * @param rateScale Per bucket, a factor on the learning rate of that bucket's embedding (the trainer's
   *   naive-Bayes weighting); absent = 1 for every bucket.
   * @returns The probability predicted before the step (for the running loss).
   */
  trainStep(
    ids: Int32Array,
    start: number,
    count: number,
    label: 0 | 1,
    rate: number,
    rateScale?: Float32Array,
  ): number {
    const dim = this.shape.dim;
    const p = sigmoid(this.#forward(ids, start, count));
    const g = rate * (label - p);
    this.bias += g;
    this.history.examples++;
    if (count === 0) return p;
    const output = this.output;
    const hidden = this.#hidden;
    const gradient = this.#gradient;
    this.#bucketScores = undefined; // the weights change below
    // The input gradient uses the output weights before their own update, and is shared equally by the
    // features, as in fastText (the pooling's derivative is its scale for every feature).
    const share = poolingScale(this.shape.pooling, count);
    for (let j = 0; j < dim; j++) {
      gradient[j] = g * output[j]! * share;
      output[j]! += g * hidden[j]!;
    }
    const embeddings = this.embeddings;
    if (rateScale === undefined) {
      for (let k = start, end = start + count; k < end; k++) {
        const row = ids[k]! * dim;
        for (let j = 0; j < dim; j++) embeddings[row + j]! += gradient[j]!;
      }
      return p;
    }
    for (let k = start, end = start + count; k < end; k++) {
      const bucket = ids[k]!;
      const factor = rateScale[bucket]!;
      if (factor === 0) continue;
      const row = bucket * dim;
      for (let j = 0; j < dim; j++) embeddings[row + j]! += factor * gradient[j]!;
    }
    return p;
  }

  /** {@linkcode LinearModel.trainStep} on tokens; for tests and small jobs. */
  trainTokens(tokens: readonly string[], label: 0 | 1, rate: number): number {
    featuresOfTokens(tokens, this.shape, this.#features);
    return this.trainStep(this.#features.ids, 0, this.#features.length, label, rate);
  }

  /** Number of buckets with a non-zero embedding (the rows a saved model stores). */
  countUsedRows(): number {
    const { buckets, dim } = this.shape;
    let used = 0;
    for (let b = 0; b < buckets; b++) {
      const row = b * dim;
      for (let j = 0; j < dim; j++) {
        if (this.embeddings[row + j] !== 0) {
          used++;
          break;
        }
      }
    }
    return used;
  }

  /** An independent copy (a warm start must not change the model it started from). */
  clone(): LinearModel {
    return new LinearModel(
      this.shape,
      this.embeddings.slice(),
      this.output.slice(),
      this.bias,
      this.history,
    );
  }
}
