import { strict as assert } from "node:assert";
import { join } from "node:path";
import { tempDir, toProcessedText, toyReviews, writeToyBatches } from "./_toy_data.ts";
import { hashToken } from "./hashing.ts";
import { serializeLinear } from "./model_format.ts";
import {
  countRows,
  DEFAULT_LINEAR_PARAMS,
  isHoldoutRow,
  naiveBayesRateScale,
  resolveLinearParams,
  scoreLinear,
  type TrainingFile,
  trainLinear,
} from "./trainer.ts";

const SMALL = resolveLinearParams({ dim: 8, buckets: 1 << 14, epochs: 5, learningRate: 1, seed: 3 });

async function assertPipelineError(promise: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof Error && error.name === "PipelineError", String(error));
    assert.match(error.message, message);
    assert.ok(!error.message.includes("\n"), "one line");
    return true;
  });
}

Deno.test("trainLinear() learns a separable toy set from processed files", async () => {
  await using dir = await tempDir();
  const files = await writeToyBatches(join(dir.path, "train"), toyReviews(600, 1), 250);
  const [test] = await writeToyBatches(join(dir.path, "test"), toyReviews(300, 2), 300);
  const result = await trainLinear({ files, params: SMALL });
  assert.equal(result.rows, 600);
  assert.equal(result.epochLosses.length, 5);
  assert.ok(result.epochLosses[4]! < result.epochLosses[0]!, `losses ${result.epochLosses}`);
  const score = await scoreLinear(result.model, [test!]);
  assert.equal(score.rows, 300);
  assert.equal(score.accuracy, 1);
  assert.ok(score.logLoss < 0.2, `log loss ${score.logLoss}`);
});

Deno.test("trainLinear() is deterministic: same seed, same bytes; another seed, another model", async () => {
  await using dir = await tempDir();
  const files = await writeToyBatches(dir.path, toyReviews(500, 4, 0.2), 200);
  const a = serializeLinear((await trainLinear({ files, params: SMALL })).model);
  const b = serializeLinear((await trainLinear({ files, params: SMALL })).model);
  const c = serializeLinear((await trainLinear({ files, params: { ...SMALL, seed: 4 } })).model);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  // Small shuffle blocks change the visiting order but not determinism.
  const small = { ...SMALL, shuffleRows: 7 };
  assert.deepEqual(
    serializeLinear((await trainLinear({ files, params: small })).model),
    serializeLinear((await trainLinear({ files, params: small })).model),
  );
});

Deno.test("trainLinear() warm start continues a model without changing it, and improves or keeps its score", async () => {
  await using dir = await tempDir();
  const first = await writeToyBatches(join(dir.path, "a"), toyReviews(300, 5, 0.25), 300);
  const more = await writeToyBatches(join(dir.path, "b"), toyReviews(1200, 6, 0.25), 400);
  const [test] = await writeToyBatches(join(dir.path, "test"), toyReviews(600, 7, 0.25), 600);
  const weak =
    (await trainLinear({ files: first, params: { ...SMALL, epochs: 1, learningRate: 0.05 } })).model;
  const before = await scoreLinear(weak, [test!]);
  const weakBytes = serializeLinear(weak);
  const continued = await trainLinear({ files: more, params: SMALL, initial: weak });
  const after = await scoreLinear(continued.model, [test!]);
  assert.deepEqual(serializeLinear(weak), weakBytes, "the initial model must not change");
  assert.ok(after.accuracy >= before.accuracy, `accuracy ${before.accuracy} -> ${after.accuracy}`);
  assert.ok(after.logLoss < before.logLoss, `log loss ${before.logLoss} -> ${after.logLoss}`);
  assert.equal(continued.model.history.sessions, 2);
  assert.equal(continued.model.history.examples, 300 + 1200 * 5);
});

Deno.test("trainLinear() refuses a warm start whose shape differs from the parameters", async () => {
  await using dir = await tempDir();
  const files = await writeToyBatches(dir.path, toyReviews(50, 1), 50);
  const initial = (await trainLinear({ files, params: SMALL })).model;
  await assertPipelineError(
    trainLinear({ files, params: { ...SMALL, dim: 4 }, initial }),
    /warm-start model has dim 8, buckets 16384, ngrams 2, pooling sqrt/,
  );
  await assertPipelineError(
    trainLinear({ files, params: { ...SMALL, pooling: "mean" }, initial }),
    /warm-start model has .* pooling sqrt; train with those/,
  );
});

Deno.test("naiveBayesRateScale() weights a bucket by its log-count ratio on the training reviews", async () => {
  await using dir = await tempDir();
  const reviews = [
    ...Array.from({ length: 30 }, () => ({ label: 1 as const, tokens: ["great", "the", "great"] })),
    ...Array.from({ length: 10 }, () => ({ label: 0 as const, tokens: ["awful", "the"] })),
    { label: 0 as const, tokens: ["great"] },
  ];
  await Deno.writeTextFile(join(dir.path, "a.tsv"), toProcessedText(reviews));
  const files: TrainingFile[] = [{ path: join(dir.path, "a.tsv"), rows: reviews.length, key: 0 }];
  const hashing = { buckets: 1 << 16, ngrams: 1 as const };
  const bucket = (token: string) => hashToken(token) % hashing.buckets;
  const scale = await naiveBayesRateScale(files, hashing, undefined, 0.5);
  // Counted once per review, smoothed by 1: "great" is in 30 of 30 positive and 1 of 11 negative reviews.
  const ratio = (pos: number, neg: number) => Math.log(((pos + 1) / (30 + 2)) / ((neg + 1) / (11 + 2)));
  assert.ok(Math.abs(scale[bucket("great")]! - Math.abs(ratio(30, 1))) < 1e-6);
  assert.ok(Math.abs(scale[bucket("awful")]! - Math.abs(ratio(0, 10))) < 1e-6);
  // "the" is in every review of both classes: nearly no evidence, nearly no learning.
  assert.ok(scale[bucket("the")]! < 0.1 * scale[bucket("great")]!);
  assert.equal(scale[bucket("unseen")], 0);
  const squared = await naiveBayesRateScale(files, hashing, undefined, 1);
  assert.ok(Math.abs(squared[bucket("great")]! - ratio(30, 1) ** 2) < 1e-5, "exponent 2 × weighting");
  // A hold-out split's reviews are not counted.
  const holdout = { holdout: { fraction: 0.5, seed: 1 }, side: "train" as const };
  const kept = reviews.filter((_, row) => !isHoldoutRow(holdout.holdout, 0, row));
  const positives = kept.filter((r) => r.label === 1).length;
  const negatives = kept.length - positives;
  const withGreat = kept.filter((r) => r.tokens.includes("great"));
  const pos = withGreat.filter((r) => r.label === 1).length;
  const expected = Math.abs(
    Math.log(((pos + 1) / (positives + 2)) / ((withGreat.length - pos + 1) / (negatives + 2))),
  );
  const held = await naiveBayesRateScale(files, hashing, holdout, 0.5);
  assert.ok(Math.abs(held[bucket("great")]! - expected) < 1e-6);
});

Deno.test("trainLinear() learns with and without naive-Bayes weighting, and the weighting changes training", async () => {
  await using dir = await tempDir();
  const files = await writeToyBatches(join(dir.path, "train"), toyReviews(800, 12, 0.3), 400);
  const [test] = await writeToyBatches(join(dir.path, "test"), toyReviews(400, 13, 0.3), 400);
  const params = resolveLinearParams({ buckets: 1 << 14, epochs: 20 });
  const weighted = await scoreLinear((await trainLinear({ files, params })).model, [test!]);
  const plain = await scoreLinear(
    (await trainLinear({ files, params: { ...params, nbWeighting: 0 } })).model,
    [test!],
  );
  assert.ok(weighted.accuracy >= 0.85 && plain.accuracy >= 0.85, `${weighted.accuracy} ${plain.accuracy}`);
  assert.notEqual(weighted.logLoss, plain.logLoss, "the weighting changes training");
});

Deno.test("isHoldoutRow() holds out a stable share of rows, disjoint from training, in any order", async () => {
  const split = { fraction: 0.2, seed: 11 };
  let held = 0;
  for (let row = 0; row < 10_000; row++) if (isHoldoutRow(split, 3, row)) held++;
  assert.ok(Math.abs(held / 10_000 - 0.2) < 0.02, `held ${held}`);
  assert.notDeepEqual(
    Array.from({ length: 50 }, (_, r) => isHoldoutRow(split, 3, r)),
    Array.from({ length: 50 }, (_, r) => isHoldoutRow({ ...split, seed: 12 }, 3, r)),
  );
  await using dir = await tempDir();
  const files = await writeToyBatches(dir.path, toyReviews(1000, 8), 300);
  const train = countRows(files, { holdout: split, side: "train" });
  const holdout = countRows(files, { holdout: split, side: "holdout" });
  assert.equal(train + holdout, 1000);
  const trained = await trainLinear({ files, params: SMALL, holdout: split });
  assert.equal(trained.rows, train);
  const validation = await scoreLinear(trained.model, files, { holdout: split });
  assert.equal(validation.rows, holdout);
  assert.ok(validation.accuracy > 0.95);
});

Deno.test("trainLinear() reports a malformed, truncated or missing file with one line naming it", async () => {
  await using dir = await tempDir();
  const good = toProcessedText(toyReviews(5, 1));
  const write = async (name: string, text: string): Promise<TrainingFile> => {
    const path = join(dir.path, name);
    await Deno.writeTextFile(path, text);
    return { path, rows: text.split("\n").length - 1, key: 0 };
  };
  const badLabel = await write("bad.tsv", good + "3\tgreat phone\n");
  await assertPipelineError(
    trainLinear({ files: [badLabel], params: SMALL }),
    /bad\.tsv line 6 is not "<1\|2>\\t<tokens>"/,
  );
  const truncated = await write("cut.tsv", good + "2\tgreat ph");
  await assertPipelineError(
    trainLinear({ files: [truncated], params: SMALL }),
    /cut\.tsv ends in the middle of line 6/,
  );
  await assertPipelineError(
    trainLinear({ files: [{ path: join(dir.path, "none.tsv"), rows: 3, key: 0 }], params: SMALL }),
    /none\.tsv is missing/,
  );
  const empty = await write("empty.tsv", "");
  await assertPipelineError(trainLinear({ files: [empty], params: SMALL }), /hold no reviews/);
});

Deno.test("trainLinear() reads lines longer than its read buffer and rows without tokens", async () => {
  await using dir = await tempDir();
  const long = Array.from({ length: 900_000 }, (_, i) => (i % 2 ? "great" : "phone")).join(" ");
  const path = join(dir.path, "long.tsv");
  await Deno.writeTextFile(path, `2\t${long}\n1\t\n1\tbroke\n`);
  const result = await trainLinear({ files: [{ path, rows: 3, key: 0 }], params: SMALL });
  assert.equal(result.rows, 3);
  assert.equal(result.positives, 1);
});

Deno.test("trainLinear() stops with the signal's reason when aborted", async () => {
  await using dir = await tempDir();
  const files = await writeToyBatches(dir.path, toyReviews(100, 1), 50);
  const controller = new AbortController();
  controller.abort(new Error("stop"));
  await assert.rejects(trainLinear({ files, params: SMALL, signal: controller.signal }), /stop/);
});

Deno.test("resolveLinearParams() fills defaults and names an invalid parameter", () => {
  assert.deepEqual(resolveLinearParams(), DEFAULT_LINEAR_PARAMS);
  assert.equal(resolveLinearParams({ epochs: 2 }).epochs, 2);
  assert.throws(() => resolveLinearParams({ dim: 0 }), /dim must be an integer between 1 and 1000, got 0/);
  assert.throws(() => resolveLinearParams({ learningRate: 0 }), /learningRate must be in \(0, 10\]/);
  assert.throws(() => resolveLinearParams({ ngrams: 3 as 1 }), /ngrams must be 1 or 2/);
  assert.throws(() => resolveLinearParams({ buckets: 2 ** 30, dim: 10 }), /buckets x dim must be at most/);
  assert.throws(() => resolveLinearParams({ pooling: "max" as "mean" }), /pooling must be one of mean, sqrt/);
  assert.throws(() => resolveLinearParams({ nbWeighting: -1 }), /nbWeighting must be in \[0, 2\], got -1/);
  assert.throws(() => resolveLinearParams({ nbWeighting: NaN }), /nbWeighting must be in \[0, 2\]/);
});
