/**
 * Accuracy per slice of a test set: where a model is weaker than its overall figure says. Evaluate slices
 * every test set by review length (in tokens: a one-line review gives the model little evidence, a long
 * one can argue both ways), and by source when the test data names its sources (`evaluate --sources`).
 *
 * @module
 */
import { type Interval, wilsonInterval } from "./classification_metrics.ts";

/** Upper bounds (inclusive) of the length bins, in tokens; the last bin is open. */
export const LENGTH_BIN_EDGES: readonly number[] = Object.freeze([10, 25, 50, 100, 200]);

/** The accuracy of one slice. */
export interface SliceReport {
  /** What the slice groups by: `length` or `source`. */
  by: string;
  /** The slice's name, e.g. `11-25` tokens or a source file's name. */
  name: string;
  /** Reviews in the slice. */
  rows: number;
  /** Share of them predicted right. */
  accuracy: number;
  /** Its 95% Wilson interval. */
  interval: Interval;
  /** Share of positive reviews in the slice (a slice's accuracy depends on its balance too). */
  positiveShare: number;
}

/**
 * The length bin of a review with `tokens` tokens: `1-10`, `11-25`, …, `201+`.
 *
 * @example Usage
 * ```ts
 * import { lengthBin } from "./slices.ts";
 * lengthBin(7); // "1-10"
 * lengthBin(500); // "201+"
 * ```
 */
export function lengthBin(tokens: number): string {
  let low = 1;
  for (const edge of LENGTH_BIN_EDGES) {
    if (tokens <= edge) return `${low}-${edge}`;
    low = edge + 1;
  }
  return `${low}+`;
}

/**
 * Counts predictions per slice.
 *
 * @example Usage
 * ```ts
 * import { SliceAccumulator } from "./slices.ts";
 * const slices = new SliceAccumulator("length");
 * slices.add("1-10", true, true);
 * slices.add("1-10", false, false);
 * slices.report()[0]!.accuracy; // 0.5
 * ```
 */
export class SliceAccumulator {
  readonly #by: string;
  readonly #counts = new Map<string, { rows: number; correct: number; positives: number }>();

  /** @param by What the slices group by, for the report. */
  constructor(by: string) {
    this.#by = by;
  }

  /**
   * Adds one prediction.
   *
   * @param slice The slice it belongs to.
   * @param correct Whether the predicted label was right.
   * @param positive Whether the review is positive.
   */
  add(slice: string, correct: boolean, positive: boolean): void {
    let counts = this.#counts.get(slice);
    if (counts === undefined) {
      counts = { rows: 0, correct: 0, positives: 0 };
      this.#counts.set(slice, counts);
    }
    counts.rows += 1;
    if (correct) counts.correct += 1;
    if (positive) counts.positives += 1;
  }

  /** The slices, in the order they were first seen, or by length for length bins. */
  report(): SliceReport[] {
    const entries = [...this.#counts];
    if (this.#by === "length") entries.sort(([a], [b]) => parseInt(a) - parseInt(b));
    return entries.map(([name, counts]) => ({
      by: this.#by,
      name,
      rows: counts.rows,
      accuracy: counts.correct / counts.rows,
      interval: wilsonInterval(counts.correct, counts.rows),
      positiveShare: counts.positives / counts.rows,
    }));
  }
}

/**
 * The slices as MLflow metrics: `slice.<by>.<name>.accuracy` and `.rows` (names cleaned to the characters
 * MLflow allows in a key).
 */
export function sliceMetricsForMlflow(slices: readonly SliceReport[]): Record<string, number> {
  const metrics: Record<string, number> = {};
  for (const slice of slices) {
    const key = `slice.${slice.by}.${slice.name.replace(/[^\w\-. /]/g, "_")}`;
    metrics[`${key}.accuracy`] = slice.accuracy;
    metrics[`${key}.rows`] = slice.rows;
  }
  return metrics;
}
