import assert from "node:assert/strict";
import { join } from "node:path";
import { createProjectRoot, type ProjectRoot, REPO_ROOT, runTask } from "./_testing.ts";
import { formatReviewLine } from "../lib/data/csv.ts";
import { readProcessed, readProcessedMeta } from "../lib/data/processed_data.ts";
import { generateReviews } from "../lib/data/sample_data.ts";
import { tokenizeReview } from "../lib/features/tokenizer.ts";

/**
 * A project root with the stage script in it. `createProjectRoot()` leaves out every file ending in
 * `_test.ts`, which includes this stage's own script, `scripts/preprocess_test.ts`.
 */
async function stageRoot(): Promise<ProjectRoot> {
  const root = await createProjectRoot();
  await Deno.copyFile(
    join(REPO_ROOT, "scripts/preprocess_test.ts"),
    root.resolve("scripts/preprocess_test.ts"),
  );
  return root;
}

Deno.test("preprocess_test --help prints the usage and exits 0", async () => {
  await using root = await stageRoot();
  const run = await runTask(root, "preprocess_test", ["--help"]);
  assert.equal(run.code, 0);
  assert.match(run.stdout, /^Usage: deno task preprocess_test /);
  assert.match(run.stdout, /data\/raw\/test\.csv/);
});

Deno.test("preprocess_test rejects bad flags with one error line plus usage and exit 2", async () => {
  await using root = await stageRoot();
  for (
    const [args, message] of [
      [["--bogus"], /^error: Unknown option '--bogus'/],
      [["3"], /^error: Unexpected argument '3'/],
      [["--workers", "-2"], /^error: --workers must be between 0 and 64, got -2\n/],
      [["--workers=99"], /^error: --workers must be between 0 and 64, got 99/],
    ] as const
  ) {
    const run = await runTask(root, "preprocess_test", [...args]);
    assert.equal(run.code, 2, args.join(" "));
    assert.match(run.stderr, message, run.stderr);
    assert.match(run.stderr, /\n\nUsage: deno task preprocess_test/);
  }
});

Deno.test("preprocess_test without data/raw/test.csv says to run ingest and exits 1", async () => {
  await using root = await stageRoot();
  const run = await runTask(root, "preprocess_test", []);
  assert.equal(run.code, 1);
  assert.equal(
    run.stderr.trim(),
    "error: data/raw/test.csv not found; run `deno task ingest` (or make ingest) first",
  );
});

Deno.test("preprocess_test tokenizes data/raw/test.csv, then skips it until --force", async () => {
  await using root = await stageRoot();
  const reviews = [...generateReviews({ rows: 800, seed: 77 })];
  await Deno.mkdir(root.resolve("data/raw"), { recursive: true });
  await Deno.writeTextFile(
    root.resolve("data/raw/test.csv"),
    reviews.map(formatReviewLine).join("") + '"x","bad","label"\n',
  );

  const run = await runTask(root, "preprocess_test", ["--json"]);
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout);
  assert.deepEqual(
    { output: result.output, rows: result.rows, rejected: result.rejected, skipped: result.skipped },
    { output: "data/processed/test.tsv", rows: 800, rejected: 1, skipped: false },
  );
  const rows = [];
  for await (const row of readProcessed(root.resolve("data/processed/test.tsv"))) rows.push(row);
  assert.deepEqual(
    rows,
    reviews.map((review) => ({ polarity: review.polarity, tokens: tokenizeReview(review) })),
  );
  const meta = await readProcessedMeta(root.resolve("data/processed/test.tsv"));
  assert.equal(meta.source, "data/raw/test.csv");
  assert.equal(meta.read, 801);
  assert.match(
    await Deno.readTextFile(root.resolve("data/processed/test.rejects.csv")),
    /^line,reason,raw\n801,"label not 1 or 2 \(got ""x""\)","""x"",""bad"",""label"""\n$/,
  );

  const again = await runTask(root, "preprocess_test", ["--json"]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(JSON.parse(again.stdout).skipped, true);
  const forced = await runTask(root, "preprocess_test", ["--force"]);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stdout, /^wrote data\/processed\/test\.tsv: 800 rows, 1 rejected in /);
});
