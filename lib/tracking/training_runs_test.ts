/**
 * Training runs against the fake MLflow server: what a run logs and registers, the search's parent and
 * child runs, `--no-refit` registering the best trial's own model, and the rule that keeps one trial's
 * engine file at most.
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
import { resolveLinearParams } from "../models/linear/trainer.ts";
import { runLinearTrial } from "../models/linear/trial.ts";
import { createFakeMlflow, type FakeMlflow, fakeMlflowClient } from "./_fake_mlflow.ts";
import { MODEL_JSON_SHA256_TAG } from "./model_store.ts";
import {
  keepLeaderEngine,
  trainForestRun,
  type TrainingRunContext,
  trainLinearRun,
  type TrialRecord,
} from "./training_runs.ts";

const NAME = "amazon-reviews-sentiment";

/** Two processed batches of generated reviews, and a fake MLflow with a client on it. */
async function setUp(prefix: string) {
  const scratch = await scratchDir(prefix);
  const reviews = [...generateReviews({ rows: 600, seed: 3 })];
  for (const [index, part] of [reviews.slice(0, 300), reviews.slice(300)].entries()) {
    const source = join(scratch.path, batchFileName(index));
    await Deno.writeTextFile(source, part.map(formatReviewLine).join(""));
    await preprocessFile({
      source,
      output: join(scratch.path, batchFileName(index, ".tsv")),
      workers: 0,
      progress: "off",
    });
  }
  const fake = createFakeMlflow({ name: NAME, versions: {}, aliases: {} });
  const client = fakeMlflowClient(fake);
  const context: TrainingRunContext = {
    client,
    modelName: NAME,
    experimentId: "1",
    trackingUri: client.trackingUri,
    tags: { "pipeline.stage": "train" },
    batches: (await resolveTrainingBatches(["all"], { processedDir: scratch.path, batchesDir: scratch.path }))
      .batches,
    workers: 2,
    log: createLogger({ name: "train-test", level: "warn" }),
    signal: new AbortController().signal,
  };
  return { scratch, fake, context };
}

function registered(fake: FakeMlflow, version: string) {
  const state = fake.runs;
  const entry = Object.values(state).find((run) => run.tags.registered_model_version === version);
  assert.ok(entry, `a run is tagged with version ${version}`);
  return entry;
}

Deno.test("trainLinearRun() logs params, metrics and inputs, uploads the model and registers it", async () => {
  const { scratch, fake, context } = await setUp("training-runs-linear-");
  await using _ = scratch;
  const outcome = await trainLinearRun(context, { params: { epochs: 2, seed: 7 } });
  assert.deepEqual(outcome, {
    run_id: outcome.run_id,
    model_name: NAME,
    model_version: "1",
    model: "linear",
  });
  const run = registered(fake, "1");
  assert.equal(run.runId, outcome.run_id);
  assert.equal(run.status, "FINISHED");
  assert.equal(run.tags["pipeline.stage"], "train");
  assert.equal(run.tags["model.name"], NAME);
  assert.equal(run.params.model_family, "linear");
  assert.equal(run.params.epochs, "2");
  assert.equal(run.params.batches, "0 1");
  assert.deepEqual(run.metrics.filter((m) => m.key === "train_log_loss").map((m) => m.step), [1, 2]);
  assert.deepEqual(run.inputs, ["train_batches_0_1"]);
  assert.deepEqual([...run.artifacts.keys()].sort(), [
    "model/MLmodel",
    "model/engine.bin",
    "model/model.json",
    "model_card.json",
    "model_card.md",
  ]);
  const version = await context.client.getModelVersion(NAME, 1);
  assert.equal(version.runId, run.runId);
  assert.equal(version.tags.engine, "hashed-linear");
  assert.match(version.tags[MODEL_JSON_SHA256_TAG]!, /^[0-9a-f]{64}$/);
  // The version's description summarises the model card and points at it.
  assert.match(version.description, /linear sentiment classifier/);
  assert.ok(version.description.includes(`runs:/${run.runId}/model_card.md`));
});

Deno.test("with a calibration hold-out, the run logs the calibration measured on the held-out reviews", async () => {
  const { scratch, fake, context } = await setUp("training-runs-calibration-");
  await using _ = scratch;
  context.calibration = { holdout: { fraction: 0.2, seed: 11 } };
  const outcome = await trainLinearRun(context, { params: { epochs: 2, seed: 7 } });
  const run = fake.runs[outcome.run_id]!;
  assert.equal(run.params.calibration_fraction, "0.2");
  assert.ok(["none", "platt", "isotonic"].includes(run.params.calibrator!), run.params.calibrator);
  const rows = run.metrics.find((m) => m.key === "calibration_rows");
  assert.ok(rows && rows.value > 0, "calibration_rows logged");
});

Deno.test("trainForestRun() registers a forest with its vocabulary and feature importances", async () => {
  const { scratch, fake, context } = await setUp("training-runs-forest-");
  await using _ = scratch;
  const outcome = await trainForestRun(context, { forest: { trees: 4, seed: 7 }, vectorizer: { minDf: 1 } });
  assert.equal(outcome.model, "forest");
  const run = registered(fake, outcome.model_version);
  assert.equal(run.status, "FINISHED");
  assert.equal(run.params.trees, "4");
  assert.ok(run.artifacts.has("model/vocabulary.json"));
  assert.ok(run.artifacts.has("feature_importance.svg"));
});

Deno.test("a search logs a child run per trial under its parent and registers the refit best", async () => {
  const { scratch, fake, context } = await setUp("training-runs-search-");
  await using _ = scratch;
  const outcome = await trainLinearRun(context, {
    params: { seed: 7, dim: 10 },
    search: { trials: 3, holdout: { fraction: 0.2, seed: 7 }, refit: true },
  });
  const runs = Object.values(fake.runs);
  const parent = fake.runs[outcome.run_id]!;
  const children = runs.filter((run) => run.tags["mlflow.parentRunId"] === parent.runId);
  assert.equal(children.length, 3);
  assert.ok(children.every((child) => child.status === "FINISHED" && child.params.model_family === "linear"));
  assert.equal(children.filter((child) => child.tags["search.best"] === "true").length, 1);
  assert.equal(outcome.search?.trials, 3);
  assert.equal(outcome.search?.refit, true);
  assert.equal(parent.tags["search.best_run_id"], outcome.search?.best_run_id);
  assert.equal(parent.tags.registered_model_version, outcome.model_version);
  // Only the parent uploads a model: trials keep theirs in memory.
  assert.deepEqual(children.map((child) => child.artifacts.size), [0, 0, 0]);
});

Deno.test("--no-refit registers the best trial's own model, byte for byte", async () => {
  const { scratch, fake, context } = await setUp("training-runs-norefit-");
  await using _ = scratch;
  const holdout = { fraction: 0.2, seed: 7 };
  const outcome = await trainLinearRun(context, {
    params: { seed: 7, dim: 10 },
    search: { trials: 2, holdout, refit: false },
  });
  assert.equal(outcome.search?.refit, false);
  const best = Object.values(fake.runs).find((run) => run.runId === outcome.search?.best_run_id)!;
  const params = resolveLinearParams({
    seed: 7,
    dim: 10,
    epochs: Number(best.params.epochs),
    learningRate: Number(best.params.learning_rate),
  });
  const files = context.batches.map((batch) => ({
    path: batch.path,
    rows: batch.meta.rows,
    key: batch.index,
  }));
  const trial = await runLinearTrial({ files, params, holdout });
  const uploaded = fake.runs[outcome.run_id]!.artifacts.get("model/engine.bin")!;
  assert.deepEqual(uploaded, trial.engineBytes);
});

function record(index: number, accuracy: number): TrialRecord {
  return {
    index,
    params: resolveLinearParams(),
    runId: `run-${index}`,
    result: {
      validation: { accuracy, logLoss: 1 - accuracy, rows: 10 },
      rows: 10,
      positives: 5,
      epochLosses: [],
      seconds: 0,
      engineBytes: new Uint8Array([index + 1]),
    },
  };
}

Deno.test("keepLeaderEngine() keeps only the best trial's engine when it will be registered, none otherwise", () => {
  const trials = [record(0, 0.80), record(1, 0.90), record(2, 0.85), record(3, 0.90)];
  let leader: TrialRecord | undefined;
  for (const trial of trials) leader = keepLeaderEngine(leader, trial, true);
  assert.equal(leader?.index, 1, "a tie goes to the earlier trial");
  assert.deepEqual(trials.map((t) => t.result.engineBytes.length), [0, 1, 0, 0]);

  const refit = [record(0, 0.80), record(1, 0.90)];
  let none: TrialRecord | undefined;
  for (const trial of refit) none = keepLeaderEngine(none, trial, false);
  assert.equal(none, undefined);
  assert.deepEqual(refit.map((t) => t.result.engineBytes.length), [0, 0]);
});
