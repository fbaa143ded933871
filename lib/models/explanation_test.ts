/**
 * Explanations through the model artifact, as predict and the API use them: the same tokens, features and
 * score as the prediction, exact for both families, traced back to the words as typed.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { buildTinyLinearModelFiles, buildTinyModelFiles } from "../serving/_tiny_model.ts";
import { loadModel, type SentimentModel } from "./artifact.ts";
import { ENGINES } from "./engines.ts";
import { buildExplanation, type Explanation, topWords } from "./explanation.ts";
import { Forest } from "./forest/forest.ts";
import { deserializeForest, serializeForest } from "./forest/model_format.ts";
import { LinearModel } from "./linear/model.ts";

const linear = loadModel(buildTinyLinearModelFiles(), ENGINES);
const forest = loadModel(await buildTinyModelFiles(), ENGINES);
const calibrated = loadModel(
  buildTinyLinearModelFiles({ calibration: { method: "platt", a: 0.4, b: -0.3, input: "logit" } }),
  ENGINES,
);

const REVIEW = { title: "Not GOOD at all", text: "It didn't work, broke after a week. Great price though!" };

/** bias + Σ features = score = bias + Σ words + absent, and the score is the prediction's. */
function assertExact(model: SentimentModel, review: { title: string; text: string }, e: Explanation): void {
  const tolerance = 1e-9 * (1 + Math.abs(e.score));
  const byFeatures = e.features.filter((f) => f.present).reduce(
    (sum, f) => sum + f.contribution,
    e.bias + e.absent,
  );
  const byWords = e.words.reduce((sum, w) => sum + w.contribution, e.bias + e.absent);
  assert.ok(Math.abs(byFeatures - e.score) <= tolerance, `features ${byFeatures} vs score ${e.score}`);
  assert.ok(Math.abs(byWords - e.score) <= tolerance, `words ${byWords} vs score ${e.score}`);
  const p = model.predict(review).positiveProbability;
  assert.ok(Math.abs(e.probability - p) <= 1e-9, `explained ${e.probability} vs predicted ${p}`);
}

Deno.test("SentimentModel.explain() of a linear model gives back the prediction's logit exactly", () => {
  const explanation = linear.explain(REVIEW);
  assert.equal(explanation.method, "linear-decomposition");
  assert.equal(explanation.scale, "logit");
  assert.equal(explanation.absent, 0);
  assertExact(linear, REVIEW, explanation);
  const engine = linear.engine as LinearModel;
  const logit = engine.logitTokens(linear.tokenizer.tokenizeReview(REVIEW));
  assert.ok(Math.abs(explanation.score - logit) < 1e-12);
});

Deno.test("SentimentModel.explain() of a forest gives back the prediction's probability exactly", () => {
  const explanation = forest.explain(REVIEW);
  assert.equal(explanation.method, "path-contribution");
  assert.equal(explanation.scale, "probability");
  assertExact(forest, REVIEW, explanation);
  assert.ok(explanation.features.some((f) => !f.present), "a forest credits words the review lacks");
  for (const feature of explanation.features) {
    assert.equal(
      feature.present,
      forest.vectorizer!.transform(forest.tokenizer.tokenizeReview(REVIEW)).includes(
        forest.vectorizer!.idOf(feature.feature)!,
      ),
    );
  }
});

Deno.test("SentimentModel.explain() is exact for any review, for both families (property)", () => {
  const words = fc.constantFrom(
    "great",
    "not",
    "never",
    "love",
    "broke",
    "didn't",
    "waste",
    "GOOD",
    "café",
    "&amp;",
    "!!",
    ":)",
    "<br />",
    "ﬁne",
    "42",
    "but",
  );
  const text = fc.oneof(fc.array(words, { maxLength: 25 }).map((w) => w.join(" ")), fc.string());
  fc.assert(
    fc.property(text, text, (title, body) => {
      const review = { title, text: body };
      for (const model of [linear, forest, calibrated]) assertExact(model, review, model.explain(review));
    }),
    { numRuns: 150 },
  );
});

Deno.test("SentimentModel.explain() shows a negated word as such, mapped to the word typed", () => {
  const explanation = linear.explain(REVIEW);
  const good = explanation.words.find((w) => w.text === "GOOD")!;
  assert.deepEqual(good.tokens, ["not_good", "not__lexpos_"]);
  assert.equal(good.field, "title");
  assert.equal(REVIEW.title.slice(good.start, good.end), "GOOD");
  const didnt = explanation.words.find((w) => w.text === "didn't")!;
  assert.deepEqual(didnt.tokens, ["did", "not"]);
  assert.equal(REVIEW.text.slice(didnt.start, didnt.end), "didn't");
  // Words come in review order, title first.
  assert.deepEqual(explanation.words.slice(0, 4).map((w) => w.text), ["Not", "GOOD", "at", "all"]);
  const notGood = explanation.features.find((f) => f.feature === "not_good")!;
  assert.deepEqual(notGood.words, ["GOOD"]);
});

Deno.test("SentimentModel.explain() puts the words that decided the label on top, with their sign", () => {
  const negative = linear.explain({ title: "Terrible", text: "junk, broke after a week" });
  const top = topWords(negative, 3);
  assert.ok(top.length === 3 && top[0]!.contribution < 0);
  assert.ok(top.some((w) => w.text === "Terrible" || w.text === "junk" || w.text === "broke"));
  const positive = linear.explain({ title: "Excellent", text: "love it, works great" });
  assert.ok(topWords(positive, 1)[0]!.contribution > 0);
});

Deno.test("a calibrated model explains the same logit and says which probability it became", () => {
  const raw = linear.explain(REVIEW);
  const explained = calibrated.explain(REVIEW);
  assert.equal(explained.calibrated, true);
  assert.deepEqual({ ...explained, probability: 0, calibrated: false }, { ...raw, probability: 0 });
  assert.ok(Math.abs(explained.probability - 1 / (1 + Math.exp(-(0.4 * raw.score - 0.3)))) < 1e-15);
  assertExact(calibrated, REVIEW, explained);
});

Deno.test("a forest saved without node values predicts but refuses to explain, saying why", async () => {
  const files = await buildTinyModelFiles();
  const engine = deserializeForest(files.get("engine.bin")!);
  const { nodeValues: _, ...older } = engine.toData();
  const model = loadModel(files, [{
    name: "sparse-forest",
    decode: () => deserializeForest(serializeForest(new Forest(older))),
  }]);
  assert.equal(model.explainable, false);
  assert.equal(model.predict(REVIEW).label, forest.predict(REVIEW).label);
  assert.throws(() => model.explain(REVIEW), /saved without what explanations need; retrain/);
});

Deno.test("buildExplanation() shares a pair's contribution between its two words", () => {
  const explanation = buildExplanation(
    {
      scale: "logit",
      bias: 0.5,
      features: [
        { feature: "not", contribution: -0.2, tokens: [0] },
        { feature: "not_good", contribution: -1, tokens: [1] },
        { feature: "not not_good", contribution: -0.6, tokens: [0, 1] },
      ],
    },
    ["not", "not_good"],
    [
      { field: "text", word: 0, start: 0, end: 3, text: "not" },
      { field: "text", word: 1, start: 4, end: 8, text: "good" },
    ],
    "linear-decomposition",
  );
  assert.deepEqual(explanation.words.map((w) => [w.text, Number(w.contribution.toFixed(6))]), [
    ["not", -0.5],
    ["good", -1.3],
  ]);
  assert.ok(Math.abs(explanation.score - -1.3) < 1e-12);
  assert.deepEqual(explanation.features.map((f) => f.feature), ["not_good", "not not_good", "not"]);
});
