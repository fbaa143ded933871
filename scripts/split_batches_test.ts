import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createProjectRoot, type ProjectRoot, runTask } from "./_testing.ts";
import type { BatchManifest } from "../lib/data/batches.ts";
import { formatReviewLine } from "../lib/data/csv.ts";
import { generateReviews } from "../lib/data/sample_data.ts";

const BAD_LINES = ['"2","only two fields"', '"0","bad label","x"', ""];

/** Writes data/raw/train.csv: generated reviews with a few bad lines mixed in; returns the valid lines. */
async function writeTrain(root: ProjectRoot, rows: number): Promise<{ csv: string; valid: string }> {
  const good = [...generateReviews({ rows, seed: 11 })].map(formatReviewLine);
  const lines = [...good];
  lines.splice(10, 0, BAD_LINES[0] + "\n");
  lines.splice(500, 0, BAD_LINES[1] + "\n");
  lines.splice(1200, 0, BAD_LINES[2] + "\n");
  const csv = lines.join("");
  await Deno.mkdir(root.resolve("data/raw"), { recursive: true });
  await Deno.writeTextFile(root.resolve("data/raw/train.csv"), csv);
  return { csv, valid: good.join("") };
}

async function readManifest(root: ProjectRoot): Promise<BatchManifest> {
  return JSON.parse(await Deno.readTextFile(root.resolve("data/batches/manifest.json")));
}

async function batchFiles(root: ProjectRoot): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(root.resolve("data/batches"))) {
    if (entry.name.startsWith("train_batch_")) names.push(entry.name);
  }
  return names.sort();
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

Deno.test("split_batches --help prints the usage and exits 0", async () => {
  await using root = await createProjectRoot();
  const run = await runTask(root, "split_batches", ["--help"]);
  assert.equal(run.code, 0);
  assert.match(run.stdout, /^Usage: deno task split_batches /);
  assert.match(run.stdout, /--batch-size N/);
  assert.match(run.stdout, /--num-batches N/);
});

Deno.test("split_batches rejects bad flags with one error line plus usage and exit 2", async () => {
  await using root = await createProjectRoot();
  for (
    const [args, message] of [
      [["--bogus"], /^error: Unknown option '--bogus'/],
      [["--batch-size", "abc"], /^error: --batch-size expects an integer, got "abc"/],
      [["--batch-size", "0"], /^error: --batch-size must be >= 1, got 0/],
      [
        ["--batch-size", "5", "--num-batches", "2"],
        /^error: --batch-size and --num-batches are mutually exclusive/,
      ],
    ] as const
  ) {
    const run = await runTask(root, "split_batches", [...args]);
    assert.equal(run.code, 2, args.join(" "));
    assert.match(run.stderr, message);
    assert.match(run.stderr, /\n\nUsage: deno task split_batches/);
    assert.equal(run.stdout, "");
  }
});

Deno.test("split_batches without data/raw/train.csv says to run ingest and exits 1", async () => {
  await using root = await createProjectRoot();
  const run = await runTask(root, "split_batches", []);
  assert.equal(run.code, 1);
  assert.equal(
    run.stderr.trim(),
    "error: data/raw/train.csv not found; run `deno task ingest` (or make ingest) first",
  );
});

Deno.test("split_batches writes batches, rejects and a manifest that match the input", async () => {
  await using root = await createProjectRoot();
  const { csv, valid } = await writeTrain(root, 2_500);
  const run = await runTask(root, "split_batches", ["--batch-size", "1000", "--json"]);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), {
    batches: 3,
    rows: 2_500,
    rejected: 3,
    skipped: false,
    manifest: "data/batches/manifest.json",
    retired: [],
  });
  assert.match(run.stderr, /rejected 3 lines \(1 wrong field count, 1 label not 1 or 2, 1 empty line\)/);

  const manifest = await readManifest(root);
  assert.deepEqual(await batchFiles(root), ["train_batch_0.csv", "train_batch_1.csv", "train_batch_2.csv"]);
  assert.deepEqual(manifest.batches.map((b) => b.rows), [1_000, 1_000, 500]);
  assert.deepEqual(manifest.batches.map((b) => b.first_line), [1, 1_003, 2_004]);
  assert.equal(manifest.batch_size, 1_000);
  const input = new TextEncoder().encode(csv);
  assert.deepEqual(manifest.source, {
    path: "data/raw/train.csv",
    bytes: input.length,
    sha256: sha256(input),
    rows: 2_503,
  });
  let concatenated = "";
  for (const batch of manifest.batches) {
    const bytes = await Deno.readFile(root.resolve("data/batches", batch.file));
    assert.equal(batch.bytes, bytes.length, batch.file);
    assert.equal(batch.sha256, sha256(bytes), batch.file);
    concatenated += new TextDecoder().decode(bytes);
  }
  assert.equal(concatenated, valid, "concatenating the batches gives back the valid rows byte for byte");
  const rejects = (await Deno.readTextFile(root.resolve("data/batches/rejects.csv"))).trimEnd().split("\n");
  assert.deepEqual(rejects, [
    "line,reason,raw",
    '11,"wrong field count (expected 3, got 2)","""2"",""only two fields"""',
    '501,"label not 1 or 2 (got ""0"")","""0"",""bad label"",""x"""',
    '1201,"empty line",""',
  ]);
});

Deno.test("split_batches skips an unchanged input, redoes it with --force, and drops stale batches", async () => {
  await using root = await createProjectRoot();
  await writeTrain(root, 2_500);
  const first = await runTask(root, "split_batches", ["--batch-size", "500"]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /^wrote 5 batches to data\/batches: 2500 rows, 3 rejected/);
  assert.equal((await batchFiles(root)).length, 5);
  const manifest = await Deno.readTextFile(root.resolve("data/batches/manifest.json"));

  const again = await runTask(root, "split_batches", ["--batch-size", "500", "--json"]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(JSON.parse(again.stdout).skipped, true);
  assert.match(again.stderr, /data\/batches is up to date/);
  assert.equal(await Deno.readTextFile(root.resolve("data/batches/manifest.json")), manifest);

  const forced = await runTask(root, "split_batches", ["--batch-size", "500", "--force", "--json"]);
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal(JSON.parse(forced.stdout).skipped, false);
  assert.notEqual(await Deno.readTextFile(root.resolve("data/batches/manifest.json")), manifest);

  const fewer = await runTask(root, "split_batches", ["--batch-size", "1000", "--json"]);
  assert.equal(fewer.code, 0, fewer.stderr);
  assert.deepEqual([JSON.parse(fewer.stdout).batches, JSON.parse(fewer.stdout).skipped], [3, false]);
  assert.deepEqual(await batchFiles(root), ["train_batch_0.csv", "train_batch_1.csv", "train_batch_2.csv"]);
  assert.equal((await readManifest(root)).batches.length, 3);
});

Deno.test("split_batches --num-batches splits into that many nearly equal batches", async () => {
  await using root = await createProjectRoot();
  const { valid } = await writeTrain(root, 2_500);
  const run = await runTask(root, "split_batches", ["--num-batches", "4", "--json"]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(JSON.parse(run.stdout).batches, 4);
  const manifest = await readManifest(root);
  // 2,503 lines in 4 parts of 626/626/626/625; the 3 rejected lines come out of the last batch.
  assert.deepEqual(manifest.batches.map((b) => b.rows), [626, 626, 626, 622]);
  assert.equal(manifest.batch_size, 626);
  let concatenated = "";
  for (const batch of manifest.batches) {
    concatenated += await Deno.readTextFile(root.resolve("data/batches", batch.file));
  }
  assert.equal(concatenated, valid);
});
