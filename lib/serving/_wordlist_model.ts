/**
 * A stand-in model for tests, the end-to-end page test and the load test, so they run without MLflow or
 * a trained model: a small sentiment word list with negation, scored like a one-layer logistic model.
 * It has the same `predict` shape as `SentimentModel` (lib/models/artifact.ts) and does comparable work
 * per call (lower-casing, a regex tokenizer, a map lookup per token), but it is NOT the product's model
 * and its figures are not the product's figures.
 *
 * @module
 */
import type { LoadedModel, PredictionLike, ReviewPredictor } from "./model_provider.ts";

const POSITIVE = [
  "amazing",
  "awesome",
  "beautiful",
  "best",
  "excellent",
  "fantastic",
  "favorite",
  "fun",
  "glad",
  "good",
  "great",
  "happy",
  "love",
  "loved",
  "loves",
  "nice",
  "perfect",
  "perfectly",
  "pleased",
  "recommend",
  "sturdy",
  "superb",
  "wonderful",
  "works",
];

const NEGATIVE = [
  "awful",
  "bad",
  "boring",
  "broke",
  "broken",
  "cheap",
  "defective",
  "disappointed",
  "disappointing",
  "flimsy",
  "garbage",
  "horrible",
  "junk",
  "poor",
  "refund",
  "returned",
  "stopped",
  "terrible",
  "useless",
  "waste",
  "worse",
  "worst",
];

const NEGATORS = new Set(["not", "no", "never", "don't", "didn't", "doesn't", "isn't", "wasn't", "hardly"]);

const WEIGHTS = new Map<string, number>([
  ...POSITIVE.map((word) => [word, 1] as [string, number]),
  ...NEGATIVE.map((word) => [word, -1] as [string, number]),
]);

const WORD = /[a-z']+/g;

function scoreText(text: string): number {
  let score = 0;
  let negate = 0;
  for (const match of text.toLowerCase().matchAll(WORD)) {
    const word = match[0];
    if (NEGATORS.has(word)) {
      negate = 3;
      continue;
    }
    const weight = WEIGHTS.get(word);
    if (weight !== undefined) score += negate > 0 ? -weight : weight;
    if (negate > 0) negate--;
  }
  return score;
}

/**
 * Creates the word-list predictor.
 *
 * @returns A predictor: titles weigh double, a negator flips the next three words, and the score goes
 *   through a logistic function, so a review with no known word gets probability 0.5 (positive).
 */
export function createWordListPredictor(): ReviewPredictor {
  return {
    predict(review: { title: string; text: string }): PredictionLike {
      const score = 2 * scoreText(review.title) + scoreText(review.text);
      const positiveProbability = 1 / (1 + Math.exp(-0.9 * score));
      const positive = positiveProbability >= 0.5;
      return {
        label: positive ? "positive" : "negative",
        polarity: positive ? 2 : 1,
        probability: positive ? positiveProbability : 1 - positiveProbability,
        positiveProbability,
      };
    },
  };
}

/**
 * The word-list predictor wrapped as a loaded model.
 *
 * @param version The version it reports. @default {"1"}
 * @returns A model named "wordlist-demo".
 */
export function wordListModel(version = "1"): LoadedModel {
  return {
    predictor: createWordListPredictor(),
    name: "wordlist-demo",
    version,
    runId: `wordlist-run-${version}`,
    loadedAt: new Date(),
  };
}
