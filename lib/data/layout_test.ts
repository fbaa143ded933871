import assert from "node:assert/strict";
import { join } from "node:path";
import { scratchDir } from "../_testing.ts";
import { batchFileName, batchIndexOf, listBatchIndexes } from "./layout.ts";

Deno.test("batchFileName() and batchIndexOf() name a batch one way and read it back", () => {
  assert.equal(batchFileName(0), "train_batch_0.csv");
  assert.equal(batchFileName(12, ".tsv"), "train_batch_12.tsv");
  for (const index of [0, 1, 9, 10, 123456]) {
    assert.equal(batchIndexOf(batchFileName(index), ".csv"), index);
    assert.equal(batchIndexOf(batchFileName(index, ".tsv"), ".tsv"), index);
  }
  assert.equal(batchIndexOf("train_batch_3", ""), 3);
  assert.equal(batchIndexOf("train_batch_3.csv.partial", ".csv.partial"), 3);
  for (const name of ["train_batch_03.csv", "train_batch_.csv", "train_batch_3.tsv", "xtrain_batch_3.csv"]) {
    assert.equal(batchIndexOf(name, ".csv"), undefined, name);
  }
});

Deno.test("listBatchIndexes() lists the batch files of one extension, ascending, and none of a missing folder", async () => {
  await using dir = await scratchDir("layout-");
  for (const name of ["train_batch_10.tsv", "train_batch_2.tsv", "train_batch_2.csv", "test.tsv"]) {
    await Deno.writeTextFile(join(dir.path, name), "");
  }
  await Deno.mkdir(join(dir.path, "train_batch_5.tsv"));
  assert.deepEqual(await listBatchIndexes(dir.path, ".tsv"), [2, 10]);
  assert.deepEqual(await listBatchIndexes(dir.path, ".csv"), [2]);
  assert.deepEqual(await listBatchIndexes(join(dir.path, "missing"), ".csv"), []);
});
