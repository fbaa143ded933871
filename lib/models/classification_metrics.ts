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
