/** The feature study's measuring steps on generated sources (the real ones are not shipped). */
import { strict as assert } from "node:assert";
import { join } from "node:path";
import { scratchDir } from "../lib/_testing.ts";
import { formatReviewLine } from "../lib/data/csv.ts";
import { resolveLinearParams } from "../lib/models/linear/trainer.ts";
import { generateReviews } from "../lib/data/sample_data.ts";
import {
  compare,
  type ComparedModel,
  domainShiftOf,
  heldOutReviews,
  measure,
  peerReport,
  prepareSources,
  SEEDS,
  VARIANTS,
} from "./feature_study.ts";

async function generatedSources(dir: string): Promise<string[]> {
  const csvs = ["a.csv", "b.csv", "c.csv"];
  for (const [i, name] of csvs.entries()) {
    const reviews = [...generateReviews({ rows: 300 + 100 * i, seed: i + 1 })];
    // One review without any token: dropped, as the preprocess stages drop it.
    await Deno.writeTextFile(join(dir, name), reviews.map(formatReviewLine).join("") + '"1","","..."\n');
  }
  return csvs;
}

Deno.test("feature study: prepareSources() tokenises each source and writes the peers' text of the same reviews", async () => {
  await using dir = await scratchDir("feature-study-");
  const csvs = await generatedSources(dir.path);
  const { files, peersInput, tokenizeSeconds } = await prepareSources(
    dir.path,
    csvs,
    { lexicon: false },
    join(dir.path, "out"),
  );
  assert.deepEqual(files.map((file) => [file.rows, file.key]), [[300, 0], [400, 1], [500, 2]]);
  assert.ok(tokenizeSeconds > 0);
  const first = await Deno.readTextFile(files[0]!.path);
  assert.equal(first.split("\n").length - 1, 300);
  assert.doesNotMatch(first, /_lex(pos|neg)_/, "the configuration is the one given");
  const peers = (await Deno.readTextFile(peersInput)).trimEnd().split("\n").map((line) => line.split("\t"));
  assert.equal(peers.length, 1200, "the review without tokens is dropped for the peers too");
  const processed = (await Promise.all(files.map((file) => Deno.readTextFile(file.path))))
    .join("").trimEnd().split("\n");
  for (const [i, [label, source, flags, text]] of peers.entries()) {
    assert.equal(label, processed[i]!.slice(0, 1), "same reviews, same order");
    assert.equal(source, i < 300 ? "0" : i < 700 ? "1" : "2");
    assert.match(flags!, /^[01]{3}$/);
    assert.ok(text!.length > 0 && !text!.includes("\\n"));
  }
  for (const [s, seed] of SEEDS.entries()) {
    const held = peers.flatMap(([, , flags], i) => (flags![s] === "1" ? [i] : []));
    assert.deepEqual(held, heldOutReviews(files, seed), "the peers hold out what our model holds out");
    assert.ok(held.length > 150 && held.length < 330, `${held.length} of 1200 held out`);
  }
});

Deno.test("feature study: measure() scores splits and each source left out, review by review", async () => {
  await using dir = await scratchDir("feature-study-");
  const csvs = await generatedSources(dir.path);
  const { files } = await prepareSources(dir.path, csvs, {}, join(dir.path, "out"));
  const params = resolveLinearParams({ buckets: 1 << 18 });
  const result = await measure(files, params);
  assert.equal(result.perSource.length, 3);
  for (const value of [result.random, result.pooled, ...result.perSource]) {
    assert.ok(value > 0.6 && value <= 1, `${value}`);
  }
  const pooled = (300 * result.perSource[0]! + 400 * result.perSource[1]! + 500 * result.perSource[2]!) /
    1200;
  assert.ok(Math.abs(result.pooled - pooled) < 1e-12, "pooled = per-source accuracies weighted by rows");
  assert.equal(result.predictions.loso.length, 1200);
  assert.deepEqual(
    result.predictions.random.map((flags) => flags.length),
    SEEDS.map((seed) => heldOutReviews(files, seed).length),
  );
  const right = result.predictions.random.flatMap((flags) => [...flags]);
  assert.equal(result.random, right.filter(Boolean).length / right.length);
  assert.ok(result.trainSeconds > 0);
  assert.equal((await measure(files, params)).random, result.random, "deterministic");
});

Deno.test("feature study: compare() and peerReport() give intervals and the margin over the best peer", async () => {
  await using dir = await scratchDir("feature-study-");
  const csvs = await generatedSources(dir.path);
  const { files } = await prepareSources(dir.path, csvs, {}, join(dir.path, "out"));
  const ours = await measure(files, resolveLinearParams({ buckets: 1 << 18 }));
  // Two stand-in peers: one wrong wherever ours is wrong and on every 10th review besides, one always wrong.
  const worse = (flags: Uint8Array) => flags.map((right, i) => (i % 10 === 0 ? 0 : right));
  const models: ComparedModel[] = [
    { name: "ours", predictions: ours.predictions, trainSeconds: 1 },
    {
      name: "worse",
      predictions: { random: ours.predictions.random.map(worse), loso: worse(ours.predictions.loso) },
      trainSeconds: 2,
    },
    {
      name: "fastText (-wordNgrams 2)",
      predictions: {
        random: ours.predictions.random.map((flags) => flags.map(() => 0)),
        loso: ours.predictions.loso.map(() => 0),
      },
      trainSeconds: 4,
    },
  ];
  const comparison = compare(files, models);
  assert.equal(comparison.random.accuracy[0]!.value, ours.random);
  assert.equal(comparison.loso.accuracy[0]!.value, ours.pooled);
  assert.equal(comparison.loso.accuracy[2]!.value, 0);
  const report = peerReport(models, comparison);
  assert.equal(report.margins.random!.peer, "worse", "the best peer, not the last");
  assert.equal(report.margins.loso!.peer, "worse");
  const margin = report.margins.loso!.margin;
  assert.ok(margin.value > 0 && margin.low > 0 && margin.low <= margin.value && margin.value <= margin.high);
  assert.match(report.text, /\| ours \| \d+\.\d\d \(\d+\.\d\d to \d+\.\d\d\) \|/);
  assert.match(report.text, /\| 1\.0 s \| 0\.25× \|/, "time ratio to fastText in the same run");
  assert.match(
    report.text,
    /leave one source out \(pooled\): ours \+\d+\.\d\d \(\+\d+\.\d\d to \+\d+\.\d\d\) points/,
  );
});

const sklearnAvailable = await (async () => {
  try {
    const { success } = await new Deno.Command("/usr/bin/python3", {
      args: ["-c", "import sklearn"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
})();

Deno.test({
  name:
    "feature study: bench_peers.py --study trains each scikit-learn peer on the study's splits (needs make bench-deps)",
  ignore: !sklearnAvailable,
  fn: async (t) => {
    await using dir = await scratchDir("feature-study-");
    const csvs = await generatedSources(dir.path);
    const { files, peersInput } = await prepareSources(dir.path, csvs, {}, join(dir.path, "out"));
    for (const peer of ["nbsvm", "tfidf-char-lr", "sklearn-forest"]) {
      await t.step(peer, async () => {
        const out = join(dir.path, `${peer}.json`);
        const { success, stderr } = await new Deno.Command("/usr/bin/python3", {
          args: [
            "tools/bench_peers.py",
            "--peer",
            peer,
            "--study",
            peersInput,
            "--out",
            out,
            "--trees",
            "10",
          ],
          stdout: "null",
          stderr: "piped",
        }).output();
        assert.ok(success, new TextDecoder().decode(stderr));
        const result = JSON.parse(await Deno.readTextFile(out));
        assert.deepEqual(
          result.random.map((p: number[]) => p.length),
          SEEDS.map((seed) => heldOutReviews(files, seed).length),
        );
        assert.equal(result.loso.length, 1200);
        assert.equal(result.train_seconds.length, SEEDS.length + 3);
        assert.ok(result.loso.every((p: number) => p >= 0 && p <= 1));
        // Better than a coin on unseen sources: the peer learned from the other sources' reviews.
        const labels = (await Deno.readTextFile(peersInput)).trimEnd().split("\n").map((line) => line[0]);
        const right = result.loso.filter((p: number, i: number) =>
          (p >= 0.5 ? "2" : "1") === labels[i]
        ).length;
        assert.ok(right / labels.length > 0.6, `${peer}: ${right} of ${labels.length} right`);
      });
    }
  },
});

Deno.test("feature study: domainShiftOf() gives the model card's figures, the weakest source by name", () => {
  const result = {
    random: 0.89744,
    pooled: 0.86316,
    perSource: [0.933, 0.802, 0.95],
    predictions: { random: [], loso: new Uint8Array() },
    trainSeconds: 1,
  };
  assert.deepEqual(domainShiftOf(result, ["a.csv", "hu_liu.csv", "c.csv"], 1234), {
    reviews: 1234,
    sources: 3,
    randomSplitAccuracy: 0.897,
    leaveOneSourceOutAccuracy: 0.863,
    weakestSource: { name: "hu_liu", accuracy: 0.802 },
  });
});

Deno.test("feature study: the rows compare one change at a time and end with the product's defaults", () => {
  assert.match(VARIANTS[0]!.name, /\(before\)$/);
  const last = VARIANTS.at(-1)!;
  assert.deepEqual(last.tokenizer, {});
  assert.deepEqual(last.params, {});
  assert.equal(new Set(VARIANTS.map((variant) => variant.name)).size, VARIANTS.length);
});
