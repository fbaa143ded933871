import assert from "node:assert/strict";
import { createProjectRoot, type ProjectRoot, runTask } from "./_testing.ts";
import { formatReviewLine } from "../lib/data/csv.ts";
import { type ProcessedRow, readProcessed, readProcessedMeta } from "../lib/data/processed_data.ts";
import type { Review } from "../lib/data/review.ts";
import { generateReviews } from "../lib/data/sample_data.ts";
import { tokenizeReview, tokenizerInfo } from "../lib/features/tokenizer.ts";

/** Writes data/batches/train_batch_<n>.csv: generated reviews plus two bad lines; returns the valid reviews. */
async function writeBatch(root: ProjectRoot, batch: number, rows: number): Promise<Review[]> {
  const reviews = [...generateReviews({ rows, seed: 100 + batch })];
  const lines = reviews.map(formatReviewLine);
  lines.splice(5, 0, '"2","only two fields"\n');
  lines.splice(50, 0, '"1","","... ??? --"\n');
  await Deno.mkdir(root.resolve("data/batches"), { recursive: true });
  await Deno.writeTextFile(root.resolve(`data/batches/train_batch_${batch}.csv`), lines.join(""));
  return reviews;
}

async function collect(path: string): Promise<ProcessedRow[]> {
  const rows: ProcessedRow[] = [];
  for await (const row of readProcessed(path)) rows.push(row);
  return rows;
}

Deno.test("preprocess_batch --help prints the usage and exits 0", async () => {
  await using root = await createProjectRoot();
  const run = await runTask(root, "preprocess_batch", ["--help"]);
  assert.equal(run.code, 0);
  assert.match(run.stdout, /^Usage: deno task preprocess_batch N /);
  assert.match(run.stdout, /--batch N/);
  assert.match(run.stdout, /--force/);
  assert.equal(run.stderr, "");
});

Deno.test("preprocess_batch rejects bad arguments with one error line plus usage and exit 2", async () => {
  await using root = await createProjectRoot();
  for (
    const [args, message] of [
      [["--bogus"], /^error: Unknown option '--bogus'/],
      [[], /^error: missing batch number/],
      [["abc"], /^error: batch number expects an integer, got "abc"/],
      [["--batch=-1"], /^error: --batch must be >= 0, got -1/],
      [["-1"], /^error: Unknown option '-1'/],
      [["1", "2"], /^error: expected one batch number, got 2/],
      [["1", "--batch", "1"], /^error: give the batch number either as N or as --batch N, not both/],
      [["0", "--workers", "x"], /^error: --workers expects an integer/],
    ] as const
  ) {
    const run = await runTask(root, "preprocess_batch", [...args]);
    assert.equal(run.code, 2, args.join(" "));
    assert.match(run.stderr, message, args.join(" "));
    assert.match(run.stderr, /\n\nUsage: deno task preprocess_batch/);
    assert.equal(run.stdout, "");
  }
});

Deno.test("preprocess_batch on a missing batch lists the available ones and exits 1", async () => {
  await using root = await createProjectRoot();
  let run = await runTask(root, "preprocess_batch", ["0"]);
  assert.equal(run.code, 1);
  assert.equal(
    run.stderr.trim(),
    "error: batch 0 not found in data/batches (available: none); run split_batches first",
  );

  await Deno.mkdir(root.resolve("data/batches"), { recursive: true });
  for (const n of [2, 0, 10, 1]) {
    await Deno.writeTextFile(root.resolve(`data/batches/train_batch_${n}.csv`), "");
  }
  await Deno.writeTextFile(root.resolve("data/batches/manifest.json"), "{}");
  run = await runTask(root, "preprocess_batch", ["--batch", "7"]);
  assert.equal(run.code, 1);
  assert.equal(
    run.stderr.trim(),
    "error: batch 7 not found in data/batches (available: 0, 1, 2, 10); run split_batches first",
  );
});

Deno.test("preprocess_batch writes rows, meta and rejects that account for every line", async () => {
  await using root = await createProjectRoot();
  const reviews = await writeBatch(root, 1, 1200);
  const run = await runTask(root, "preprocess_batch", ["1", "--json"]);
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout);
  assert.equal(result.output, "data/processed/train_batch_1.tsv");
  assert.equal(result.rows, 1200);
  assert.equal(result.rejected, 2);
  assert.equal(result.read, 1202);
  assert.equal(result.skipped, false);
  assert.equal(typeof result.seconds, "number");
  assert.match(run.stderr, /2 source lines rejected; see data\/processed\/train_batch_1\.rejects\.csv/);

  const output = root.resolve("data/processed/train_batch_1.tsv");
  assert.deepEqual(
    await collect(output),
    reviews.map((review) => ({ polarity: review.polarity, tokens: tokenizeReview(review) })),
  );
  const meta = await readProcessedMeta(output);
  assert.equal(meta.source, "data/batches/train_batch_1.csv");
  assert.equal(meta.rows, 1200);
  assert.equal(meta.rejected, 2);
  assert.equal(meta.read, meta.rows + meta.rejected);
  assert.equal(meta.sourceSha256, result.sourceSha256);
  assert.deepEqual(meta.tokenizer, tokenizerInfo());

  const rejects = await Deno.readTextFile(root.resolve("data/processed/train_batch_1.rejects.csv"));
  assert.match(rejects, /^line,reason,raw\n6,"wrong field count \(expected 3, got 2\)",/);
  assert.match(rejects, /\n51,"no tokens after cleaning",/);
});

Deno.test("preprocess_batch skips an unchanged batch and rebuilds with --force", async () => {
  await using root = await createProjectRoot();
  await writeBatch(root, 0, 300);
  const first = await runTask(root, "preprocess_batch", ["0", "--json"]);
  assert.equal(first.code, 0, first.stderr);
  const output = root.resolve("data/processed/train_batch_0.tsv");
  const { mtime } = await Deno.stat(output);

  const again = await runTask(root, "preprocess_batch", ["0", "--json"]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(JSON.parse(again.stdout).skipped, true);
  assert.equal(JSON.parse(again.stdout).rows, 300);
  assert.match(again.stderr, /up to date/);
  assert.deepEqual((await Deno.stat(output)).mtime, mtime);

  const text = await runTask(root, "preprocess_batch", ["0"]);
  assert.equal(text.stdout.trim(), "data/processed/train_batch_0.tsv is up to date: 300 rows, 2 rejected");

  const forced = await runTask(root, "preprocess_batch", ["0", "--force", "--json"]);
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal(JSON.parse(forced.stdout).skipped, false);
  assert.equal(JSON.parse(forced.stdout).rows, 300);
});

Deno.test("preprocess_batch --workers 2 gives the same output as the main thread", async () => {
  await using root = await createProjectRoot();
  await writeBatch(root, 3, 2500);
  const inline = await runTask(root, "preprocess_batch", ["3", "--workers", "0"]);
  assert.equal(inline.code, 0, inline.stderr);
  const expected = await Deno.readFile(root.resolve("data/processed/train_batch_3.tsv"));
  const pooled = await runTask(root, "preprocess_batch", ["3", "--workers", "2", "--force", "--json"]);
  assert.equal(pooled.code, 0, pooled.stderr);
  assert.deepEqual(await Deno.readFile(root.resolve("data/processed/train_batch_3.tsv")), expected);
});

Deno.test("preprocess_batch interrupted by SIGINT exits 130 and leaves no partial output", async () => {
  await using root = await createProjectRoot();
  // Big enough to still be running when the signal arrives, even on a fast machine.
  await Deno.mkdir(root.resolve("data/batches"), { recursive: true });
  const lines = [...generateReviews({ rows: 400_000, seed: 1 })].map(formatReviewLine);
  await Deno.writeTextFile(root.resolve("data/batches/train_batch_0.csv"), lines.join(""));
  const run = await runTask(root, "preprocess_batch", ["0"], { kill: { signal: "SIGINT", afterMs: 1000 } });
  assert.equal(run.code, 130, run.stderr);
  assert.match(run.stderr, /error: interrupted by SIGINT; no output was left half-written/);
  const left: string[] = [];
  try {
    for await (const entry of Deno.readDir(root.resolve("data/processed"))) left.push(entry.name);
  } catch (error) {
    // Interrupted before it created the folder: nothing left behind either.
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  assert.deepEqual(left, []);
});

Deno.test("preprocess_batch refuses a batch that differs from, or is missing in, the split manifest", async () => {
  await using root = await createProjectRoot();
  assert.equal(
    (await runTask(root, "ingest", ["--source", "sample", "--rows", "400", "--test-rows", "50"])).code,
    0,
  );
  assert.equal((await runTask(root, "split_batches", ["--batch-size", "200"])).code, 0);
  // A batch rewritten behind the manifest's back (e.g. left by an interrupted split) and one it never listed.
  await writeBatch(root, 1, 100);
  await writeBatch(root, 5, 100);
  const changed = await runTask(root, "preprocess_batch", ["1"]);
  assert.equal(changed.code, 1);
  assert.match(
    changed.stderr,
    /^error: data\/batches\/train_batch_1\.csv does not match the checksum in its split manifest/m,
  );
  assert.equal(
    await Deno.stat(root.resolve("data/processed/train_batch_1.tsv")).then(() => true, () => false),
    false,
  );
  const unlisted = await runTask(root, "preprocess_batch", ["5"]);
  assert.equal(unlisted.code, 1);
  assert.match(unlisted.stderr, /^error: batch 5 is not listed in data\/batches\/manifest\.json/m);
  assert.equal((await runTask(root, "preprocess_batch", ["0"])).code, 0);
});
