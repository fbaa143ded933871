/**
 * Model-behaviour tests (Ribeiro et al. 2020, "Beyond Accuracy: Behavioral Testing of NLP Models with
 * CheckList", as Made-With-ML applies them): what the default model must do whatever its accuracy, checked
 * on the product's own path. The model is the default linear family trained with its default parameters
 * on 20,000 generated reviews (the data a fresh clone has), saved with `buildModelFiles` and loaded with
 * `loadModel`, so every prediction goes through the serving tokenizer rebuilt from the manifest.
 *
 * - minimum functionality: plain reviews get the obvious label;
 * - invariance: another product, brand or person does not move the score much;
 * - direction: a negation or an added complaint moves it the right way;
 * - the lexicon: sentiment words the training data never contains still count, in the right direction.
 */
import { strict as assert } from "node:assert";
import { join } from "node:path";
import { scratchDir } from "../_testing.ts";
import { ENGINES } from "./engines.ts";
import { LINEAR_ENGINE_NAME, serializeLinear } from "./linear/model_format.ts";
import { resolveLinearParams, trainLinear } from "./linear/trainer.ts";
import { buildModelFiles, loadModel, type SentimentModel } from "./artifact.ts";
import { formatProcessedLine } from "../data/processed_data.ts";
import { generateReviews } from "../data/sample_data.ts";
import { createTokenizer, tokenizeReview } from "../features/tokenizer.ts";

const TRAINING_REVIEWS = 20_000;

async function trainDefaultModel(): Promise<SentimentModel> {
  await using dir = await scratchDir("behaviour-");
  const path = join(dir.path, "train.tsv");
  let text = "";
  for (const review of generateReviews({ rows: TRAINING_REVIEWS, seed: 11 })) {
    const tokens = tokenizeReview(review);
    if (tokens.length > 0) text += formatProcessedLine(review.polarity, tokens);
  }
  await Deno.writeTextFile(path, text);
  const params = resolveLinearParams();
  const { model } = await trainLinear({
    files: [{ path, rows: text.split("\n").length - 1, key: 0 }],
    params,
  });
  return loadModel(
    buildModelFiles({
      engineName: LINEAR_ENGINE_NAME,
      engineBytes: serializeLinear(model),
      appVersion: "test",
    }),
    ENGINES,
  );
}

let trained: Promise<SentimentModel> | undefined;
/** One model for every test of the file: training takes about a second. */
function defaultModel(): Promise<SentimentModel> {
  trained ??= trainDefaultModel();
  return trained;
}

function positive(model: SentimentModel, title: string, text: string): number {
  return model.predict({ title, text }).positiveProbability;
}

Deno.test("behaviour: plain reviews get the obvious label", async () => {
  const model = await defaultModel();
  const cases: [string, string, "positive" | "negative"][] = [
    ["Great blender", "Works perfectly every morning. Highly recommend it.", "positive"],
    ["Excellent", "The sound is amazing and the battery life is great.", "positive"],
    ["Love it", "My daughter loves it, a wonderful gift.", "positive"],
    ["Terrible", "It stopped working after two days. Waste of money.", "negative"],
    ["Very disappointed", "Cheap and flimsy, the handle broke in a week.", "negative"],
    ["Do not buy", "Awful quality, I returned it for a refund.", "negative"],
  ];
  for (const [title, text, label] of cases) {
    const prediction = model.predict({ title, text });
    assert.equal(prediction.label, label, `${title}: ${text} → ${prediction.positiveProbability.toFixed(3)}`);
    assert.ok(
      prediction.probability > 0.75,
      `${title}: ${text} is only ${prediction.probability.toFixed(3)} sure`,
    );
  }
});

Deno.test("behaviour: another product, brand or person does not move the score much", async () => {
  const model = await defaultModel();
  const pairs: [string, string][] = [
    ["The blender works great, I use it every morning.", "The kettle works great, I use it every morning."],
    ["Acme makes a terrible charger, it broke fast.", "Zentro makes a terrible charger, it broke fast."],
    ["Bought it for my wife and she loves it.", "Bought it for my dad and he loves it."],
    ["The headphones feel flimsy and cheap.", "The backpack feels flimsy and cheap."],
  ];
  for (const [a, b] of pairs) {
    const delta = Math.abs(positive(model, "", a) - positive(model, "", b));
    assert.ok(delta < 0.15, `"${a}" vs "${b}" moved the score by ${delta.toFixed(3)}`);
  }
});

Deno.test("behaviour: a negation or an added complaint moves the score the right way", async () => {
  const model = await defaultModel();
  const good = positive(model, "", "The sound is good.");
  const notGood = positive(model, "", "The sound is not good.");
  assert.ok(good > 0.5 && notGood < 0.5, `good ${good.toFixed(3)}, not good ${notGood.toFixed(3)}`);
  const bad = positive(model, "", "The zipper is bad.");
  const notBad = positive(model, "", "The zipper is not bad.");
  assert.ok(notBad > bad, `bad ${bad.toFixed(3)}, not bad ${notBad.toFixed(3)}`);

  const praise = "Nice jacket, comfortable and warm.";
  const complaint = positive(model, "", `${praise} But the stitching came apart after a week, useless.`);
  assert.ok(complaint < positive(model, "", praise), "an added complaint lowers the score");
  const gripe = "The lid is hard to clean.";
  const compliment = positive(model, "", `${gripe} Still, an excellent kettle, I love it.`);
  assert.ok(compliment > positive(model, "", gripe), "an added compliment raises the score");
});

Deno.test("behaviour: lexicon words the training data never has still count, the right way", async () => {
  const model = await defaultModel();
  const unseen = {
    positive: ["delightful", "splendid", "marvelous", "flawless"],
    negative: ["dreadful", "atrocious", "lousy", "pathetic"],
  };
  const source = await Deno.readTextFile(new URL("../data/sample_data.ts", import.meta.url));
  for (const word of [...unseen.positive, ...unseen.negative]) {
    assert.ok(
      !source.includes(word),
      `${word} must not be in the generated data for this test to mean anything`,
    );
  }
  for (const word of unseen.positive) {
    const score = positive(model, "", `It is ${word}.`);
    assert.ok(score > 0.6, `"It is ${word}." scored ${score.toFixed(3)}`);
  }
  for (const word of unseen.negative) {
    const score = positive(model, "", `It is ${word}.`);
    assert.ok(score < 0.4, `"It is ${word}." scored ${score.toFixed(3)}`);
  }
  // Without the lexicon those words would be unknown: the tokens differ only by the lexicon token.
  assert.deepEqual(
    createTokenizer({ lexicon: false }).tokenizeReview({ title: "", text: "It is dreadful." }),
    [
      "it",
      "is",
      "dreadful",
    ],
  );
});
