/**
 * Explanations of one prediction: how much each feature, and each word of the review as typed, moved the
 * score. They are exact, not sampled: every model family decomposes its own score into a bias plus one
 * term per feature, and `bias + Σ contributions` gives the score back (up to floating-point rounding).
 *
 * - The linear model's logit is `bias + output · (embedding rows pooled)`, pooled = summed and divided by
 *   the number of features n or by √n; the sum splits into one term per token and n-gram
 *   (`LinearModel.explainTokens` in `linear/model.ts`).
 * - The forest's probability is the mean of its trees' leaves; along each tree's path every split moves
 *   the value from a node to its child, and that change is the split word's (the path-contribution method,
 *   `Forest.explainProba` in `forest/forest.ts`). Words the review lacks contribute too (its path went the
 *   "absent" way), so a forest's explanation also lists absent features.
 *
 * A feature's contribution is then shared equally among the tokens it is made of (a word pair gives half
 * to each word), and each token is traced back by the tokenizer to the word the person typed
 * (`not_good` to "good", `did` and `not` to "didn't"). So the words' contributions, plus the absent
 * features' and the bias, add up to the score too.
 *
 * A calibrated model serves its calibrator's probability of the score (`calibration.ts`), a monotone map:
 * the explanation still decomposes the model's own score exactly, and says which probability it became.
 *
 * @module
 */
import type { TokenSource } from "../features/tokenizer.ts";
import { calibratedProbability, type Calibration, type ScoreScale } from "./calibration.ts";

/** One feature's share of a score. */
export interface FeatureContribution {
  /** The feature as the model sees it: a token, or the tokens of an n-gram joined by spaces. */
  feature: string;
  /** How much it moved the score (on the decomposition's scale); negative pushes towards negative. */
  contribution: number;
  /** Indexes of the review's tokens it was made of, for every occurrence; empty for an absent feature. */
  tokens: number[];
}

/** An engine's exact decomposition of one review's score. */
export interface ScoreDecomposition {
  /** What is decomposed. */
  scale: ScoreScale;
  /** The part of the score no feature accounts for. */
  bias: number;
  /** One entry per feature (or feature occurrence); `bias + Σ contribution + unlisted` is the score. */
  features: FeatureContribution[];
  /**
   * The total of the absent features left out of `features`: a forest credits a thousand or more words a
   * review lacks, mostly with tiny amounts, and lists only the largest. @default {0}
   */
  unlisted?: number;
}

/** How an explanation was computed. */
export type ExplanationMethod = "linear-decomposition" | "path-contribution";

/** A word of the review as typed, and what it did to the score. */
export interface WordContribution {
  /** The review field it is in. */
  field: "title" | "text";
  /** UTF-16 offset in the field as typed; -1 when the tokenizer's cleaning cannot be traced back. */
  start: number;
  /** End offset (exclusive); -1 when untraceable. */
  end: number;
  /** The word as typed (or, when untraceable, as cleaned). */
  text: string;
  /** The model's tokens made from it, in order: `not_good` for a negated "good". */
  tokens: string[];
  /** Its share of the score: the sum of its tokens' shares of their features. */
  contribution: number;
}

/** A feature in an explanation's ranking. */
export interface RankedFeature {
  /** The feature (token or n-gram). */
  feature: string;
  /** Its total contribution over its occurrences. */
  contribution: number;
  /** Whether the review has it (a forest's absent words contribute too). */
  present: boolean;
  /** The words as typed it came from, for a present feature. */
  words: string[];
}

/** The explanation of one prediction. */
export interface Explanation {
  /** The decomposition used. */
  method: ExplanationMethod;
  /** The score's scale: `logit` (the probability is its sigmoid) or `probability`. */
  scale: ScoreScale;
  /** The part of the score no feature accounts for. */
  bias: number;
  /** The model's score: `bias + Σ words + absent` (= `bias + Σ present features + absent`). */
  score: number;
  /**
   * The probability of "positive" the model serves for that score: its calibrator's, else the sigmoid of a
   * logit or the probability itself.
   */
  probability: number;
  /**
   * Every feature the review has, merged over its occurrences, and the largest absent ones, by decreasing
   * size of contribution.
   */
  features: RankedFeature[];
  /**
   * Every word the model's features came from, in review order (title first): a word whose tokens the
   * model has no feature for (a forest's vocabulary lacks it) is not listed.
   */
  words: WordContribution[];
  /** The sum of all absent features' contributions, listed or not (0 for the linear model). */
  absent: number;
  /** Whether a calibrator turned the score into the probability. */
  calibrated: boolean;
}

/**
 * Builds the explanation of one prediction from its engine's decomposition and the tokens' sources.
 *
 * @param decomposition The engine's decomposition of the raw score.
 * @param tokens The review's tokens, as scored.
 * @param sources The source of each token (from `Tokenizer.tokenizeReviewWithSources`).
 * @param method How the engine decomposed its score.
 * @param calibration The model's calibrator, if any: it maps the score to the served probability.
 * @returns The explanation.
 *
 * @example Usage
 * ```ts
 * import { buildExplanation } from "./explanation.ts";
 * const explanation = buildExplanation(
 *   { scale: "logit", bias: 0.1, features: [{ feature: "good", contribution: 1.5, tokens: [0] }] },
 *   ["good"],
 *   [{ field: "text", word: 0, start: 0, end: 4, text: "Good" }],
 *   "linear-decomposition",
 * );
 * explanation.score; // 1.6
 * explanation.words[0]!.text; // "Good"
 * ```
 */
export function buildExplanation(
  decomposition: ScoreDecomposition,
  tokens: readonly string[],
  sources: readonly TokenSource[],
  method: ExplanationMethod,
  calibration?: Calibration,
): Explanation {
  const bias = decomposition.bias;
  const byFeature = new Map<string, RankedFeature>();
  const words = new Map<string, WordContribution>();
  // Title words first, then text words, each in typing order: the order keys are first seen in
  // is not that (lexicon tokens come last), so the words are sorted at the end.
  const order = new Map<string, number>();
  const unlisted = decomposition.unlisted ?? 0;
  let score = bias + unlisted;
  let absent = unlisted;
  for (const feature of decomposition.features) {
    const contribution = feature.contribution;
    score += contribution;
    let ranked = byFeature.get(feature.feature);
    if (ranked === undefined) {
      ranked = { feature: feature.feature, contribution: 0, present: false, words: [] };
      byFeature.set(feature.feature, ranked);
    }
    ranked.contribution += contribution;
    if (feature.tokens.length === 0) {
      absent += contribution;
      continue;
    }
    ranked.present = true;
    const share = contribution / feature.tokens.length;
    for (const index of feature.tokens) {
      const source = sources[index];
      if (source === undefined) throw new RangeError(`feature token ${index} has no source`);
      const key = `${source.field}:${source.word}`;
      let word = words.get(key);
      if (word === undefined) {
        word = {
          field: source.field,
          start: source.start,
          end: source.end,
          text: source.text,
          tokens: [],
          contribution: 0,
        };
        words.set(key, word);
        order.set(key, (source.field === "title" ? 0 : 2 ** 31) + source.word);
      }
      word.contribution += share;
      if (!ranked.words.includes(source.text)) ranked.words.push(source.text);
    }
  }
  // A word's tokens, in token order, whether or not each token's feature mattered.
  tokens.forEach((token, index) => {
    const source = sources[index]!;
    const word = words.get(`${source.field}:${source.word}`);
    if (word && !word.tokens.includes(token)) word.tokens.push(token);
  });
  // Ties (a forest credits many words exactly 0) by code units: localeCompare cost more than the rest.
  const features = [...byFeature.values()].sort((x, y) =>
    Math.abs(y.contribution) - Math.abs(x.contribution) ||
    (x.feature < y.feature ? -1 : x.feature > y.feature ? 1 : 0)
  );
  const sortedWords = [...words.entries()].sort(([a], [b]) => order.get(a)! - order.get(b)!)
    .map(([, word]) => word);
  const scale = decomposition.scale;
  return {
    method,
    scale,
    bias,
    score,
    probability: calibration
      ? calibratedProbability(calibration, score)
      : scale === "logit"
      ? 1 / (1 + Math.exp(-score))
      : score,
    features,
    words: sortedWords,
    absent,
    calibrated: calibration !== undefined,
  };
}

/**
 * The words that pushed the label most: the `k` largest contributions by size, with their sign.
 *
 * @param explanation An explanation.
 * @param k How many.
 * @returns Up to `k` words, largest effect first.
 */
export function topWords(explanation: Pick<Explanation, "words">, k: number): WordContribution[] {
  return [...explanation.words].sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution))
    .slice(0, k);
}

/** The JSON form of an explanation, as predict `--json` and the API return it. */
export interface ExplanationJson {
  method: ExplanationMethod;
  scale: ScoreScale;
  bias: number;
  score: number;
  probability: number;
  calibrated: boolean;
  /** Sum of the absent features' contributions: `bias + Σ words.contribution + absent = score`. */
  absent: number;
  /** Every word the model's features came from, in review order (title first), for highlighting. */
  words: Array<Omit<WordContribution, "contribution"> & { contribution: number }>;
  /** The features with the largest contributions, largest first. */
  top_features: RankedFeature[];
}

/**
 * An explanation as JSON: all the words (a page highlights every one), the top features only.
 *
 * @param explanation The explanation.
 * @param topFeatures How many features to list. @default {10}
 */
export function explanationJson(explanation: Explanation, topFeatures = 10): ExplanationJson {
  return {
    method: explanation.method,
    scale: explanation.scale,
    bias: explanation.bias,
    score: explanation.score,
    probability: explanation.probability,
    calibrated: explanation.calibrated,
    absent: explanation.absent,
    words: explanation.words.map((word) => ({ ...word })),
    top_features: explanation.features.slice(0, topFeatures),
  };
}

function signed(value: number): string {
  return `${value >= 0 ? "+" : "-"}${Math.abs(value).toFixed(3)}`;
}

/**
 * The explanation as lines of text for a terminal: the words that pushed the label most, each with its
 * sign and size and the tokens it became, then the absent words that mattered, then the sum.
 *
 * @param explanation The explanation.
 * @param top How many words. @default {10}
 * @returns Lines without trailing newlines.
 */
export function formatExplanation(explanation: Explanation, top = 10): string[] {
  const scale = explanation.scale === "logit" ? "the logit" : "the probability of positive";
  const lines = [`words that pushed the label most (contribution to ${scale}; + toward positive):`];
  const words = topWords(explanation, top);
  if (words.length === 0) lines.push("  (none: the review has no word the model knows)");
  const label = (word: WordContribution) =>
    JSON.stringify(word.text) + (word.field === "title" ? " (title)" : "");
  const width = Math.min(40, Math.max(0, ...words.map((w) => label(w).length)));
  for (const word of words) {
    const became = word.tokens.join(" ") === word.text.toLowerCase() ? "" : `  as ${word.tokens.join(" ")}`;
    lines.push(`  ${signed(word.contribution)}  ${label(word).padEnd(width)}${became}`.trimEnd());
  }
  const absent = explanation.features.filter((f) => !f.present).slice(0, 3);
  if (absent.length > 0) {
    lines.push(
      `absent words that mattered most: ${
        absent.map((f) => `${f.feature} ${signed(f.contribution)}`).join(", ")
      }`,
    );
  }
  const wordsTotal = explanation.words.reduce((sum, w) => sum + w.contribution, 0);
  lines.push(
    `bias ${signed(explanation.bias)} + words ${signed(wordsTotal)}` +
      (explanation.absent !== 0 ? ` + absent words ${signed(explanation.absent)}` : "") +
      ` = ${explanation.scale === "logit" ? "logit" : "score"} ${signed(explanation.score)}` +
      (explanation.calibrated || explanation.scale === "logit"
        ? `, probability of positive ${explanation.probability.toFixed(4)}${
          explanation.calibrated ? " (calibrated)" : ""
        }`
        : ""),
  );
  return lines;
}
