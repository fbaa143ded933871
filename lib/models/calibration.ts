/**
 * Whether a model's probabilities mean what they say, and a calibrator for when they do not.
 *
 * - {@linkcode CalibrationAccumulator} measures, in one streamed pass, the expected calibration error
 *   (ECE: reviews binned by predicted probability of "positive" into 10 equal-width bins; the mean over
 *   reviews of |observed positive share − mean predicted probability| of their bin), the Brier score (mean
 *   squared error of the probability) and the bins themselves (the reliability diagram).
 * - {@linkcode fitPlatt} fits Platt scaling (Platt 1999, with the Newton method and target smoothing of
 *   Lin, Lin & Weng 2007): the calibrated probability is `sigmoid(a × score + b)` for the model's raw score
 *   (the linear model's logit, the forest's probability). Two parameters need few reviews, cannot reorder
 *   predictions (so accuracy and ROC AUC are unchanged when `a > 0`), and keep explanations exact: the map
 *   is affine before the sigmoid, so contributions are only scaled by `a`.
 * - {@linkcode decideCalibration} is train's decision, a pure function: measure the held-out reviews'
 *   calibration; when the error is above the threshold, fit the calibrator and keep it only if it lowers
 *   the log loss of reviews it was not fitted on (two-fold cross-fitting), so a small, noisy hold-out
 *   cannot make a calibrated model worse.
 *
 * @module
 */
import type { Calibration, ScoreScale } from "./explanation.ts";

/** Number of equal-width probability bins of the ECE and the reliability diagram. */
export const CALIBRATION_BINS = 10;

/** Calibration error above which train fits a calibrator. */
export const DEFAULT_CALIBRATION_THRESHOLD = 0.02;

/** One bin of a reliability diagram. */
export interface ReliabilityBin {
  /** Lower edge of the predicted probability (inclusive). */
  lower: number;
  /** Upper edge (exclusive, except for the last bin). */
  upper: number;
  /** Reviews in the bin. */
  count: number;
  /** Mean predicted probability of "positive" in the bin (NaN when empty). */
  predicted: number;
  /** Share of positive reviews in the bin (NaN when empty). */
  observed: number;
}

/** Calibration figures of a set of predictions. */
export interface CalibrationReport {
  /** Reviews measured. */
  rows: number;
  /** Expected calibration error over {@linkcode CALIBRATION_BINS} bins. */
  ece: number;
  /** The largest gap of any non-empty bin (maximum calibration error). */
  mce: number;
  /** Mean squared error of the probability of "positive". */
  brier: number;
  /** Mean log loss. */
  logLoss: number;
  /** The reliability diagram. */
  bins: ReliabilityBin[];
}

const EPSILON = 1e-15;

/**
 * Streams predictions in and reports their calibration.
 *
 * @example Usage
 * ```ts
 * import { CalibrationAccumulator } from "./calibration.ts";
 * const calibration = new CalibrationAccumulator();
 * calibration.add(0.9, 1);
 * calibration.add(0.2, 0);
 * calibration.report().brier; // (0.01 + 0.04) / 2
 * ```
 */
export class CalibrationAccumulator {
  readonly #count = new Float64Array(CALIBRATION_BINS);
  readonly #predicted = new Float64Array(CALIBRATION_BINS);
  readonly #positive = new Float64Array(CALIBRATION_BINS);
  #rows = 0;
  #squared = 0;
  #logLoss = 0;

  /**
   * Adds one prediction.
   *
   * @param probability Predicted probability that the review is positive.
   * @param label 1 = positive, 0 = negative.
   */
  add(probability: number, label: 0 | 1): void {
    const bin = Math.min(CALIBRATION_BINS - 1, Math.max(0, Math.floor(probability * CALIBRATION_BINS)));
    this.#count[bin]! += 1;
    this.#predicted[bin]! += probability;
    this.#positive[bin]! += label;
    this.#rows += 1;
    this.#squared += (probability - label) ** 2;
    const p = Math.min(1 - EPSILON, Math.max(EPSILON, label === 1 ? probability : 1 - probability));
    this.#logLoss -= Math.log(p);
  }

  /** The figures so far (NaN for an empty set). */
  report(): CalibrationReport {
    const bins: ReliabilityBin[] = [];
    let ece = 0;
    let mce = 0;
    for (let b = 0; b < CALIBRATION_BINS; b++) {
      const count = this.#count[b]!;
      const predicted = count > 0 ? this.#predicted[b]! / count : NaN;
      const observed = count > 0 ? this.#positive[b]! / count : NaN;
      if (count > 0) {
        const gap = Math.abs(observed - predicted);
        ece += (count / this.#rows) * gap;
        mce = Math.max(mce, gap);
      }
      bins.push({
        lower: b / CALIBRATION_BINS,
        upper: (b + 1) / CALIBRATION_BINS,
        count,
        predicted,
        observed,
      });
    }
    const rows = this.#rows;
    return {
      rows,
      ece: rows > 0 ? ece : NaN,
      mce: rows > 0 ? mce : NaN,
      brier: rows > 0 ? this.#squared / rows : NaN,
      logLoss: rows > 0 ? this.#logLoss / rows : NaN,
      bins,
    };
  }
}

/**
 * Calibration figures of scored reviews in one call.
 *
 * @param probabilities Predicted probabilities of "positive".
 * @param labels 1 = positive, 0 = negative, position for position.
 */
export function calibrationReport(
  probabilities: ArrayLike<number>,
  labels: ArrayLike<number>,
): CalibrationReport {
  const accumulator = new CalibrationAccumulator();
  for (let i = 0; i < probabilities.length; i++) accumulator.add(probabilities[i]!, labels[i] === 1 ? 1 : 0);
  return accumulator.report();
}

function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

/**
 * The probability a Platt calibrator gives a raw score.
 *
 * @param calibration The calibrator.
 * @param score The model's raw score, on the calibrator's input scale.
 */
export function plattProbability(calibration: Pick<Calibration, "a" | "b">, score: number): number {
  return sigmoid(calibration.a * score + calibration.b);
}

/**
 * Fits Platt scaling `sigmoid(a × score + b)` by Newton's method with backtracking on the smoothed
 * targets of Platt (1999): `(positives + 1) / (positives + 2)` and `1 / (negatives + 2)`, which keep a
 * separable hold-out from driving `a` to infinity.
 *
 * @param scores Raw scores.
 * @param labels 1 = positive, 0 = negative.
 * @param input The scores' scale, recorded in the calibrator.
 * @returns The calibrator.
 * @throws {RangeError} for empty or unequal inputs.
 */
export function fitPlatt(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  input: ScoreScale,
): Calibration {
  const n = scores.length;
  if (n === 0 || labels.length !== n) {
    throw new RangeError(
      `fitPlatt needs as many labels as scores, at least one (got ${n} and ${labels.length})`,
    );
  }
  let positives = 0;
  for (let i = 0; i < n; i++) positives += labels[i] === 1 ? 1 : 0;
  const high = (positives + 1) / (positives + 2);
  const low = 1 / (n - positives + 2);
  const target = (i: number) => (labels[i] === 1 ? high : low);
  const objective = (a: number, b: number) => {
    let total = 0;
    for (let i = 0; i < n; i++) {
      const z = a * scores[i]! + b;
      // log(1 + e^z) - t z, written to stay finite for any z.
      total += (z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z))) - target(i) * z;
    }
    return total;
  };
  let a = 1;
  let b = Math.log((positives + 1) / (n - positives + 1));
  let value = objective(a, b);
  for (let iteration = 0; iteration < 100; iteration++) {
    let gA = 0, gB = 0, hAA = 1e-12, hAB = 0, hBB = 1e-12;
    for (let i = 0; i < n; i++) {
      const s = scores[i]!;
      const p = sigmoid(a * s + b);
      const d = p - target(i);
      const w = p * (1 - p);
      gA += d * s;
      gB += d;
      hAA += w * s * s;
      hAB += w * s;
      hBB += w;
    }
    if (Math.abs(gA) < 1e-9 * n && Math.abs(gB) < 1e-9 * n) break;
    const det = hAA * hBB - hAB * hAB;
    const stepA = -(hBB * gA - hAB * gB) / det;
    const stepB = -(hAA * gB - hAB * gA) / det;
    let t = 1;
    let improved = false;
    while (t > 1e-10) {
      const next = objective(a + t * stepA, b + t * stepB);
      if (next < value + 1e-4 * t * (gA * stepA + gB * stepB)) {
        a += t * stepA;
        b += t * stepB;
        value = next;
        improved = true;
        break;
      }
      t /= 2;
    }
    if (!improved) break;
  }
  return { method: "platt", a, b, input };
}

/** Train's calibration decision, with the figures it logs. */
export interface CalibrationDecision {
  /** Calibration of the held-out reviews as the model scores them. */
  before: CalibrationReport;
  /**
   * Calibration of the same reviews with a calibrator fitted on the other half of them (two-fold
   * cross-fitting): what the calibrator does to reviews it has not seen. Absent when none was fitted.
   */
  after?: CalibrationReport;
  /** The calibrator to save with the model, when it is needed and helps. */
  calibration?: Calibration;
  /** One line saying what was decided and why. */
  reason: string;
}

/** Options of {@linkcode decideCalibration}. */
export interface CalibrationOptions {
  /** Calibration error above which a calibrator is fitted. @default {DEFAULT_CALIBRATION_THRESHOLD} */
  threshold?: number;
  /** Fit a calibrator whatever the error (it is still kept only if it helps). @default {false} */
  force?: boolean;
}

/**
 * Decides whether a model needs a calibrator, from its raw scores on held-out reviews.
 *
 * @param scores Raw scores of the held-out reviews.
 * @param labels Their labels (1 = positive).
 * @param input The scores' scale.
 * @param options Threshold.
 * @returns The figures before (and after) and the calibrator to keep, if any.
 *
 * @example Usage
 * ```ts
 * import { decideCalibration } from "./calibration.ts";
 * // Over-confident logits: everything at ±4 while a quarter of each side is wrong.
 * const scores = Array.from({ length: 400 }, (_, i) => (i % 2 === 0 ? 4 : -4));
 * const labels = scores.map((s, i) => (i % 8 < 2 ? (s > 0 ? 0 : 1) : (s > 0 ? 1 : 0)));
 * const decision = decideCalibration(scores, labels, "logit");
 * decision.calibration !== undefined; // true: the error was about 0.23
 * ```
 */
export function decideCalibration(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  input: ScoreScale,
  options: CalibrationOptions = {},
): CalibrationDecision {
  const threshold = options.threshold ?? DEFAULT_CALIBRATION_THRESHOLD;
  const toProbability = (s: number) => input === "logit" ? sigmoid(s) : s;
  const before = calibrationReport(Array.from(scores as ArrayLike<number>, toProbability), labels);
  const figure = (report: CalibrationReport) =>
    `calibration error ${report.ece.toFixed(4)}, log loss ${report.logLoss.toFixed(4)}`;
  if (before.rows < 2) return { before, reason: `only ${before.rows} held-out reviews: not calibrated` };
  if (!(before.ece > threshold) && !options.force) {
    return { before, reason: `${figure(before)} on ${before.rows} held-out reviews is within ${threshold}` };
  }
  const half = (parity: number) => {
    const indexes: number[] = [];
    for (let i = parity; i < scores.length; i += 2) indexes.push(i);
    return indexes;
  };
  const folds = [half(0), half(1)];
  const crossFitted = new Float64Array(scores.length);
  for (let f = 0; f < 2; f++) {
    const fit = folds[1 - f]!;
    const calibrator = fitPlatt(fit.map((i) => scores[i]!), fit.map((i) => labels[i]!), input);
    for (const i of folds[f]!) crossFitted[i] = plattProbability(calibrator, scores[i]!);
  }
  const after = calibrationReport(crossFitted, labels);
  const calibration = fitPlatt(scores, labels, input);
  if (!(calibration.a > 0) || !(after.logLoss < before.logLoss)) {
    return {
      before,
      after,
      reason: `a calibrator would not help (${figure(before)}; cross-fitted: ${figure(after)}): not kept`,
    };
  }
  return {
    before,
    after,
    calibration,
    reason: `${figure(before)} on ${before.rows} held-out reviews; Platt scaling (a=${
      calibration.a.toFixed(4)
    }, b=${calibration.b.toFixed(4)}) gives ${figure(after)} on reviews it was not fitted on`,
  };
}
