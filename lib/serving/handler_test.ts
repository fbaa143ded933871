import assert from "node:assert/strict";
import fc from "fast-check";
import { createLogger } from "../core/log.ts";
import { createWordListPredictor, wordListModel } from "./_wordlist_model.ts";
import { type Api, createApi } from "./handler.ts";
import { type LoadedModel, ReloadingModelProvider, staticModelProvider } from "./model_provider.ts";

const BASE = "http://localhost";

/** An API over a fixed model; `null` for one that has no model loaded. */
function apiWith(model: LoadedModel | null = wordListModel("7"), lines: string[] = []): Api {
  return createApi({
    provider: staticModelProvider(model ?? undefined),
    appVersion: "9.9.9",
    log: createLogger({ json: true, name: "serve", sink: (line) => lines.push(line) }),
    limits: { bodyTimeoutMs: 200 },
  });
}

function post(path: string, body: unknown, headers: Record<string, string> = {}): Request {
  return new Request(BASE + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** Checks an error response's status and JSON shape, and returns its message. */
async function expectError(response: Response, status: number, code?: string): Promise<string> {
  assert.equal(response.status, status);
  assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
  const body = await response.json();
  assert.deepEqual(Object.keys(body).sort(), ["error_code", "message"]);
  if (code) assert.equal(body.error_code, code);
  assert.equal(typeof body.message, "string");
  assert.ok(!body.message.includes("\n"), "one-line message");
  assert.doesNotMatch(body.message, /\bat .*\.ts:\d+/, "no stack trace");
  return body.message;
}

Deno.test("handler() answers GET /health with 200 even before a model is loaded", async () => {
  const response = await apiWith(null).handler(new Request(BASE + "/health"));
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { status: "ok" });
});

Deno.test("handler() answers /ready and /ping with 503 until a model is loaded, then 200", async () => {
  const empty = apiWith(null);
  const notReady = await empty.handler(new Request(BASE + "/ready"));
  assert.equal(notReady.headers.get("retry-after"), "5");
  assert.match(await expectError(notReady, 503, "TEMPORARILY_UNAVAILABLE"), /no model is loaded/);
  await expectError(await empty.handler(new Request(BASE + "/ping")), 503);

  const api = apiWith();
  const ready = await api.handler(new Request(BASE + "/ready"));
  assert.equal(ready.status, 200);
  const body = await ready.json();
  assert.equal(body.status, "ready");
  assert.equal(body.model.version, "7");
  const ping = await api.handler(new Request(BASE + "/ping"));
  assert.equal(ping.status, 200);
  assert.equal(await ping.text(), "\n");
});

Deno.test("handler() reports model name, version, run id and app version on GET /version", async () => {
  const body = await (await apiWith().handler(new Request(BASE + "/version"))).json();
  assert.equal(body.model_name, "wordlist-demo");
  assert.equal(body.model_version, "7");
  assert.equal(body.run_id, "wordlist-run-7");
  assert.equal(body.app_version, "9.9.9");
  assert.equal(body.deno_version, Deno.version.deno);
  const empty = await (await apiWith(null).handler(new Request(BASE + "/version"))).json();
  assert.equal(empty.model_name, null);
  assert.equal(empty.app_version, "9.9.9");
});

Deno.test("handler() scores one review on POST /predict with label, polarity and probabilities", async () => {
  const response = await apiWith().handler(
    post("/predict", { title: "Great product", message: "I love it, works perfectly" }),
  );
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("x-model-version"), "wordlist-demo/7");
  const body = await response.json();
  assert.deepEqual(Object.keys(body).sort(), ["label", "polarity", "positive_probability", "probability"]);
  assert.equal(body.label, "positive");
  assert.equal(body.polarity, 2);
  assert.ok(body.probability > 0.5 && body.probability <= 1);
  assert.equal(body.positive_probability, body.probability);

  const negative = await (await apiWith().handler(
    post("/predict", { title: "Terrible", message: "Broke after a day, a waste of money" }),
  )).json();
  assert.equal(negative.label, "negative");
  assert.equal(negative.polarity, 1);
  assert.ok(negative.probability > 0.5);
  assert.ok(Math.abs(negative.positive_probability - (1 - negative.probability)) < 1e-12);
});

Deno.test("handler() scores a list on POST /predict and keeps the order", async () => {
  const response = await apiWith().handler(post("/predict", [
    { title: "Awful", message: "junk" },
    { message: "great, I love it" },
    { title: "Excellent", message: "" },
  ]));
  assert.equal(response.status, 200);
  const { predictions } = await response.json();
  assert.deepEqual(predictions.map((p: { label: string }) => p.label), ["negative", "positive", "positive"]);
});

Deno.test("handler() speaks MLflow's scoring protocol on POST /invocations", async (t) => {
  const reviews = [{ title: "Bad", message: "it broke" }, { title: "Great", message: "love it" }];
  const expected = reviews.map((r) => {
    const p = createWordListPredictor().predict({ title: r.title, text: r.message });
    return { label: p.label, polarity: p.polarity, probability: p.probability };
  });
  const bodies: Record<string, unknown> = {
    dataframe_split: {
      dataframe_split: { columns: ["title", "message"], data: reviews.map((r) => [r.title, r.message]) },
    },
    "dataframe_split with index and reordered columns": {
      dataframe_split: {
        index: [5, 6],
        columns: ["message", "title"],
        data: reviews.map((r) => [r.message, r.title]),
      },
    },
    dataframe_records: { dataframe_records: reviews },
    "inputs as columns": {
      inputs: { title: reviews.map((r) => r.title), message: reviews.map((r) => r.message) },
    },
    "inputs as records": { inputs: reviews },
    "instances as records, with params": { instances: reviews, params: {} },
  };
  for (const [name, body] of Object.entries(bodies)) {
    await t.step(name, async () => {
      const response = await apiWith().handler(post("/invocations", body));
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), { predictions: expected });
    });
  }
  await t.step("inputs as one row of scalars", async () => {
    const response = await apiWith().handler(post("/invocations", { inputs: reviews[1] }));
    assert.deepEqual(await response.json(), { predictions: [expected[1]] });
  });
});

Deno.test("handler() refuses bad requests with a JSON error and the right status", async (t) => {
  const api = apiWith();
  const deep = "[".repeat(100_000) + "]".repeat(100_000);
  const cases: { name: string; request: () => Request; status: number; code: string; message: RegExp }[] = [
    {
      name: "malformed JSON",
      request: () => post("/predict", '{"title": "x",'),
      status: 400,
      code: "BAD_REQUEST",
      message: /not valid JSON/,
    },
    {
      name: "empty body",
      request: () => post("/predict", ""),
      status: 400,
      code: "BAD_REQUEST",
      message: /empty/,
    },
    {
      name: "invalid UTF-8",
      request: () =>
        new Request(BASE + "/predict", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: new Uint8Array([0x22, 0xff, 0x22]),
        }),
      status: 400,
      code: "BAD_REQUEST",
      message: /UTF-8/,
    },
    {
      name: "message of the wrong type",
      request: () => post("/predict", { title: "x", message: 42 }),
      status: 400,
      code: "BAD_REQUEST",
      message: /"message" must be a string, got number/,
    },
    {
      name: "title of the wrong type",
      request: () => post("/predict", { title: ["x"], message: "y" }),
      status: 400,
      code: "BAD_REQUEST",
      message: /"title" must be a string, got a list/,
    },
    {
      name: "missing message",
      request: () => post("/predict", { title: "x" }),
      status: 400,
      code: "BAD_REQUEST",
      message: /missing field "message"/,
    },
    {
      name: "typo in a field name",
      request: () => post("/predict", { title: "x", text: "y" }),
      status: 400,
      code: "BAD_REQUEST",
      message: /unknown field "text" \(use "message"/,
    },
    {
      name: "both fields blank",
      request: () => post("/predict", { title: " ", message: "" }),
      status: 400,
      code: "BAD_REQUEST",
      message: /both "title" and "message" are empty/,
    },
    {
      name: "a number body",
      request: () => post("/predict", "3"),
      status: 400,
      code: "BAD_REQUEST",
      message: /expected an object/,
    },
    {
      name: "a bad list item",
      request: () => post("/predict", [{ message: "ok" }, "nope"]),
      status: 400,
      code: "BAD_REQUEST",
      message: /^item 1: expected an object/,
    },
    {
      name: "an empty list",
      request: () => post("/predict", []),
      status: 400,
      code: "BAD_REQUEST",
      message: /empty/,
    },
    {
      name: "deep nesting",
      request: () => post("/predict", deep),
      status: 400,
      code: "BAD_REQUEST",
      message: /expected an object/,
    },
    {
      name: "thousands of items",
      request: () => post("/predict", Array.from({ length: 5000 }, () => ({ message: "a" }))),
      status: 413,
      code: "PAYLOAD_TOO_LARGE",
      message: /5,000 reviews in one request is over the limit of 1,000/,
    },
    {
      name: "a too long message",
      request: () => post("/predict", { message: "a".repeat(20_001) }),
      status: 413,
      code: "PAYLOAD_TOO_LARGE",
      message: /"message" is 20,001 characters long/,
    },
    {
      name: "a huge body (Content-Length)",
      request: () => post("/predict", JSON.stringify({ message: "a".repeat(2_000_000) })),
      status: 413,
      code: "PAYLOAD_TOO_LARGE",
      message: /larger than the limit of 1,048,576 bytes/,
    },
    {
      name: "no Content-Type",
      request: () => new Request(BASE + "/predict", { method: "POST", body: new Blob(['{"message":"x"}']) }),
      status: 415,
      code: "UNSUPPORTED_MEDIA_TYPE",
      message: /missing Content-Type/,
    },
    {
      name: "a form body",
      request: () => post("/predict", "message=x", { "content-type": "application/x-www-form-urlencoded" }),
      status: 415,
      code: "UNSUPPORTED_MEDIA_TYPE",
      message: /application\/json/,
    },
    {
      name: "a non-UTF-8 charset",
      request: () => post("/predict", "{}", { "content-type": "application/json; charset=latin1" }),
      status: 415,
      code: "UNSUPPORTED_MEDIA_TYPE",
      message: /UTF-8 only/,
    },
    {
      name: "CSV on /invocations",
      request: () => post("/invocations", "title,message\nx,y\n", { "content-type": "text/csv" }),
      status: 415,
      code: "UNSUPPORTED_MEDIA_TYPE",
      message: /text\/csv/,
    },
    {
      name: "a list on /invocations",
      request: () => post("/invocations", [{ message: "x" }]),
      status: 400,
      code: "BAD_REQUEST",
      message: /must be a JSON object with exactly one of "dataframe_split"/,
    },
    {
      name: "two formats on /invocations",
      request: () => post("/invocations", { inputs: [], dataframe_records: [] }),
      status: 400,
      code: "BAD_REQUEST",
      message: /it has "inputs", "dataframe_records"/,
    },
    {
      name: "a split without message",
      request: () => post("/invocations", { dataframe_split: { columns: ["title"], data: [["x"]] } }),
      status: 400,
      code: "BAD_REQUEST",
      message: /no "message" column/,
    },
    {
      name: "a ragged split row",
      request: () =>
        post("/invocations", { dataframe_split: { columns: ["title", "message"], data: [["x"]] } }),
      status: 400,
      code: "BAD_REQUEST",
      message: /dataframe_split.data\[0\]: expected a list of 2 values/,
    },
    {
      name: "mismatched input columns",
      request: () => post("/invocations", { inputs: { title: ["a"], message: ["b", "c"] } }),
      status: 400,
      code: "BAD_REQUEST",
      message: /as long as "inputs.message"/,
    },
    {
      name: "an unknown path",
      request: () => new Request(BASE + "/predictions"),
      status: 404,
      code: "ENDPOINT_NOT_FOUND",
      message: /no route "\/predictions"/,
    },
    {
      name: "GET on /predict",
      request: () => new Request(BASE + "/predict"),
      status: 405,
      code: "METHOD_NOT_ALLOWED",
      message: /does not accept GET; use POST/,
    },
    {
      name: "DELETE on /health",
      request: () => new Request(BASE + "/health", { method: "DELETE" }),
      status: 405,
      code: "METHOD_NOT_ALLOWED",
      message: /use GET or HEAD/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const response = await api.handler(c.request());
      assert.match(await expectError(response, c.status, c.code), c.message);
      assert.ok(response.headers.get("x-request-id"));
    });
  }
  await t.step("405 names the allowed methods in Allow", async () => {
    const response = await api.handler(new Request(BASE + "/predict"));
    assert.equal(response.headers.get("allow"), "POST");
    await response.body?.cancel();
  });
  await t.step("the server still answers a good request afterwards", async () => {
    const response = await api.handler(post("/predict", { message: "great" }));
    assert.equal(response.status, 200);
    await response.body?.cancel();
  });
});

Deno.test("handler() refuses a chunked body over the limit while it streams in, without buffering it", async () => {
  let pulled = 0;
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      controller.enqueue(new Uint8Array(64 * 1024).fill(0x20));
    },
  });
  const request = new Request(BASE + "/predict", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: endless,
  });
  assert.equal(request.headers.get("content-length"), null);
  await expectError(await apiWith().handler(request), 413, "PAYLOAD_TOO_LARGE");
  assert.ok(pulled <= 20, `read ${pulled} chunks of 64 KiB for a 1 MiB limit`);
});

Deno.test("handler() answers a slow client with 408 and keeps serving others", async () => {
  const api = apiWith();
  const stalled = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode('{"message": "gre'));
      // Never closes: a client that stops sending mid-body.
    },
  });
  const slow = api.handler(
    new Request(BASE + "/predict", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: stalled,
    }),
  );
  const fast = await api.handler(post("/predict", { message: "great" }));
  assert.equal(fast.status, 200, "a good request is answered while the slow one waits");
  await fast.body?.cancel();
  assert.match(await expectError(await slow, 408, "REQUEST_TIMEOUT"), /within 0.2 s/);
});

Deno.test("handler() answers 503 on scoring routes while no model is loaded", async () => {
  const api = apiWith(null);
  await expectError(await api.handler(post("/predict", { message: "x" })), 503, "TEMPORARILY_UNAVAILABLE");
  await expectError(await api.handler(post("/invocations", { inputs: [] })), 503, "TEMPORARILY_UNAVAILABLE");
});

Deno.test("handler() turns an exception in the model into a 500 with a request id, logging the stack", async () => {
  const lines: string[] = [];
  const broken: LoadedModel = {
    ...wordListModel(),
    predictor: {
      predict() {
        throw new TypeError("boom in the engine");
      },
    },
  };
  const api = apiWith(broken, lines);
  const response = await api.handler(post("/predict", { message: "x" }, { "x-request-id": "req-42" }));
  const message = await expectError(response, 500, "INTERNAL_ERROR");
  assert.match(message, /request id req-42/);
  assert.doesNotMatch(message, /boom/, "the exception stays on the server");
  assert.equal(response.headers.get("x-request-id"), "req-42");
  const logged = lines.map((line) => JSON.parse(line)).find((entry) => entry.msg === "unexpected error");
  assert.ok(logged, "the error is logged");
  assert.equal(logged.request_id, "req-42");
  assert.match(logged.error, /TypeError: boom in the engine\n\s+at /);
});

Deno.test("handler() writes one JSON log line per request without the review text", async () => {
  const lines: string[] = [];
  const api = apiWith(wordListModel("3"), lines);
  await (await api.handler(post("/predict", { title: "secret title", message: "secret text" }))).body
    ?.cancel();
  await (await api.handler(new Request(BASE + "/nope?token=abc"))).body?.cancel();
  const entries = lines.map((line) => JSON.parse(line));
  assert.equal(entries.length, 2);
  const [ok, missing] = entries;
  assert.equal(ok.level, "info");
  assert.equal(ok.msg, "request");
  assert.equal(ok.method, "POST");
  assert.equal(ok.path, "/predict");
  assert.equal(ok.status, 200);
  assert.equal(ok.items, 1);
  assert.equal(ok.model_version, "3");
  assert.equal(typeof ok.duration_ms, "number");
  assert.match(ok.request_id, /^[0-9a-f-]{36}$/);
  assert.equal(missing.status, 404);
  assert.equal(missing.path, "/nope", "the query string is not logged");
  assert.equal(missing.error_code, "ENDPOINT_NOT_FOUND");
  assert.ok(!lines.join("\n").includes("secret"));
});

Deno.test("handler() exposes request counts and a latency histogram on GET /metrics", async () => {
  const api = apiWith();
  for (let i = 0; i < 3; i++) {
    await (await api.handler(post("/predict", { message: "great" }))).body?.cancel();
  }
  await (await api.handler(post("/predict", "{"))).body?.cancel();
  await (await api.handler(new Request(BASE + "/wp-admin"))).body?.cancel();
  const response = await api.handler(new Request(BASE + "/metrics"));
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const text = await response.text();
  assert.match(text, /^http_requests_total\{route="\/predict",method="POST",status="200"\} 3$/m);
  assert.match(text, /^http_requests_total\{route="\/predict",method="POST",status="400"\} 1$/m);
  assert.match(text, /^http_requests_total\{route="unmatched",method="GET",status="404"\} 1$/m);
  assert.match(text, /^# TYPE http_request_duration_seconds histogram$/m);
  assert.match(text, /^http_request_duration_seconds_bucket\{route="\/predict",le="\+Inf"\} 4$/m);
  assert.match(text, /^http_request_duration_seconds_count\{route="\/predict"\} 4$/m);
  assert.match(text, /^predictions_total 3$/m);
  assert.match(text, /^model_info\{name="wordlist-demo",version="7",run_id="wordlist-run-7"\} 1$/m);
  assert.ok(!text.includes("wp-admin"), "unknown paths do not become labels");
});

Deno.test("handler() serves the page on GET / with a strict Content-Security-Policy", async () => {
  const response = await apiWith().handler(new Request(BASE + "/"));
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/html; charset=utf-8");
  assert.match(
    response.headers.get("content-security-policy") ?? "",
    /default-src 'none'; script-src 'sha256-/,
  );
  assert.match(await response.text(), /<form id="review-form">/);
});

Deno.test("handler() answers HEAD like GET and OPTIONS with the allowed methods", async () => {
  const api = apiWith();
  const head = await api.handler(new Request(BASE + "/health", { method: "HEAD" }));
  assert.equal(head.status, 200);
  await head.body?.cancel();
  const options = await api.handler(new Request(BASE + "/predict", { method: "OPTIONS" }));
  assert.equal(options.status, 204);
  assert.equal(options.headers.get("allow"), "POST, OPTIONS");
});

Deno.test("handler() swaps the model on POST /reload without failing requests in flight", async () => {
  let version = 1;
  let release: () => void = () => {};
  const provider = new ReloadingModelProvider(async () => {
    const model = wordListModel(String(version++));
    // The second load waits until the test lets it finish, so requests run during the reload.
    if (model.version === "2") await new Promise<void>((resolve) => (release = resolve));
    return model;
  });
  await provider.reload();
  const lines: string[] = [];
  const api = createApi({
    provider,
    appVersion: "1.0.0",
    log: createLogger({ json: true, sink: (line) => lines.push(line) }),
  });
  const reload = api.handler(new Request(BASE + "/reload", { method: "POST" }));
  const during = await Promise.all(
    Array.from({ length: 50 }, () => api.handler(post("/predict", { message: "great" }))),
  );
  assert.deepEqual(new Set(during.map((r) => r.status)), new Set([200]));
  assert.deepEqual(
    new Set(during.map((r) => r.headers.get("x-model-version"))),
    new Set(["wordlist-demo/1"]),
  );
  release();
  const reloaded = await reload;
  assert.equal(reloaded.status, 200);
  const body = await reloaded.json();
  assert.equal(body.status, "loaded");
  assert.equal(body.model.version, "2");
  assert.equal(body.previous.version, "1");
  const after = await api.handler(post("/predict", { message: "great" }));
  assert.equal(after.headers.get("x-model-version"), "wordlist-demo/2");
  const logged = lines.map((line) => JSON.parse(line)).find((entry) => entry.msg === "model loaded");
  assert.equal(logged.trigger, "POST /reload");
  assert.equal(logged.previous_version, "1");
  assert.match(
    await (await api.handler(new Request(BASE + "/metrics"))).text(),
    /model_reloads_total\{outcome="loaded"\} 1/,
  );
});

Deno.test("handler() answers 503 when a reload fails and keeps serving the previous model", async () => {
  let calls = 0;
  const provider = new ReloadingModelProvider(() => {
    calls++;
    if (calls > 1) return Promise.reject(new Error("MLflow is down"));
    return Promise.resolve(wordListModel("4"));
  });
  await provider.reload();
  const api = createApi({ provider, appVersion: "1.0.0" });
  const message = await expectError(
    await api.handler(new Request(BASE + "/reload", { method: "POST" })),
    503,
    "TEMPORARILY_UNAVAILABLE",
  );
  assert.equal(message, "reload failed: MLflow is down; still serving wordlist-demo version 4");
  const after = await api.handler(post("/predict", { message: "great" }));
  assert.equal(after.status, 200);
  assert.equal(after.headers.get("x-model-version"), "wordlist-demo/4");
});

Deno.test("handler() never answers a 500 or a non-JSON error for arbitrary JSON bodies", async () => {
  const api = apiWith();
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom("/predict", "/invocations"),
      fc.jsonValue({ maxDepth: 4 }),
      async (path, value) => {
        const response = await api.handler(post(path, JSON.stringify(value) ?? "null"));
        assert.ok([200, 400, 413].includes(response.status), `status ${response.status}`);
        const body = await response.json();
        if (response.status !== 200) assert.equal(typeof body.message, "string");
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("handler() sheds /predict and /invocations with 503 and Retry-After beyond maxInFlight, never the probes", async () => {
  const api = createApi({
    provider: staticModelProvider(wordListModel()),
    appVersion: "1.0.0",
    maxInFlight: 2,
    limits: { bodyTimeoutMs: 60_000 },
  });
  const stalls: ReadableStreamDefaultController<Uint8Array>[] = [];
  const stalled = Array.from({ length: 2 }, () =>
    api.handler(
      new Request(BASE + "/predict", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: new ReadableStream<Uint8Array>({ start: (controller) => void stalls.push(controller) }),
      }),
    ));
  const shed = await api.handler(post("/predict", { message: "great" }));
  assert.match(await expectError(shed, 503, "TEMPORARILY_UNAVAILABLE"), /limit of 2 requests/);
  assert.equal(shed.headers.get("retry-after"), "1");
  await expectError(await api.handler(post("/invocations", { inputs: [] })), 503, "TEMPORARILY_UNAVAILABLE");
  const health = await api.handler(new Request(BASE + "/health"));
  assert.equal(health.status, 200, "probes are never shed");
  await health.body?.cancel();
  assert.match(api.metrics.render(), /^http_requests_shed_total 2$/m);

  for (const controller of stalls) {
    controller.enqueue(new TextEncoder().encode('{"message": "great"}'));
    controller.close();
  }
  assert.deepEqual((await Promise.all(stalled)).map((r) => r.status), [200, 200]);
  const after = await api.handler(post("/predict", { message: "great" }));
  assert.equal(after.status, 200, "recovers by itself");
  await after.body?.cancel();
});

Deno.test("handler() accepts POST /reload from loopback or in process, refuses other addresses without a token", async () => {
  const api = apiWith();
  const reloadFrom = (hostname?: string) =>
    api.handler(
      new Request(BASE + "/reload", { method: "POST" }),
      hostname ? { remoteAddr: { transport: "tcp", hostname, port: 40000 } } : undefined,
    );
  for (const local of [undefined, "127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"]) {
    const fresh = createApi({ provider: staticModelProvider(wordListModel()), appVersion: "1" });
    const response = await fresh.handler(
      new Request(BASE + "/reload", { method: "POST" }),
      local ? { remoteAddr: { transport: "tcp", hostname: local, port: 40000 } } : undefined,
    );
    assert.equal(response.status, 200, `from ${local ?? "in process"}`);
    await response.body?.cancel();
  }
  for (const remote of ["10.0.0.7", "192.168.1.20", "::ffff:10.0.0.7", "2001:db8::1"]) {
    assert.match(
      await expectError(await reloadFrom(remote), 403, "PERMISSION_DENIED"),
      /accepted from this machine only; set SERVE_RELOAD_TOKEN/,
    );
  }
});

Deno.test("handler() needs the bearer token for POST /reload when one is configured, from any address", async () => {
  const api = createApi({
    provider: staticModelProvider(wordListModel()),
    appVersion: "1.0.0",
    reload: { token: "t0ken", minIntervalMs: 0 },
  });
  const reload = (authorization?: string, hostname = "127.0.0.1") =>
    api.handler(
      new Request(BASE + "/reload", { method: "POST", headers: authorization ? { authorization } : {} }),
      { remoteAddr: { transport: "tcp", hostname, port: 40000 } },
    );
  const missing = await reload();
  assert.match(await expectError(missing, 401, "UNAUTHENTICATED"), /Authorization: Bearer <token>/);
  assert.equal(missing.headers.get("www-authenticate"), 'Bearer realm="reload"');
  await expectError(await reload("Bearer t0ke"), 401, "UNAUTHENTICATED");
  await expectError(await reload("Basic t0ken"), 401, "UNAUTHENTICATED");
  const remote = await reload("Bearer t0ken", "10.0.0.7");
  assert.equal(remote.status, 200);
  await remote.body?.cancel();
});

Deno.test("handler() starts at most one POST /reload per minIntervalMs and says when to retry", async () => {
  let clock = 1_000;
  let loads = 0;
  const api = createApi({
    provider: {
      current: () => wordListModel(),
      reload: () => {
        loads++;
        return Promise.resolve({ status: "unchanged" as const, model: wordListModel() });
      },
    },
    appVersion: "1.0.0",
    reload: { minIntervalMs: 5000 },
    now: () => clock,
  });
  const reload = () => api.handler(new Request(BASE + "/reload", { method: "POST" }));
  assert.equal((await reload()).status, 200);
  clock += 1200;
  const limited = await reload();
  assert.match(await expectError(limited, 429, "REQUEST_LIMIT_EXCEEDED"), /retry in 4 s/);
  assert.equal(limited.headers.get("retry-after"), "4");
  clock += 3800;
  assert.equal((await reload()).status, 200);
  assert.equal(loads, 2, "the limited call never reached the provider");
});

Deno.test("handler() reads a body with a Content-Length whole, and still refuses one over the limit", async () => {
  const api = createApi({
    provider: staticModelProvider(wordListModel()),
    appVersion: "1.0.0",
    limits: { maxBodyBytes: 2048 },
  });
  const body = JSON.stringify({ message: "great" });
  const declared = (length: number, text = body) =>
    new Request(BASE + "/predict", {
      method: "POST",
      headers: { "content-type": "application/json", "content-length": String(length) },
      body: text,
    });
  const ok = await api.handler(declared(body.length));
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
  await expectError(await api.handler(declared(4096)), 413, "PAYLOAD_TOO_LARGE");
  // A hand-made request can carry more than it declares; the size is checked after reading too.
  const liar = JSON.stringify({ message: "x".repeat(3000) });
  await expectError(await api.handler(declared(10, liar)), 413, "PAYLOAD_TOO_LARGE");
});

Deno.test("handler() routes by the path alone, as URL parsing gives it, for plain and odd paths", async () => {
  const api = apiWith();
  for (
    const [url, status] of [
      [BASE + "/health?verbose=1#top", 200],
      [BASE + "/health/", 404],
      [BASE + "/x/../health", 200],
      [BASE + "/%68ealth", 404],
      ["http://127.0.0.1:8000/health", 200],
    ] as const
  ) {
    const response = await api.handler(new Request(url));
    assert.equal(response.status, status, url);
    await response.body?.cancel();
  }
});
