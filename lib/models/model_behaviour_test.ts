/**
 * Model-behaviour tests (Ribeiro et al. 2020, "Beyond Accuracy: Behavioral Testing of NLP Models with
 * CheckList", as Made-With-ML applies them): what the default model must do whatever its accuracy, checked
 * on the product's own path. The model is the default linear family trained with its default parameters
 * on 20,000 generated reviews (the data a fresh clone has), saved with `buildModelFiles` and loaded with
 * `loadModel`, so every prediction goes through the serving tokenizer rebuilt from the manifest.
 *
 * The checks themselves live in `behaviour.ts`, which evaluate also runs for each version's model card:
 * minimum functionality, invariance, direction, and lexicon words the training data never contains.
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
import { type BehaviourKind, LEXICON_ONLY_WORDS, runBehaviourChecks } from "./behaviour.ts";

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

async function checksOfKind(kind: BehaviourKind, t: Deno.TestContext): Promise<void> {
  const results = runBehaviourChecks(await defaultModel()).filter((result) => result.kind === kind);
  assert.ok(results.length >= 2, `checks of kind ${kind}`);
  for (const result of results) {
    await t.step(result.name, () => assert.ok(result.passed, `${result.name}: ${result.detail}`));
  }
}

Deno.test("behaviour: plain reviews get the obvious label", (t) => checksOfKind("minimum functionality", t));

Deno.test("behaviour: another product, brand or person does not move the score much", (t) =>
  checksOfKind("invariance", t));

Deno.test("behaviour: a negation or an added complaint moves the score the right way", (t) =>
  checksOfKind("direction", t));

Deno.test("behaviour: lexicon words the training data never has still count, the right way", async (t) => {
  const source = await Deno.readTextFile(new URL("../data/sample_data.ts", import.meta.url));
  for (const word of [...LEXICON_ONLY_WORDS.positive, ...LEXICON_ONLY_WORDS.negative]) {
    assert.ok(
      !source.includes(word),
      `${word} must not be in the generated data for this test to mean anything`,
    );
  }
  await checksOfKind("lexicon", t);
  // Without the lexicon those words would be unknown: the tokens differ only by the lexicon token.
  assert.deepEqual(
    createTokenizer({ lexicon: false }).tokenizeReview({ title: "", text: "It is dreadful." }),
    ["it", "is", "dreadful"],
  );
});

Deno.test("runBehaviourChecks() fails a model that ignores its input, saying why", () => {
  const constant = {
    predict: () => ({ label: "positive" as const, probability: 0.9, positiveProbability: 0.9 }),
  };
  const results = runBehaviourChecks(constant);
  assert.ok(
    results.some((r) => r.kind === "minimum functionality" && !r.passed && /positive with/.test(r.detail)),
  );
  assert.ok(results.filter((r) => r.kind === "invariance").every((r) => r.passed));
  assert.ok(results.filter((r) => r.kind === "direction").some((r) => !r.passed));
});
