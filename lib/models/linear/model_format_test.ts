import { strict as assert } from "node:assert";
import { toyReviews } from "./_toy_data.ts";
import { HASH_FUNCTION } from "./hashing.ts";
import { bucketScoresOf, LinearModel } from "./model.ts";
import { deserializeLinear, LINEAR_ENGINE_NAME, serializeLinear } from "./model_format.ts";

function trainedModel(): LinearModel {
  const model = LinearModel.create({ dim: 6, buckets: 1 << 16, ngrams: 2 }, 5);
  for (const r of toyReviews(300, 9, 0.1)) model.trainTokens(r.tokens, r.label, 0.3);
  return model;
}

function assertPipelineError(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof Error && error.name === "PipelineError", String(error));
    assert.match(error.message, message);
    assert.ok(!error.message.includes("\n"), "one line");
    return true;
  });
}

Deno.test("serializeLinear() and deserializeLinear() round-trip a model exactly", () => {
  const model = trainedModel();
  const bytes = serializeLinear(model);
  const copy = deserializeLinear(bytes);
  assert.deepEqual(copy.shape, model.shape);
  assert.deepEqual(copy.embeddings, model.embeddings);
  assert.deepEqual([...copy.output], [...model.output]);
  assert.equal(copy.bias, model.bias);
  assert.deepEqual(copy.history, model.history);
  for (const r of toyReviews(50, 10, 0.2)) {
    assert.equal(copy.predictTokensProba(r.tokens), model.predictTokensProba(r.tokens));
  }
  // Same model, same bytes: the file holds no timestamp.
  assert.deepEqual(serializeLinear(copy), bytes);
});

Deno.test("deserializeLinear() computes the bucket scores from the stored rows, as the whole table gives them", () => {
  const model = trainedModel();
  const copy = deserializeLinear(serializeLinear(model));
  const dense = bucketScoresOf(copy.shape, copy.embeddings, copy.output);
  assert.deepEqual(copy.bucketScores(), dense);
  assert.deepEqual(copy.bucketScores(), model.bucketScores());
  assert.ok(dense.some((score) => score !== 0), "a trained model scores some buckets");
});

Deno.test("serializeLinear() stores only the embedding rows that training touched", () => {
  const model = trainedModel();
  const used = model.countUsedRows();
  assert.ok(used > 0 && used < 1000, `used ${used}`);
  const bytes = serializeLinear(model);
  assert.ok(bytes.length < 100 + 2000 + used * (4 + 6 * 4), `bytes ${bytes.length}`);
  assert.ok(bytes.length < model.embeddings.byteLength / 10);
});

Deno.test("deserializeLinear() reads a model from an unaligned view of a larger buffer", () => {
  const bytes = serializeLinear(trainedModel());
  const padded = new Uint8Array(bytes.length + 3);
  padded.set(bytes, 1);
  const copy = deserializeLinear(padded.subarray(1, 1 + bytes.length));
  assert.equal(copy.predictTokensProba(["great"]), deserializeLinear(bytes).predictTokensProba(["great"]));
});

Deno.test("deserializeLinear() refuses foreign, truncated, corrupt or incompatible files with one line", () => {
  const bytes = serializeLinear(trainedModel());
  const headerLength = new DataView(bytes.buffer).getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + headerLength)));
  const withHeader = (edit: (h: Record<string, unknown>) => void): Uint8Array => {
    const h = structuredClone(header);
    edit(h);
    // Keep the header length, so the data offsets stay where they are.
    const text = JSON.stringify(h).padEnd(headerLength, " ");
    const copy = bytes.slice();
    copy.set(new TextEncoder().encode(text), 12);
    return copy;
  };
  assertPipelineError(() => deserializeLinear(bytes.subarray(0, 5)), /truncated \(5 bytes\)/);
  assertPipelineError(
    () => deserializeLinear(new TextEncoder().encode("SPFOREST........")),
    /not a hashed-linear/,
  );
  assertPipelineError(
    () => deserializeLinear(bytes.subarray(0, bytes.length - 4)),
    /has \d+ bytes but its header describes/,
  );
  assertPipelineError(() => deserializeLinear(bytes.subarray(0, 20)), /truncated inside its header/);
  assertPipelineError(
    () => deserializeLinear(withHeader((h) => h.format_version = 3)),
    /hashed-linear format version 3 is not supported by this build \(supports 1, 2\)/,
  );
  assertPipelineError(
    () => deserializeLinear(withHeader((h) => h.hash = "md5")),
    new RegExp(`"md5", this build with "${HASH_FUNCTION.replaceAll("/", "\\/")}"; retrain`),
  );
  assertPipelineError(() => deserializeLinear(withHeader((h) => h.format = "other")), /format is "other"/);
  assertPipelineError(() => deserializeLinear(withHeader((h) => h.dim = 0)), /corrupt: dim is 0/);
  assertPipelineError(
    () => deserializeLinear(withHeader((h) => h.output = [1])),
    /corrupt: output layer size/,
  );
  assert.equal(header.format, LINEAR_ENGINE_NAME);
});
