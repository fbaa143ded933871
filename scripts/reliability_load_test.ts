/**
 * Reliability, load: two `train` processes at once against one MLflow server, registering versions of the
 * same model. Both must finish, get distinct versions, and each version must point at its own run and hold
 * that run's model (nothing mixed). Needs the shared test server at MLFLOW_TRACKING_URI (`make mlflow-test`).
 * See docs/reliability.md for the whole table.
 */
import assert from "node:assert/strict";
import { MlflowClient } from "../lib/tracking/mlflow_client.ts";
import { MODEL_JSON_SHA256_TAG } from "../lib/tracking/model_store.ts";
import { sha256Hex } from "../lib/models/artifact.ts";
import { createProjectRoot, ok, runTask, startTask } from "./_testing.ts";

const trackingUri = Deno.env.get("MLFLOW_TRACKING_URI") ?? "http://127.0.0.1:5501";
const NO_KAGGLE = { KAGGLE_API_TOKEN: "", KAGGLE_USERNAME: "", KAGGLE_KEY: "", KAGGLE_API_BASE_URL: "" };

Deno.test("two train runs at once against one MLflow server both finish with distinct versions, nothing mixed", async () => {
  const client = new MlflowClient({ trackingUri, retry: { retries: 2, baseDelayMs: 100 } });
  try {
    await client.health();
  } catch (error) {
    throw new Error(`no MLflow server at ${trackingUri}; start one with "make mlflow-test" (${error})`);
  }
  const name = `test-reliability-load-${crypto.randomUUID().slice(0, 8)}`;
  const env = {
    MLFLOW_TRACKING_URI: trackingUri,
    MLFLOW_ALLOW_NET: `--allow-net=${new URL(trackingUri).host}`,
    MLFLOW_EXPERIMENT_NAME: name,
    MLFLOW_MODEL_NAME: name,
  };
  await using root = await createProjectRoot();
  for (
    const [task, args] of [
      ["ingest", ["--source", "sample", "--rows", "2000", "--test-rows", "100"]],
      ["split_batches", ["--num-batches", "2"]],
      ["preprocess_batch", ["0"]],
      ["preprocess_batch", ["1"]],
    ] as const
  ) {
    ok(await runTask(root, task, [...args], { env: NO_KAGGLE, timeoutMs: 120_000 }), task);
  }

  // Different batches and forests, so that a mix-up would show in the artifacts. Both also race to create
  // the experiment and the registered model, which neither exists yet.
  const jobs = [
    { batch: "0", trees: "7", seed: "1" },
    { batch: "1", trees: "9", seed: "2" },
  ].map((job) => ({
    ...job,
    task: startTask(root, "train", [
      "--batches",
      job.batch,
      "--trees",
      job.trees,
      "--seed",
      job.seed,
      "--json",
    ], {
      env,
    }),
  }));
  const results = await Promise.all(jobs.map(async (job) => {
    const run = ok(await job.task.result, `train on batch ${job.batch}`);
    return { ...job, ...JSON.parse(run.stdout) as { run_id: string; model_version: string } };
  }));

  assert.notEqual(results[0]!.run_id, results[1]!.run_id);
  assert.deepEqual(results.map((r) => Number(r.model_version)).sort(), [1, 2], "distinct versions 1 and 2");
  const experiment = await client.getExperimentByName(name);
  const runs = await client.searchRuns({ experimentIds: [experiment!.experimentId], runViewType: "ALL" });
  assert.equal(runs.runs.length, 2, "exactly two runs, in one experiment");
  const versions = await client.searchModelVersions({ filter: `name='${name}'` });
  assert.equal(versions.modelVersions.length, 2, "exactly two versions");

  for (const result of results) {
    const run = await client.getRun(result.run_id);
    assert.equal(run.info.status, "FINISHED");
    assert.equal(run.data.params.batches, result.batch);
    assert.equal(run.data.params.trees, result.trees);
    assert.equal(run.data.tags.registered_model_version, result.model_version);
    const version = await client.getModelVersion(name, result.model_version);
    assert.equal(version.runId, result.run_id, `version ${result.model_version} points at its own run`);
    assert.equal(version.source, `${run.info.artifactUri}/model`);
    const files = await client.downloadArtifactDir(version.source);
    const manifest = JSON.parse(new TextDecoder().decode(files.get("model.json")));
    assert.deepEqual(manifest.training.batches, [Number(result.batch)], "the version holds its run's model");
    assert.equal(manifest.training.params.trees, Number(result.trees));
    assert.match(new TextDecoder().decode(files.get("MLmodel")), new RegExp(`run_id: ${result.run_id}`));
    assert.equal(version.tags[MODEL_JSON_SHA256_TAG], sha256Hex(files.get("model.json")!));
  }
});
