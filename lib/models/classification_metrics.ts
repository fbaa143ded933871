/**
 * Binary classification metrics computed from true labels and predicted probabilities of the positive
 * class: what evaluate logs to MLflow and what the benchmark prints.
 *
 * @module
 */

/** Counts of the 2×2 confusion matrix (positive = polarity 2). */
export interface ConfusionMatrix {
  truePositive: number;
  falsePositive: number;
  trueNegative: number;
  falseNegative: number;
}

/** The metrics evaluate reports. */
export interface BinaryMetrics {
  accuracy: number;
  precision: number;
  recall: number;
  f1: number;
  rocAuc: number;
  logLoss: number;
  support: number;
  confusion: ConfusionMatrix;
}

/** One point of a ROC curve. */
export interface RocPoint {
  falsePositiveRate: number;
  truePositiveRate: number;
  threshold: number;
}

/** Probabilities are clipped to [eps, 1 - eps] for log loss, as scikit-learn does. */
const LOG_LOSS_EPSILON = 1e-15;

function ratio(numerator: number, denominator: number): number {
  return denominator === 0 ? 0 : numerator / denominator;
}

/**
 * Accumulates predictions one at a time, so evaluate can score a test set of any size while streaming it.
 * ROC AUC needs every score, kept in a growable Float64Array (8 bytes per review).
 *
 * @example Usage
 * ```ts
 * import { MetricsAccumulator } from "./classification_metrics.ts";
 * const acc = new MetricsAccumulator();
 * acc.add(true, 0.9);
 * acc.add(false, 0.2);
 * acc.result().accuracy; // 1
 * ```
 */
export class MetricsAccumulator {
  #threshold: number;
  #scores = new Float64Array(1024);
  #labels = new Uint8Array(1024);
  #count = 0;
  #logLossSum = 0;
  #confusion: ConfusionMatrix = { truePositive: 0, falsePositive: 0, trueNegative: 0, falseNegative: 0 };

  /** @param threshold Probability at or above which a review is predicted positive. @default {0.5} */
  constructor(threshold = 0.5) {
    this.#threshold = threshold;
  }

  /** Adds one prediction: whether the review is truly positive, and the predicted P(positive). */
  add(isPositive: boolean, probability: number): void {
    if (this.#count === this.#scores.length) {
      const scores = new Float64Array(this.#scores.length * 2);
      scores.set(this.#scores);
      this.#scores = scores;
      const labels = new Uint8Array(this.#labels.length * 2);
      labels.set(this.#labels);
      this.#labels = labels;
    }
    this.#scores[this.#count] = probability;
    this.#labels[this.#count] = isPositive ? 1 : 0;
    this.#count++;
    const clipped = Math.min(1 - LOG_LOSS_EPSILON, Math.max(LOG_LOSS_EPSILON, probability));
    this.#logLossSum -= isPositive ? Math.log(clipped) : Math.log(1 - clipped);
    const predictedPositive = probability >= this.#threshold;
    if (predictedPositive && isPositive) this.#confusion.truePositive++;
    else if (predictedPositive) this.#confusion.falsePositive++;
    else if (isPositive) this.#confusion.falseNegative++;
    else this.#confusion.trueNegative++;
  }

  /** Number of predictions added. */
  get count(): number {
    return this.#count;
  }

  /** Computes every metric over the predictions added so far. */
  result(): BinaryMetrics {
    const c = this.#confusion;
    const precision = ratio(c.truePositive, c.truePositive + c.falsePositive);
    const recall = ratio(c.truePositive, c.truePositive + c.falseNegative);
    return {
      accuracy: ratio(c.truePositive + c.trueNegative, this.#count),
      precision,
      recall,
      f1: ratio(2 * precision * recall, precision + recall),
      rocAuc: rocAuc(this.#labels.subarray(0, this.#count), this.#scores.subarray(0, this.#count)),
      logLoss: ratio(this.#logLossSum, this.#count),
      support: this.#count,
      confusion: { ...c },
    };
  }

  /** The ROC curve, thinned to at most `maxPoints` points for plotting. */
  rocCurve(maxPoints = 200): RocPoint[] {
    return rocCurve(this.#labels.subarray(0, this.#count), this.#scores.subarray(0, this.#count), maxPoints);
  }
}

function sortedOrder(scores: Float64Array): Uint32Array {
  const order = new Uint32Array(scores.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  order.sort((a, b) => scores[b]! - scores[a]!);
  return order;
}

/**
 * ROC AUC as the Mann-Whitney statistic, with tied scores counted as half (the same value as
 * scikit-learn's `roc_auc_score`). Returns NaN when only one class is present.
 */
export function rocAuc(labels: Uint8Array, scores: Float64Array): number {
  const order = sortedOrder(scores);
  let positives = 0;
  for (const label of labels) positives += label;
  const negatives = labels.length - positives;
  if (positives === 0 || negatives === 0) return NaN;
  // Walk from the highest score down; for each group of tied scores, every negative in the group is
  // outranked by the positives seen before it plus half of the positives tied with it.
  let positivesAbove = 0;
  let area = 0;
  for (let i = 0; i < order.length;) {
    let j = i;
    let groupPositives = 0;
    let groupNegatives = 0;
    const score = scores[order[i]!]!;
    while (j < order.length && scores[order[j]!] === score) {
      if (labels[order[j]!] === 1) groupPositives++;
      else groupNegatives++;
      j++;
    }
    area += groupNegatives * (positivesAbove + groupPositives / 2);
    positivesAbove += groupPositives;
    i = j;
  }
  return area / (positives * negatives);
}

/** The ROC curve (one point per distinct threshold, thinned to `maxPoints`), from (0,0) to (1,1). */
export function rocCurve(labels: Uint8Array, scores: Float64Array, maxPoints = 200): RocPoint[] {
  const order = sortedOrder(scores);
  let positives = 0;
  for (const label of labels) positives += label;
  const negatives = labels.length - positives;
  const points: RocPoint[] = [{ falsePositiveRate: 0, truePositiveRate: 0, threshold: Infinity }];
  let tp = 0;
  let fp = 0;
  for (let i = 0; i < order.length;) {
    const score = scores[order[i]!]!;
    while (i < order.length && scores[order[i]!] === score) {
      if (labels[order[i]!] === 1) tp++;
      else fp++;
      i++;
    }
    points.push({
      falsePositiveRate: ratio(fp, negatives),
      truePositiveRate: ratio(tp, positives),
      threshold: score,
    });
  }
  if (points.length <= maxPoints) return points;
  const step = (points.length - 1) / (maxPoints - 1);
  const thinned: RocPoint[] = [];
  for (let k = 0; k < maxPoints; k++) thinned.push(points[Math.round(k * step)]!);
  return thinned;
}

/** A 95% confidence interval, `[low, high]`. */
export type Interval = [low: number, high: number];

/** z of a two-sided 95% interval. */
const Z95 = 1.959963984540054;

/**
 * The Wilson score interval of a proportion (Wilson 1927): unlike the normal approximation it stays
 * inside [0, 1] and is honest for proportions near 0 or 1 and for small counts.
 *
 * @param successes Successes, e.g. correct predictions.
 * @param trials Trials, e.g. reviews.
 * @returns The 95% interval; `[NaN, NaN]` for no trials.
 *
 * @example Usage
 * ```ts
 * import { wilsonInterval } from "./classification_metrics.ts";
 * const [low, high] = wilsonInterval(880, 1000); // about [0.858, 0.899]
 * ```
 */
export function wilsonInterval(successes: number, trials: number): Interval {
  if (trials <= 0) return [NaN, NaN];
  const p = successes / trials;
  const z2 = Z95 * Z95;
  const centre = (p + z2 / (2 * trials)) / (1 + z2 / trials);
  const half = (Z95 / (1 + z2 / trials)) * Math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials));
  // At 0 and 1 the bound is exact; rounding would otherwise leave it a hair inside.
  return [
    successes === 0 ? 0 : Math.max(0, centre - half),
    successes === trials ? 1 : Math.min(1, centre + half),
  ];
}

/**
 * The 95% interval of a ROC AUC from its standard error (Hanley & McNeil 1982), clipped to [0, 1].
 *
 * @param auc The ROC AUC.
 * @param positives Positive reviews.
 * @param negatives Negative reviews.
 */
export function rocAucInterval(auc: number, positives: number, negatives: number): Interval {
  if (!Number.isFinite(auc) || positives === 0 || negatives === 0) return [NaN, NaN];
  const q1 = auc / (2 - auc);
  const q2 = (2 * auc * auc) / (1 + auc);
  const variance =
    (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) /
    (positives * negatives);
  const half = Z95 * Math.sqrt(Math.max(0, variance));
  return [Math.max(0, auc - half), Math.min(1, auc + half)];
}

/** 95% intervals of the metrics that have one. */
export interface MetricIntervals {
  accuracy: Interval;
  precision: Interval;
  recall: Interval;
  rocAuc: Interval;
}

/**
 * The 95% intervals of accuracy, precision and recall (Wilson) and ROC AUC (Hanley & McNeil): how much
 * of a difference between two models on one test set is noise.
 *
 * @param metrics Metrics from {@linkcode MetricsAccumulator.result}.
 */
export function metricIntervals(metrics: BinaryMetrics): MetricIntervals {
  const c = metrics.confusion;
  const positives = c.truePositive + c.falseNegative;
  const negatives = c.trueNegative + c.falsePositive;
  return {
    accuracy: wilsonInterval(c.truePositive + c.trueNegative, metrics.support),
    precision: wilsonInterval(c.truePositive, c.truePositive + c.falsePositive),
    recall: wilsonInterval(c.truePositive, positives),
    rocAuc: rocAucInterval(metrics.rocAuc, positives, negatives),
  };
}
