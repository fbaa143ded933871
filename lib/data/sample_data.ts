/**
 * A deterministic generator of synthetic Amazon-style reviews, so that tests, demos and CI run the whole
 * pipeline without the Kaggle download.
 *
 * The text imitates the real dataset: a product title (sometimes empty), 1 to 6 sentences with commas,
 * double quotes and occasional paragraph breaks, and both labels about equally often. The label is
 * learnable but not trivially: sentiment words come with noise, negations flip their meaning ("not good",
 * "never worked", "wasn't disappointed"), mixed reviews praise one aspect and blame another, neutral
 * sentences carry no signal, and about 6.5% of the reviews are written in the voice of the other label
 * (the real data has such rows too: a glowing text under one star), which no bag of words can get right.
 * A decent classifier therefore lands around 85-93% accuracy, not 100%.
 *
 * Randomness comes only from a seeded sfc32 generator, so the same seed always gives the same reviews.
 *
 * @module
 */
import type { Polarity, Review } from "./review.ts";

/** Options of {@linkcode generateReviews}. */
export interface SampleOptions {
  /** Number of reviews to generate. */
  rows: number;
  /** Seed of the pseudo-random generator; the same seed gives the same reviews. */
  seed: number;
}

/** Share of reviews written in the voice of the opposite label. */
export const HARD_REVIEW_RATE = 0.065;

/** A pseudo-random number generator returning floats in [0, 1). */
export type Random = () => number;

/**
 * Creates a seeded sfc32 generator (Chris Doty-Humphrey's small fast counter; passes PractRand at this
 * use's scale). The seed is spread with splitmix32 so that nearby seeds give unrelated streams.
 *
 * @param seed Any safe integer.
 * @returns A function returning floats in [0, 1).
 *
 * @example Usage
 * ```ts
 * import { createRandom } from "./sample_data.ts";
 * const random = createRandom(42);
 * random(); // same value on every run
 * ```
 */
export function createRandom(seed: number): Random {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
  let state = (seed >>> 0) ^ Math.imul(Math.floor(seed / 2 ** 32) | 0, 0x9e3779b9);
  const splitmix32 = (): number => {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    return (z ^ (z >>> 15)) >>> 0;
  };
  let a = splitmix32(), b = splitmix32(), c = splitmix32(), d = splitmix32();
  const random = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  // Discard the first outputs: sfc32's state needs a few rounds to mix.
  for (let i = 0; i < 12; i++) random();
  return random;
}

// ---- Vocabulary -------------------------------------------------------------------------------------------

interface Category {
  products: readonly string[];
  aspects: readonly string[];
  uses: readonly string[];
}

const CATEGORIES: readonly Category[] = [
  {
    products: ["book", "novel", "cookbook", "biography", "textbook", "guide", "thriller", "memoir"],
    aspects: [
      "the plot",
      "the main character",
      "the writing",
      "the ending",
      "the print",
      "the pacing",
      "the dialogue",
    ],
    uses: ["on my commute", "before bed", "for my book club", "over the holidays", "for a class"],
  },
  {
    products: [
      "headphones",
      "charger",
      "router",
      "keyboard",
      "camera",
      "speaker",
      "mouse",
      "cable",
      "tablet case",
    ],
    aspects: [
      "the battery life",
      "the sound",
      "the build quality",
      "the setup",
      "the power button",
      "the connection",
    ],
    uses: ["at work", "on trips", "every day", "with my laptop", "in the car", "at the gym"],
  },
  {
    products: [
      "blender",
      "coffee maker",
      "knife set",
      "toaster",
      "frying pan",
      "kettle",
      "timer",
      "food processor",
    ],
    aspects: ["the lid", "the handle", "the motor", "the finish", "the cleanup", "the blade", "the cord"],
    uses: ["every morning", "for smoothies", "for family dinners", "in our small kitchen", "on weekends"],
  },
  {
    products: ["DVD", "movie", "album", "CD", "soundtrack", "box set", "documentary", "concert film"],
    aspects: [
      "the acting",
      "the soundtrack",
      "the picture quality",
      "the story",
      "the title song",
      "the bonus disc",
    ],
    uses: ["with my kids", "on a rainy night", "in the car", "with friends", "more than once"],
  },
  {
    products: ["shoes", "jacket", "backpack", "watch", "vacuum", "lamp", "toy", "sheet set", "water bottle"],
    aspects: ["the fit", "the material", "the stitching", "the color", "the size", "the zipper", "the strap"],
    uses: ["on hikes", "at home", "for school", "every day", "on vacation", "around the house"],
  },
];

const BRANDS = ["Acme", "Zentro", "Kelvo", "Northwind", "Lumina", "Brisk", "Oakley Home", "Vantor", "Pellam"];
const PEOPLE = [
  "my wife",
  "my husband",
  "my son",
  "my daughter",
  "my mom",
  "a friend",
  "my dad",
  "my sister",
];
const DURATIONS = ["two weeks", "a month", "three months", "six months", "a year", "two days", "a few weeks"];
const POS_ADJ = [
  "great",
  "excellent",
  "wonderful",
  "fantastic",
  "perfect",
  "amazing",
  "solid",
  "sturdy",
  "reliable",
  "comfortable",
  "beautiful",
  "impressive",
  "outstanding",
  "superb",
  "good",
  "nice",
];
const NEG_ADJ = [
  "terrible",
  "awful",
  "poor",
  "flimsy",
  "useless",
  "cheap",
  "defective",
  "disappointing",
  "horrible",
  "mediocre",
  "bad",
  "boring",
  "overpriced",
];
const MILD_NEG = [
  "a bit loud",
  "slightly small",
  "a little stiff",
  "not the prettiest",
  "a bit pricey",
  "slow",
];
const POS_PHRASES = [
  "works perfectly",
  "does exactly what it says",
  "exceeded my expectations",
  "holds up well",
  "is worth every penny",
  "was easy to set up",
  "is a joy to use",
  "made my life easier",
];
const NEG_PHRASES = [
  "stopped working after two weeks",
  "broke the first time I used it",
  "fell apart",
  "is a waste of money",
  "arrived damaged",
  "feels like junk",
  "is a complete letdown",
  "died within a month",
];
const POS_FEEL = ["happy", "pleased", "impressed", "satisfied", "thrilled", "glad"];
const NEG_FEEL = ["disappointed", "frustrated", "annoyed", "unhappy", "let down"];
const POS_QUOTES = ["the best gift ever", "so easy", "really cool", "a keeper", "worth it"];
const NEG_QUOTES = ["premium", "heavy duty", "easy to use", "waterproof", "long lasting", "high quality"];

type Pick = <T>(items: readonly T[]) => T;

interface Context {
  random: Random;
  pick: Pick;
  product: string;
  category: Category;
}

type Sentence = (c: Context) => string;

// Direct opinions: the strongest signal.
const POSITIVE: readonly Sentence[] = [
  (c) => `This ${c.product} is ${c.pick(POS_ADJ)}.`,
  (c) => `I love this ${c.product}, it ${c.pick(POS_PHRASES)}.`,
  (c) => `It ${c.pick(POS_PHRASES)}, and ${c.pick(c.category.aspects)} is ${c.pick(POS_ADJ)}.`,
  (c) => `Really ${c.pick(POS_ADJ)} quality for the price.`,
  (c) => `I am very ${c.pick(POS_FEEL)} with it.`,
  (c) => `${cap(c.pick(c.category.aspects))} is ${c.pick(POS_ADJ)} and ${c.pick(POS_ADJ)}.`,
  () => `Honestly, one of the best purchases I have made this year.`,
];
const NEGATIVE: readonly Sentence[] = [
  (c) => `This ${c.product} is ${c.pick(NEG_ADJ)}.`,
  (c) => `It ${c.pick(NEG_PHRASES)}.`,
  (c) => `${cap(c.pick(c.category.aspects))} is ${c.pick(NEG_ADJ)}, and it ${c.pick(NEG_PHRASES)}.`,
  (c) => `I am really ${c.pick(NEG_FEEL)} with this purchase.`,
  (c) => `What a ${c.pick(NEG_ADJ)} ${c.product}.`,
  (c) => `Worst ${c.product} I have ever bought.`,
  (c) => `Total waste of money, ${c.pick(c.category.aspects)} is ${c.pick(NEG_ADJ)}.`,
];
// Negations: the words of one label used for the other, which a plain bag of words reads backwards.
const POSITIVE_NEGATED: readonly Sentence[] = [
  () => `I was not disappointed.`,
  (c) => `I wasn't expecting much, but it ${c.pick(POS_PHRASES)}.`,
  () => `It never broke, even after months of daily use.`,
  () => `No complaints at all.`,
  (c) => `Not cheap, but ${c.pick(c.category.aspects)} is ${c.pick(POS_ADJ)}.`,
  () => `I have never had a problem with it.`,
  (c) => `It is far from ${c.pick(NEG_ADJ)}.`,
  (c) => `Don't listen to the ${c.pick(NEG_ADJ)} reviews, it ${c.pick(POS_PHRASES)}.`,
];
const NEGATIVE_NEGATED: readonly Sentence[] = [
  (c) => `It is not ${c.pick(POS_ADJ)} at all.`,
  () => `It never worked properly.`,
  () => `I would not recommend it to anyone.`,
  () => `Not worth the money.`,
  () => `It didn't work out of the box.`,
  (c) => `I can't say I was ${c.pick(POS_FEEL)} with it.`,
  (c) => `Nothing ${c.pick(POS_ADJ)} about this one.`,
  (c) => `Don't believe the ${c.pick(POS_ADJ)} reviews.`,
];
// Mixed: praise and blame in one review; the verdict decides.
const POSITIVE_MIXED: readonly Sentence[] = [
  (c) => `${cap(c.pick(c.category.aspects))} is ${c.pick(MILD_NEG)}, but overall I am ${c.pick(POS_FEEL)}.`,
  (c) => `The only downside is that ${c.pick(c.category.aspects)} is ${c.pick(MILD_NEG)}.`,
  (c) =>
    `It had a ${c.pick(NEG_ADJ)} start, the first one arrived damaged, but the replacement is ${
      c.pick(POS_ADJ)
    }.`,
];
const NEGATIVE_MIXED: readonly Sentence[] = [
  (c) => `${cap(c.pick(c.category.aspects))} is ${c.pick(POS_ADJ)}, but it ${c.pick(NEG_PHRASES)}.`,
  (c) => `It looks ${c.pick(POS_ADJ)} in the pictures, in person it is ${c.pick(NEG_ADJ)}.`,
  () => `I wanted to love it, I really did.`,
];
const POSITIVE_VERDICT: readonly Sentence[] = [
  () => `Highly recommended.`,
  () => `I would buy it again.`,
  (c) => `I recommend it to anyone looking for a ${c.product}.`,
  () => `Five stars from me.`,
  () => `Buy it, you won't regret it.`,
];
const NEGATIVE_VERDICT: readonly Sentence[] = [
  () => `I am returning it.`,
  () => `Save your money.`,
  () => `Avoid this one.`,
  () => `I want a refund.`,
  (c) => `Buy a different ${c.product}.`,
];
const POSITIVE_QUOTED: readonly Sentence[] = [
  (c) => `${cap(c.pick(PEOPLE))} called it "${c.pick(POS_QUOTES)}", and I agree.`,
  (c) => `The description says "${c.pick(NEG_QUOTES)}", and it really is.`,
];
const NEGATIVE_QUOTED: readonly Sentence[] = [
  (c) => `The description says "${c.pick(NEG_QUOTES)}", which is simply not true.`,
  (c) => `So much for "${c.pick(NEG_QUOTES)}".`,
];
// Neutral: no signal at all, like the many sentences of real reviews that only tell a story.
const NEUTRAL: readonly Sentence[] = [
  (c) => `I bought this ${c.product} for ${c.pick(PEOPLE)}.`,
  (c) => `I have had it for ${c.pick(DURATIONS)} now.`,
  (c) => `We use it ${c.pick(c.category.uses)}.`,
  () => `I ordered it after reading the reviews here.`,
  (c) => `It arrived in ${2 + Math.floor(c.random() * 6)} days, in the original box.`,
  (c) => `This is my ${c.pick(["first", "second", "third"])} ${c.product} from ${c.pick(BRANDS)}.`,
  (c) => `I mostly use it ${c.pick(c.category.uses)}, sometimes ${c.pick(c.category.uses)}.`,
  (c) =>
    `I did a lot of research before buying, comparing it with the ${
      c.pick(BRANDS)
    } one and a couple of others ${c.pick(["in the same price range", "at the store", "my friends own"])}.`,
  (c) =>
    `The package had everything listed, the ${c.product} itself, a manual and a small ${
      c.pick(["bag", "card", "sticker", "cloth"])
    }.`,
  (c) =>
    `To be fair, I had owned a ${c.product} from ${c.pick(BRANDS)} for ${c.pick(DURATIONS)} before this one.`,
];

const POSITIVE_TITLES: readonly Sentence[] = [
  (c) => `Great ${c.product}`,
  () => `Love it!`,
  () => `Five stars`,
  () => `Exactly what I needed`,
  () => `Works as advertised`,
  (c) => `${cap(c.pick(POS_ADJ))} ${c.product}, ${c.pick(POS_ADJ)} price`,
  () => `Worth every penny`,
  () => `Not disappointed`,
];
const NEGATIVE_TITLES: readonly Sentence[] = [
  () => `Waste of money`,
  () => `Disappointed`,
  (c) => `Broke after ${c.pick(DURATIONS)}`,
  () => `Not worth it`,
  (c) => `Don't buy this ${c.product}`,
  (c) => `${cap(c.pick(NEG_ADJ))} ${c.product}`,
  () => `Not what I expected`,
  () => `Returned it`,
];
const NEUTRAL_TITLES: readonly Sentence[] = [
  (c) => `${c.pick(BRANDS)} ${c.product}`,
  (c) => `My ${c.pick(["new", "second", "first"])} ${c.product}`,
  () => `Review`,
  (c) => `For ${c.pick(PEOPLE)}`,
];

function cap(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

interface Voice {
  direct: readonly Sentence[];
  negated: readonly Sentence[];
  mixed: readonly Sentence[];
  verdict: readonly Sentence[];
  quoted: readonly Sentence[];
  titles: readonly Sentence[];
}

const VOICES: Readonly<Record<Polarity, Voice>> = {
  1: {
    direct: NEGATIVE,
    negated: NEGATIVE_NEGATED,
    mixed: NEGATIVE_MIXED,
    verdict: NEGATIVE_VERDICT,
    quoted: NEGATIVE_QUOTED,
    titles: NEGATIVE_TITLES,
  },
  2: {
    direct: POSITIVE,
    negated: POSITIVE_NEGATED,
    mixed: POSITIVE_MIXED,
    verdict: POSITIVE_VERDICT,
    quoted: POSITIVE_QUOTED,
    titles: POSITIVE_TITLES,
  },
};

/** Sentence counts 1..6, weighted like real reviews (mostly 2 to 4). */
const SENTENCE_COUNTS = [1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 6];

function sentence(c: Context, voice: Voice, other: Voice): string {
  const roll = c.random();
  if (roll < 0.2) return c.pick(voice.direct)(c);
  if (roll < 0.32) return c.pick(voice.negated)(c);
  if (roll < 0.4) return c.pick(voice.mixed)(c);
  if (roll < 0.45) return c.pick(voice.verdict)(c);
  if (roll < 0.5) return c.pick(voice.quoted)(c);
  // Praise in a bad review and blame in a good one, as real reviewers write: noise a model must outweigh.
  if (roll < 0.6) return c.pick(other.direct)(c);
  return c.pick(NEUTRAL)(c);
}

function review(c: Context, polarity: Polarity): Review {
  const random = c.random;
  // A hard review speaks with the other label's voice: its label cannot be learned from its words.
  const voiced: Polarity = random() < HARD_REVIEW_RATE ? (polarity === 1 ? 2 : 1) : polarity;
  const voice = VOICES[voiced];
  const other = VOICES[voiced === 1 ? 2 : 1];
  const count = c.pick(SENTENCE_COUNTS);
  // One sentence always carries the opinion, so even a one-sentence review has some signal.
  const anchor = Math.floor(random() * count);
  let text = "";
  for (let i = 0; i < count; i++) {
    const next = i === anchor
      ? (random() < 0.7 ? c.pick(voice.direct)(c) : c.pick(voice.negated)(c))
      : sentence(c, voice, other);
    if (i > 0) {
      const gap = random();
      // Paragraph breaks as in the real data, where they appear as `\n` or `\n\n` once written.
      text += gap < 0.04 ? "\n\n" : gap < 0.07 ? "\n" : gap < 0.12 ? "  " : " ";
    }
    text += next;
  }
  const titleRoll = random();
  let title = titleRoll < 0.07 ? "" : titleRoll < 0.2 ? c.pick(NEUTRAL_TITLES)(c) : c.pick(voice.titles)(c);
  const caseRoll = random();
  if (caseRoll < 0.04) text = text.toLowerCase();
  else if (caseRoll < 0.06) title = title.toUpperCase();
  return { polarity, title, text };
}

/**
 * Generates synthetic reviews, deterministically for a seed.
 *
 * @param options Number of rows and seed.
 * @returns A generator of `options.rows` reviews, labels 1 and 2 about equally often.
 * @throws {RangeError} When `rows` is not a non-negative integer or `seed` not a safe integer.
 *
 * @example Usage
 * ```ts
 * import { generateReviews } from "./sample_data.ts";
 * import { formatReviewLine } from "./csv.ts";
 * const lines = [...generateReviews({ rows: 3, seed: 7 })].map(formatReviewLine);
 * console.log(lines.length); // 3
 * ```
 */
export function generateReviews(options: SampleOptions): Generator<Review> {
  const { rows, seed } = options;
  if (!(Number.isSafeInteger(rows) && rows >= 0)) {
    throw new RangeError(`rows must be a non-negative integer, got ${rows}`);
  }
  const random = createRandom(seed);
  const pick: Pick = (items) => items[Math.floor(random() * items.length)]!;
  return generate(rows, random, pick);
}

function* generate(rows: number, random: Random, pick: Pick): Generator<Review> {
  for (let i = 0; i < rows; i++) {
    const category = pick(CATEGORIES);
    const context: Context = { random, pick, category, product: pick(category.products) };
    yield review(context, random() < 0.5 ? 1 : 2);
  }
}
