import { strict as assert } from "node:assert";
import { tempDir, toyReviews, writeToyBatches } from "./_toy_data.ts";
import { runLinearTrial, runLinearTrialInWorker } from "./trial.ts";
import { resolveLinearParams } from "./trainer.ts";

const params = resolveLinearParams({ dim: 4, buckets: 1 << 12, epochs: 5, learningRate: 0.5 });
const holdout = { fraction: 0.25, seed: 1 };

Deno.test("runLinearTrialInWorker() gives exactly the result of runLinearTrial() in this thread", async () => {
  await using dir = await tempDir();
  const files = await writeToyBatches(dir.path, toyReviews(400, 2, 0.1), 200);
  const here = await runLinearTrial({ files, params, holdout });
  const there = await runLinearTrialInWorker({ files, params, holdout });
  assert.deepEqual(there.validation, here.validation);
  assert.deepEqual(there.engineBytes, here.engineBytes);
  assert.ok(here.validation.rows > 50 && here.validation.rows < 150, `rows ${here.validation.rows}`);
  assert.ok(here.validation.accuracy > 0.8);
  assert.equal(here.rows + here.validation.rows, 400);
});

Deno.test("runLinearTrialInWorker() rejects with the worker's PipelineError, one line", async () => {
  await using dir = await tempDir();
  const files = [{ path: `${dir.path}/missing.tsv`, rows: 10, key: 0 }];
  await assert.rejects(runLinearTrialInWorker({ files, params, holdout }), (error: unknown) => {
    assert.ok(error instanceof Error && error.name === "PipelineError", String(error));
    assert.match(error.message, /missing\.tsv is missing/);
    return true;
  });
});

Deno.test("runLinearTrialInWorker() stops the worker when aborted", async () => {
  await using dir = await tempDir();
  const files = await writeToyBatches(dir.path, toyReviews(200, 2), 200);
  const controller = new AbortController();
  const running = runLinearTrialInWorker(
    { files, params: { ...params, epochs: 1000 }, holdout },
    controller.signal,
  );
  setTimeout(() => controller.abort(new Error("cancelled")), 50);
  await assert.rejects(running, /cancelled/);
});

Deno.test("runLinearTrialInWorker() forwards the worker's progress", async () => {
  await using dir = await tempDir();
  const files = await writeToyBatches(dir.path, toyReviews(300, 2), 100);
  const seen: number[] = [];
  await runLinearTrialInWorker(
    { files, params: { ...params, shuffleRows: 50 }, holdout },
    undefined,
    (p) => seen.push(p.done),
  );
  assert.ok(seen.length >= 5 * 4, `progress reports: ${seen.length}`);
  assert.deepEqual(seen, [...seen].sort((a, b) => a - b), "done only grows");
});
