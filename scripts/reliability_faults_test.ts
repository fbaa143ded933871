/**
 * Reliability, faults: MLflow unreachable at start, dropped connections and failed uploads (through a
 * fault-injecting proxy in front of the real test server), a real MLflow server stopped and started again
 * in the middle of a training run (a dedicated server on a free port), stages killed half way (SIGKILL,
 * SIGTERM, SIGINT), and idempotent reruns.
 *
 * Needs the shared test server at MLFLOW_TRACKING_URI (`make mlflow-test`, port 5501) and `.venv/bin/mlflow`
 * for the dedicated one. See docs/reliability.md for the whole table.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { type BatchManifest } from "../lib/data/batches.ts";
import { MlflowClient } from "../lib/tracking/mlflow_client.ts";
import {
  createProjectRoot,
  errorLines,
  mlflowEnv,
  ok,
  type ProjectRoot,
  requireServer,
  runTask,
  startTask,
  testMlflowServer,
} from "./_testing.ts";

const NO_KAGGLE = { KAGGLE_API_TOKEN: "", KAGGLE_USERNAME: "", KAGGLE_KEY: "", KAGGLE_API_BASE_URL: "" };
const STAGE_TIMEOUT_MS = 120_000;
const trackingUri = Deno.env.get("MLFLOW_TRACKING_URI") ?? "http://127.0.0.1:5501";
const decoder = new TextDecoder();

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

function uniqueName(what: string): string {
  return `test-reliability-${what}-${crypto.randomUUID().slice(0, 8)}`;
}

/** ingest → split_batches → preprocess_batch 0 [1] → preprocess_test, on generated data. */
async function prepareData(root: ProjectRoot, rows = 1600, batches = 2): Promise<void> {
  const steps: [string, string[]][] = [
    ["ingest", ["--source", "sample", "--rows", String(rows), "--test-rows", "400"]],
    ["split_batches", ["--num-batches", String(batches)]],
    ...Array.from({ length: batches }, (_, i): [string, string[]] => ["preprocess_batch", [String(i)]]),
    ["preprocess_test", []],
  ];
  for (const [task, args] of steps) {
    ok(await runTask(root, task, args, { env: NO_KAGGLE, timeoutMs: STAGE_TIMEOUT_MS }), task);
  }
}

/** Every file under a folder (relative path → SHA-256), skipping staging folders. */
async function snapshot(dir: string, prefix = ""): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return out;
    throw error;
  }
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) Object.assign(out, await snapshot(path, `${prefix}${entry.name}/`));
    else out[`${prefix}${entry.name}`] = sha256(await Deno.readFile(path));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// MLflow unreachable at start

Deno.test("train and evaluate stop within seconds, naming the URI, before any heavy work when MLflow is unreachable", async () => {
  await using root = await createProjectRoot();
  await prepareData(root, 400, 1);
  const env = { MLFLOW_TRACKING_URI: "http://127.0.0.1:9", MLFLOW_ALLOW_NET: "--allow-net=127.0.0.1:9" };
  for (
    const [task, args] of [["train", ["--batches", "0"]], ["evaluate", ["--model_version", "1"]]] as const
  ) {
    const started = performance.now();
    const run = await runTask(root, task, [...args], { env, timeoutMs: STAGE_TIMEOUT_MS });
    assert.equal(run.code, 1, run.stderr);
    assert.deepEqual(errorLines(run).length, 1, run.stderr);
    assert.match(errorLines(run)[0]!, /^error: cannot reach MLflow at http:\/\/127\.0\.0\.1:9 .*make mlflow/);
    // The vocabulary pass (train) and the download (evaluate) come after the health check.
    assert.doesNotMatch(
      run.stderr,
      /vocabulary|evaluating|retrying/,
      `${task} did work first:\n${run.stderr}`,
    );
    assert.ok(performance.now() - started < 15_000, `${task} took ${performance.now() - started} ms`);
  }
});

// ---------------------------------------------------------------------------------------------------
// Dropped connections and failed uploads, through a fault-injecting proxy

/** What the proxy does with one request. */
type Fault = "pass" | "drop-response" | Response;

interface FaultProxy extends AsyncDisposable {
  uri: string;
  /** `METHOD path` of every request, in order, with the fault applied. */
  requests: string[];
}

/**
 * A proxy in front of the real MLflow server that applies `fault` to each request: pass it on, or pass it
 * on and then cut the response (the server acted, the client never hears back: a dropped connection), or
 * answer in place of the server.
 */
function faultProxy(upstream: string, fault: (method: string, path: string) => Fault): FaultProxy {
  const requests: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const url = new URL(request.url);
    const decision = fault(request.method, url.pathname);
    requests.push(
      `${request.method} ${url.pathname} ${decision instanceof Response ? decision.status : decision}`,
    );
    if (decision instanceof Response) return decision;
    const body = request.body === null ? undefined : await request.arrayBuffer();
    const response = await fetch(upstream + url.pathname + url.search, {
      method: request.method,
      headers: request.headers,
      body,
    });
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (decision === "drop-response") {
      // Headers and a few bytes, then the connection closes short of the announced length.
      return new Response(
        new ReadableStream({
          start(controller) {
            controller.enqueue(bytes.subarray(0, 2));
            controller.close();
          },
        }),
        { status: response.status, headers: { "content-length": String(bytes.length + 100) } },
      );
    }
    return new Response(bytes, { status: response.status, headers: response.headers });
  });
  return {
    uri: `http://127.0.0.1:${server.addr.port}`,
    requests,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

/** A fault that fires on the first `count` requests matching `match`, then passes. */
function firstTimes(count: number, match: (method: string, path: string) => boolean, fault: Fault) {
  let seen = 0;
  return (method: string, path: string): Fault => match(method, path) && seen++ < count ? fault : "pass";
}

Deno.test("train survives dropped responses without duplicates, and never registers a version whose upload failed", async (t) => {
  const client = await requireServer(trackingUri);
  await using root = await createProjectRoot();
  await prepareData(root, 800, 1);
  const name = uniqueName("proxy");
  const experiment = await client.getOrCreateExperiment(name);
  const isEngineUpload = (method: string, path: string) =>
    method === "PUT" && path.endsWith("/model/engine.bin");

  await t.step("responses lost after runs/create, the engine upload and model-versions/create", async () => {
    const faults = [
      firstTimes(1, (m, p) => m === "POST" && p.endsWith("/runs/create"), "drop-response"),
      firstTimes(1, isEngineUpload, "drop-response"),
      firstTimes(1, (m, p) => m === "POST" && p.endsWith("/model-versions/create"), "drop-response"),
    ];
    await using proxy = faultProxy(trackingUri, (method, path) => {
      for (const fault of faults) {
        const decision = fault(method, path);
        if (decision !== "pass") return decision;
      }
      return "pass";
    });
    const run = ok(
      await runTask(root, "train", ["--batches", "0", "--trees", "5", "--json"], {
        env: mlflowEnv(proxy.uri, name),
        timeoutMs: STAGE_TIMEOUT_MS,
      }),
      "train through the proxy",
    );
    assert.equal(
      proxy.requests.filter((r) => r.endsWith("drop-response")).length,
      3,
      proxy.requests.join("\n"),
    );
    assert.match(run.stderr, /MLflow PUT .*engine\.bin: .*; retrying/);
    const result = JSON.parse(run.stdout);
    // The lost create responses were reconciled through the request-id tag: one run, one version.
    const runs = await client.searchRuns({ experimentIds: [experiment.experimentId], runViewType: "ALL" });
    assert.deepEqual(runs.runs.map((r) => r.info.runId), [result.run_id]);
    assert.equal(runs.runs[0]!.info.status, "FINISHED");
    const versions = await client.searchModelVersions({ filter: `name='${name}'` });
    assert.deepEqual(versions.modelVersions.map((v) => v.version), [1]);
    assert.equal(result.model_version, "1");
    const predict = await runTask(root, "predict", ["--title", "Great", "--message", "works", "--json"], {
      env: mlflowEnv(trackingUri, name),
      timeoutMs: STAGE_TIMEOUT_MS,
    });
    assert.equal(
      JSON.parse(ok(predict, "predict").stdout).model_version,
      "1",
      "the version loads and passes its checksums",
    );
  });

  await t.step("an artifact upload the server refuses fails the run: FAILED, no version", async () => {
    await using proxy = faultProxy(
      trackingUri,
      (method, path) =>
        isEngineUpload(method, path)
          ? Response.json({ error_code: "INVALID_PARAMETER_VALUE", message: "disk quota exceeded" }, {
            status: 400,
          })
          : "pass",
    );
    const run = await runTask(root, "train", ["--batches", "0", "--trees", "5"], {
      env: mlflowEnv(proxy.uri, name),
      timeoutMs: STAGE_TIMEOUT_MS,
    });
    assert.equal(run.code, 1, run.stderr);
    assert.match(
      errorLines(run)[0]!,
      /^error: MLflow at .*: PUT .*engine\.bin failed \(400 INVALID_PARAMETER_VALUE\): disk quota exceeded$/,
    );
    const runs = await client.searchRuns({
      experimentIds: [experiment.experimentId],
      orderBy: ["start_time DESC"],
    });
    assert.equal(runs.runs.length, 2);
    assert.equal(runs.runs[0]!.info.status, "FAILED");
    assert.ok(
      !proxy.requests.some((r) => r.includes("model-versions/create")),
      "no registration was attempted",
    );
    const versions = await client.searchModelVersions({ filter: `name='${name}'` });
    assert.deepEqual(versions.modelVersions.map((v) => v.version), [1], "still only the first version");
  });
});

Deno.test("MlflowClient re-sends any call whose connection was refused after first contact, and a metric batch whose response was lost only after reading what was stored", async () => {
  let refuse = 0;
  let reset = 0;
  const sent: string[] = [];
  const client = new MlflowClient({
    trackingUri: "http://mlflow.test:5500",
    retry: { retries: 3, baseDelayMs: 1 },
    fetch: (input) => {
      const path = new URL(input instanceof Request ? input.url : String(input)).pathname;
      if (path === "/health") return Promise.resolve(new Response("OK"));
      if (refuse-- > 0) {
        return Promise.reject(
          new TypeError("fetch failed", {
            cause: new Error("client error (Connect): tcp connect error: Connection refused (os error 111)"),
          }),
        );
      }
      if (reset-- > 0) return Promise.reject(new TypeError("error reading a body from connection"));
      sent.push(path);
      return Promise.resolve(Response.json({ run: { info: { run_id: "r1", status: "RUNNING" } } }));
    },
  });
  refuse = 2;
  await client.logBatch("r1", { metrics: { accuracy: 0.9 } });
  assert.deepEqual(sent, ["/api/2.0/mlflow/runs/log-batch"], "a metric batch that never left is sent once");
  refuse = 2;
  assert.equal((await client.createRun({ experimentId: "1" })).info.runId, "r1");
  reset = 1;
  await client.logBatch("r1", { metrics: { accuracy: 0.9 } });
  assert.deepEqual(
    sent.filter((p) => !p.endsWith("runs/create")),
    [
      "/api/2.0/mlflow/runs/log-batch",
      "/api/2.0/mlflow/metrics/get-history",
      "/api/2.0/mlflow/runs/log-batch",
    ],
    "a lost metric response is not re-sent blindly: the history is read first, and it lacked the point",
  );
});

// ---------------------------------------------------------------------------------------------------
// A real MLflow server restarted during a run

Deno.test("train survives a real MLflow server stopped and started again during the run, and ends FINISHED", async () => {
  await using server = testMlflowServer("mlflow-restart");
  await server.start();
  const client = await requireServer(server.uri);
  await using root = await createProjectRoot();
  await prepareData(root, 1600, 1);
  const name = uniqueName("restart");
  await using task = startTask(root, "train", ["--batches", "0", "--trees", "100", "--json"], {
    env: mlflowEnv(server.uri, name),
  });
  const [, runId] = await task.waitForStderr(/MLflow run ([0-9a-f]{32})/, 60_000);
  await task.waitForStderr(/\bfit rows=/, 60_000);
  // Paused while the server stops, so the calls after the fit meet a stopped server however fast the
  // machine grows the trees.
  task.kill("SIGSTOP");
  const stopped = performance.now();
  try {
    await server.stop();
  } finally {
    task.kill("SIGCONT");
  }
  await task.waitForStderr(/; retrying/, 60_000);
  await server.start();
  const downSeconds = (performance.now() - stopped) / 1000;
  const result = await task.result;
  assert.equal(
    result.code,
    0,
    `train failed after a ${downSeconds.toFixed(0)} s restart:\n${result.stderr}`,
  );
  const retries = result.stderr.match(/; retrying/g)?.length ?? 0;
  assert.ok(retries >= 1, result.stderr);
  const { run_id, model_version } = JSON.parse(result.stdout);
  assert.equal(run_id, runId);
  const run = await client.getRun(runId!);
  assert.equal(run.info.status, "FINISHED");
  assert.equal(run.data.params.trees, "100");
  const version = await client.getModelVersion(name, model_version);
  assert.equal(version.runId, runId);
  // Registered with its artifacts: the version loads and passes its checksums.
  const predict = await runTask(root, "predict", [
    "--title",
    "Great",
    "--message",
    "works",
    "--model_version",
    model_version,
  ], {
    env: mlflowEnv(server.uri, name),
    timeoutMs: STAGE_TIMEOUT_MS,
  });
  ok(predict, "predict with the version registered across the restart");
  console.log(`MLflow was down ${downSeconds.toFixed(1)} s; train retried ${retries} time(s) and finished`);
});

// ---------------------------------------------------------------------------------------------------
// Stages killed half way

Deno.test("train interrupted by Ctrl-C while growing the forest exits 130 and marks its MLflow run KILLED", async () => {
  const client = await requireServer(trackingUri);
  await using root = await createProjectRoot();
  await prepareData(root, 1600, 1);
  const name = uniqueName("sigint");
  await using task = startTask(root, "train", ["--batches", "0", "--trees", "3000", "--workers", "1"], {
    env: mlflowEnv(trackingUri, name),
  });
  const [, runId] = await task.waitForStderr(/MLflow run ([0-9a-f]{32})/);
  await task.waitForStderr(/\bfit rows=/);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const interrupted = performance.now();
  task.kill("SIGINT");
  const result = await task.result;
  assert.equal(result.code, 130, result.stderr);
  assert.match(result.stderr, /error: interrupted by SIGINT; no output was left half-written/);
  assert.ok(performance.now() - interrupted < 10_000, "stops promptly");
  assert.equal((await client.getRun(runId!)).info.status, "KILLED");
  assert.equal((await client.searchModelVersions({ filter: `name='${name}'` })).modelVersions.length, 0);
});

Deno.test("ingest killed with SIGKILL leaves only .partial files; the next stage refuses to start and a rerun starts clean", async () => {
  await using root = await createProjectRoot();
  const args = ["--source", "sample", "--rows", "800000", "--test-rows", "1000"];
  const run = await runTask(root, "ingest", args, {
    env: NO_KAGGLE,
    kill: { signal: "SIGKILL", afterMs: 1200 },
  });
  assert.notEqual(run.code, 0, "ingest was killed before it finished");
  const left = Object.keys(await snapshot(root.resolve("data/raw")));
  // The dead run's lock file stays too: its kernel lock went with the process, so the next run takes it over.
  assert.ok(
    left.every((file) => file.endsWith(".partial") || file === ".lock"),
    `only partial files: ${left}`,
  );
  const split = await runTask(root, "split_batches", [], { timeoutMs: STAGE_TIMEOUT_MS });
  assert.equal(split.code, 1);
  assert.deepEqual(errorLines(split), [
    "error: data/raw/train.csv not found; run `deno task ingest` (or make ingest) first",
  ]);
  const again = ok(
    await runTask(root, "ingest", [...args, "--json"], { env: NO_KAGGLE, timeoutMs: STAGE_TIMEOUT_MS }),
    "rerun",
  );
  assert.equal(JSON.parse(again.stdout).files.train.accepted, 800_000);
  assert.deepEqual(Object.keys(await snapshot(root.resolve("data/raw"))), [
    "ingest_manifest.json",
    "rejects.csv",
    "test.csv",
    "train.csv",
  ]);
});

Deno.test("split_batches killed at any point leaves whole files of the old or the new split, and a rerun completes it", async () => {
  await using root = await createProjectRoot();
  ok(
    await runTask(root, "ingest", ["--source", "sample", "--rows", "400000", "--test-rows", "100"], {
      env: NO_KAGGLE,
      timeoutMs: STAGE_TIMEOUT_MS,
    }),
    "ingest",
  );
  const batches = root.resolve("data/batches");
  const manifestOf = async (): Promise<BatchManifest> =>
    JSON.parse(await Deno.readTextFile(`${batches}/manifest.json`));
  ok(
    await runTask(root, "split_batches", ["--batch-size", "30000"], { timeoutMs: STAGE_TIMEOUT_MS }),
    "new split",
  );
  const fresh = await manifestOf();
  const newSplit = new Map(fresh.batches.map((b) => [b.file, b.sha256]));

  let killed = 0;
  for (const afterMs of [60, 200, 350, 500, 700]) {
    ok(
      await runTask(root, "split_batches", ["--batch-size", "25000"], { timeoutMs: STAGE_TIMEOUT_MS }),
      "old split",
    );
    const oldSplit = new Map((await manifestOf()).batches.map((b) => [b.file, b.sha256]));
    const run = await runTask(root, "split_batches", ["--batch-size", "30000"], {
      kill: { signal: "SIGKILL", afterMs },
      timeoutMs: STAGE_TIMEOUT_MS,
    });
    if (run.code !== 0) killed++;
    const files = await snapshot(batches);
    for (const [file, digest] of Object.entries(files)) {
      // A killed run cannot remove its temporary files (the manifest's and the rejects' are written beside
      // them); no stage reads them, and the rerun below must leave none.
      if (
        file.startsWith(".staging") || file.endsWith(".partial") || file === ".lock" ||
        file === "manifest.json" || file === "rejects.csv"
      ) {
        continue;
      }
      assert.ok(
        digest === oldSplit.get(file) || digest === newSplit.get(file),
        `killed after ${afterMs} ms: ${file} is neither a whole old nor a whole new batch`,
      );
    }
    if (files["manifest.json"] !== undefined) {
      for (const batch of (await manifestOf()).batches) {
        assert.equal(
          files[batch.file],
          batch.sha256,
          `killed after ${afterMs} ms: the manifest matches ${batch.file}`,
        );
      }
    }
    ok(
      await runTask(root, "split_batches", ["--batch-size", "30000"], { timeoutMs: STAGE_TIMEOUT_MS }),
      "rerun",
    );
    const after = await snapshot(batches);
    const expected = Object.fromEntries([...newSplit].map(([file, digest]) => [file, digest]));
    assert.deepEqual(
      Object.fromEntries(Object.entries(after).filter(([file]) => file.startsWith("train_batch_"))),
      expected,
      `killed after ${afterMs} ms: the rerun gives exactly the new split`,
    );
    assert.ok(
      !Object.keys(after).some((file) =>
        file.includes(".staging") || file.endsWith(".partial") || file === ".lock"
      ),
    );
  }
  assert.ok(killed >= 2, `only ${killed} of 5 kills landed before the split finished; make the input larger`);
});

Deno.test("split_batches and preprocess_batch stopped by SIGTERM exit 130, keep the previous outputs and leave no partial file", async () => {
  await using root = await createProjectRoot();
  ok(
    await runTask(root, "ingest", ["--source", "sample", "--rows", "600000", "--test-rows", "100"], {
      env: NO_KAGGLE,
      timeoutMs: STAGE_TIMEOUT_MS,
    }),
    "ingest",
  );
  ok(
    await runTask(root, "split_batches", ["--batch-size", "100000"], { timeoutMs: STAGE_TIMEOUT_MS }),
    "split",
  );
  const before = await snapshot(root.resolve("data/batches"));
  const split = await runTask(root, "split_batches", ["--batch-size", "50000"], {
    kill: { signal: "SIGTERM", afterMs: 250 },
    timeoutMs: STAGE_TIMEOUT_MS,
  });
  assert.equal(split.code, 130, split.stderr);
  assert.match(split.stderr, /error: interrupted by SIGTERM; no output was left half-written/);
  assert.deepEqual(await snapshot(root.resolve("data/batches")), before, "the previous split is intact");

  ok(await runTask(root, "preprocess_batch", ["1"], { timeoutMs: STAGE_TIMEOUT_MS }), "preprocess 1");
  const processed = await snapshot(root.resolve("data/processed"));
  const preprocess = await runTask(root, "preprocess_batch", ["0"], {
    kill: { signal: "SIGTERM", afterMs: 400 },
    timeoutMs: STAGE_TIMEOUT_MS,
  });
  assert.equal(preprocess.code, 130, preprocess.stderr);
  assert.match(preprocess.stderr, /interrupted by SIGTERM/);
  assert.deepEqual(
    await snapshot(root.resolve("data/processed")),
    processed,
    "no batch 0 output, batch 1 intact",
  );
});

// ---------------------------------------------------------------------------------------------------
// Idempotent reruns

Deno.test("data stages rerun on unchanged inputs skip their work, and forced reruns write the same bytes", async () => {
  await using root = await createProjectRoot();
  await prepareData(root, 3000, 2);
  const first = await snapshot(root.resolve("data"));

  const steps: [string, string[]][] = [
    ["ingest", ["--source", "sample", "--rows", "3000", "--test-rows", "400"]],
    ["split_batches", ["--num-batches", "2"]],
    ["preprocess_batch", ["0"]],
    ["preprocess_batch", ["1"]],
    ["preprocess_test", []],
  ];
  for (const [task, args] of steps) {
    const run = ok(await runTask(root, task, args, { env: NO_KAGGLE, timeoutMs: STAGE_TIMEOUT_MS }), task);
    assert.match(run.stdout + run.stderr, /up to date/i, `${task} skipped its work`);
  }
  assert.deepEqual(await snapshot(root.resolve("data")), first, "a skipped rerun changes nothing");

  for (const [task, args] of steps) {
    ok(
      await runTask(root, task, [...args, "--force"], { env: NO_KAGGLE, timeoutMs: STAGE_TIMEOUT_MS }),
      task,
    );
  }
  const forced = await snapshot(root.resolve("data"));
  const differing = Object.keys(first).filter((file) => forced[file] !== first[file]);
  // Only the records of when a stage ran may differ; every data file is the same, byte for byte.
  for (const file of differing) {
    assert.match(file, /manifest\.json$|\.meta\.json$/, `${file} changed on a forced rerun`);
  }
  assert.deepEqual(Object.keys(forced), Object.keys(first));
  const manifest = (path: string) => JSON.parse(decoder.decode(Deno.readFileSync(root.resolve(path))));
  const batches: BatchManifest = manifest("data/batches/manifest.json");
  assert.deepEqual(
    batches.batches.map((b) => b.sha256),
    batches.batches.map((b) => forced[`batches/${b.file}`]),
  );
});
