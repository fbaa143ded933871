import assert from "node:assert/strict";
import { join } from "node:path";
import { type BatchManifest, readManifest, splitBatches } from "./batches.ts";
import { formatReviewLine } from "./csv.ts";
import { readProcessedMeta } from "./processed_data.ts";
import { generateReviews } from "./sample_data.ts";
import { describeBatches, retireProcessedBatches, splitMismatch } from "./split_membership.ts";
import { preprocessFile } from "../features/preprocess.ts";
import { scratchDir } from "../_testing.ts";
import { acquireLock } from "../core/lock.ts";

/** Splits `rows` generated reviews into batches of `batchSize` in `dir/batches`; returns the manifest. */
async function split(dir: string, rows: number, batchSize: number, seed = 1): Promise<BatchManifest> {
  const input = join(dir, "train.csv");
  await Deno.writeTextFile(input, [...generateReviews({ rows, seed })].map(formatReviewLine).join(""));
  await splitBatches({ input, outputDir: join(dir, "batches"), batchSize });
  return (await readManifest(join(dir, "batches")))!;
}

/** Preprocesses every batch of `manifest` into `dir/processed`, recording the split as preprocess_batch does. */
async function preprocessAll(dir: string, manifest: BatchManifest): Promise<void> {
  for (const batch of manifest.batches) {
    await preprocessFile({
      source: join(dir, "batches", batch.file),
      output: join(dir, "processed", `train_batch_${batch.index}.tsv`),
      expectedSha256: batch.sha256,
      split: { sourceSha256: manifest.source.sha256, index: batch.index },
      workers: 0,
      progress: "off",
    });
  }
}

async function names(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) found.push(entry.name);
  return found.sort();
}

Deno.test("splitMismatch() accepts a batch of the current split and says why any other is not", async () => {
  await using scratch = await scratchDir("split-membership-");
  const dir = scratch.path;
  const manifest = await split(dir, 300, 100);
  await preprocessAll(dir, manifest);
  const meta = await readProcessedMeta(join(dir, "processed", "train_batch_1.tsv"));
  assert.equal(splitMismatch(1, meta, manifest), undefined);

  const { split: _split, ...noSplit } = meta;
  assert.match(splitMismatch(1, noSplit, manifest)!, /records no split/);
  const otherInput = { ...meta, split: { sourceSha256: "f".repeat(64), index: 1 } };
  assert.match(splitMismatch(1, otherInput, manifest)!, /split of another input \(sha256 ffffffffffff…/);
  assert.equal(splitMismatch(7, meta, manifest), "the current split has only batches 0-2");
  assert.match(splitMismatch(2, meta, manifest)!, /source batch differs .*other batch boundaries/);
  const otherBytes = { ...meta, sourceSha256: "0".repeat(64) };
  assert.match(splitMismatch(1, otherBytes, manifest)!, /source batch differs/);
});

Deno.test("retireProcessedBatches() deletes the processed batches of an older split and keeps identical ones", async () => {
  await using scratch = await scratchDir("split-membership-");
  const dir = scratch.path;
  const processed = join(dir, "processed");
  await preprocessAll(dir, await split(dir, 300, 100));
  await Deno.writeTextFile(join(processed, "test.tsv"), "");
  await Deno.writeTextFile(join(processed, "train_batch_9.rejects.csv"), "line,reason,raw\n"); // an orphan

  // The same input split again the same way: every processed batch still belongs.
  const same = await split(dir, 300, 100);
  const kept = await retireProcessedBatches(processed, same);
  assert.deepEqual(kept.indexes, [9]);
  assert.equal(kept.reasons.get(9), "its .tsv is missing");

  // Other boundaries of the same input: batches 0-2 differ (1 and 2 would be train_batch_1, _2 of 150 rows).
  // Batch 1 is being rewritten by a preprocess run (it holds the batch's lock): it is left alone.
  const other = await split(dir, 300, 150);
  {
    await using _writer = await acquireLock(join(processed, "train_batch_1.tsv.lock"), {
      stage: "preprocess",
      what: "train_batch_1.tsv",
    });
    const busy = await retireProcessedBatches(processed, other);
    assert.deepEqual(busy.indexes, [0, 2]);
    assert.match(busy.busy.get(1)!, /^preprocess \(pid \d+/);
  }
  await preprocessAll(dir, await split(dir, 300, 100)); // back to three batches of the first split
  const retired = await retireProcessedBatches(processed, await split(dir, 300, 150));
  assert.deepEqual(retired.indexes, [0, 1, 2]);
  assert.equal(retired.reasons.get(2), "the current split has only batches 0, 1");
  assert.deepEqual(await names(processed), ["test.tsv"]);
  assert.deepEqual(retired.files.slice(0, 3), [
    "train_batch_0.tsv",
    "train_batch_0.meta.json",
    "train_batch_0.rejects.csv",
  ]);

  assert.deepEqual(await retireProcessedBatches(join(dir, "missing"), other), {
    indexes: [],
    files: [],
    reasons: new Map(),
    busy: new Map(),
  });
});

Deno.test("describeBatches() names one batch, a list, or a run of batches", () => {
  assert.equal(describeBatches([3]), "batch 3");
  assert.equal(describeBatches([2, 0]), "batches 0, 2");
  assert.equal(describeBatches([0, 1]), "batches 0, 1");
  assert.equal(describeBatches([0, 1, 2, 3]), "batches 0-3");
  assert.equal(describeBatches([]), "no batches");
});
