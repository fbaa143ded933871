import { strict as assert } from "node:assert";
import fc from "fast-check";
import { toyReviews } from "./_toy_data.ts";
import { FeatureBuffer, featuresOfTokens } from "./hashing.ts";
import { LinearModel, type Pooling, POOLINGS, poolingScale, SeededRandom, sigmoid } from "./model.ts";

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
function randomModel(seed: number, ngrams: 1 | 2, pooling: Pooling = "mean"): LinearModel {
  const random = new SeededRandom(seed);
  const model = LinearModel.create({ dim: 6, buckets: 97, ngrams, pooling }, seed);
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
      fc.constantFrom(...POOLINGS),
      (seed, ngrams, tokens, pooling) => {
        const model = randomModel(seed, ngrams, pooling);
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

Deno.test("√n pooling divides the summed embeddings by √n: a repeated word counts more than under the mean", () => {
  const shape = { dim: 4, buckets: 1 << 10, ngrams: 1 as const };
  const mean = LinearModel.create({ ...shape, pooling: "mean" }, 1);
  const sqrt = LinearModel.create({ ...shape, pooling: "sqrt" }, 1);
  assert.equal(LinearModel.create(shape, 1).shape.pooling, "mean", "absent = mean, as models saved before");
  for (let i = 0; i < 50; i++) {
    for (const model of [mean, sqrt]) {
      model.trainTokens(["good"], 1, 0.2);
      model.trainTokens(["bad"], 0, 0.2);
    }
  }
  const margin = (model: LinearModel, tokens: string[]) => model.predictTokensProba(tokens) - 0.5;
  assert.ok(Math.abs(margin(mean, ["good", "good", "good", "good"]) - margin(mean, ["good"])) < 1e-9);
  assert.ok(margin(sqrt, ["good", "good", "good", "good"]) > margin(sqrt, ["good"]) + 0.01);
  assert.equal(poolingScale("sqrt", 4), 0.5);
  assert.equal(poolingScale("mean", 4), 0.25);
  assert.equal(poolingScale("sqrt", 0), 0);
  assert.throws(
    () => LinearModel.create({ ...shape, pooling: "max" as "mean" }, 1),
    /pooling must be one of mean, sqrt, got max/,
  );
});

Deno.test("trainStep() with a per-bucket rate scale s² trains the model whose inputs are scaled by s", () => {
  // NB-SVM scales each feature's input by s; the trainer scales each bucket's learning rate by s² instead,
  // so that the saved model needs no s. Checked against a direct implementation of the scaled-input model.
  const dim = 3;
  const buckets = 8;
  const s = Float64Array.from({ length: buckets }, (_, b) => 0.3 + 0.4 * b);
  const rateScale = Float32Array.from(s, (v) => v * v);
  const model = LinearModel.create({ dim, buckets, ngrams: 1, pooling: "sqrt" }, 9);
  // The reference: embeddings e (model's = s · e), same initial output weights and bias.
  const e = new Float64Array(buckets * dim);
  const w = Float64Array.from(model.output);
  let bias = 0;
  const random = new SeededRandom(2);
  for (let step = 0; step < 300; step++) {
    const count = 1 + random.below(5);
    const ids = Int32Array.from({ length: count }, () => random.below(buckets));
    const label = (ids[0]! % 2) as 0 | 1;
    const scale = 1 / Math.sqrt(count);
    const hidden = new Float64Array(dim);
    for (const id of ids) for (let j = 0; j < dim; j++) hidden[j]! += scale * s[id]! * e[id * dim + j]!;
    let z = bias;
    for (let j = 0; j < dim; j++) z += w[j]! * hidden[j]!;
    const g = 0.2 * (label - sigmoid(z));
    bias += g;
    const gradient = Float64Array.from(w, (wj) => g * wj * scale);
    for (let j = 0; j < dim; j++) w[j]! += g * hidden[j]!;
    for (const id of ids) for (let j = 0; j < dim; j++) e[id * dim + j]! += s[id]! * gradient[j]!;
    model.trainStep(ids, 0, count, label, 0.2, rateScale);
  }
  assert.ok(Math.abs(model.bias - bias) < 1e-5);
  for (let b = 0; b < buckets; b++) {
    for (let j = 0; j < dim; j++) {
      assert.ok(Math.abs(model.embeddings[b * dim + j]! - s[b]! * e[b * dim + j]!) < 1e-4, `bucket ${b}`);
    }
  }
});

Deno.test("LinearModel scores tokens from its bucket scores as the training pass does, also after more training", () => {
  const token = fc.oneof(fc.constantFrom("good", "not_good", "bad", "!", "_lexpos_", ""), fc.string());
  fc.assert(
    fc.property(
      fc.integer(),
      fc.constantFrom(1 as const, 2 as const),
      fc.constantFrom<Pooling>(...POOLINGS),
      fc.array(fc.array(token, { maxLength: 40 }), { minLength: 1, maxLength: 5 }),
      (seed, ngrams, pooling, reviews) => {
        const model = randomModel(seed, ngrams, pooling);
        const features = new FeatureBuffer();
        for (const [i, tokens] of reviews.entries()) {
          featuresOfTokens(tokens, model.shape, features);
          // logitIds is the forward pass training uses (pooled rows, then the output layer); the token
          // paths sum per-bucket scores instead. A change to pooling must change both.
          const forward = model.logitIds(features.ids, 0, features.length);
          const logit = model.logitTokens(tokens);
          assert.ok(Math.abs(forward - logit) <= 1e-12 * (1 + Math.abs(forward)), `${forward} vs ${logit}`);
          assert.equal(model.predictTokensProba(tokens), sigmoid(logit));
          // Training moves the weights: the scores must follow.
          model.trainStep(features.ids, 0, features.length, (i % 2) as 0 | 1, 0.5);
        }
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("LinearModel.bucketScores() are the rows' dot products with the output weights, handed over intact", () => {
  const model = randomModel(11, 2);
  const scores = model.bucketScores();
  for (const bucket of [0, 1, 50, 96]) {
    let dot = 0;
    for (let j = 0; j < model.shape.dim; j++) dot += model.output[j]! * model.embeddings[bucket * 6 + j]!;
    assert.equal(scores[bucket], dot);
  }
  const copy = new LinearModel(
    model.shape,
    model.embeddings,
    model.output,
    model.bias,
    model.history,
    scores,
  );
  assert.equal(copy.bucketScores(), scores, "not computed again");
  assert.equal(copy.logitTokens(["good", "bad"]), model.logitTokens(["good", "bad"]));
  assert.throws(
    () => new LinearModel(model.shape, model.embeddings, model.output, 0, model.history, new Float64Array(3)),
    RangeError,
  );
  assert.deepEqual(model.clone().bucketScores(), scores);
});
