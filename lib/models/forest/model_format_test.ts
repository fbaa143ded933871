import assert from "node:assert/strict";
import { PipelineError } from "../../core/errors.ts";
import { synthetic } from "./_synthetic.ts";
import { trainForest } from "./forest.ts";
import { deserializeForest, MODEL_FORMAT_VERSION, readModelHeader, serializeForest } from "./model_format.ts";

const train = synthetic({ rows: 800, numFeatures: 40, seed: 21, flip: 0.1 });
const test = synthetic({ rows: 300, numFeatures: 40, seed: 22, flip: 0.1 });
const forest = await trainForest(train.dataset, { trees: 15, seed: 3 }, { workers: 0 });
const bytes = serializeForest(forest);

/** Rewrites the JSON header of a model file (keeping the arrays where the header says they are). */
function withHeader(edit: (header: Record<string, unknown>) => void): Uint8Array {
  const length = new DataView(bytes.buffer).getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + length)));
  edit(header);
  // Pad with spaces to the same length so that the array offsets stay valid.
  const text = JSON.stringify(header);
  assert.ok(text.length <= length, "edited header must not grow");
  const copy = bytes.slice();
  copy.set(new TextEncoder().encode(text.padEnd(length, " ")), 12);
  return copy;
}

Deno.test("deserializeForest() round-trips a forest: same predictions, same stats, same bytes", () => {
  const loaded = deserializeForest(bytes);
  assert.deepEqual(loaded.predictProbaBatch(test.dataset), forest.predictProbaBatch(test.dataset));
  assert.deepEqual(loaded.stats, forest.stats);
  assert.deepEqual(loaded.params, forest.params);
  assert.equal(loaded.oobAccuracy, forest.oobAccuracy);
  assert.deepEqual(loaded.featureImportances(), forest.featureImportances());
  assert.deepEqual(serializeForest(loaded), bytes);
  const header = readModelHeader(bytes);
  assert.equal(header.format, "sparse-forest");
  assert.equal(header.format_version, MODEL_FORMAT_VERSION);
});

Deno.test("deserializeForest() works on bytes at an unaligned offset (copies what it must)", () => {
  const shifted = new Uint8Array(bytes.length + 1);
  shifted.set(bytes, 1);
  const loaded = deserializeForest(shifted.subarray(1));
  assert.deepEqual(loaded.predictProbaBatch(test.dataset), forest.predictProbaBatch(test.dataset));
});

Deno.test("deserializeForest() refuses a format version it does not know", () => {
  const future = withHeader((h) => (h.format_version = 9));
  assert.throws(() => deserializeForest(future), (error) => {
    assert.ok(error instanceof PipelineError);
    assert.equal(
      error.message,
      "model format version 9 is not supported by this build (supports 1); retrain or upgrade",
    );
    return true;
  });
});

Deno.test("deserializeForest() refuses truncated bytes wherever the cut is", () => {
  for (const length of [0, 5, 11, 12, 40, Math.floor(bytes.length / 2), bytes.length - 1]) {
    assert.throws(() => deserializeForest(bytes.subarray(0, length)), (error) => {
      assert.ok(error instanceof PipelineError, `length ${length}: ${error}`);
      assert.match(error.message, /truncated/);
      assert.ok(!error.message.includes("\n"));
      return true;
    });
  }
});

Deno.test("deserializeForest() refuses foreign and corrupt files with one-line messages", () => {
  const foreign = new TextEncoder().encode('{"model": "something else", "padding": "..........."}');
  assert.throws(() => deserializeForest(foreign), {
    name: "PipelineError",
    message: /not a sparse-forest model/,
  });
  assert.throws(
    () => deserializeForest(withHeader((h) => (h.format = "random-forest"))),
    { name: "PipelineError", message: /format is "random-forest", expected "sparse-forest"/ },
  );
  // A node pointing outside its tree must not load: prediction would walk off the arrays.
  const header = readModelHeader(bytes);
  const broken = bytes.slice();
  const nodes = new Int32Array(broken.buffer, header.arrays.nodes.offset, header.arrays.nodes.length);
  const internal = nodes.findIndex((f, k) => k % 2 === 0 && f >= 0);
  nodes[internal + 1] = 1_000_000_000;
  assert.throws(() => deserializeForest(broken), { name: "PipelineError", message: /corrupt: node/ });
  const badParams = withHeader((h) => ((h.params as Record<string, unknown>).trees = -1));
  assert.throws(() => deserializeForest(badParams), { name: "PipelineError", message: /corrupt/ });
});
