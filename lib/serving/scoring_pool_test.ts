import assert from "node:assert/strict";
import { loadModel } from "../models/artifact.ts";
import { ENGINES } from "../models/engines.ts";
import { linearModelFiles } from "./_linear_model.ts";
import { ScoringPool } from "./scoring_pool.ts";

const REVIEWS = Array.from({ length: 101 }, (_, i) => ({
  title: i % 3 === 0 ? "Great" : "Awful",
  text: `${i % 2 === 0 ? "love it" : "junk"} review number ${i}`,
}));

Deno.test("ScoringPool scores a batch across threads exactly as the model does, in order", async () => {
  using pool = new ScoringPool({ workers: 2, minBatch: 8 });
  const files = linearModelFiles();
  const model = loadModel(files, ENGINES);
  const predictor = await pool.prepare(files, model);
  assert.deepEqual(await predictor.predictBatch(REVIEWS), REVIEWS.map((review) => model.predict(review)));
  assert.deepEqual(
    await predictor.predictBatch(REVIEWS.slice(0, 3)),
    REVIEWS.slice(0, 3).map((r) => model.predict(r)),
  );
  assert.deepEqual(predictor.predict(REVIEWS[0]!), model.predict(REVIEWS[0]!));
});

Deno.test("ScoringPool keeps the previous model for requests that started before a reload, and falls back after", async () => {
  using pool = new ScoringPool({ workers: 1, minBatch: 2 });
  const filesA = linearModelFiles();
  const filesB = linearModelFiles(true);
  const modelA = loadModel(filesA, ENGINES);
  const modelB = loadModel(filesB, ENGINES);
  const a = await pool.prepare(filesA, modelA);
  const b = await pool.prepare(filesB, modelB);
  assert.deepEqual(
    await a.predictBatch(REVIEWS),
    REVIEWS.map((r) => modelA.predict(r)),
    "the previous model",
  );
  assert.deepEqual(await b.predictBatch(REVIEWS), REVIEWS.map((r) => modelB.predict(r)), "the current one");
  // A third load drops A from the workers: A's batches are then scored on this thread, same answers.
  await pool.prepare(filesB, modelB);
  assert.deepEqual(await a.predictBatch(REVIEWS), REVIEWS.map((r) => modelA.predict(r)));
});

Deno.test("ScoringPool with no workers scores on the calling thread", async () => {
  using pool = new ScoringPool({ workers: 0 });
  const files = linearModelFiles();
  const model = loadModel(files, ENGINES);
  const predictor = await pool.prepare(files, model);
  assert.equal(pool.size, 0);
  assert.deepEqual(await predictor.predictBatch(REVIEWS), REVIEWS.map((r) => model.predict(r)));
});

Deno.test("ScoringPool.prepare() fails when the workers cannot load the files", async () => {
  using pool = new ScoringPool({ workers: 1 });
  const files = linearModelFiles();
  const model = loadModel(files, ENGINES);
  const damaged = new Map(files);
  damaged.set("engine.bin", files.get("engine.bin")!.slice(0, 10));
  await assert.rejects(
    pool.prepare(damaged, model),
    /a scoring worker could not load the model: model artifact file engine.bin fails its checksum/,
  );
});
