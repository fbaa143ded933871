/**
 * The linear engine inside the project's model artifact: built by `buildModelFiles` without a
 * vocabulary, loaded by `loadModel` through the engine list, scoring raw reviews through the tokenizer.
 */
import { strict as assert } from "node:assert";
import { ENGINES, FOREST_ENGINE, LINEAR_ENGINE } from "../engines.ts";
import { buildModelFiles, isTokenScoringEngine, loadModel } from "../artifact.ts";
import { tokenizeReview } from "../../features/tokenizer.ts";
import { LinearModel } from "./model.ts";
import { deserializeLinear, LINEAR_ENGINE_NAME, serializeLinear } from "./model_format.ts";

function trainedFiles(): Map<string, Uint8Array> {
  const model = LinearModel.create({ dim: 4, buckets: 1 << 12, ngrams: 2 }, 1);
  const reviews = [
    { title: "Great", text: "Works great, love it", label: 1 as const },
    { title: "Awful", text: "Broke after a day, junk", label: 0 as const },
  ];
  for (let i = 0; i < 200; i++) {
    for (const r of reviews) model.trainTokens(tokenizeReview(r), r.label, 0.5);
  }
  return buildModelFiles({
    engineName: LINEAR_ENGINE_NAME,
    engineBytes: serializeLinear(model),
    appVersion: "0.0.0-test",
  });
}

Deno.test("loadModel() loads a linear artifact, which has no vocabulary.json, from the engine list", () => {
  const files = trainedFiles();
  assert.deepEqual([...files.keys()].sort(), ["MLmodel", "engine.bin", "model.json"]);
  const mlmodel = new TextDecoder().decode(files.get("MLmodel"));
  assert.match(mlmodel, /engine: hashed-linear/);
  assert.doesNotMatch(mlmodel, /vocabulary/);
  const model = loadModel(files, ENGINES);
  assert.equal(model.manifest.engine, LINEAR_ENGINE_NAME);
  assert.equal(model.vectorizer, undefined);
  assert.ok(isTokenScoringEngine(model.engine));
  assert.ok(model.engine instanceof LinearModel);
  assert.equal(model.predict({ title: "Great", text: "love it" }).label, "positive");
  const negative = model.predict({ title: "Awful", text: "junk" });
  assert.equal(negative.label, "negative");
  assert.equal(negative.polarity, 1);
  assert.ok(negative.probability > 0.5 && negative.positiveProbability < 0.5);
});

Deno.test("loadModel() refuses a vocabulary engine whose artifact has no vocabulary.json", () => {
  const files = trainedFiles();
  const manifest = JSON.parse(new TextDecoder().decode(files.get("model.json")));
  manifest.engine = FOREST_ENGINE.name;
  files.set("model.json", new TextEncoder().encode(JSON.stringify(manifest)));
  const fakeForest = { name: FOREST_ENGINE.name, decode: () => ({ predictProba: () => 1 }) };
  assert.throws(
    () => loadModel(files, [fakeForest, LINEAR_ENGINE]),
    /model artifact is missing vocabulary\.json, which engine "sparse-forest" needs/,
  );
});

Deno.test("a model saved before pooling was a setting (format 1) scores exactly as it did, and keeps its pooling", async () => {
  // Written by the build before √n pooling and naive-Bayes weighting, with its defaults then (mean pooling);
  // expected.json holds the probabilities that build gave.
  const dir = new URL("./testdata/format1_model/", import.meta.url);
  const files = new Map<string, Uint8Array>();
  for (const name of ["MLmodel", "model.json", "engine.bin"]) {
    files.set(name, await Deno.readFile(new URL(name, dir)));
  }
  const expected: { title: string; text: string; positive_probability: number }[] = JSON.parse(
    await Deno.readTextFile(new URL("expected.json", dir)),
  );
  const engine = files.get("engine.bin")!;
  const headerLength = new DataView(engine.buffer, engine.byteOffset).getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(engine.subarray(12, 12 + headerLength)));
  assert.equal(header.format_version, 1);
  assert.equal(header.pooling, undefined, "format 1 has no pooling field");
  const model = loadModel(files, ENGINES);
  assert.ok(model.engine instanceof LinearModel);
  assert.equal(model.engine.shape.pooling, "mean");
  // The same probabilities up to the rounding of the last bit or two: serving sums per-bucket scores
  // (output · row, computed once at load) where that build summed the rows first, the same arithmetic in
  // another order. A change of pooling or of any default would be off by far more.
  const same = (actual: number, recorded: number, what: string) =>
    assert.ok(Math.abs(actual - recorded) <= 1e-15, `${what}: ${actual} vs ${recorded}`);
  for (const review of expected) {
    same(model.predict(review).positiveProbability, review.positive_probability, review.text);
  }
  // Saved again by this build it becomes format 2 with its pooling recorded, and scores the same.
  const again = deserializeLinear(serializeLinear(model.engine));
  assert.equal(again.shape.pooling, "mean");
  for (const review of expected) {
    same(
      again.predictTokensProba(model.tokenizer.tokenizeReview(review)),
      review.positive_probability,
      "again",
    );
  }
});
