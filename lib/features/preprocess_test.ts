import assert from "node:assert/strict";
import { join } from "node:path";
import { formatReviewLine } from "../data/csv.ts";
import { PipelineError } from "../core/errors.ts";
import { NO_TOKENS_REASON, preprocessFile, type PreprocessOptions, tokenizeChunk } from "./preprocess.ts";
import { formatProcessedLine, readProcessedMeta } from "../data/processed_data.ts";
import type { Review } from "../data/review.ts";
import { generateReviews } from "../data/sample_data.ts";
import { tokenizeReview, tokenizerInfo } from "./tokenizer.ts";
import { collectProcessed, scratchDir } from "../_testing.ts";

async function names(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) found.push(entry.name);
  return found.sort();
}

/** A CSV of generated reviews with bad lines and a review without tokens at known line numbers. */
function sampleCsv(rows: number, seed = 5): { csv: string; valid: Review[]; badLines: Map<number, RegExp> } {
  const valid = [...generateReviews({ rows, seed })];
  const lines = valid.map(formatReviewLine);
  const noTokens: Review = { polarity: 2, title: "", text: "... ?? --" };
  // Inserted in ascending order, so each index is the line's final 0-based position.
  const inserts: [number, string, RegExp][] = [
    [2, '"2","two fields"\n', /wrong field count/],
    [400, '"3","bad label","x"\n', /label not 1 or 2/],
    [900, formatReviewLine(noTokens), new RegExp(NO_TOKENS_REASON)],
  ];
  const badLines = new Map<number, RegExp>();
  for (const [index, line, reason] of inserts) {
    lines.splice(index, 0, line);
    badLines.set(index + 1, reason);
  }
  return { csv: lines.join(""), valid, badLines };
}

function options(dir: string, extra: Partial<PreprocessOptions> = {}): PreprocessOptions {
  return {
    source: join(dir, "train_batch_0.csv"),
    output: join(dir, "processed", "train_batch_0.tsv"),
    progress: "off",
    ...extra,
  };
}

Deno.test("tokenizeChunk() formats tokenized reviews and lists those without tokens", () => {
  const chunk = {
    polarities: [2, 1, 1] as (1 | 2)[],
    titles: ["Great", "", "Meh"],
    texts: ["Works well", "...", "not good"],
  };
  const result = tokenizeChunk(chunk);
  assert.equal(
    result.lines,
    formatProcessedLine(2, tokenizeReview({ title: "Great", text: "Works well" })) +
      formatProcessedLine(1, tokenizeReview({ title: "Meh", text: "not good" })),
  );
  assert.deepEqual(result.labels, { 1: 1, 2: 1 });
  assert.deepEqual(result.empty, [1]);
});

Deno.test("preprocessFile() writes every review's tokens in order and accounts for every line", async () => {
  await using dir = await scratchDir("preprocess-");
  const { csv, valid, badLines } = sampleCsv(1500);
  const opts = options(dir.path, { workers: 0 });
  await Deno.writeTextFile(opts.source, csv);

  const result = await preprocessFile(opts);
  assert.equal(result.skipped, false);
  assert.equal(result.read, valid.length + 3);
  assert.equal(result.rows, valid.length);
  assert.equal(result.rejected, 3);
  assert.equal(result.read, result.rows + result.rejected);

  const rows = await collectProcessed(opts.output);
  assert.deepEqual(
    rows,
    valid.map((review) => ({ polarity: review.polarity, tokens: tokenizeReview(review) })),
  );

  const meta = await readProcessedMeta(opts.output);
  assert.equal(meta.source, opts.source);
  assert.equal(meta.sourceSha256, result.sourceSha256);
  assert.equal(meta.sourceBytes, new TextEncoder().encode(csv).length);
  assert.equal(meta.rows, valid.length);
  assert.equal(meta.rejected, 3);
  assert.equal(meta.read, valid.length + 3);
  assert.deepEqual(meta.labels, {
    "1": valid.filter((r) => r.polarity === 1).length,
    "2": valid.filter((r) => r.polarity === 2).length,
  });
  assert.deepEqual(meta.tokenizer, tokenizerInfo());

  const rejects = (await Deno.readTextFile(result.rejects)).trimEnd().split("\n");
  assert.equal(rejects[0], "line,reason,raw");
  assert.equal(rejects.length, 4);
  const lineNumbers = rejects.slice(1).map((line) => Number(line.split(",")[0]));
  assert.deepEqual(lineNumbers, [...badLines.keys()].sort((a, b) => a - b));
  for (const line of rejects.slice(1)) assert.match(line, badLines.get(Number(line.split(",")[0]))!);
  assert.deepEqual(await names(join(dir.path, "processed")), [
    "train_batch_0.meta.json",
    "train_batch_0.rejects.csv",
    "train_batch_0.tsv",
  ]);
});

Deno.test("preprocessFile() with workers writes exactly what the main thread writes", async () => {
  await using dir = await scratchDir("preprocess-");
  const { csv } = sampleCsv(2500, 9);
  const inline = options(dir.path, { workers: 0, output: join(dir.path, "inline", "test.tsv") });
  await Deno.writeTextFile(inline.source, csv);
  const pooled = { ...inline, output: join(dir.path, "pooled", "test.tsv"), workers: 2, chunkSize: 97 };

  const a = await preprocessFile(inline);
  const b = await preprocessFile(pooled);
  assert.equal(b.workers, 2);
  assert.equal(b.rows, a.rows);
  assert.equal(b.rejected, a.rejected);
  assert.deepEqual(await Deno.readFile(b.output), await Deno.readFile(a.output));
  assert.equal(await Deno.readTextFile(b.rejects), await Deno.readTextFile(a.rejects));
});

Deno.test("preprocessFile() skips an up-to-date output and rebuilds when anything changed", async () => {
  await using dir = await scratchDir("preprocess-");
  const opts = options(dir.path, { workers: 0 });
  await Deno.writeTextFile(opts.source, sampleCsv(300).csv);
  const first = await preprocessFile(opts);
  const builtAt = (await readProcessedMeta(opts.output)).created;

  const again = await preprocessFile(opts);
  assert.equal(again.skipped, true);
  assert.equal(again.rows, first.rows);
  assert.equal(again.rejected, first.rejected);
  assert.equal((await readProcessedMeta(opts.output)).created, builtAt);

  assert.equal((await preprocessFile({ ...opts, force: true })).skipped, false);

  // Same size, different bytes: only the SHA-256 can tell.
  const csv = await Deno.readTextFile(opts.source);
  await Deno.writeTextFile(opts.source, csv.replace('"2"', '"1"'));
  assert.equal((await preprocessFile(opts)).skipped, false);
  assert.equal((await preprocessFile(opts)).skipped, true);

  // A meta written by another tokenizer version.
  const meta = await readProcessedMeta(opts.output);
  await Deno.writeTextFile(
    opts.output.replace(/\.tsv$/, ".meta.json"),
    JSON.stringify({ ...meta, tokenizer: { ...meta.tokenizer, version: "0" } }),
  );
  assert.equal((await preprocessFile(opts)).skipped, false);

  // A meta of the same version but other settings: made before the lexicon and plain titles.
  const current = await readProcessedMeta(opts.output);
  const { lexicon: _, ...beforeLexicon } = current.tokenizer;
  await Deno.writeTextFile(
    opts.output.replace(/\.tsv$/, ".meta.json"),
    JSON.stringify({ ...current, tokenizer: { ...beforeLexicon, title: "both" } }),
  );
  assert.equal((await preprocessFile(opts)).skipped, false);

  // An output that no longer matches its meta.
  await Deno.writeTextFile(opts.output, "2\tx\n", { append: true });
  assert.equal((await preprocessFile(opts)).skipped, false);
  assert.equal((await preprocessFile(opts)).skipped, true);

  // The same batch under a split (recorded in the meta), then under another split of another input.
  const split = { sourceSha256: "a".repeat(64), index: 0 };
  assert.equal((await preprocessFile({ ...opts, split })).skipped, false);
  assert.deepEqual((await readProcessedMeta(opts.output)).split, split);
  assert.equal((await preprocessFile({ ...opts, split })).skipped, true);
  assert.equal(
    (await preprocessFile({ ...opts, split: { ...split, sourceSha256: "b".repeat(64) } })).skipped,
    false,
  );
});

Deno.test("preprocessFile() on a missing source throws a PipelineError naming it", async () => {
  await using dir = await scratchDir("preprocess-");
  const opts = options(dir.path);
  await assert.rejects(
    () => preprocessFile(opts),
    (error: unknown) => error instanceof PipelineError && error.message === `${opts.source} not found`,
  );
});

Deno.test("preprocessFile() aborted leaves the previous output and no partial files", async () => {
  await using dir = await scratchDir("preprocess-");
  const opts = options(dir.path, { workers: 2, chunkSize: 50 });
  await Deno.writeTextFile(opts.source, sampleCsv(3000).csv);
  await preprocessFile({ ...opts, workers: 0 });
  const before = await Deno.readFile(opts.output);

  const controller = new AbortController();
  controller.abort(new PipelineError("interrupted by SIGINT"));
  await assert.rejects(
    () => preprocessFile({ ...opts, force: true, signal: controller.signal }),
    /interrupted by SIGINT/,
  );
  assert.deepEqual(await Deno.readFile(opts.output), before);
  assert.deepEqual(
    (await names(join(dir.path, "processed"))).filter((name) => name.endsWith(".partial")),
    [],
  );
});
