/**
 * 95% intervals of accuracies and of the margin between two models scored on the same reviews, by the
 * bootstrap over reviews (Efron & Tibshirani 1993, percentile intervals), for the benchmark and the
 * feature study. Pure and seeded: the same predictions give the same interval.
 *
 * A model's predictions are grouped by review ("unit"): a review scored once (one test split, or leave
 * one source out) is a unit of one prediction; a review held out by several random splits is one unit of
 * several predictions. Resampling units rather than predictions keeps those repeats together, so three
 * random splits over the same reviews do not pass for three times the evidence.
 *
 * The margin is paired: both models are resampled on the same reviews, so the reviews every model gets
 * right or wrong cancel and the interval is much narrower than the two accuracies' intervals suggest.
 *
 * @module
 */
import { SeededRandom } from "../lib/models/linear/model.ts";

/** Resamples of the bootstrap: enough for the 2.5% and 97.5% percentiles to move by less than 0.05 points. */
export const BOOTSTRAP_RESAMPLES = 2000;

/** An estimate and its 95% interval. */
export interface Interval {
  /** The estimate on the predictions as they are. */
  value: number;
  /** 2.5th percentile of the resampled estimates. */
  low: number;
  /** 97.5th percentile of the resampled estimates. */
  high: number;
}

/** Predictions of one or more models on the same reviews, summed per review. */
export interface UnitScores {
  /** Predictions per review. */
  counts: Uint32Array;
  /** Right predictions per review, one array per model, in the order the models were given. */
  correct: Uint32Array[];
}

/**
 * Sums right predictions per review for models scored on the same predictions list.
 *
 * @param units The review each prediction is of: an index in [0, reviews).
 * @param reviews Number of reviews.
 * @param models For each model, whether each prediction (same order as `units`) is right.
 * @returns Counts and right answers per review.
 * @throws {RangeError} when the lists differ in length or a unit is out of range.
 */
export function unitScores(
  units: ArrayLike<number>,
  reviews: number,
  models: readonly ArrayLike<boolean | number>[],
): UnitScores {
  const counts = new Uint32Array(reviews);
  const correct = models.map(() => new Uint32Array(reviews));
  for (const [m, model] of models.entries()) {
    if (model.length !== units.length) {
      throw new RangeError(`model ${m} has ${model.length} predictions, expected ${units.length}`);
    }
  }
  for (let i = 0; i < units.length; i++) {
    const unit = units[i]!;
    if (!(unit >= 0 && unit < reviews)) throw new RangeError(`prediction ${i} names review ${unit}`);
    counts[unit]!++;
    for (let m = 0; m < models.length; m++) if (models[m]![i]) correct[m]![unit]!++;
  }
  return { counts, correct };
}

function percentile(sorted: Float64Array, q: number): number {
  const position = q * (sorted.length - 1);
  const below = Math.floor(position);
  const above = Math.min(sorted.length - 1, below + 1);
  return sorted[below]! + (sorted[above]! - sorted[below]!) * (position - below);
}

/**
 * Accuracy of model `model` with its 95% bootstrap interval over reviews.
 *
 * @param scores Per-review counts.
 * @param model Which model of `scores`.
 * @param seed Seed of the resampling. @default {1}
 * @param resamples Number of resamples. @default {BOOTSTRAP_RESAMPLES}
 */
export function accuracyInterval(
  scores: UnitScores,
  model: number,
  seed = 1,
  resamples = BOOTSTRAP_RESAMPLES,
): Interval {
  return ratioInterval(scores.counts, scores.correct[model]!, undefined, seed, resamples);
}

/**
 * Accuracy of model `a` minus accuracy of model `b` on the same predictions, with its paired 95% bootstrap
 * interval over reviews. Positive: `a` is ahead.
 *
 * @param scores Per-review counts of both models.
 * @param a Index of the first model.
 * @param b Index of the second model.
 * @param seed Seed of the resampling. @default {1}
 * @param resamples Number of resamples. @default {BOOTSTRAP_RESAMPLES}
 */
export function marginInterval(
  scores: UnitScores,
  a: number,
  b: number,
  seed = 1,
  resamples = BOOTSTRAP_RESAMPLES,
): Interval {
  return ratioInterval(scores.counts, scores.correct[a]!, scores.correct[b]!, seed, resamples);
}

/** Σ(right − subtracted) / Σcounts, over the reviews as they are and over resamples of them. */
function ratioInterval(
  counts: Uint32Array,
  right: Uint32Array,
  subtracted: Uint32Array | undefined,
  seed: number,
  resamples: number,
): Interval {
  const n = counts.length;
  let total = 0;
  let sum = 0;
  for (let u = 0; u < n; u++) {
    total += counts[u]!;
    sum += right[u]! - (subtracted ? subtracted[u]! : 0);
  }
  if (total === 0) return { value: NaN, low: NaN, high: NaN };
  const value = sum / total;
  const random = new SeededRandom(seed);
  const draws = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    let drawnTotal = 0;
    let drawnSum = 0;
    for (let i = 0; i < n; i++) {
      const u = random.below(n);
      drawnTotal += counts[u]!;
      drawnSum += right[u]! - (subtracted ? subtracted[u]! : 0);
    }
    draws[r] = drawnTotal > 0 ? drawnSum / drawnTotal : value;
  }
  draws.sort();
  return { value, low: percentile(draws, 0.025), high: percentile(draws, 0.975) };
}

/** An interval in accuracy points: `+1.23 (+0.71 to +1.75)`, or `88.12 (87.50 to 88.70)` unsigned. */
export function formatPoints(interval: Interval, signed = false): string {
  const points = (value: number) => {
    const text = (100 * value).toFixed(2);
    return signed && value >= 0 ? `+${text}` : text;
  };
  if (!Number.isFinite(interval.value)) return "–";
  return `${points(interval.value)} (${points(interval.low)} to ${points(interval.high)})`;
}
