import assert from "node:assert/strict";
import { ApiMetrics, escapeLabelValue, LATENCY_BUCKETS } from "./prometheus.ts";

Deno.test("escapeLabelValue() escapes backslash, double quote and newline", () => {
  assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
});

Deno.test("ApiMetrics.render() writes cumulative histogram buckets with inclusive upper bounds", () => {
  const metrics = new ApiMetrics(() => 1_700_000_000_000);
  for (const seconds of [0.0004, 0.001, 0.003, 0.003, 20]) {
    metrics.requestStarted();
    metrics.observeRequest("/predict", "POST", 200, seconds);
  }
  const text = metrics.render();
  const bucket = (le: string) =>
    Number(
      new RegExp(
        `^http_request_duration_seconds_bucket\\{route="/predict",le="${le.replace("+", "\\+")}"\\} (\\d+)$`,
        "m",
      )
        .exec(text)?.[1],
    );
  assert.equal(bucket("0.0005"), 1);
  assert.equal(bucket("0.001"), 2, "0.001 falls in the le=0.001 bucket");
  assert.equal(bucket("0.005"), 4);
  assert.equal(bucket("10"), 4, "20 s is above every finite bucket");
  assert.equal(bucket("+Inf"), 5);
  assert.match(text, /^http_request_duration_seconds_count\{route="\/predict"\} 5$/m);
  const sum = Number(/^http_request_duration_seconds_sum\{route="\/predict"\} (\S+)$/m.exec(text)?.[1]);
  assert.ok(Math.abs(sum - 20.0074) < 1e-9);
  assert.match(text, /^process_start_time_seconds 1700000000$/m);
  assert.match(text, /^http_requests_in_flight 0$/m);
  assert.equal(LATENCY_BUCKETS.length + 1, text.match(/_bucket\{/g)?.length);
});

Deno.test("ApiMetrics.render() produces only comments and well-formed samples", () => {
  const metrics = new ApiMetrics();
  metrics.observeRequest("/", "GET", 200, 0.01);
  metrics.observeRequest("unmatched", "OTHER", 404, 0.01);
  metrics.countPredictions(3);
  metrics.countReload("failed");
  const text = metrics.render({ name: 'odd "name"', version: "2", runId: "r" });
  assert.ok(text.endsWith("\n"));
  for (const line of text.trimEnd().split("\n")) {
    assert.match(
      line,
      /^(# (HELP|TYPE) \w+ .+|[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)+\})? (\d+(\.\d+)?(e[-+]\d+)?|\+Inf))$/,
      line,
    );
  }
  assert.match(text, /^model_info\{name="odd \\"name\\"",version="2",run_id="r"\} 1$/m);
  assert.match(text, /^model_reloads_total\{outcome="failed"\} 1$/m);
  assert.match(text, /^predictions_total 3$/m);
  assert.equal(metrics.requestCount(), 2);
  assert.equal(metrics.requestCount("/"), 1);
});

Deno.test("ApiMetrics.render() says model_loaded 0 and no model_info without a model", () => {
  const text = new ApiMetrics().render();
  assert.match(text, /^model_loaded 0$/m);
  assert.doesNotMatch(text, /model_info\{/);
});
