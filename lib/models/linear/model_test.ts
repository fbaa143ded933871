import { strict as assert } from "node:assert";
import fc from "fast-check";
import { FeatureBuffer, featuresOfTokens } from "./hashing.ts";
import { toyReviews } from "./_toy_data.ts";
import { LinearModel, SeededRandom, sigmoid } from "./model.ts";

function accuracy(model: LinearModel, reviews: ReturnType<typeof toyReviews>): number {
  let correct = 0;
  for (const r of reviews) if ((model.predictTokensProba(r.tokens) >= 0.5 ? 1 : 0) === r.label) correct++;
  return correct / reviews.length;
}

Deno.test("LinearModel learns a linearly separable toy set perfectly", () => {
  const train = toyReviews(400, 1);
  const test = toyReviews(200, 2);
  const model = LinearModel.create({ dim: 8, buckets: 4096, ngrams: 2 }, 42);
  assert.ok(accuracy(model, test) < 0.8, "an untrained model should not already know the task");
  for (let epoch = 0; epoch < 5; epoch++) {
    for (const r of train) model.trainTokens(r.tokens, r.label, 0.5 * (1 - epoch / 5));
  }
  assert.equal(accuracy(model, test), 1);
  assert.ok(model.predictTokensProba(["great"]) > 0.9);
  assert.ok(model.predictTokensProba(["broke"]) < 0.1);
  assert.equal(model.history.examples, 2000);
});

Deno.test("LinearModel.create() starts with zero embeddings and seeded output weights", () => {
  const a = LinearModel.create({ dim: 4, buckets: 16, ngrams: 2 }, 7);
  const b = LinearModel.create({ dim: 4, buckets: 16, ngrams: 2 }, 7);
  const c = LinearModel.create({ dim: 4, buckets: 16, ngrams: 2 }, 8);
  assert.ok(a.embeddings.every((v) => v === 0));
  assert.deepEqual([...a.output], [...b.output]);
  assert.notDeepEqual([...a.output], [...c.output]);
  assert.ok(a.output.every((v) => Math.abs(v) <= 1 / 4));
  assert.equal(a.countUsedRows(), 0);
  assert.equal(a.predictTokensProba(["anything"]), 0.5);
});

Deno.test("LinearModel.trainStep() on a review without features trains only the bias", () => {
  const model = LinearModel.create({ dim: 4, buckets: 16, ngrams: 2 }, 1);
  const before = model.output.slice();
  const p = model.trainStep(new Int32Array(0), 0, 0, 1, 1);
  assert.equal(p, 0.5);
  assert.equal(model.bias, 0.5);
  assert.deepEqual([...model.output], [...before]);
  assert.equal(model.countUsedRows(), 0);
});

Deno.test("LinearModel.clone() is independent of the original", () => {
  const model = LinearModel.create({ dim: 4, buckets: 64, ngrams: 2 }, 1);
  model.trainTokens(["good"], 1, 0.5);
  const copy = model.clone();
  copy.trainTokens(["good"], 0, 5);
  assert.notEqual(copy.predictTokensProba(["good"]), model.predictTokensProba(["good"]));
  assert.equal(copy.history.examples, 2);
  assert.equal(model.history.examples, 1);
});

Deno.test("LinearModel rejects arrays that do not match its shape", () => {
  assert.throws(
    () =>
      new LinearModel({ dim: 4, buckets: 8, ngrams: 2 }, new Float32Array(31), new Float64Array(4), 0, {
        examples: 0,
        sessions: 0,
      }),
    RangeError,
  );
});

Deno.test("sigmoid() is bounded and symmetric; SeededRandom is deterministic and uniform-ish", () => {
  assert.equal(sigmoid(0), 0.5);
  assert.equal(sigmoid(1000), 1);
  assert.equal(sigmoid(-1000), 0);
  assert.ok(Math.abs(sigmoid(2) + sigmoid(-2) - 1) < 1e-15);
  const a = new SeededRandom(3);
  const b = new SeededRandom(3);
  const draws = Array.from({ length: 1000 }, () => a.next());
  assert.deepEqual(draws, Array.from({ length: 1000 }, () => b.next()));
  assert.ok(draws.every((x) => x >= 0 && x < 1));
  const mean = draws.reduce((s, x) => s + x, 0) / draws.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
});

/** A model with random weights everywhere, so that every feature has a contribution of its own. */
function randomModel(seed: number, ngrams: 1 | 2): LinearModel {
  const random = new SeededRandom(seed);
  const model = LinearModel.create({ dim: 6, buckets: 97, ngrams }, seed);
  for (let i = 0; i < model.embeddings.length; i++) model.embeddings[i] = 4 * random.next() - 2;
  for (let j = 0; j < model.output.length; j++) model.output[j] = 4 * random.next() - 2;
  model.bias = 2 * random.next() - 1;
  return model;
}

Deno.test("LinearModel.explainTokens() decomposes the logit exactly over the tokens and n-grams", () => {
  const token = fc.oneof(fc.constantFrom("good", "not_good", "bad", "!", "_lexpos_", ""), fc.string());
  fc.assert(
    fc.property(
      fc.integer(),
      fc.constantFrom(1 as const, 2 as const),
      fc.array(token, { maxLength: 40 }),
      (seed, ngrams, tokens) => {
        const model = randomModel(seed, ngrams);
        const { scale, bias, features } = model.explainTokens(tokens);
        const logit = model.logitTokens(tokens);
        const total = features.reduce((sum, f) => sum + f.contribution, bias);
        assert.equal(scale, "logit");
        assert.ok(Math.abs(total - logit) <= 1e-12 * (1 + Math.abs(logit)), `${total} vs ${logit}`);
        assert.equal(sigmoid(logit), model.predictTokensProba(tokens));
        // Exactly the features the model scores, in its order, each named by its tokens.
        const scored = new FeatureBuffer();
        featuresOfTokens(tokens, model.shape, scored);
        assert.equal(features.length, scored.length);
        for (const feature of features) {
          assert.ok(feature.tokens.length === 1 || (ngrams === 2 && feature.tokens.length === 2));
          assert.equal(feature.feature, feature.tokens.map((i) => tokens[i]).join(" "));
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("LinearModel.explainTokens() of a review without features is its bias alone", () => {
  const model = randomModel(3, 2);
  const explanation = model.explainTokens([]);
  assert.deepEqual(explanation.features, []);
  assert.equal(explanation.bias, model.logitTokens([]));
});
