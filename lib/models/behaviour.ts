/**
 * Behaviour checks of a sentiment model (Ribeiro et al. 2020, "Beyond Accuracy: Behavioral Testing of NLP
 * Models with CheckList", as Made-With-ML applies them): what a model must do whatever its accuracy. The
 * tests hold the default model to every one of them (`model_behaviour_test.ts`), and evaluate runs them on
 * each registered version for its model card, so a reader sees which a version passed.
 *
 * - minimum functionality: plain reviews get the obvious label, with confidence;
 * - invariance: another product, brand or person does not move the score much;
 * - direction: a negation or an added complaint moves it the right way;
 * - lexicon: sentiment words a product's training data may never contain still count, the right way.
 *
 * @module
 */
import type { Prediction } from "./artifact.ts";

/** The kinds of check. */
export type BehaviourKind = "minimum functionality" | "invariance" | "direction" | "lexicon";

/** What a check needs of a model. */
export interface ReviewScorer {
  /** Scores one review. */
  predict(
    review: { title: string; text: string },
  ): Pick<Prediction, "label" | "probability" | "positiveProbability">;
}

/** The outcome of one check. */
export interface BehaviourResult {
  /** What was checked, in a few words. */
  name: string;
  kind: BehaviourKind;
  passed: boolean;
  /** The figures behind the outcome. */
  detail: string;
}

/** A check: a name, a kind, and how to run it on a model. */
interface BehaviourCheck {
  name: string;
  kind: BehaviourKind;
  run(model: ReviewScorer): { passed: boolean; detail: string };
}

/** The smallest confidence a plain review must get. */
export const MIN_PLAIN_CONFIDENCE = 0.75;
/** The largest move of the score that an irrelevant change may cause. */
export const MAX_INVARIANT_DELTA = 0.15;

/** Sentiment words the generated sample data never contains, so only the lexicon can know them. */
export const LEXICON_ONLY_WORDS: Readonly<Record<"positive" | "negative", readonly string[]>> = Object.freeze(
  {
    positive: ["delightful", "splendid", "marvelous", "flawless"],
    negative: ["dreadful", "atrocious", "lousy", "pathetic"],
  },
);

function positive(model: ReviewScorer, title: string, text: string): number {
  return model.predict({ title, text }).positiveProbability;
}

const PLAIN: [string, string, "positive" | "negative"][] = [
  ["Great blender", "Works perfectly every morning. Highly recommend it.", "positive"],
  ["Excellent", "The sound is amazing and the battery life is great.", "positive"],
  ["Love it", "My daughter loves it, a wonderful gift.", "positive"],
  ["Terrible", "It stopped working after two days. Waste of money.", "negative"],
  ["Very disappointed", "Cheap and flimsy, the handle broke in a week.", "negative"],
  ["Do not buy", "Awful quality, I returned it for a refund.", "negative"],
];

const INVARIANT: [string, string][] = [
  ["The blender works great, I use it every morning.", "The kettle works great, I use it every morning."],
  ["Acme makes a terrible charger, it broke fast.", "Zentro makes a terrible charger, it broke fast."],
  ["Bought it for my wife and she loves it.", "Bought it for my dad and he loves it."],
  ["The headphones feel flimsy and cheap.", "The backpack feels flimsy and cheap."],
];

const CHECKS: readonly BehaviourCheck[] = [
  ...PLAIN.map(([title, text, label]): BehaviourCheck => ({
    name: `"${title}: ${text}" is ${label}`,
    kind: "minimum functionality",
    run(model) {
      const prediction = model.predict({ title, text });
      return {
        passed: prediction.label === label && prediction.probability > MIN_PLAIN_CONFIDENCE,
        detail: `${prediction.label} with probability ${prediction.probability.toFixed(3)}`,
      };
    },
  })),
  ...INVARIANT.map(([a, b]): BehaviourCheck => ({
    name: `"${a}" scores like "${b}"`,
    kind: "invariance",
    run(model) {
      const delta = Math.abs(positive(model, "", a) - positive(model, "", b));
      return { passed: delta < MAX_INVARIANT_DELTA, detail: `moved by ${delta.toFixed(3)}` };
    },
  })),
  {
    name: `"not good" is negative where "good" is positive`,
    kind: "direction",
    run(model) {
      const good = positive(model, "", "The sound is good.");
      const notGood = positive(model, "", "The sound is not good.");
      return {
        passed: good > 0.5 && notGood < 0.5,
        detail: `good ${good.toFixed(3)}, not good ${notGood.toFixed(3)}`,
      };
    },
  },
  {
    name: `"not bad" scores above "bad"`,
    kind: "direction",
    run(model) {
      const bad = positive(model, "", "The zipper is bad.");
      const notBad = positive(model, "", "The zipper is not bad.");
      return { passed: notBad > bad, detail: `bad ${bad.toFixed(3)}, not bad ${notBad.toFixed(3)}` };
    },
  },
  {
    name: "an added complaint lowers the score",
    kind: "direction",
    run(model) {
      const praise = "Nice jacket, comfortable and warm.";
      const before = positive(model, "", praise);
      const after = positive(model, "", `${praise} But the stitching came apart after a week, useless.`);
      return { passed: after < before, detail: `${before.toFixed(3)} → ${after.toFixed(3)}` };
    },
  },
  {
    name: "an added compliment raises the score",
    kind: "direction",
    run(model) {
      const gripe = "The lid is hard to clean.";
      const before = positive(model, "", gripe);
      const after = positive(model, "", `${gripe} Still, an excellent kettle, I love it.`);
      return { passed: after > before, detail: `${before.toFixed(3)} → ${after.toFixed(3)}` };
    },
  },
  ...(["positive", "negative"] as const).flatMap((side) =>
    LEXICON_ONLY_WORDS[side].map((word): BehaviourCheck => ({
      name: `"It is ${word}." is ${side}`,
      kind: "lexicon",
      run(model) {
        const score = positive(model, "", `It is ${word}.`);
        return {
          passed: side === "positive" ? score > 0.6 : score < 0.4,
          detail: `scored ${score.toFixed(3)}`,
        };
      },
    }))
  ),
];

/**
 * Runs every behaviour check on a model.
 *
 * @param model Anything that scores reviews, e.g. a loaded `SentimentModel`.
 * @returns One result per check, in a fixed order.
 *
 * @example Usage
 * ```ts
 * import { runBehaviourChecks } from "./behaviour.ts";
 * const always = { predict: () => ({ label: "positive" as const, probability: 0.9, positiveProbability: 0.9 }) };
 * runBehaviourChecks(always).filter((r) => r.passed).length; // the checks a constant model passes
 * ```
 */
export function runBehaviourChecks(model: ReviewScorer): BehaviourResult[] {
  return CHECKS.map((check) => ({ name: check.name, kind: check.kind, ...check.run(model) }));
}
