/**
 * Small seeded synthetic datasets for the forest's tests: sparse binary rows where a few words carry the
 * label and the rest are noise. Test support only.
 *
 * @module
 */
import { Rng } from "./rng.ts";
import { SparseDataset } from "./sparse_dataset.ts";

/** Rows, labels and the dataset built from them. */
export interface SyntheticData {
  rows: number[][];
  labels: number[];
  dataset: SparseDataset;
}

/** Options of {@linkcode synthetic}. */
export interface SyntheticOptions {
  /** Rows. */
  rows: number;
  /** Vocabulary size (at least 4). */
  numFeatures: number;
  /** Seed. */
  seed: number;
  /** Probability of each noise word in a row. @default {0.08} */
  noise?: number;
  /** Probability that a row's label is flipped after its words were drawn. @default {0} */
  flip?: number;
  /**
   * Words after the first three that lean to one class, like the many sentiment words of real reviews
   * (probability noise × 2 in one class, noise / 2 in the other). @default {0}
   */
  informative?: number;
}

/**
 * Generates rows where word 0 appears in 70% of positive and 10% of negative rows, word 1 in 10% of
 * positive and 60% of negative rows, word 2 is weakly positive, and every other word is noise.
 */
export function synthetic(options: SyntheticOptions): SyntheticData {
  const rng = new Rng(options.seed, 12345);
  const noise = options.noise ?? 0.08;
  const rows: number[][] = [];
  const labels: number[] = [];
  for (let r = 0; r < options.rows; r++) {
    const y = rng.nextInt(2);
    const row: number[] = [];
    if (rng.nextFloat() < (y ? 0.7 : 0.1)) row.push(0);
    if (rng.nextFloat() < (y ? 0.1 : 0.6)) row.push(1);
    if (rng.nextFloat() < (y ? 0.35 : 0.2)) row.push(2);
    const informative = 3 + (options.informative ?? 0);
    for (let f = 3; f < options.numFeatures; f++) {
      // Odd informative words lean positive, even ones negative.
      const p = f >= informative ? noise : (f % 2 === 1) === (y === 1) ? noise * 2 : noise / 2;
      if (rng.nextFloat() < p) row.push(f);
    }
    rows.push(row);
    labels.push(rng.nextFloat() < (options.flip ?? 0) ? 1 - y : y);
  }
  return { rows, labels, dataset: SparseDataset.fromRows(options.numFeatures, rows, labels) };
}

/** Fraction of rows whose thresholded probability (> 0.5 = positive) matches the label. */
export function accuracy(probabilities: ArrayLike<number>, labels: ArrayLike<number>): number {
  let correct = 0;
  for (let i = 0; i < labels.length; i++) if ((probabilities[i]! > 0.5 ? 1 : 0) === labels[i]) correct += 1;
  return correct / labels.length;
}
