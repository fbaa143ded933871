import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import fc from "fast-check";
import { PipelineError } from "../core/errors.ts";
import {
  formatProcessedLine,
  PROCESSED_FORMAT,
  processedCommand,
  processedMetaPath,
  processedRejectsPath,
  type ProcessedRow,
  ProcessedWriter,
  readProcessed,
  readProcessedMeta,
} from "./processed_data.ts";
import { tokenizerInfo } from "../features/tokenizer.ts";
import { collectProcessed, SCRATCH_ROOT, scratchDir } from "../_testing.ts";

const commitInfo = {
  source: "data/batches/train_batch_0.csv",
  sourceSha256: "ab".repeat(32),
  sourceBytes: 123,
  read: 0,
  rejected: 0,
  tokenizer: tokenizerInfo(),
};

Deno.test("formatProcessedLine() writes polarity, a tab and space-separated tokens", () => {
  assert.equal(formatProcessedLine(2, ["t:great", "not_bad", "!"]), "2\tt:great not_bad !\n");
  assert.equal(formatProcessedLine(1, []), "1\t\n");
});

Deno.test("formatProcessedLine() refuses tokens that would not read back unchanged", () => {
  const bad = [["a b"], ["a\tb"], ["a\nb"], ["a", ""], ["a", "", "b"], [""], [" a"], ["a\u00a0b"], [
    "a\u2028",
  ], ["x\r"]];
  for (const tokens of bad) {
    assert.throws(() => formatProcessedLine(2, tokens), RangeError, JSON.stringify(tokens));
  }
});

Deno.test("processedMetaPath() and processedRejectsPath() sit beside the .tsv", () => {
  assert.equal(processedMetaPath("data/processed/test.tsv"), "data/processed/test.meta.json");
  assert.equal(
    processedRejectsPath("data/processed/train_batch_2.tsv"),
    "data/processed/train_batch_2.rejects.csv",
  );
  assert.equal(processedCommand("data/processed/train_batch_12.tsv"), "deno task preprocess_batch 12");
  assert.equal(processedCommand("data/processed/test.meta.json"), "deno task preprocess_test");
});

Deno.test("ProcessedWriter and readProcessed() round-trip rows across chunk boundaries", async () => {
  await using dir = await scratchDir("processed-");
  const path = join(dir.path, "train_batch_0.tsv");
  // Long multi-byte rows, so lines and UTF-8 sequences straddle the reader's 64 KB chunks.
  const rows: ProcessedRow[] = Array.from({ length: 3000 }, (_, i) => ({
    polarity: i % 3 === 0 ? 1 : 2,
    tokens: i % 500 === 7
      ? []
      : Array.from({ length: (i % 40) + 1 }, (_, j) => `t:wörd${j}` + (j % 7 === 0 ? "😀日本" : "")),
  }));
  {
    await using out = await ProcessedWriter.create(path);
    for (const row of rows) {
      const pending = out.write(row.polarity, row.tokens);
      if (pending) await pending;
    }
    const meta = await out.commit({ ...commitInfo, read: 3005, rejected: 5 });
    assert.equal(meta.rows, 3000);
    assert.deepEqual(meta.labels, { "1": 1000, "2": 2000 });
    assert.equal(meta.read, meta.rows + meta.rejected);
  }
  assert.deepEqual(await collectProcessed(path), rows);
  const bytes = await Deno.readFile(path);
  assert.ok(bytes.length > 3 * (1 << 16), "spans several reader chunks");

  const meta = await readProcessedMeta(path);
  assert.equal(meta.format, PROCESSED_FORMAT);
  assert.equal(meta.source, commitInfo.source);
  assert.equal(meta.output.bytes, bytes.length);
  assert.equal(meta.output.sha256, createHash("sha256").update(bytes).digest("hex"));
  assert.deepEqual(meta.tokenizer, tokenizerInfo());
  assert.ok(!Number.isNaN(Date.parse(meta.created)));
});

Deno.test("ProcessedWriter.writeFormatted() counts labels of pre-formatted lines", async () => {
  await using dir = await scratchDir("processed-");
  const path = join(dir.path, "test.tsv");
  await using out = await ProcessedWriter.create(path);
  out.writeFormatted(formatProcessedLine(1, ["a"]) + formatProcessedLine(2, ["b", "c"]), { 1: 1, 2: 1 });
  out.write(2, ["d"]);
  const meta = await out.commit(commitInfo);
  assert.equal(meta.rows, 3);
  assert.deepEqual(meta.labels, { "1": 1, "2": 2 });
  assert.deepEqual(await collectProcessed(path), [
    { polarity: 1, tokens: ["a"] },
    { polarity: 2, tokens: ["b", "c"] },
    { polarity: 2, tokens: ["d"] },
  ]);
});

Deno.test("ProcessedWriter disposed without commit leaves no file behind", async () => {
  await using dir = await scratchDir("processed-");
  const path = join(dir.path, "test.tsv");
  {
    await using out = await ProcessedWriter.create(path);
    out.write(2, ["x"]);
  }
  const names = [];
  for await (const entry of Deno.readDir(dir.path)) names.push(entry.name);
  assert.deepEqual(names, []);
});

Deno.test("readProcessed() on a missing file names it and the command that makes it", async () => {
  await assert.rejects(
    () => collectProcessed("data/processed/train_batch_3.tsv.missing-for-test/train_batch_3.tsv"),
    (error: unknown) => {
      assert.ok(error instanceof PipelineError);
      assert.match(error.message, /train_batch_3\.tsv not found; run "deno task preprocess_batch 3" first$/);
      return true;
    },
  );
  await assert.rejects(
    () => readProcessedMeta(join(SCRATCH_ROOT, "nowhere", "test.tsv")),
    /test\.meta\.json not found; run "deno task preprocess_test" first/,
  );
});

Deno.test("readProcessed() rejects a malformed line with its number", async () => {
  await using dir = await scratchDir("processed-");
  const path = join(dir.path, "test.tsv");
  await Deno.writeTextFile(path, "2\ta b\n1\tc\n3\td\n");
  const seen: ProcessedRow[] = [];
  await assert.rejects(async () => {
    for await (const row of readProcessed(path)) seen.push(row);
  }, (error: unknown) => error instanceof PipelineError && /test\.tsv line 3 is not/.test(error.message));
  assert.equal(seen.length, 2);
  await Deno.writeTextFile(path, "2 a b\n");
  await assert.rejects(() => collectProcessed(path), /line 1 is not/);
});

Deno.test("readProcessed() refuses a file cut off in the middle of a line", async () => {
  await using dir = await scratchDir("processed-");
  const path = join(dir.path, "test.tsv");
  await Deno.writeTextFile(path, "2\ta b\n1\tc d");
  await assert.rejects(() => collectProcessed(path), /ends in the middle of line 2 \(truncated\?\)/);
});

Deno.test("readProcessed() stops when its signal is aborted", async () => {
  await using dir = await scratchDir("processed-");
  const path = join(dir.path, "test.tsv");
  await Deno.writeTextFile(path, "2\ta\n".repeat(10));
  const controller = new AbortController();
  controller.abort(new PipelineError("interrupted by SIGINT"));
  await assert.rejects(() => collectProcessed(path, { signal: controller.signal }), /interrupted by SIGINT/);
});

Deno.test("readProcessedMeta() rejects a file that is not a processed meta", async () => {
  await using dir = await scratchDir("processed-");
  const path = join(dir.path, "train_batch_1.tsv");
  await Deno.writeTextFile(processedMetaPath(path), "{not json");
  await assert.rejects(
    () => readProcessedMeta(path),
    /is not valid JSON; rerun "deno task preprocess_batch 1 --force"/,
  );
  await Deno.writeTextFile(processedMetaPath(path), '{"format":"other"}');
  await assert.rejects(() => readProcessedMeta(path), /is not a processed-tsv\/1 meta file/);
});

Deno.test("ProcessedWriter and readProcessed() round-trip any whitespace-free tokens", async () => {
  await using dir = await scratchDir("processed-");
  const path = join(dir.path, "test.tsv");
  const token = fc.string({ unit: "grapheme", minLength: 1, maxLength: 12 }).filter((t) => !/\s/.test(t));
  const row = fc.record({
    polarity: fc.constantFrom<1 | 2>(1, 2),
    tokens: fc.array(token, { maxLength: 20 }),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(row, { maxLength: 50 }), async (generated) => {
      const rows = generated.map((r) => ({ polarity: r.polarity, tokens: r.tokens }));
      const out = await ProcessedWriter.create(path);
      for (const r of rows) out.write(r.polarity, r.tokens);
      await out.commit(commitInfo);
      assert.deepEqual(await collectProcessed(path), rows);
    }),
    { numRuns: 60 },
  );
});
