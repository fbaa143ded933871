import assert from "node:assert/strict";
import { PipelineError } from "../core/errors.ts";
import {
  MLFLOW_LIMITS,
  MlflowApiError,
  MlflowClient,
  type MlflowClientOptions,
  MlflowConnectionError,
  REQUEST_ID_TAG,
  safeArtifactSegments,
  unreachableHint,
} from "./mlflow_client.ts";
import { withRun } from "./run_lifecycle.ts";

// ---------------------------------------------------------------------------------------------------
// A fake MLflow server: a handler per call, every request recorded.

interface Call {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Headers;
  bytes: Uint8Array;
  text: string;
  json: Record<string, unknown>;
}

type Handler = (call: Call) => Response | Promise<Response>;

const URI = "http://mlflow.test:5500";
const REFUSED = "error sending request for url (http://mlflow.test:5500/x): client error (Connect): " +
  "tcp connect error: Connection refused (os error 111)";

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

function mlflowError(status: number, errorCode: string, message: string): Response {
  return json({ error_code: errorCode, message }, status);
}

function runJson(runId: string, extra: Record<string, unknown> = {}) {
  return {
    info: {
      run_id: runId,
      run_uuid: runId,
      experiment_id: "1",
      run_name: "r",
      status: "RUNNING",
      start_time: 1,
      artifact_uri: `mlflow-artifacts:/1/${runId}/artifacts`,
      lifecycle_stage: "active",
    },
    data: { tags: [] },
    ...extra,
  };
}

function fakeServer(handler: Handler) {
  const calls: Call[] = [];
  const fakeFetch: typeof fetch = async (input, init) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    const bytes = new Uint8Array(await request.arrayBuffer());
    const text = new TextDecoder().decode(bytes);
    let parsed: Record<string, unknown> = {};
    try {
      parsed = JSON.parse(text);
    } catch { /* not JSON */ }
    const call: Call = {
      method: request.method,
      path: url.pathname,
      query: url.searchParams,
      headers: request.headers,
      bytes,
      text,
      json: parsed,
    };
    calls.push(call);
    if (url.pathname === "/health") return new Response("OK");
    return await handler(call);
  };
  /** Calls other than the first-contact health check. */
  const api = () => calls.filter((c) => c.path !== "/health");
  return { calls, api, fetch: fakeFetch };
}

function client(handler: Handler, options: Partial<MlflowClientOptions> = {}) {
  const server = fakeServer(handler);
  const warnings: Record<string, unknown>[] = [];
  const mlflow = new MlflowClient({
    trackingUri: URI,
    fetch: server.fetch,
    retry: { retries: 3, baseDelayMs: 1, maxDelayMs: 20 },
    log: { warn: (_msg, fields) => warnings.push(fields ?? {}) },
    ...options,
  });
  return { mlflow, ...server, warnings };
}

// ---------------------------------------------------------------------------------------------------
// Construction, first contact, auth

Deno.test("MlflowClient() rejects a non-http URI and a URI with credentials without echoing them", () => {
  assert.throws(() => new MlflowClient({ trackingUri: "ftp://x:1" }), /must be http:\/\/ or https:\/\//);
  assert.throws(() => new MlflowClient({ trackingUri: "127.0.0.1:5500" }), PipelineError);
  assert.throws(() => new MlflowClient({ trackingUri: "not a url" }), /is not a URL/);
  assert.throws(
    () => new MlflowClient({ trackingUri: "http://bob:s3cret-pw@host:5500" }),
    (error: unknown) =>
      error instanceof PipelineError && !error.message.includes("s3cret-pw") &&
      error.message.includes("MLFLOW_TRACKING_PASSWORD"),
  );
  assert.equal(new MlflowClient({ trackingUri: "https://h/prefix/" }).trackingUri, "https://h/prefix");
});

Deno.test("health() reports an unreachable server once, naming the URI and make mlflow, without retrying", async () => {
  let attempts = 0;
  const mlflow = new MlflowClient({
    trackingUri: URI,
    retry: { retries: 5, baseDelayMs: 1 },
    fetch: () => {
      attempts++;
      return Promise.reject(new TypeError("fetch failed", { cause: new Error(REFUSED) }));
    },
  });
  await assert.rejects(() => mlflow.health(), (error: unknown) => {
    assert.ok(error instanceof MlflowConnectionError);
    assert.ok(error instanceof PipelineError);
    assert.equal(
      error.message,
      "cannot reach MLflow at http://mlflow.test:5500 (GET /health: Connection refused); " +
        "start a local server with `make mlflow` or set MLFLOW_TRACKING_URI to a running one",
    );
    return true;
  });
  assert.equal(attempts, 1);
  // Any API call checks first contact, so it fails the same way before sending anything else.
  await assert.rejects(() => mlflow.getRun("abc"), /cannot reach MLflow at http:\/\/mlflow\.test:5500/);
  assert.equal(attempts, 2);
});

Deno.test("health() gives up on a silent server after connectTimeoutMs", async () => {
  const mlflow = new MlflowClient({
    trackingUri: URI,
    connectTimeoutMs: 100,
    fetch: (_input, init) =>
      new Promise((_resolve, reject) => {
        init?.signal?.addEventListener("abort", () => reject(init.signal!.reason));
      }),
  });
  const started = performance.now();
  await assert.rejects(() => mlflow.getOrCreateExperiment("x"), /no answer within 0\.1s.*make mlflow/);
  assert.ok(performance.now() - started < 2000);
});

Deno.test("health() fails within seconds on a real closed port", async () => {
  // A port that was free a moment ago: nothing listens there.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const mlflow = new MlflowClient({ trackingUri: `http://127.0.0.1:${port}` });
  const started = performance.now();
  await assert.rejects(() => mlflow.health(), (error: unknown) => {
    assert.ok(error instanceof MlflowConnectionError);
    assert.match(
      error.message,
      new RegExp(
        `^cannot reach MLflow at http://127\\.0\\.0\\.1:${port} \\(GET /health: Connection refused\\); start`,
      ),
    );
    return true;
  });
  assert.ok(performance.now() - started < 5000);
});

Deno.test("MlflowClient sends Basic auth from username+password, else Bearer, else nothing", async (t) => {
  const cases: [string, Partial<MlflowClientOptions>, string | null][] = [
    [
      "basic wins over token",
      { username: "bob", password: "pä:ss", token: "tok" },
      `Basic ${btoa("bob:p\xc3\xa4:ss")}`,
    ],
    ["bearer from a token", { token: "tok-123" }, "Bearer tok-123"],
    ["nothing without credentials", {}, null],
  ];
  for (const [name, options, expected] of cases) {
    await t.step(name, async () => {
      const { mlflow, calls } = client(() => json({ run: runJson("r1") }), options);
      await mlflow.getRun("r1");
      assert.equal(calls.length, 2);
      for (const call of calls) assert.equal(call.headers.get("authorization"), expected);
    });
  }
});

Deno.test("MlflowClient sends JSON bodies with Content-Type application/json and encodes queries", async () => {
  const { mlflow, api } = client((call) =>
    call.path.endsWith("get-by-name")
      ? json({ experiment: { experiment_id: "7", name: "a b/é", lifecycle_stage: "active" } })
      : json({ run_info: runJson("r1").info })
  );
  await mlflow.getExperimentByName("a b/é");
  await mlflow.updateRun("r1", "FAILED", { endTime: 42 });
  const [get, post] = api();
  assert.equal(get!.method, "GET");
  assert.equal(get!.query.get("experiment_name"), "a b/é");
  assert.equal(post!.method, "POST");
  assert.equal(post!.headers.get("content-type"), "application/json");
  assert.deepEqual(post!.json, { run_id: "r1", status: "FAILED", end_time: 42 });
});

// ---------------------------------------------------------------------------------------------------
// Error mapping

Deno.test("MlflowApiError carries status, error_code and endpoint, on one line", async () => {
  const { mlflow } = client(() =>
    mlflowError(404, "RESOURCE_DOES_NOT_EXIST", "Run with id=abc not found\n[SQL: SELECT ...]")
  );
  await assert.rejects(() => mlflow.getRun("abc"), (error: unknown) => {
    assert.ok(error instanceof MlflowApiError);
    assert.equal(error.status, 404);
    assert.equal(error.errorCode, "RESOURCE_DOES_NOT_EXIST");
    assert.equal(error.endpoint, "GET /api/2.0/mlflow/runs/get");
    assert.equal(
      error.message,
      "MLflow at http://mlflow.test:5500: GET /api/2.0/mlflow/runs/get failed (404 RESOURCE_DOES_NOT_EXIST): " +
        "Run with id=abc not found",
    );
    return true;
  });
});

Deno.test("MlflowApiError explains non-JSON bodies: host check, basic auth, unknown route, FastAPI detail", async (t) => {
  const cases: {
    name: string;
    response: () => Response;
    options?: Partial<MlflowClientOptions>;
    code: string;
    message: RegExp;
  }[] = [
    {
      name: "403 host check",
      response: () =>
        new Response("Invalid Host header - possible DNS rebinding attack detected", {
          status: 403,
          headers: { "Content-Type": "text/plain" },
        }),
      code: "PERMISSION_DENIED",
      message: /refused the Host header "mlflow\.test:5500" \(403\); start the server with --allowed-hosts/,
    },
    {
      name: "401 without credentials",
      response: () => new Response("You are not authenticated.", { status: 401 }),
      code: "UNAUTHENTICATED",
      message: /requires authentication .*set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD/,
    },
    {
      name: "401 with credentials",
      response: () => new Response("Unauthorized", { status: 401 }),
      options: { username: "u", password: "p" },
      code: "UNAUTHENTICATED",
      message: /rejected the credentials/,
    },
    {
      name: "bare 404",
      response: () => new Response("<!doctype html><title>404 Not Found</title>", { status: 404 }),
      code: "ENDPOINT_NOT_FOUND",
      message:
        /has no endpoint GET \/api\/2\.0\/mlflow\/runs\/get \(404\); is it an MLflow 3 tracking server\?/,
    },
    {
      name: "FastAPI detail",
      response: () => json({ detail: "Artifact path refers to a directory" }, 400),
      code: "HTTP_400",
      message: /failed \(400 HTTP_400\): Artifact path refers to a directory$/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const { mlflow } = client(c.response, { retry: { retries: 0 }, ...c.options });
      await assert.rejects(() => mlflow.getRun("r"), (error: unknown) => {
        assert.ok(error instanceof MlflowApiError, String(error));
        assert.equal(error.errorCode, c.code);
        assert.match(error.message, c.message);
        assert.ok(!error.message.includes("\n"));
        return true;
      });
    });
  }
});

Deno.test("MlflowApiError says where to look when the server fails to store an artifact (a bare 500)", async () => {
  const { mlflow } = client(() => new Response("Internal Server Error", { status: 500 }), {
    retry: { retries: 0 },
  });
  await assert.rejects(
    () => mlflow.uploadArtifact("mlflow-artifacts:/1/r/artifacts", "model/engine.bin", new Uint8Array([1])),
    (error: unknown) => {
      assert.ok(error instanceof MlflowApiError);
      assert.match(
        error.message,
        /^MLflow at \S+ could not store an artifact: PUT \S+\/model\/engine\.bin failed \(500 HTTP_500\): Internal Server Error; the server's log says why, most often its artifact store \(--artifacts-destination\) is full or read-only$/,
      );
      return true;
    },
  );
});

Deno.test("MlflowApiError explains a 503 from a server without --serve-artifacts", async () => {
  const { mlflow } = client(() => new Response("Service Unavailable", { status: 503 }), {
    retry: { retries: 0 },
  });
  await assert.rejects(
    () => mlflow.downloadArtifact("mlflow-artifacts:/1/r/artifacts", "model/MLmodel"),
    /does not serve artifacts .*--serve-artifacts/,
  );
});

Deno.test("MlflowClient never puts credentials in error messages", async (t) => {
  const secretCases: [string, Partial<MlflowClientOptions>, string[]][] = [
    ["basic", { username: "alice", password: "hunter2-secret" }, [
      "hunter2-secret",
      btoa("alice:hunter2-secret"),
    ]],
    ["token", { token: "tok-very-secret" }, ["tok-very-secret"]],
  ];
  for (const [name, options, secrets] of secretCases) {
    await t.step(name, async () => {
      // A (misbehaving) server that echoes the Authorization header back.
      const { mlflow } = client(
        (call) => mlflowError(500, "INTERNAL_ERROR", `bad header ${call.headers.get("authorization")}`),
        { retry: { retries: 0 }, ...options },
      );
      await assert.rejects(() => mlflow.getRun("r"), (error: unknown) => {
        assert.ok(error instanceof MlflowApiError);
        for (const secret of secrets) assert.ok(!error.message.includes(secret), error.message);
        assert.match(error.message, /\*\*\*/);
        return true;
      });
    });
  }
});

// ---------------------------------------------------------------------------------------------------
// Retries

Deno.test("MlflowClient retries idempotent calls on 5xx with growing, jittered delays", async () => {
  let n = 0;
  const { mlflow, api, warnings } = client(() => {
    n++;
    return n <= 3 ? new Response("busy", { status: [503, 502, 500][n - 1]! }) : json({ run: runJson("r1") });
  }, { retry: { retries: 5, baseDelayMs: 4, maxDelayMs: 1000 } });
  const run = await mlflow.getRun("r1");
  assert.equal(run.info.runId, "r1");
  assert.equal(api().length, 4);
  const delays = warnings.map((w) => w.delayMs as number);
  assert.equal(delays.length, 3);
  // Equal jitter: attempt n waits between half and all of base * 2^n.
  delays.forEach((delay, attempt) => {
    const cap = 4 * 2 ** attempt;
    assert.ok(delay >= Math.floor(cap / 2) && delay <= cap, `delay ${delay} for attempt ${attempt}`);
  });
});

Deno.test("MlflowClient honours Retry-After on 429", async () => {
  let n = 0;
  const { mlflow, warnings } = client(() =>
    ++n === 1
      ? new Response("slow down", { status: 429, headers: { "Retry-After": "0.05" } })
      : json({ run: runJson("r1") })
  );
  await mlflow.getRun("r1");
  assert.equal(warnings.length, 1);
  assert.ok((warnings[0]!.delayMs as number) >= 20);
});

Deno.test("MlflowClient retries idempotent calls on a connection error after first contact", async () => {
  let failures = 1;
  const server = fakeServer(() => json({ run: runJson("r1") }));
  const mlflow = new MlflowClient({
    trackingUri: URI,
    retry: { retries: 2, baseDelayMs: 1 },
    fetch: (input, init) => {
      const path = new URL(input instanceof Request ? input.url : String(input)).pathname;
      if (path !== "/health" && failures-- > 0) return Promise.reject(new TypeError("connection reset"));
      return server.fetch(input, init);
    },
  });
  assert.equal((await mlflow.getRun("r1")).info.runId, "r1");
  assert.equal(server.api().length, 1);
});

Deno.test("MlflowClient does not retry a 400", async () => {
  const { mlflow, api } = client(() => mlflowError(400, "INVALID_PARAMETER_VALUE", "bad"));
  await assert.rejects(() => mlflow.updateRun("r1", "FINISHED"), /400 INVALID_PARAMETER_VALUE/);
  assert.equal(api().length, 1);
});

Deno.test("MlflowClient stops after the configured retries and throws the last error", async () => {
  const { mlflow, api } = client(() => mlflowError(503, "TEMPORARILY_UNAVAILABLE", "down"), {
    retry: { retries: 2, baseDelayMs: 1 },
  });
  await assert.rejects(() => mlflow.getRun("r1"), (error: unknown) => {
    assert.ok(error instanceof MlflowApiError);
    assert.equal(error.status, 503);
    return true;
  });
  assert.equal(api().length, 3);
});

Deno.test("logBatch() retries params/tags-only requests as they are", async () => {
  let n = 0;
  const flaky = () => ++n === 1 ? new Response("busy", { status: 503 }) : json({});
  const paramsOnly = client(flaky);
  await paramsOnly.mlflow.logBatch("r1", { params: { a: 1 } });
  assert.equal(paramsOnly.api().length, 2);
});

/**
 * A server that stores metric points as MLflow does (appending, duplicates included) and fails the first
 * `log-batch` either after storing it (the 500 of a server that saved, then crashed) or before.
 */
function metricServer(failure: "after storing" | "before storing" | "never") {
  const stored: { key: string; value: unknown; timestamp: number; step: number }[] = [];
  let batches = 0;
  const handler = (call: Call) => {
    if (call.path.endsWith("runs/log-batch")) {
      batches++;
      const metrics = call.json.metrics as typeof stored;
      if (failure === "before storing" && batches === 1) {
        return mlflowError(503, "TEMPORARILY_UNAVAILABLE", "x");
      }
      stored.push(...metrics);
      if (failure === "after storing" && batches === 1) {
        return mlflowError(500, "INTERNAL_ERROR", "db timeout");
      }
      return json({});
    }
    if (call.path.endsWith("metrics/get-history")) {
      const key = call.query.get("metric_key");
      return json({ metrics: stored.filter((m) => m.key === key) });
    }
    return mlflowError(404, "ENDPOINT_NOT_FOUND", call.path);
  };
  return { handler, stored };
}

Deno.test("logBatch() never stores a metric twice: after a 5xx it re-sends only the points the server lacks", async (t) => {
  const metrics = [
    { key: "loss", value: 0.5, step: 0, timestamp: 1000 },
    { key: "loss", value: 0.4, step: 1, timestamp: 1000 },
    { key: "loss", value: 0.4, step: 1, timestamp: 1001 },
    { key: "auc", value: Number.NaN, step: 0, timestamp: 1000 },
  ];
  for (const failure of ["after storing", "before storing", "never"] as const) {
    await t.step(`the first request fails ${failure}`, async () => {
      const server = metricServer(failure);
      const { mlflow, api } = client(server.handler);
      await mlflow.logBatch("r1", { metrics });
      assert.equal(server.stored.length, metrics.length, "each point stored exactly once");
      assert.deepEqual(
        server.stored.map((m) => `${m.key}@${m.step}/${m.timestamp}=${m.value}`).sort(),
        ["auc@0/1000=NaN", "loss@0/1000=0.5", "loss@1/1000=0.4", "loss@1/1001=0.4"],
      );
      const sent = api().filter((c) => c.path.endsWith("runs/log-batch")).length;
      assert.equal(sent, failure === "before storing" ? 2 : 1, "re-sent only when something was missing");
    });
  }

  await t.step("a 4xx is not retried, and the retries are bounded", async () => {
    const refused = client(() => mlflowError(400, "INVALID_PARAMETER_VALUE", "bad"));
    await assert.rejects(() => refused.mlflow.logBatch("r1", { metrics: { f1: 0.5 } }), /400/);
    assert.equal(refused.api().length, 1);
    const down = client((call) =>
      call.path.endsWith("get-history")
        ? json({ metrics: [] })
        : mlflowError(503, "TEMPORARILY_UNAVAILABLE", "x")
    );
    await assert.rejects(() => down.mlflow.logBatch("r1", { metrics: { f1: 0.5 } }), /503/);
    assert.equal(down.api().filter((c) => c.path.endsWith("runs/log-batch")).length, 4, "1 + 3 retries");
  });
});

Deno.test("createRun() reconciles a lost response through its request-id tag instead of creating twice", async (t) => {
  await t.step("the run was created: it is found and returned", async () => {
    let sentTag = "";
    const { mlflow, api } = client((call) => {
      if (call.path.endsWith("runs/create")) {
        sentTag = (call.json.tags as { key: string; value: string }[]).find((x) =>
          x.key === REQUEST_ID_TAG
        )!.value;
        return new Response("gateway timeout", { status: 504 });
      }
      assert.equal(call.json.filter, `tags.\`${REQUEST_ID_TAG}\` = '${sentTag}'`);
      return json({ runs: [runJson("created-before")] });
    });
    const run = await mlflow.createRun({ experimentId: "1", runName: "r", tags: { a: "b" } });
    assert.equal(run.info.runId, "created-before");
    assert.deepEqual(api().map((c) => c.path.split("/").pop()), ["create", "search"]);
  });
  await t.step("the run was not created: the create is sent again", async () => {
    let creates = 0;
    const { mlflow } = client((call) => {
      if (call.path.endsWith("runs/create")) {
        return ++creates === 1
          ? Promise.reject(new TypeError("connection reset"))
          : json({ run: runJson("new") });
      }
      return json({});
    });
    // A thrown fetch error after first contact counts as transient too.
    assert.equal((await mlflow.createRun({ experimentId: "1" })).info.runId, "new");
    assert.equal(creates, 2);
  });
  await t.step("a 400 is not retried", async () => {
    const { mlflow, api } = client(() => mlflowError(400, "INVALID_PARAMETER_VALUE", "experiment deleted"));
    await assert.rejects(() => mlflow.createRun({ experimentId: "1" }), /experiment deleted/);
    assert.equal(api().length, 1);
  });
});

Deno.test("createModelVersion() reconciles a lost response by searching its request-id tag", async () => {
  let creates = 0;
  const { mlflow, api } = client((call) => {
    if (call.path.endsWith("model-versions/create")) {
      creates++;
      return new Response("oops", { status: 500 });
    }
    const filter = call.query.get("filter")!;
    assert.match(
      filter,
      new RegExp(`^name='m' and tags\\.\`${REQUEST_ID_TAG.replace(".", "\\.")}\` = '[0-9a-f-]{36}'$`),
    );
    return json({ model_versions: [{ name: "m", version: "3", source: "s", status: "READY" }] });
  });
  const version = await mlflow.createModelVersion({ name: "m", source: "s", runId: "r" });
  assert.equal(version.version, 3);
  assert.equal(creates, 1);
  assert.equal(api().length, 2);
});

Deno.test("getOrCreateExperiment() creates, reconciles and restores", async (t) => {
  await t.step("a lost create response is reconciled with get-by-name", async () => {
    let gets = 0;
    const { mlflow, api } = client((call) => {
      if (call.path.endsWith("get-by-name")) {
        gets++;
        return gets === 1
          ? mlflowError(404, "RESOURCE_DOES_NOT_EXIST", "no")
          : json({ experiment: { experiment_id: "9", name: "e", artifact_location: "mlflow-artifacts:/9" } });
      }
      return new Response("busy", { status: 503 });
    });
    const experiment = await mlflow.getOrCreateExperiment("e");
    assert.equal(experiment.experimentId, "9");
    assert.equal(api().filter((c) => c.path.endsWith("experiments/create")).length, 1);
  });
  await t.step("RESOURCE_ALREADY_EXISTS from a concurrent create means: use theirs", async () => {
    let gets = 0;
    const { mlflow } = client((call) => {
      if (call.path.endsWith("get-by-name")) {
        return ++gets === 1
          ? mlflowError(404, "RESOURCE_DOES_NOT_EXIST", "no")
          : json({ experiment: { experiment_id: "4", name: "e", artifact_location: "mlflow-artifacts:/4" } });
      }
      return mlflowError(400, "RESOURCE_ALREADY_EXISTS", "exists");
    });
    assert.equal((await mlflow.getOrCreateExperiment("e")).experimentId, "4");
  });
  await t.step("a deleted experiment is restored", async () => {
    const { mlflow, api } = client((call) =>
      call.path.endsWith("get-by-name")
        ? json({
          experiment: { experiment_id: "5", name: "e", artifact_location: "a", lifecycle_stage: "deleted" },
        })
        : json({})
    );
    const experiment = await mlflow.getOrCreateExperiment("e");
    assert.equal(experiment.lifecycleStage, "active");
    const restore = api().find((c) => c.path.endsWith("experiments/restore"));
    assert.deepEqual(restore?.json, { experiment_id: "5" });
  });
});

Deno.test("createRegisteredModel() treats RESOURCE_ALREADY_EXISTS as fine", async () => {
  const { mlflow, api } = client(() =>
    mlflowError(400, "RESOURCE_ALREADY_EXISTS", "Registered Model (name=m) already exists.")
  );
  assert.deepEqual(await mlflow.createRegisteredModel("m"), { created: false });
  assert.equal(api().length, 1);
});

// ---------------------------------------------------------------------------------------------------
// log-batch chunking and validation

function batches(api: () => Call[]) {
  return api().filter((c) => c.path.endsWith("runs/log-batch")).map((c) => ({
    metrics: (c.json.metrics as unknown[]).length,
    params: (c.json.params as unknown[]).length,
    tags: (c.json.tags as unknown[]).length,
    bytes: c.bytes.length,
    call: c,
  }));
}

Deno.test("logBatch() splits at each count limit", async (t) => {
  const many = (n: number, prefix: string) =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, i]));
  const cases: { name: string; batch: Parameters<MlflowClient["logBatch"]>[1]; expected: number[][] }[] = [
    { name: "1000 metrics fit one request", batch: { metrics: many(1000, "m") }, expected: [[1000, 0, 0]] },
    {
      name: "1001 metrics need two",
      batch: { metrics: many(1001, "m") },
      expected: [[1000, 0, 0], [1, 0, 0]],
    },
    {
      name: "2500 metric points",
      batch: { metrics: Array.from({ length: 2500 }, (_, step) => ({ key: "loss", value: step, step })) },
      expected: [[1000, 0, 0], [1000, 0, 0], [500, 0, 0]],
    },
    { name: "100 params fit one request", batch: { params: many(100, "p") }, expected: [[0, 100, 0]] },
    { name: "101 params need two", batch: { params: many(101, "p") }, expected: [[0, 100, 0], [0, 1, 0]] },
    { name: "101 tags need two", batch: { tags: many(101, "t") }, expected: [[0, 0, 100], [0, 0, 1]] },
    {
      name: "params and tags share requests, metrics come after in their own",
      batch: { params: many(250, "p"), tags: many(150, "t"), metrics: many(3, "m") },
      expected: [[0, 100, 0], [0, 100, 0], [0, 50, 100], [0, 0, 50], [3, 0, 0]],
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const { mlflow, api } = client(() => json({}));
      const { requests } = await mlflow.logBatch("r1", c.batch);
      const sent = batches(api);
      assert.deepEqual(sent.map((b) => [b.metrics, b.params, b.tags]), c.expected);
      assert.equal(requests, c.expected.length);
    });
  }
});

Deno.test("logBatch() keeps every request body within 1 MB, counting UTF-8 bytes", async (t) => {
  const cases: [string, Parameters<MlflowClient["logBatch"]>[1]][] = [
    [
      "100 max-length params and 100 max-length tags",
      {
        params: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`p${i}`, "x".repeat(6000)])),
        tags: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`t${i}`, "y".repeat(8000)])),
      },
    ],
    [
      "multi-byte tag values (24 kB each)",
      { tags: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`t${i}`, "€".repeat(8000)])) },
    ],
    [
      "astral characters count 4 bytes",
      { params: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`p${i}`, "😀".repeat(6000)])) },
    ],
  ];
  for (const [name, batch] of cases) {
    await t.step(name, async () => {
      const { mlflow, api } = client(() => json({}));
      await mlflow.logBatch("run-id-0123456789abcdef0123456789ab", batch);
      const sent = batches(api);
      const total = sent.reduce((sum, b) => sum + b.bytes, 0);
      assert.ok(sent.length >= 2, "must be split");
      for (const b of sent) assert.ok(b.bytes <= MLFLOW_LIMITS.batchBytes, `${b.bytes} bytes`);
      // Packed tightly: no more requests than the byte total forces, plus one.
      assert.ok(sent.length <= Math.ceil(total / MLFLOW_LIMITS.batchBytes) + 1);
      // Every entity sent exactly once, in order.
      const sentKeys = sent.flatMap((b) =>
        [
          ...(b.call.json.params as { key: string }[]),
          ...(b.call.json.tags as { key: string }[]),
        ].map((e) => e.key)
      );
      assert.deepEqual(sentKeys, [...Object.keys(batch.params ?? {}), ...Object.keys(batch.tags ?? {})]);
    });
  }
});

Deno.test("logBatch() refuses over-long keys and values instead of letting MLflow truncate them", async (t) => {
  const ok: [string, Parameters<MlflowClient["logBatch"]>[1]][] = [
    ["a 250-character key", { params: { ["k".repeat(250)]: 1 } }],
    ["a 6000-character param", { params: { p: "v".repeat(6000) } }],
    ["6000 emoji (12000 UTF-16 units) in a param", { params: { p: "😀".repeat(6000) } }],
    ["an 8000-character tag", { tags: { t: "v".repeat(8000) } }],
    ["keys with / . - space and :", { metrics: { "eval/f1 macro.v-2:x": 1 } }],
  ];
  for (const [name, batch] of ok) {
    await t.step(`accepts ${name}`, async () => {
      const { mlflow, api } = client(() => json({}));
      await mlflow.logBatch("r1", batch);
      assert.equal(api().length, 1);
    });
  }
  const bad: [string, Parameters<MlflowClient["logBatch"]>[1], RegExp][] = [
    ["a 251-character key", { params: { ["k".repeat(251)]: 1 } }, /is 251 characters; the limit is 250/],
    [
      "a 6001-character param",
      { params: { big: "v".repeat(6001) } },
      /param "big" is 6001 characters; MLflow keeps at most 6000/,
    ],
    [
      "an 8001-character tag",
      { tags: { note: "v".repeat(8001) } },
      /tag "note" is 8001 characters; MLflow keeps at most 8000/,
    ],
    ["a key with ..", { metrics: { "../up": 1 } }, /normalised path/],
    ["a key with a leading /", { metrics: { "/abs": 1 } }, /normalised path/],
    ["a key with //", { tags: { "a//b": "x" } }, /normalised path/],
    ["a key with !", { params: { "bad!": 1 } }, /may only contain/],
    ["an empty key", { params: { "": 1 } }, /must not be empty/],
    ["a repeated param", { params: [{ key: "p", value: "1" }, { key: "p", value: "2" }] }, /given twice/],
    ["a fractional step", { metrics: [{ key: "m", value: 1, step: 1.5 }] }, /step must be an integer/],
  ];
  for (const [name, batch, message] of bad) {
    await t.step(`refuses ${name} before sending anything`, async () => {
      const { mlflow, api } = client(() => json({}));
      // Valid entities in the same call are not sent either: nothing is half-written.
      await assert.rejects(
        () => mlflow.logBatch("r1", { ...batch, metrics: batch.metrics ?? { fine: 1 } }),
        message,
      );
      assert.equal(api().length, 0);
    });
  }
});

Deno.test("logBatch() sends NaN and infinities as proto-JSON strings, with timestamps and steps", async () => {
  const { mlflow, api } = client(() => json({}));
  const before = Date.now();
  await mlflow.logBatch("r1", {
    metrics: [{ key: "nan", value: NaN }, { key: "inf", value: Infinity, step: 3 }, {
      key: "neg",
      value: -Infinity,
      timestamp: 5,
    }],
  });
  const metrics = api()[0]!.json.metrics as {
    key: string;
    value: unknown;
    timestamp: number;
    step: number;
  }[];
  assert.deepEqual(metrics.map((m) => [m.key, m.value, m.step]), [["nan", "NaN", 0], ["inf", "Infinity", 3], [
    "neg",
    "-Infinity",
    0,
  ]]);
  assert.ok(metrics[0]!.timestamp >= before && metrics[0]!.timestamp <= Date.now());
  assert.equal(metrics[2]!.timestamp, 5);
});

Deno.test("getRun() decodes NaN metric values and defaults omitted fields", async () => {
  const { mlflow } = client(() =>
    json({
      run: {
        info: { run_id: "r1", status: "FINISHED", artifact_uri: "mlflow-artifacts:/1/r1/artifacts" },
        data: { metrics: [{ key: "a", value: "NaN" }, { key: "b", value: 0.5 }] },
      },
    })
  );
  const run = await mlflow.getRun("r1");
  assert.ok(Number.isNaN(run.data.metrics.a));
  assert.equal(run.data.metrics.b, 0.5);
  assert.deepEqual(run.data.params, {});
  assert.deepEqual(run.data.tags, {});
});

// ---------------------------------------------------------------------------------------------------
// Artifacts

const ROOT = "mlflow-artifacts:/1/abc/artifacts";

Deno.test("uploadArtifact() PUTs raw bytes to the artifact proxy, each path segment encoded", async () => {
  const { mlflow, api } = client(() => json({}));
  const bytes = new Uint8Array([0, 255, 10, 13, 128]);
  await mlflow.uploadArtifact(ROOT, "model/a b#?.bin", bytes);
  const [put] = api();
  assert.equal(put!.method, "PUT");
  assert.equal(put!.path, "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/a%20b%23%3F.bin");
  assert.equal(put!.headers.get("content-type"), "application/octet-stream");
  assert.deepEqual(put!.bytes, bytes);
});

Deno.test("uploadArtifact() retries bytes but sends a bare stream once", async () => {
  const failing = () => new Response("busy", { status: 503 });
  const withBytes = client(failing, { retry: { retries: 2, baseDelayMs: 1 } });
  await assert.rejects(() => withBytes.mlflow.uploadArtifact(ROOT, "f.bin", new Uint8Array(3)), /503/);
  assert.equal(withBytes.api().length, 3);
  const withStream = client(failing, { retry: { retries: 2, baseDelayMs: 1 } });
  await assert.rejects(
    () => withStream.mlflow.uploadArtifact(ROOT, "f.bin", new Blob(["abc"]).stream()),
    /503/,
  );
  assert.equal(withStream.api().length, 1);
  const withFactory = client(failing, { retry: { retries: 2, baseDelayMs: 1 } });
  await assert.rejects(
    () => withFactory.mlflow.uploadArtifact(ROOT, "f.bin", () => new Blob(["abc"]).stream()),
    /503/,
  );
  assert.equal(withFactory.api().length, 3);
  assert.deepEqual(withFactory.api().map((c) => c.text), ["abc", "abc", "abc"]);
});

Deno.test("artifact calls refuse unsafe paths and foreign URIs before sending anything", async (t) => {
  const cases: [string, string, string, RegExp][] = [
    ["a .. segment", ROOT, "../other/x", /must not contain empty, "\." or "\.\." segments/],
    ["an inner ..", ROOT, "model/../../x", /"\.\."/],
    ["an absolute path", ROOT, "/etc/passwd", /must be relative/],
    ["a Windows drive", ROOT, "C:/x", /must be relative/],
    ["a backslash", ROOT, "model\\x", /backslashes/],
    ["a control character", ROOT, "model/\u0000x", /control characters/],
    ["an empty path", ROOT, "", /must not be empty/],
    ["another host", "mlflow-artifacts://evil.example:80/1/abc", "x", /points at evil\.example:80/],
    ["an s3 URI", "s3://bucket/1/abc", "x", /uses s3:/],
    ["a local path", "/tmp/mlruns/1", "x", /uses a path/],
  ];
  for (const [name, uri, path, message] of cases) {
    await t.step(name, async () => {
      const { mlflow, api } = client(() => json({}));
      await assert.rejects(() => mlflow.downloadArtifact(uri, path), message);
      await assert.rejects(() => mlflow.uploadArtifact(uri, path, "x"), message);
      assert.equal(api().length, 0);
    });
  }
});

Deno.test("safeArtifactSegments() splits a clean relative path", () => {
  assert.deepEqual(safeArtifactSegments("model/sub/f.json"), ["model", "sub", "f.json"]);
  assert.deepEqual(safeArtifactSegments("", true), []);
  assert.throws(() => safeArtifactSegments("a/"), PipelineError);
});

function listingServer(tree: Record<string, { path: string; is_dir?: boolean; file_size?: number }[]>) {
  return (call: Call): Response => {
    if (call.path === "/api/2.0/mlflow-artifacts/artifacts") {
      const files = tree[call.query.get("path")!];
      return json(files ? { files } : {});
    }
    const rel = decodeURIComponent(call.path.replace("/api/2.0/mlflow-artifacts/artifacts/", ""));
    return new Response(new TextEncoder().encode(`content of ${rel}`));
  };
}

Deno.test("downloadArtifactDir() walks the tree and keys files relative to the directory", async () => {
  const { mlflow } = client(listingServer({
    "1/abc/artifacts/model": [{ path: "MLmodel", file_size: 3 }, { path: "sub", is_dir: true }],
    "1/abc/artifacts/model/sub": [{ path: "forest.json" }, { path: "deeper", is_dir: true }],
    "1/abc/artifacts/model/sub/deeper": [{ path: "x y.bin" }],
  }));
  const files = await mlflow.downloadArtifactDir(ROOT, "model");
  assert.deepEqual([...files.keys()], ["MLmodel", "sub/forest.json", "sub/deeper/x y.bin"]);
  assert.equal(
    new TextDecoder().decode(files.get("sub/forest.json")),
    "content of 1/abc/artifacts/model/sub/forest.json",
  );
  const listing = await mlflow.listArtifacts(ROOT, "model");
  assert.deepEqual(listing, [{ path: "model/MLmodel", isDir: false, fileSize: 3 }, {
    path: "model/sub",
    isDir: true,
  }]);
});

Deno.test("downloadArtifactDir() never trusts names the server lists", async (t) => {
  for (const name of ["..", ".", "../../etc/passwd", "/etc/passwd", "a/b", "a\\b", ""]) {
    await t.step(JSON.stringify(name), async () => {
      const { mlflow, api } = client(listingServer({ "1/abc/artifacts": [{ path: name }] }));
      await assert.rejects(() => mlflow.downloadArtifactDir(ROOT), /unsafe artifact name/);
      assert.equal(api().filter((c) => c.path !== "/api/2.0/mlflow-artifacts/artifacts").length, 0);
    });
  }
});

Deno.test("downloadArtifactDir() stops at maxFiles", async () => {
  const { mlflow } = client(
    listingServer({ "1/abc/artifacts": [{ path: "a" }, { path: "b" }, { path: "c" }] }),
  );
  await assert.rejects(() => mlflow.downloadArtifactDir(ROOT, "", { maxFiles: 2 }), /over 2 files/);
});

Deno.test("resolveArtifactUri() turns runs:/ into the run's artifact URI", async () => {
  const { mlflow } = client(() => json({ run: runJson("abc") }));
  assert.equal(await mlflow.resolveArtifactUri("runs:/abc/model"), "mlflow-artifacts:/1/abc/artifacts/model");
  assert.equal(await mlflow.resolveArtifactUri(ROOT), ROOT);
});

// ---------------------------------------------------------------------------------------------------
// Registry helpers

Deno.test("getLatestVersion() asks for the highest version number", async () => {
  const { mlflow, api } = client(() => json({ model_versions: [{ name: "it's", version: "12" }] }));
  assert.equal((await mlflow.getLatestVersion("it's"))?.version, 12);
  const [call] = api();
  assert.equal(call!.query.get("filter"), `name="it's"`);
  assert.equal(call!.query.get("order_by"), "version_number DESC");
  assert.equal(call!.query.get("max_results"), "1");
  const empty = client(() => json({}));
  assert.equal(await empty.mlflow.getLatestVersion("m"), undefined);
});

Deno.test("setAlias() refuses reserved and malformed aliases", async () => {
  const { mlflow, api } = client(() => json({}));
  await assert.rejects(() => mlflow.setAlias("m", "latest", 1), /reserved/);
  await assert.rejects(() => mlflow.setAlias("m", "v2", 1), /reserved/);
  await assert.rejects(() => mlflow.setAlias("m", "a b", 1), /letters, digits/);
  assert.equal(api().length, 0);
  await mlflow.setAlias("m", "champion", 3);
  assert.deepEqual(api()[0]!.json, { name: "m", alias: "champion", version: "3" });
});

Deno.test("deleteAlias() sends its parameters as a JSON body", async () => {
  const { mlflow, api } = client(() => json({}));
  await mlflow.deleteAlias("m", "champion");
  assert.equal(api()[0]!.method, "DELETE");
  assert.deepEqual(api()[0]!.json, { name: "m", alias: "champion" });
});

// ---------------------------------------------------------------------------------------------------
// withRun

function runServer(options: { failUpdate?: boolean } = {}) {
  return (call: Call): Response => {
    if (call.path.endsWith("runs/create")) return json({ run: runJson("r9") });
    if (options.failUpdate) return mlflowError(400, "INVALID_STATE", "nope");
    return json({ run_info: { ...runJson("r9").info, status: call.json.status } });
  };
}

function statuses(api: () => Call[]): unknown[] {
  return api().filter((c) => c.path.endsWith("runs/update")).map((c) => c.json.status);
}

Deno.test("withRun() ends the run FINISHED and returns the result", async () => {
  const { mlflow, api } = client(runServer());
  assert.equal(
    await withRun(mlflow, { experimentId: "1" }, (run) => Promise.resolve(run.info.runId + "!")),
    "r9!",
  );
  assert.deepEqual(statuses(api), ["FINISHED"]);
});

Deno.test("withRun() ends the run FAILED and rethrows the original error, even when the update fails", async () => {
  const ok = client(runServer());
  await assert.rejects(
    () => withRun(ok.mlflow, { experimentId: "1" }, () => Promise.reject(new RangeError("bad"))),
    RangeError,
  );
  assert.deepEqual(statuses(ok.api), ["FAILED"]);

  const warnings: string[] = [];
  const broken = client(runServer({ failUpdate: true }));
  await assert.rejects(
    () =>
      withRun(
        broken.mlflow,
        { experimentId: "1", log: { warn: (m) => warnings.push(m) } },
        () => Promise.reject(new RangeError("bad")),
      ),
    RangeError,
  );
  assert.deepEqual(warnings, ["could not mark MLflow run r9 FAILED"]);
});

Deno.test("withRun() ends the run KILLED after an abort, even though the client's signal fired", async () => {
  const controller = new AbortController();
  const { mlflow, api } = client(runServer(), { signal: controller.signal });
  await assert.rejects(() =>
    withRun(mlflow, { experimentId: "1", signal: controller.signal }, () => {
      controller.abort(new PipelineError("interrupted by SIGINT"));
      return Promise.reject(controller.signal.reason);
    }), /interrupted by SIGINT/);
  assert.deepEqual(statuses(api), ["KILLED"]);
});

Deno.test("MlflowClient stops at once when its signal is aborted", async () => {
  const controller = new AbortController();
  const { mlflow, api } = client(() => new Response("busy", { status: 503 }), {
    signal: controller.signal,
    retry: { retries: 5, baseDelayMs: 10_000 },
  });
  const started = performance.now();
  setTimeout(() => controller.abort(new PipelineError("interrupted by SIGINT")), 30);
  await assert.rejects(() => mlflow.getRun("r1"), /interrupted by SIGINT/);
  assert.ok(performance.now() - started < 2000);
  assert.equal(api().length, 1);
});

Deno.test("unreachableHint: from a container, MLflow on the host must listen beyond 127.0.0.1", () => {
  for (const host of ["host.docker.internal:5500", "host.containers.internal:5622"]) {
    assert.match(unreachableHint(host), /^this runs in a container, .* `make mlflow MLFLOW_HOST=0\.0\.0\.0`/);
  }
  assert.match(unreachableHint("mlflow:5000"), /docker compose up -d mlflow/);
  assert.match(unreachableHint("127.0.0.1:5500"), /^start a local server with `make mlflow`/);
});
