import { scratchDir } from "../_testing.ts";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import {
  type BatchManifest,
  MANIFEST_FILE,
  readManifest,
  REJECTS_FILE,
  scanFile,
  splitBatches,
} from "./batches.ts";
import { batchFileName } from "./layout.ts";
import { formatReviewLine } from "./csv.ts";
import { PipelineError } from "../core/errors.ts";
import { generateReviews } from "./sample_data.ts";

/** A scratch folder with `input.csv` and an output folder `out/`. */
async function scratch(): Promise<{ dir: string; input: string; out: string } & AsyncDisposable> {
  const folder = await scratchDir("batches-");
  const dir = folder.path;
  return {
    dir,
    input: join(dir, "input.csv"),
    out: join(dir, "out"),
    [Symbol.asyncDispose]: () => folder[Symbol.asyncDispose](),
  };
}

function sampleCsv(rows: number, seed = 1): string {
  return [...generateReviews({ rows, seed })].map(formatReviewLine).join("");
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

async function batchTexts(out: string, manifest: BatchManifest): Promise<string[]> {
  return await Promise.all(manifest.batches.map((b) => Deno.readTextFile(join(out, b.file))));
}

async function listing(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

Deno.test("splitBatches() writes batches whose concatenation is the input, with a checkable manifest", async () => {
  await using s = await scratch();
  const csv = sampleCsv(250);
  await Deno.writeTextFile(s.input, csv);
  const result = await splitBatches({ input: s.input, outputDir: s.out, batchSize: 100 });
  assert.deepEqual(result, {
    batches: 3,
    rows: 250,
    rejected: 0,
    skipped: false,
    manifest: join(s.out, MANIFEST_FILE),
    bytes: csv.length,
  });
  const manifest = (await readManifest(s.out))!;
  assert.equal((await batchTexts(s.out, manifest)).join(""), csv);
  assert.deepEqual(manifest.batches.map((b) => [b.index, b.file, b.rows, b.first_line]), [
    [0, "train_batch_0.csv", 100, 1],
    [1, "train_batch_1.csv", 100, 101],
    [2, "train_batch_2.csv", 50, 201],
  ]);
  for (const batch of manifest.batches) {
    const bytes = await Deno.readFile(join(s.out, batch.file));
    assert.equal(batch.bytes, bytes.length);
    assert.equal(batch.sha256, sha256(bytes));
  }
  assert.deepEqual(manifest.source, {
    path: s.input,
    bytes: csv.length,
    sha256: sha256(new TextEncoder().encode(csv)),
    rows: 250,
  });
  assert.equal(manifest.batch_size, 100);
  assert.deepEqual(manifest.request, { batch_size: 100, num_batches: null });
  assert.deepEqual(await listing(s.out), [
    MANIFEST_FILE,
    REJECTS_FILE,
    "train_batch_0.csv",
    "train_batch_1.csv",
    "train_batch_2.csv",
  ]);
});

Deno.test("splitBatches() sends bad lines to rejects.csv and keeps read = rows + rejected", async () => {
  await using s = await scratch();
  const good = sampleCsv(10).split("\n").slice(0, 10);
  const lines = [good[0], '"2","only two"', good[1], "", good[2], '"7","bad","label"', ...good.slice(3)];
  await Deno.writeTextFile(s.input, lines.join("\n") + "\n");
  const result = await splitBatches({ input: s.input, outputDir: s.out, batchSize: 4 });
  assert.equal(result.rows, 10);
  assert.equal(result.rejected, 3);
  const manifest = (await readManifest(s.out))!;
  assert.equal(manifest.source.rows, manifest.rows + manifest.rejected);
  assert.deepEqual(manifest.rejects.by_reason, {
    "wrong field count": 1,
    "empty line": 1,
    "label not 1 or 2": 1,
  });
  assert.equal((await batchTexts(s.out, manifest)).join(""), good.map((l) => l + "\n").join(""));
  assert.deepEqual(manifest.batches.map((b) => b.first_line), [1, 8, 12]);
  assert.equal(
    await Deno.readTextFile(join(s.out, REJECTS_FILE)),
    'line,reason,raw\n2,"wrong field count (expected 3, got 2)","""2"",""only two"""\n4,"empty line",""\n' +
      '6,"label not 1 or 2 (got ""7"")","""7"",""bad"",""label"""\n',
  );
});

Deno.test("splitBatches() with numBatches makes that many batches of nearly equal size", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(s.input, sampleCsv(10));
  await splitBatches({ input: s.input, outputDir: s.out, numBatches: 4 });
  const manifest = (await readManifest(s.out))!;
  assert.deepEqual(manifest.batches.map((b) => b.rows), [3, 3, 2, 2]);
  assert.equal(manifest.batch_size, 3);
  assert.deepEqual(manifest.request, { batch_size: null, num_batches: 4 });

  await Deno.writeTextFile(s.input, sampleCsv(9));
  await splitBatches({ input: s.input, outputDir: s.out, numBatches: 4 });
  assert.deepEqual((await readManifest(s.out))!.batches.map((b) => b.rows), [3, 2, 2, 2]);
});

Deno.test("splitBatches() with more batches than rows writes one row per batch", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(s.input, sampleCsv(3));
  const result = await splitBatches({ input: s.input, outputDir: s.out, numBatches: 5 });
  assert.equal(result.batches, 3);
  assert.deepEqual((await readManifest(s.out))!.batches.map((b) => b.rows), [1, 1, 1]);
});

Deno.test("splitBatches() skips an unchanged input and redoes a changed one, changed flags or a damaged batch", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(s.input, sampleCsv(30, 1));
  assert.equal((await splitBatches({ input: s.input, outputDir: s.out, batchSize: 10 })).skipped, false);
  const first = await Deno.readTextFile(join(s.out, MANIFEST_FILE));

  const again = await splitBatches({ input: s.input, outputDir: s.out, batchSize: 10 });
  assert.deepEqual([again.skipped, again.batches, again.rows], [true, 3, 30]);
  assert.equal(await Deno.readTextFile(join(s.out, MANIFEST_FILE)), first, "a skip writes nothing");

  assert.equal(
    (await splitBatches({ input: s.input, outputDir: s.out, batchSize: 10, force: true })).skipped,
    false,
  );
  assert.equal((await splitBatches({ input: s.input, outputDir: s.out, batchSize: 15 })).skipped, false);
  assert.equal((await splitBatches({ input: s.input, outputDir: s.out, batchSize: 15 })).skipped, true);

  // Same size, other content: only the checksum can tell.
  const csv = await Deno.readTextFile(s.input);
  await Deno.writeTextFile(s.input, csv.replace('"1"', '"2"'));
  assert.equal((await splitBatches({ input: s.input, outputDir: s.out, batchSize: 15 })).skipped, false);

  await Deno.remove(join(s.out, batchFileName(1)));
  assert.equal((await splitBatches({ input: s.input, outputDir: s.out, batchSize: 15 })).skipped, false);
  assert.ok((await Deno.stat(join(s.out, batchFileName(1)))).isFile);
});

Deno.test("splitBatches() removes an earlier split's extra batches and leftover partial files", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(s.input, sampleCsv(50));
  await splitBatches({ input: s.input, outputDir: s.out, batchSize: 10 });
  await Deno.writeTextFile(join(s.out, "train_batch_9.csv.partial"), "left by a killed run");
  await Deno.writeTextFile(join(s.out, "notes.txt"), "not ours");
  assert.equal((await splitBatches({ input: s.input, outputDir: s.out, batchSize: 20 })).batches, 3);
  assert.deepEqual(await listing(s.out), [
    MANIFEST_FILE,
    "notes.txt",
    REJECTS_FILE,
    "train_batch_0.csv",
    "train_batch_1.csv",
    "train_batch_2.csv",
  ]);
});

Deno.test("splitBatches() interrupted by its signal leaves the previous split intact", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(s.input, sampleCsv(30));
  await splitBatches({ input: s.input, outputDir: s.out, batchSize: 10 });
  const before = await listing(s.out);
  const manifest = await Deno.readTextFile(join(s.out, MANIFEST_FILE));

  await Deno.writeTextFile(s.input, sampleCsv(6_000, 2)); // several read chunks
  const controller = new AbortController();
  const reason = new PipelineError("interrupted by SIGINT");
  await assert.rejects(
    splitBatches({
      input: s.input,
      outputDir: s.out,
      batchSize: 1_000,
      signal: controller.signal,
      onProgress: (phase) => phase === "split" && controller.abort(reason),
    }),
    (error) => error === reason,
  );
  assert.deepEqual(await listing(s.out), before);
  assert.equal(await Deno.readTextFile(join(s.out, MANIFEST_FILE)), manifest);
});

Deno.test("splitBatches() fails on an input without valid rows and leaves the previous split", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(s.input, sampleCsv(5));
  await splitBatches({ input: s.input, outputDir: s.out, batchSize: 10 });
  const before = await listing(s.out);

  await Deno.writeTextFile(s.input, "");
  await assert.rejects(
    splitBatches({ input: s.input, outputDir: s.out, batchSize: 10 }),
    (error) => error instanceof PipelineError && /has no valid review rows: it is empty;/.test(error.message),
  );
  await Deno.writeTextFile(s.input, "<html>\n<body>denied</body>\n");
  await assert.rejects(
    splitBatches({ input: s.input, outputDir: s.out, batchSize: 10 }),
    (error) =>
      error instanceof PipelineError &&
      /all 2 lines were rejected \(e\.g\. wrong field count\)/.test(error.message),
  );
  assert.deepEqual(await listing(s.out), before);
});

Deno.test("splitBatches() names a missing input", async () => {
  await using s = await scratch();
  await assert.rejects(
    splitBatches({ input: s.input, outputDir: s.out }),
    (error) => error instanceof PipelineError && error.message === `${s.input} not found`,
  );
});

Deno.test("splitBatches() refuses both a batch size and a batch count", async () => {
  await assert.rejects(splitBatches({ input: "x", outputDir: "y", batchSize: 1, numBatches: 1 }), RangeError);
  await assert.rejects(splitBatches({ input: "x", outputDir: "y", batchSize: 0 }), RangeError);
});

Deno.test("scanFile() hashes the file and counts lines like the reader", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(s.input, "a\nb\n\nc");
  const scan = await scanFile(s.input);
  assert.deepEqual(scan, { bytes: 6, sha256: sha256(new TextEncoder().encode("a\nb\n\nc")), lines: 4 });
  await Deno.writeTextFile(s.input, "");
  assert.equal((await scanFile(s.input)).lines, 0);
});

Deno.test("readManifest() treats a damaged or foreign manifest as missing", async () => {
  await using s = await scratch();
  await Deno.mkdir(s.out);
  assert.equal(await readManifest(s.out), undefined);
  for (const text of ["{not json", "null", '{"version":1}', '{"version":2,"batches":[]}']) {
    await Deno.writeTextFile(join(s.out, MANIFEST_FILE), text);
    assert.equal(await readManifest(s.out), undefined, text);
  }
  // A damaged manifest makes the next split redo the work instead of failing.
  await Deno.writeTextFile(s.input, sampleCsv(5));
  assert.equal((await splitBatches({ input: s.input, outputDir: s.out })).skipped, false);
  assert.equal((await readManifest(s.out))!.rows, 5);
});
