/**
 * Test support: small, deterministic, linearly separable review sets, as token lists and as processed
 * files (`<polarity>\t<tokens>\n`), so the linear model's tests need neither real data nor the tokenizer.
 *
 * @module
 */
import { join } from "node:path";
import { scratchDir } from "../../_testing.ts";
import { SeededRandom } from "./model.ts";
import type { TrainingFile } from "./trainer.ts";
import { batchFileName } from "../../data/layout.ts";

const POSITIVE = ["great", "love", "excellent", "perfect", "sturdy", "recommend", "happy", "works"];
const NEGATIVE = ["broke", "awful", "refund", "cheap", "useless", "disappointed", "poor", "junk"];
const NEUTRAL = ["the", "a", "it", "phone", "case", "i", "this", "and", "box", "day", "was", "with"];

/** One toy review: 1 = positive. */
export interface ToyReview {
  label: 0 | 1;
  tokens: string[];
}

/**
 * Reviews whose label is given away by one sentiment word among neutral ones (plus, with `noise`, a
 * share of reviews that also carry one word of the other side, so that the task is not trivial).
 *
 * @param count Number of reviews.
 * @param seed Seed; the same seed gives the same reviews.
 * @param noise Share of reviews with a misleading extra word. @default {0}
 */
export function toyReviews(count: number, seed: number, noise = 0): ToyReview[] {
  const random = new SeededRandom(seed);
  const pick = (words: readonly string[]) => words[random.below(words.length)]!;
  const reviews: ToyReview[] = [];
  for (let i = 0; i < count; i++) {
    const label: 0 | 1 = random.next() < 0.5 ? 1 : 0;
    const tokens = Array.from({ length: 3 + random.below(6) }, () => pick(NEUTRAL));
    tokens.splice(random.below(tokens.length + 1), 0, pick(label === 1 ? POSITIVE : NEGATIVE));
    if (random.next() < noise) tokens.push(pick(label === 1 ? NEGATIVE : POSITIVE));
    reviews.push({ label, tokens });
  }
  return reviews;
}

/** Formats reviews as a processed file's text. */
export function toProcessedText(reviews: readonly ToyReview[]): string {
  return reviews.map((r) => `${r.label === 1 ? 2 : 1}\t${r.tokens.join(" ")}\n`).join("");
}

/**
 * Writes reviews as processed files `train_batch_<key>.tsv` in `dir`, `perFile` reviews each.
 *
 * @returns The files, keyed 0, 1, ...
 */
export async function writeToyBatches(
  dir: string,
  reviews: readonly ToyReview[],
  perFile: number,
): Promise<TrainingFile[]> {
  await Deno.mkdir(dir, { recursive: true });
  const files: TrainingFile[] = [];
  for (let start = 0, key = 0; start < reviews.length; start += perFile, key++) {
    const part = reviews.slice(start, start + perFile);
    const path = join(dir, batchFileName(key, ".tsv"));
    await Deno.writeTextFile(path, toProcessedText(part));
    files.push({ path, rows: part.length, key });
  }
  return files;
}

/** A temporary folder under `.tmp-test/` (the only place tests may write), removed on dispose. */
export function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  return scratchDir("linear-");
}
