import assert from "node:assert/strict";
import { SparseDataset, SparseDatasetBuilder } from "./sparse_dataset.ts";

Deno.test("SparseDatasetBuilder.finish() stores rows as CSR in SharedArrayBuffers", () => {
  const builder = new SparseDatasetBuilder(5);
  builder.addRow(new Uint32Array([0, 3]), 1);
  builder.addRow([], 0);
  builder.addRow([1, 2, 4], 1);
  assert.equal(builder.rows, 3);
  assert.equal(builder.nnz, 5);
  const data = builder.finish();
  assert.deepEqual([...data.rowPtr], [0, 2, 2, 5]);
  assert.deepEqual([...data.ids], [0, 3, 1, 2, 4]);
  assert.deepEqual([...data.labels], [1, 0, 1]);
  assert.deepEqual([...data.row(2)], [1, 2, 4]);
  assert.equal(data.countPositive(), 2);
  assert.ok(data.ids.buffer instanceof SharedArrayBuffer);
  assert.ok(data.labels.buffer instanceof SharedArrayBuffer);
});

Deno.test("SparseDataset.columns() lists each word's rows in ascending order", () => {
  const data = SparseDataset.fromRows(4, [[0, 2], [2, 3], [], [0, 2, 3]], [1, 0, 0, 1]);
  const { colPtr, colRows } = data.columns();
  const column = (f: number) => [...colRows.subarray(colPtr[f]!, colPtr[f + 1]!)];
  assert.deepEqual(column(0), [0, 3]);
  assert.deepEqual(column(1), []);
  assert.deepEqual(column(2), [0, 1, 3]);
  assert.deepEqual(column(3), [1, 3]);
  assert.equal(data.columns(), data.columns(), "the index is built once");
});

Deno.test("SparseDatasetBuilder.addRow() rejects unsorted, repeated or out-of-range ids and bad labels", () => {
  const builder = new SparseDatasetBuilder(3);
  assert.throws(() => builder.addRow([1, 0], 1), /ascending, unique/);
  assert.throws(() => builder.addRow([1, 1], 1), /ascending, unique/);
  assert.throws(() => builder.addRow([3], 1), /below 3/);
  assert.throws(() => builder.addRow([0.5], 1), /integers/);
  assert.throws(() => builder.addRow([0], 2), /label must be 0 or 1/);
  assert.throws(() => new SparseDatasetBuilder(0), RangeError);
});

Deno.test("SparseDatasetBuilder keeps rows intact across its internal chunk boundary", () => {
  const numFeatures = 5_000_000; // more ids than one 4M-id chunk
  const builder = new SparseDatasetBuilder(numFeatures);
  const big = new Uint32Array(numFeatures);
  for (let i = 0; i < numFeatures; i++) big[i] = i;
  builder.addRow([7], 0);
  builder.addRow(big, 1);
  builder.addRow([numFeatures - 1], 0);
  const data = builder.finish();
  assert.equal(data.nnz, numFeatures + 2);
  assert.deepEqual([...data.row(0)], [7]);
  const row = data.row(1);
  assert.equal(row.length, numFeatures);
  assert.equal(row[4_194_303], 4_194_303);
  assert.equal(row[4_194_304], 4_194_304);
  assert.equal(row[numFeatures - 1], numFeatures - 1);
  assert.deepEqual([...data.row(2)], [numFeatures - 1]);
});

Deno.test("SparseDataset.fromBuffers() shares memory instead of copying", () => {
  const data = SparseDataset.fromRows(3, [[0], [1, 2]], [0, 1]);
  data.columns();
  const copy = SparseDataset.fromBuffers(data.buffers());
  assert.deepEqual([...copy.row(1)], [1, 2]);
  data.labels[0] = 1; // visible through the other view: same SharedArrayBuffer
  assert.equal(copy.labels[0], 1);
  assert.deepEqual([...copy.columns().colRows], [...data.columns().colRows]);
});
