/**
 * Evaluation runs against the fake MLflow server: what a run logs, the version tags and the completed
 * model card, and the promotion: a first version becomes champion, a later one that does not beat it by
 * the margin becomes challenger without the champion being scored again, and no policy moves no alias.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { scratchDir } from "../_testing.ts";
import { createLogger } from "../core/log.ts";
import { formatReviewLine } from "../data/csv.ts";
import { batchFileName } from "../data/layout.ts";
import { generateReviews } from "../data/sample_data.ts";
import { preprocessFile } from "../features/preprocess.ts";
import { resolveTrainingBatches } from "../models/fit.ts";
import { createFakeMlflow, type FakeMlflow, fakeMlflowClient } from "./_fake_mlflow.ts";
import { evaluateVersionRun, type EvaluationRunContext, promotionRecord } from "./evaluation_runs.ts";
import { MODEL_CARD_JSON } from "./model_cards.ts";
import { DEFAULT_PROMOTION_POLICY } from "./promotion.ts";
import { type TrainingRunContext, trainLinearRun } from "./training_runs.ts";

const NAME = "amazon-reviews-sentiment";

/** A processed training batch and test set of generated reviews, a fake MLflow, and both contexts. */
async function setUp(prefix: string) {
  const scratch = await scratchDir(prefix);
  const write = async (source: string, output: string, seed: number, rows: number) => {
    const reviews = [...generateReviews({ rows, seed })];
    await Deno.writeTextFile(join(scratch.path, source), reviews.map(formatReviewLine).join(""));
    await preprocessFile({
      source: join(scratch.path, source),
      output: join(scratch.path, output),
      workers: 0,
      progress: "off",
    });
    return join(scratch.path, output);
  };
  await write(batchFileName(0), batchFileName(0, ".tsv"), 3, 400);
  const testPath = await write("test.csv", "test.tsv", 11, 200);
  const fake = createFakeMlflow({ name: NAME, versions: {}, aliases: {} });
  const client = fakeMlflowClient(fake);
  const log = createLogger({ name: "evaluate-test", level: "warn" });
  const signal = new AbortController().signal;
  const training: TrainingRunContext = {
    client,
    modelName: NAME,
    experimentId: "1",
    trackingUri: client.trackingUri,
    tags: { "pipeline.stage": "train" },
    batches: (await resolveTrainingBatches(["all"], { processedDir: scratch.path, batchesDir: scratch.path }))
      .batches,
    workers: 0,
    log,
    signal,
  };
  const evaluation: EvaluationRunContext = {
    client,
    modelName: NAME,
    experimentId: "2",
    tags: { "pipeline.stage": "evaluate" },
    log,
    signal,
  };
  return { scratch, fake, client, training, evaluation, testPath };
}

function tagsOf(fake: FakeMlflow, runId: string): Record<string, string> {
  return fake.runs[runId]!.tags;
}

Deno.test("evaluateVersionRun() logs the metrics, tags the version, completes the card and promotes", async () => {
  const { scratch, fake, client, training, evaluation, testPath } = await setUp("evaluation-runs-");
  await using _ = scratch;
  const trained = await trainLinearRun(training, { params: { epochs: 2, seed: 7 } });

  const outcome = await evaluateVersionRun(evaluation, {
    version: { kind: "number", version: 1 },
    testPath,
    policy: DEFAULT_PROMOTION_POLICY,
  });
  assert.equal(outcome.version, "1");
  const run = fake.runs[outcome.runId]!;
  assert.equal(run.status, "FINISHED");
  assert.equal(run.experimentId, "2");
  assert.equal(run.tags["pipeline.stage"], "evaluate");
  assert.equal(run.tags["model.version"], "1");
  assert.equal(run.tags["model.run_id"], trained.run_id);
  assert.equal(run.params.test_set, testPath);
  const logged = Object.fromEntries(run.metrics.map((m) => [m.key, m.value]));
  assert.equal(logged.accuracy, outcome.metrics.accuracy);
  assert.equal(logged.behaviour_checks, outcome.behaviour.total);
  assert.deepEqual(run.inputs, ["test"]);
  const report = JSON.parse(new TextDecoder().decode(run.artifacts.get("metrics.json")));
  assert.deepEqual(report.promotion, promotionRecord(outcome.decision!));
  assert.ok([...run.artifacts.keys()].some((path) => path.endsWith(".svg")), "charts uploaded");

  // The version carries its scores, and its card (in the training run and here) has the evaluation.
  const version = await client.getModelVersion(NAME, 1);
  assert.equal(version.tags["eval.accuracy"], String(outcome.metrics.accuracy));
  assert.equal(version.tags["eval.test_sha256"], outcome.evaluation.meta.output.sha256);
  assert.equal(version.tags["eval.run_id"], outcome.runId);
  for (const artifacts of [fake.runs[trained.run_id]!.artifacts, run.artifacts]) {
    const card = JSON.parse(new TextDecoder().decode(artifacts.get(MODEL_CARD_JSON)));
    assert.equal(card.evaluation.run_id, outcome.runId);
    assert.equal(card.training.model.run_id, trained.run_id);
  }

  // No champion yet: the first version takes the alias, and the decision is recorded on the run.
  assert.equal(outcome.decision?.alias, "champion");
  assert.equal((await client.getRegisteredModel(NAME))?.aliases.champion, 1);
  assert.equal(tagsOf(fake, outcome.runId)["promotion.alias"], "champion");
});

Deno.test("evaluateVersionRun() makes a version that does not beat the champion by the margin challenger", async () => {
  const { scratch, fake, client, training, evaluation, testPath } = await setUp("evaluation-runs-promote-");
  await using _ = scratch;
  await trainLinearRun(training, { params: { epochs: 2, seed: 7 } });
  await trainLinearRun(training, { params: { epochs: 2, seed: 8 } });
  const first = await evaluateVersionRun(evaluation, {
    version: { kind: "number", version: 1 },
    testPath,
    policy: DEFAULT_PROMOTION_POLICY,
  });
  const downloadsBefore = fake.calls.filter((path) => path.includes("/model/engine.bin")).length;

  // No accuracy can beat another by more than 1: the second version cannot win.
  const second = await evaluateVersionRun(evaluation, {
    version: { kind: "latest" },
    testPath,
    policy: { metric: "accuracy", margin: 1 },
  });
  assert.equal(second.version, "2");
  assert.equal(second.decision?.alias, "challenger");
  assert.equal(second.decision?.champion, first.metrics.accuracy);
  const aliases = (await client.getRegisteredModel(NAME))?.aliases;
  assert.equal(aliases?.champion, 1);
  assert.equal(aliases?.challenger, 2);
  // The champion's score came from its tags on the same test set: only version 2's engine was downloaded.
  assert.equal(fake.calls.filter((path) => path.includes("/model/engine.bin")).length, downloadsBefore + 1);
  const logged = Object.fromEntries(fake.runs[second.runId]!.metrics.map((m) => [m.key, m.value]));
  assert.equal(logged.champion_accuracy, first.metrics.accuracy);
});

Deno.test("evaluateVersionRun() without a policy moves no alias", async () => {
  const { scratch, fake, client, training, evaluation, testPath } = await setUp("evaluation-runs-nopromote-");
  await using _ = scratch;
  await trainLinearRun(training, { params: { epochs: 2, seed: 7 } });
  const outcome = await evaluateVersionRun(evaluation, { version: { kind: "latest" }, testPath });
  assert.equal(outcome.decision, undefined);
  assert.deepEqual((await client.getRegisteredModel(NAME))?.aliases, {});
  assert.equal(tagsOf(fake, outcome.runId)["promotion.decision"], undefined);
  // The card is completed all the same.
  assert.match((await client.getModelVersion(NAME, 1)).description, /accuracy/i);
});
