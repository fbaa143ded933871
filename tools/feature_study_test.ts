/** The feature study's measuring steps on generated sources (the real ones are not shipped). */
import { strict as assert } from "node:assert";
import { join } from "node:path";
import { scratchDir } from "../lib/_testing.ts";
import { formatReviewLine } from "../lib/data/csv.ts";
import { resolveLinearParams } from "../lib/models/linear/trainer.ts";
import { generateReviews } from "../lib/data/sample_data.ts";
import { measure, prepareSources, VARIANTS } from "./feature_study.ts";

Deno.test("feature study: prepareSources() tokenises each source, measure() scores splits and each source left out", async () => {
  await using dir = await scratchDir("feature-study-");
  const csvs = ["a.csv", "b.csv", "c.csv"];
  for (const [i, name] of csvs.entries()) {
    const reviews = [...generateReviews({ rows: 300 + 100 * i, seed: i + 1 })];
    // One review without any token: dropped, as the preprocess stages drop it.
    await Deno.writeTextFile(join(dir.path, name), reviews.map(formatReviewLine).join("") + '"1","","..."\n');
  }
  const files = await prepareSources(dir.path, csvs, { lexicon: false }, join(dir.path, "out"));
  assert.deepEqual(files.map((file) => [file.rows, file.key]), [[300, 0], [400, 1], [500, 2]]);
  const first = await Deno.readTextFile(files[0]!.path);
  assert.equal(first.split("\n").length - 1, 300);
  assert.doesNotMatch(first, /_lex(pos|neg)_/, "the configuration is the one given");

  const result = await measure(files, resolveLinearParams({ buckets: 1 << 18 }));
  assert.equal(result.perSource.length, 3);
  for (const value of [result.random, result.pooled, ...result.perSource]) {
    assert.ok(value > 0.6 && value <= 1, `${value}`);
  }
  const pooled = (300 * result.perSource[0]! + 400 * result.perSource[1]! + 500 * result.perSource[2]!) /
    1200;
  assert.ok(Math.abs(result.pooled - pooled) < 1e-12, "pooled = per-source accuracies weighted by rows");
  assert.equal(
    (await measure(files, resolveLinearParams({ buckets: 1 << 18 }))).random,
    result.random,
  );
});

Deno.test("feature study: the rows compare one change at a time and end with the product's defaults", () => {
  assert.match(VARIANTS[0]!.name, /\(before\)$/);
  const last = VARIANTS.at(-1)!;
  assert.deepEqual(last.tokenizer, {});
  assert.deepEqual(last.params, {});
  assert.equal(new Set(VARIANTS.map((variant) => variant.name)).size, VARIANTS.length);
});
