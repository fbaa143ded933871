/**
 * Integration tests of the MLflow client against a REAL tracking server at MLFLOW_TRACKING_URI
 * (`make test` starts a throw-away one on port 5501 with `make mlflow-test`). Every run of these tests
 * uses its own experiment and model names, so they never mix with a user's experiments.
 */
import assert from "node:assert/strict";
import { PipelineError } from "../core/errors.ts";
import { isNotFound, MlflowClient, REQUEST_ID_TAG } from "./mlflow_client.ts";
import { withRun } from "./run_lifecycle.ts";
import { resolveModelVersion } from "./mlflow_registry.ts";

// The test server, never the user's 5500, when nothing is set.
const TRACKING_URI = Deno.env.get("MLFLOW_TRACKING_URI") ?? "http://127.0.0.1:5501";
const SUFFIX = `${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}`;
const EXPERIMENT = `it-client-${SUFFIX}`;
const MODEL = `it-model-${SUFFIX}`;

let ready: Promise<{ client: MlflowClient; experimentId: string }> | undefined;

/** Connects once; fails every test with one clear line when no server answers. */
function setup(): Promise<{ client: MlflowClient; experimentId: string }> {
  ready ??= (async () => {
    const client = new MlflowClient({ trackingUri: TRACKING_URI, retry: { retries: 2, baseDelayMs: 50 } });
    try {
      await client.health();
    } catch (error) {
      throw new Error(
        `no MLflow server answers at ${TRACKING_URI} (${(error as Error).message}); ` +
          "start it with make mlflow-test (make test does this for you)",
      );
    }
    const experiment = await client.getOrCreateExperiment(EXPERIMENT, {
      tags: { purpose: "integration-test" },
    });
    return { client, experimentId: experiment.experimentId };
  })();
  return ready;
}

/** A raw API call, for the few endpoints the client deliberately lacks (delete experiment, run inputs). */
async function raw(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(`${TRACKING_URI}/api/2.0/mlflow/${path}`, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

Deno.test("getOrCreateExperiment() reuses an experiment and restores a deleted one", async () => {
  const { client, experimentId } = await setup();
  const again = await client.getOrCreateExperiment(EXPERIMENT);
  assert.equal(again.experimentId, experimentId);
  assert.equal(again.lifecycleStage, "active");
  assert.match(again.artifactLocation, /^mlflow-artifacts:\//);
  assert.equal(again.tags.purpose, "integration-test");

  const name = `${EXPERIMENT}-deleted`;
  const doomed = await client.getOrCreateExperiment(name);
  await raw("POST", "experiments/delete", { experiment_id: doomed.experimentId });
  assert.equal((await client.getExperimentByName(name))?.lifecycleStage, "deleted");
  const restored = await client.getOrCreateExperiment(name);
  assert.equal(restored.experimentId, doomed.experimentId);
  assert.equal(restored.lifecycleStage, "active");
  assert.equal((await client.getExperimentByName(name))?.lifecycleStage, "active");
  assert.equal(await client.getExperimentByName(`${EXPERIMENT}-never-created`), undefined);
});

Deno.test("createRun() / updateRun() / searchRuns() go through a run's lifecycle", async () => {
  const { client, experimentId } = await setup();
  const run = await client.createRun({
    experimentId,
    runName: "lifecycle",
    tags: { "mlflow.source.name": "mlflow_integration_test.ts", "pipeline.stage": "test" },
  });
  assert.equal(run.info.status, "RUNNING");
  assert.equal(run.info.runName, "lifecycle");
  assert.equal(run.data.tags["pipeline.stage"], "test");
  assert.match(run.data.tags[REQUEST_ID_TAG] ?? "", /^[0-9a-f-]{36}$/);
  assert.equal(run.info.artifactUri, `mlflow-artifacts:/${experimentId}/${run.info.runId}/artifacts`);

  await client.logInputs(run.info.runId, [{
    name: "train_batch_0",
    digest: "0123456789abcdef0123456789abcdef0123",
    sourceType: "local",
    source: { uri: "data/processed/train_batch_0.tsv" },
    profile: { rows: 1000 },
    context: "training",
  }]);
  const inputs = (await raw("GET", `runs/get?run_id=${run.info.runId}`)).run as {
    inputs?: { dataset_inputs?: { dataset: { name: string; digest: string } }[] };
  };
  assert.deepEqual(inputs.inputs?.dataset_inputs?.map((d) => d.dataset.name), ["train_batch_0"]);

  const ended = await client.updateRun(run.info.runId, "FINISHED");
  assert.equal(ended.status, "FINISHED");
  const fetched = await client.getRun(run.info.runId);
  assert.equal(fetched.info.status, "FINISHED");
  assert.ok((fetched.info.endTime ?? 0) >= fetched.info.startTime);

  const page = await client.searchRuns({
    experimentIds: [experimentId],
    filter: "tags.`pipeline.stage` = 'test' and attributes.status = 'FINISHED'",
  });
  assert.ok(page.runs.some((r) => r.info.runId === run.info.runId));

  await assert.rejects(() => client.getRun("0".repeat(32)), (error: unknown) => isNotFound(error));
});

Deno.test("logBatch() logs more than one request's worth of metrics, params and tags without truncation", async () => {
  const { client, experimentId } = await setup();
  const run = await client.createRun({ experimentId, runName: "log-batch" });
  const runId = run.info.runId;
  const params: Record<string, string> = {};
  for (let i = 0; i < 250; i++) params[`p${i}`] = `value-${i}`;
  params.long = "x".repeat(6000);
  const tags: Record<string, string> = {};
  for (let i = 0; i < 150; i++) tags[`t${i}`] = "é".repeat(8000); // 16 kB of UTF-8 each: splits by size too
  const metrics = Array.from({ length: 2500 }, (_, step) => ({ key: "loss", value: 1 / (step + 1), step }));
  metrics.push({ key: "nan", value: NaN, step: 0 }, { key: "inf", value: Infinity, step: 0 });

  const { requests } = await client.logBatch(runId, { params, tags, metrics });
  assert.ok(requests >= 6, `expected at least 6 requests, got ${requests}`);

  const fetched = await client.getRun(runId);
  assert.equal(Object.keys(fetched.data.params).length, 251);
  assert.equal(fetched.data.params.p249, "value-249");
  assert.equal(fetched.data.params.long?.length, 6000);
  assert.equal(fetched.data.tags.t149, "é".repeat(8000));
  assert.ok(Number.isNaN(fetched.data.metrics.nan));
  // SQLite stores +Infinity as the largest double; either way it is not finite-and-small.
  assert.ok((fetched.data.metrics.inf ?? 0) > 1e300);
  const history = await client.getMetricHistory(runId, "loss");
  assert.equal(history.length, 2500);
  assert.deepEqual(new Set(history.map((p) => p.step)).size, 2500);

  // Params are write-once: the same value again is fine, a different one is a clear error.
  await client.logBatch(runId, { params: { p0: "value-0" } });
  await assert.rejects(
    () => client.logBatch(runId, { params: { p0: "changed" } }),
    (error: unknown) => error instanceof PipelineError && /INVALID_PARAMETER_VALUE/.test(error.message),
  );
  await client.updateRun(runId, "FINISHED");
});

Deno.test("uploadArtifact() / listArtifacts() / downloadArtifact() round-trip binary files", async () => {
  const { client, experimentId } = await setup();
  const run = await client.createRun({ experimentId, runName: "artifacts" });
  const root = run.info.artifactUri;
  const binary = new Uint8Array(70_000);
  for (let i = 0; i < binary.length; i++) binary[i] = (i * 7919) % 256;
  const streamed = crypto.getRandomValues(new Uint8Array(50_000));

  await client.uploadArtifact(root, "model/forest.bin", binary);
  await client.uploadArtifact(root, "model/MLmodel", "artifact_path: model\n");
  await client.uploadArtifact(root, "model/nested dir/ünï côde.json", '{"ok":true}');
  await client.uploadArtifact(root, "model/streamed.bin", new Blob([streamed]).stream());

  const listing = await client.listArtifacts(root, "model");
  assert.deepEqual(
    listing.map((f) => [f.path, f.isDir, f.fileSize]).sort(),
    [
      ["model/MLmodel", false, 21],
      ["model/forest.bin", false, 70_000],
      ["model/nested dir", true, undefined],
      ["model/streamed.bin", false, 50_000],
    ],
  );
  assert.deepEqual(await client.downloadArtifact(root, "model/forest.bin"), binary);
  assert.deepEqual(await client.downloadArtifact(root, "model/streamed.bin"), streamed);
  const stream = await client.openArtifact(root, "model/forest.bin");
  assert.deepEqual(new Uint8Array(await new Response(stream).arrayBuffer()), binary);

  const tree = await client.downloadArtifactDir(root, "model");
  assert.deepEqual([...tree.keys()].sort(), [
    "MLmodel",
    "forest.bin",
    "nested dir/ünï côde.json",
    "streamed.bin",
  ]);
  assert.equal(new TextDecoder().decode(tree.get("nested dir/ünï côde.json")), '{"ok":true}');

  await assert.rejects(
    () => client.downloadArtifact(root, "model/missing.bin"),
    (e: unknown) => isNotFound(e),
  );
  await assert.rejects(() => client.downloadArtifact(root, "../../other-run/x"), /must not contain/);
  await client.updateRun(run.info.runId, "FINISHED");
});

Deno.test("model registry: register, get, download URI, aliases, latest, tags", async () => {
  const { client, experimentId } = await setup();
  const run = await client.createRun({ experimentId, runName: "register" });
  const source = `${run.info.artifactUri}/model`;
  await client.uploadArtifact(run.info.artifactUri, "model/forest.json", '{"trees":[]}');

  assert.deepEqual(await client.createRegisteredModel(MODEL, { description: "test" }), { created: true });
  assert.deepEqual(await client.createRegisteredModel(MODEL), { created: false });
  assert.equal(await client.getLatestVersion(MODEL), undefined);
  await assert.rejects(
    () => resolveModelVersion(client, MODEL, "latest"),
    /has no versions yet; run train first/,
  );

  const v1 = await client.createModelVersion({
    name: MODEL,
    source,
    runId: run.info.runId,
    tags: { f1: "0.9" },
  });
  assert.equal(v1.version, 1);
  assert.equal(v1.runId, run.info.runId);
  assert.equal(v1.tags.f1, "0.9");
  const v2 = await client.createModelVersion({ name: MODEL, source, runId: run.info.runId });
  assert.equal(v2.version, 2);

  const got = await client.getModelVersion(MODEL, 1);
  assert.equal(got.source, source);
  assert.equal(got.status, "READY");
  const downloadUri = await client.getDownloadUri(MODEL, 1);
  assert.equal(downloadUri, source);
  const files = await client.downloadArtifactDir(downloadUri);
  assert.equal(new TextDecoder().decode(files.get("forest.json")), '{"trees":[]}');

  assert.equal((await client.getLatestVersion(MODEL))?.version, 2);
  await client.setAlias(MODEL, "champion", 1);
  assert.equal((await client.getModelVersionByAlias(MODEL, "champion")).version, 1);
  assert.deepEqual((await client.getRegisteredModel(MODEL))?.aliases, { champion: 1 });
  assert.equal((await resolveModelVersion(client, MODEL, "@champion")).version, 1);
  assert.equal((await resolveModelVersion(client, MODEL, "latest")).version, 2);
  assert.equal((await resolveModelVersion(client, MODEL, "2")).version, 2);
  await assert.rejects(
    () => resolveModelVersion(client, MODEL, "9"),
    (error: unknown) =>
      error instanceof PipelineError && error.message === `model "${MODEL}" has no version 9 (latest is 2)`,
  );
  await assert.rejects(
    () => resolveModelVersion(client, MODEL, "@staging"),
    /has no alias "staging" \(aliases: @champion=1\)/,
  );

  await client.deleteAlias(MODEL, "champion");
  await assert.rejects(() => resolveModelVersion(client, MODEL, "@champion"), /it has no aliases/);

  await client.setModelVersionTag(MODEL, 2, "validated", "true");
  assert.equal((await client.getModelVersion(MODEL, 2)).tags.validated, "true");
  const card = "**linear** classifier\n\n| metric | value |\n| --- | --- |\n| accuracy | 0.9 |";
  assert.equal((await client.updateModelVersion(MODEL, 2, card)).description, card);
  assert.equal((await client.getModelVersion(MODEL, 2)).description, card);
  const byRun = await client.searchModelVersions({
    filter: `name='${MODEL}' and run_id='${run.info.runId}'`,
  });
  assert.deepEqual(byRun.modelVersions.map((v) => v.version).sort(), [1, 2]);
  await client.updateRun(run.info.runId, "FINISHED");
});

Deno.test("withRun() ends runs FINISHED, FAILED or KILLED", async () => {
  const { client, experimentId } = await setup();
  const finishedId = await withRun(
    client,
    { experimentId, runName: "ok" },
    (run) => Promise.resolve(run.info.runId),
  );
  assert.equal((await client.getRun(finishedId)).info.status, "FINISHED");

  let failedId = "";
  await assert.rejects(
    () =>
      withRun(client, { experimentId, runName: "boom" }, (run) => {
        failedId = run.info.runId;
        return Promise.reject(new Error("boom"));
      }),
    /^Error: boom$/,
  );
  assert.equal((await client.getRun(failedId)).info.status, "FAILED");

  // The client's own signal is aborted too, as a Ctrl-C would: the final update must still go out.
  const controller = new AbortController();
  const interruptible = new MlflowClient({ trackingUri: TRACKING_URI, signal: controller.signal });
  let killedId = "";
  await assert.rejects(
    () =>
      withRun(interruptible, { experimentId, runName: "ctrl-c", signal: controller.signal }, (run) => {
        killedId = run.info.runId;
        controller.abort(new PipelineError("interrupted by SIGINT"));
        return Promise.reject(controller.signal.reason);
      }),
    /interrupted by SIGINT/,
  );
  assert.equal((await client.getRun(killedId)).info.status, "KILLED");
});
