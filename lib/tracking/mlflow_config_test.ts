import assert from "node:assert/strict";
import { PipelineError, UsageError } from "../core/errors.ts";
import {
  checkMlflowNetGrant,
  DEFAULT_EXPERIMENT_NAME,
  DEFAULT_TRACKING_URI,
  netGrantHost,
  parseRunTags,
  resolveMlflowConfig,
  validateTrackingUri,
} from "./mlflow_config.ts";

Deno.test("resolveMlflowConfig() uses the defaults when nothing is set", () => {
  const config = resolveMlflowConfig({}, {});
  assert.deepEqual(config, {
    trackingUri: DEFAULT_TRACKING_URI,
    trackingUriSource: "default",
    experimentName: DEFAULT_EXPERIMENT_NAME,
  });
  assert.equal(DEFAULT_TRACKING_URI, "http://127.0.0.1:5500");
  assert.equal(DEFAULT_EXPERIMENT_NAME, "amazon-reviews-training");
  assert.ok(Object.isFrozen(config));
});

Deno.test("resolveMlflowConfig() prefers the flag over the environment over the default", () => {
  const env = { MLFLOW_TRACKING_URI: "http://mlflow:5000/", MLFLOW_EXPERIMENT_NAME: "from-env" };
  const fromEnv = resolveMlflowConfig({}, env);
  assert.equal(fromEnv.trackingUri, "http://mlflow:5000");
  assert.equal(fromEnv.trackingUriSource, "MLFLOW_TRACKING_URI");
  assert.equal(fromEnv.experimentName, "from-env");
  const fromFlag = resolveMlflowConfig({
    trackingUri: "https://tracking.example.com/mlflow",
    experiment: "flag",
  }, env);
  assert.equal(fromFlag.trackingUri, "https://tracking.example.com/mlflow");
  assert.equal(fromFlag.trackingUriSource, "--tracking-uri");
  assert.equal(fromFlag.experimentName, "flag");
});

Deno.test("resolveMlflowConfig() reads basic auth and a token", () => {
  const config = resolveMlflowConfig({}, {
    MLFLOW_TRACKING_USERNAME: "bob",
    MLFLOW_TRACKING_PASSWORD: "pw",
    MLFLOW_TRACKING_TOKEN: "tok",
  });
  assert.equal(config.username, "bob");
  assert.equal(config.password, "pw");
  assert.equal(config.token, "tok");
  assert.throws(
    () => resolveMlflowConfig({}, { MLFLOW_TRACKING_USERNAME: "bob" }),
    (error: unknown) =>
      error instanceof UsageError &&
      error.message ===
        "MLFLOW_TRACKING_USERNAME is set but MLFLOW_TRACKING_PASSWORD is not; set both for basic auth",
  );
  assert.throws(
    () => resolveMlflowConfig({}, { MLFLOW_TRACKING_PASSWORD: "pw" }),
    /MLFLOW_TRACKING_PASSWORD is set but/,
  );
});

Deno.test("resolveMlflowConfig() refuses URIs that are not plain http(s) with a one-line UsageError", async (t) => {
  const cases: [string, RegExp][] = [
    [
      "file:///tmp/mlruns",
      /^MLFLOW_TRACKING_URI "file:\/\/\/tmp\/mlruns" must be http:\/\/ or https:\/\/; stages talk/,
    ],
    ["sqlite:///mlflow.db", /must be http:\/\/ or https:\/\//],
    ["databricks", /is not a URL; use http:\/\/host:port/],
    ["127.0.0.1:5500", /is not a URL; use http:\/\/host:port \(did you mean http:\/\/127\.0\.0\.1:5500\?\)$/],
    ["localhost:5500", /must be http:\/\/ or https:\/\/ \(did you mean http:\/\/localhost:5500\?\)$/],
    ["http://h:5000/?x=1", /must not have a query or fragment/],
  ];
  for (const [uri, message] of cases) {
    await t.step(uri, () => {
      assert.throws(() => resolveMlflowConfig({}, { MLFLOW_TRACKING_URI: uri }), (error: unknown) => {
        assert.ok(error instanceof UsageError);
        assert.match(error.message, message);
        return true;
      });
    });
  }
  await t.step("credentials in the URI are refused and not echoed", () => {
    assert.throws(
      () => resolveMlflowConfig({ trackingUri: "http://bob:hunter2@h:5000" }, {}),
      (error: unknown) =>
        error instanceof UsageError &&
        error.message.startsWith("--tracking-uri http://***@h:5000/ must not hold") &&
        !error.message.includes("hunter2"),
    );
  });
  await t.step("an empty experiment name is refused", () => {
    assert.throws(() => resolveMlflowConfig({ experiment: " " }, {}), {
      name: "UsageError",
      message: "--experiment must not be empty",
    });
  });
});

Deno.test("validateTrackingUri() keeps a path prefix and drops trailing slashes", () => {
  assert.equal(
    validateTrackingUri("https://h.example.com/proxy/mlflow//"),
    "https://h.example.com/proxy/mlflow",
  );
  assert.equal(validateTrackingUri("http://localhost:5500"), "http://localhost:5500");
});

Deno.test("netGrantHost() names host:port with the scheme's default port", () => {
  assert.equal(netGrantHost("http://127.0.0.1:5500"), "127.0.0.1:5500");
  assert.equal(netGrantHost("http://mlflow"), "mlflow:80");
  assert.equal(netGrantHost("https://mlflow.example.com/prefix"), "mlflow.example.com:443");
  assert.equal(netGrantHost("http://[::1]:5000"), "[::1]:5000");
});

Deno.test({
  name: "checkMlflowNetGrant() passes for a granted host and says how to grant another",
  permissions: { net: ["127.0.0.1:5500"] },
  async fn() {
    await checkMlflowNetGrant("http://127.0.0.1:5500");
    await assert.rejects(() => checkMlflowNetGrant("http://x:1234"), (error: unknown) => {
      assert.ok(error instanceof PipelineError);
      assert.equal(
        error.message,
        "MLFLOW_TRACKING_URI=http://x:1234 is not in this stage's network grant; " +
          "with deno task set MLFLOW_ALLOW_NET=--allow-net=x:1234 (make does this for you)",
      );
      return true;
    });
    await assert.rejects(
      () => checkMlflowNetGrant("http://127.0.0.1:5501", "--tracking-uri"),
      {
        name: "PipelineError",
        message: /^--tracking-uri http:\/\/127\.0\.0\.1:5501 is not in/,
      },
    );
    await assert.rejects(
      () => checkMlflowNetGrant("http://localhost:5500", "default"),
      {
        name: "PipelineError",
        message: /^MLFLOW_TRACKING_URI=http:\/\/localhost:5500 is not/,
      },
    );
  },
});

Deno.test("resolveMlflowConfig() reads the orchestrator's run tags from MLFLOW_RUN_TAGS", () => {
  const config = resolveMlflowConfig({}, {
    MLFLOW_RUN_TAGS: '{"airflow.dag_id": "amazon_reviews_pipeline", "airflow.task_id": "train"}',
  });
  assert.deepEqual(config.runTags, {
    "airflow.dag_id": "amazon_reviews_pipeline",
    "airflow.task_id": "train",
  });
  assert.ok(Object.isFrozen(config.runTags));
  assert.equal(resolveMlflowConfig({}, {}).runTags, undefined);
});

Deno.test("parseRunTags() refuses what MLflow would refuse, or what would overwrite the stage's own tags", async (t) => {
  const cases: [string, RegExp][] = [
    ["not json", /MLFLOW_RUN_TAGS is not JSON/],
    ['["a"]', /must be a JSON object of strings/],
    ["null", /must be a JSON object of strings/],
    ['{"a": 1}', /the value of "a" must be a string/],
    ['{"": "x"}', /tag keys must be 1 to 250 characters/],
    [JSON.stringify({ ["k".repeat(251)]: "x" }), /tag keys must be 1 to 250 characters/],
    [JSON.stringify({ a: "v".repeat(8001) }), /exceeds 8000 characters/],
    ['{"mlflow.user": "someone"}', /is one of MLflow's own tags/],
  ];
  for (const [raw, message] of cases) {
    await t.step(raw.slice(0, 40), () => {
      assert.throws(
        () => parseRunTags(raw),
        (error: unknown) => error instanceof UsageError && message.test(error.message),
      );
    });
  }
});
