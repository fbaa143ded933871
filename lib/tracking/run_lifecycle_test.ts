/**
 * Heartbeats and the reaping of runs a killed process left `RUNNING`: the timer against a recording fake,
 * the reaper and `withRun` against the REAL tracking server at MLFLOW_TRACKING_URI (`make test` starts one
 * on port 5501), in an experiment of their own.
 */
import { strict as assert } from "node:assert";
import { MlflowClient } from "./mlflow_client.ts";
import { ABANDONED_TAG, HEARTBEAT_TAG, reapAbandonedRuns, startHeartbeat, withRun } from "./run_lifecycle.ts";

const TRACKING_URI = Deno.env.get("MLFLOW_TRACKING_URI") ?? "http://127.0.0.1:5501";
const EXPERIMENT = `it-heartbeat-${crypto.randomUUID().slice(0, 8)}`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("startHeartbeat() refreshes the tag until stopped, and warns once per streak of failures", async () => {
  const beats: string[] = [];
  const warnings: string[] = [];
  let failing = false;
  const fake = {
    setTag(_runId: string, key: string, value: string): Promise<void> {
      if (failing) return Promise.reject(new Error("server down"));
      assert.equal(key, HEARTBEAT_TAG);
      beats.push(value);
      return Promise.resolve();
    },
  };
  const heartbeat = startHeartbeat(fake, "run-1", {
    intervalMs: 10,
    log: { warn: (message) => void warnings.push(message) },
  });
  await sleep(60);
  assert.ok(beats.length >= 2, `expected several beats, got ${beats.length}`);
  for (const beat of beats) assert.ok(Number.isFinite(Date.parse(beat)), beat);
  failing = true;
  await sleep(60);
  assert.deepEqual(warnings, ["could not refresh the heartbeat of MLflow run run-1"]);
  failing = false;
  await sleep(30);
  await heartbeat.stop();
  const after = beats.length;
  await sleep(40);
  assert.equal(beats.length, after, "no beat after stop()");
});

Deno.test("reapAbandonedRuns() marks FAILED only RUNNING runs whose heartbeat is stale", async () => {
  const client = new MlflowClient({ trackingUri: TRACKING_URI, retry: { retries: 2, baseDelayMs: 50 } });
  const { experimentId } = await client.getOrCreateExperiment(EXPERIMENT);
  const now = Date.now();
  const iso = (msAgo: number) => new Date(now - msAgo).toISOString();
  const create = (runName: string, tags: Record<string, string>, startTime = now - 3_600_000) =>
    client.createRun({ experimentId, runName, tags, startTime });

  const stale = await create("killed", { [HEARTBEAT_TAG]: iso(20 * 60_000) });
  const fresh = await create("alive", { [HEARTBEAT_TAG]: iso(60_000) });
  const untagged = await create("other-tool", {});
  const finished = await create("done", { [HEARTBEAT_TAG]: iso(20 * 60_000) });
  await client.updateRun(finished.info.runId, "FINISHED");

  const reaped = await reapAbandonedRuns(client, experimentId, { now, reapedBy: "a test" });
  assert.deepEqual(reaped.map((run) => run.runName), ["killed"]);
  const marked = await client.getRun(stale.info.runId);
  assert.equal(marked.info.status, "FAILED");
  assert.equal(marked.info.endTime, now - 20 * 60_000, "ended at its last heartbeat");
  assert.match(
    marked.data.tags[ABANDONED_TAG]!,
    /^no heartbeat since .* \(20 min\): the process ended without closing the run \(killed\?\); marked FAILED by a test$/,
  );
  for (const run of [fresh, untagged]) {
    assert.equal((await client.getRun(run.info.runId)).info.status, "RUNNING");
  }
  assert.equal((await client.getRun(finished.info.runId)).info.status, "FINISHED");
  // Nothing left to do the second time.
  assert.deepEqual(await reapAbandonedRuns(client, experimentId, { now }), []);
  for (const run of [fresh, untagged]) await client.updateRun(run.info.runId, "FINISHED");
});

Deno.test("withRun() tags its run with a heartbeat when it starts and refreshes it while working", async () => {
  const client = new MlflowClient({ trackingUri: TRACKING_URI, retry: { retries: 2, baseDelayMs: 50 } });
  const { experimentId } = await client.getOrCreateExperiment(EXPERIMENT);
  let first = "";
  const runId = await withRun(client, { experimentId, runName: "beating", heartbeatMs: 100 }, async (run) => {
    first = run.data.tags[HEARTBEAT_TAG]!;
    assert.ok(Number.isFinite(Date.parse(first)), `heartbeat tag at creation: ${first}`);
    await sleep(350);
    return run.info.runId;
  });
  const run = await client.getRun(runId);
  assert.equal(run.info.status, "FINISHED");
  assert.ok(Date.parse(run.data.tags[HEARTBEAT_TAG]!) > Date.parse(first), "the heartbeat moved on");
});
