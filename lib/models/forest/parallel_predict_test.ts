import assert from "node:assert/strict";
import { synthetic } from "./_synthetic.ts";
import { trainForest } from "./forest.ts";
import { deserializeForest, serializeForest } from "./model_format.ts";
import { predictInWorkers } from "./parallel_predict.ts";

const train = synthetic({ rows: 1500, numFeatures: 40, seed: 41, flip: 0.1 });
const test = synthetic({ rows: 1000, numFeatures: 40, seed: 42, flip: 0.1 });
const forest = await trainForest(train.dataset, { trees: 20 }, { workers: 0 });

Deno.test("predictInWorkers() equals predictProbaBatch() bit for bit and reports progress", async () => {
  const expected = forest.predictProbaBatch(test.dataset);
  const progress: number[] = [];
  const got = await predictInWorkers(forest, test.dataset, {
    workers: 2,
    chunkRows: 64,
    onProgress: (done) => progress.push(done),
  });
  assert.deepEqual(got, expected);
  assert.ok(!(got.buffer instanceof SharedArrayBuffer), "the result is a plain array");
  assert.equal(progress.length, Math.ceil(1000 / 64));
  assert.equal(progress.at(-1), 1000);
  // A loaded model scores the same, and one worker means the calling thread.
  const loaded = deserializeForest(serializeForest(forest));
  assert.deepEqual(await predictInWorkers(loaded, test.dataset, { workers: 1 }), expected);
});

Deno.test("predictInWorkers() rejects with the abort reason and stops its workers", async () => {
  const controller = new AbortController();
  const reason = new Error("stop scoring");
  await assert.rejects(
    predictInWorkers(forest, test.dataset, {
      workers: 2,
      chunkRows: 10,
      signal: controller.signal,
      onProgress: (done) => done >= 50 && controller.abort(reason),
    }),
    (error) => error === reason,
  );
});
