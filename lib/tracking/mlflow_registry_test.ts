import assert from "node:assert/strict";
import { PipelineError, UsageError } from "../core/errors.ts";
import { MlflowClient } from "./mlflow_client.ts";
import {
  describeVersionSpec,
  parseVersionSpec,
  resolveModelVersion,
  validateModelName,
} from "./mlflow_registry.ts";

Deno.test("parseVersionSpec() reads numbers, latest and aliases", async (t) => {
  const cases: [string, ReturnType<typeof parseVersionSpec>][] = [
    ["3", { kind: "number", version: 3 }],
    [" 12 ", { kind: "number", version: 12 }],
    ["v4", { kind: "number", version: 4 }],
    ["latest", { kind: "latest" }],
    ["LATEST", { kind: "latest" }],
    ["@champion", { kind: "alias", alias: "champion" }],
    ["@_staging-2", { kind: "alias", alias: "_staging-2" }],
    ["@2024best", { kind: "alias", alias: "2024best" }],
  ];
  for (const [spec, expected] of cases) {
    await t.step(JSON.stringify(spec), () => assert.deepEqual(parseVersionSpec(spec), expected));
  }
});

Deno.test("parseVersionSpec() refuses negative, zero, fractional and non-numeric specs", async (t) => {
  for (
    const spec of [
      "-1",
      "0",
      "1.5",
      "3a",
      "1e3",
      "0x10",
      "",
      "@",
      "@a b",
      "a/b",
      "@../x",
      "9".repeat(20),
      "abc",
    ]
  ) {
    await t.step(JSON.stringify(spec), () => {
      assert.throws(() => parseVersionSpec(spec, "--model-version"), (error: unknown) => {
        assert.ok(error instanceof UsageError);
        assert.match(
          error.message,
          /^--model-version expects a version number \(1, 2, \.\.\.\), "latest" or "@alias"/,
        );
        return true;
      });
    });
  }
});

Deno.test("parseVersionSpec() refuses a bare word and shows the alias it may have meant", () => {
  assert.throws(
    () => parseVersionSpec("champion", "--model_version"),
    new UsageError(
      '--model_version expects a version number (1, 2, ...), "latest" or "@alias", got "champion" ' +
        "(for an alias, write @champion)",
    ),
  );
});

Deno.test("describeVersionSpec() names a spec for messages", () => {
  assert.equal(describeVersionSpec({ kind: "number", version: 2 }), "version 2");
  assert.equal(describeVersionSpec({ kind: "latest" }), "the latest version");
  assert.equal(describeVersionSpec({ kind: "alias", alias: "champion" }), 'alias "champion"');
});

Deno.test("validateModelName() accepts plain names and refuses path characters", async (t) => {
  for (const name of ["amazon-reviews-rf", "rf_v2.1", "Sentiment Model"]) {
    await t.step(`accepts ${JSON.stringify(name)}`, () => assert.equal(validateModelName(name), name));
  }
  const bad: [string, RegExp][] = [
    ["", /must not be empty/],
    ["   ", /must not be empty/],
    [" padded", /must not start or end with spaces/],
    ["a/b", /must not contain "\/"/],
    ["a\\b", /must not contain/],
    ["..", /must not contain/],
    ["x..y", /must not contain/],
    ["a:b", /must not contain/],
    ["it's", /quotes/],
    ["bell\u0007", /control characters/],
    ["new\nline", /control characters/],
    ["m".repeat(257), /at most 256/],
  ];
  for (const [name, message] of bad) {
    await t.step(`refuses ${JSON.stringify(name).slice(0, 20)}`, () => {
      assert.throws(() => validateModelName(name, "--model-name"), (error: unknown) => {
        assert.ok(error instanceof UsageError);
        assert.match(error.message, /^--model-name /);
        assert.match(error.message, message);
        assert.ok(!error.message.includes("\n"));
        return true;
      });
    });
  }
});

/** A fake registry holding versions 1..latest of model "m" and some aliases. */
function registry(latest: number, aliases: Record<string, number> = {}, exists = true): MlflowClient {
  const json = (body: unknown, status = 200) =>
    new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
  const version = (v: number) => ({
    name: "m",
    version: String(v),
    source: `mlflow-artifacts:/1/r${v}/artifacts/model`,
  });
  const fakeFetch: typeof fetch = (input) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const q = url.searchParams;
    switch (url.pathname) {
      case "/health":
        return Promise.resolve(new Response("OK"));
      case "/api/2.0/mlflow/model-versions/get": {
        const v = Number(q.get("version"));
        return Promise.resolve(
          exists && v >= 1 && v <= latest
            ? json({ model_version: version(v) })
            : json({ error_code: "RESOURCE_DOES_NOT_EXIST", message: "Model Version not found" }, 404),
        );
      }
      case "/api/2.0/mlflow/model-versions/search":
        return Promise.resolve(json(latest > 0 && exists ? { model_versions: [version(latest)] } : {}));
      case "/api/2.0/mlflow/registered-models/alias": {
        const alias = q.get("alias")!;
        if (!exists) {
          return Promise.resolve(
            json({ error_code: "RESOURCE_DOES_NOT_EXIST", message: "Registered Model not found" }, 404),
          );
        }
        return Promise.resolve(
          alias in aliases ? json({ model_version: version(aliases[alias]!) }) : json({
            error_code: "INVALID_PARAMETER_VALUE",
            message: `Registered model alias ${alias} not found.`,
          }, 400),
        );
      }
      case "/api/2.0/mlflow/registered-models/get":
        return Promise.resolve(
          exists
            ? json({
              registered_model: {
                name: "m",
                aliases: Object.entries(aliases).map(([alias, v]) => ({ alias, version: String(v) })),
              },
            })
            : json({ error_code: "RESOURCE_DOES_NOT_EXIST", message: "Registered Model not found" }, 404),
        );
    }
    return Promise.resolve(new Response("not found", { status: 404 }));
  };
  return new MlflowClient({
    trackingUri: "http://mlflow.test:5500",
    fetch: fakeFetch,
    retry: { retries: 0 },
  });
}

Deno.test("resolveModelVersion() finds a version by number, latest or alias", async () => {
  const client = registry(4, { champion: 2 });
  assert.equal((await resolveModelVersion(client, "m", "3")).version, 3);
  assert.equal((await resolveModelVersion(client, "m", "latest")).version, 4);
  assert.equal((await resolveModelVersion(client, "m", "@champion")).version, 2);
  assert.equal((await resolveModelVersion(client, "m", { kind: "alias", alias: "champion" })).version, 2);
  assert.equal(
    (await resolveModelVersion(client, "m", "2")).source,
    "mlflow-artifacts:/1/r2/artifacts/model",
  );
});

Deno.test("resolveModelVersion() says what exists when the version or alias does not", async (t) => {
  const cases: [string, MlflowClient, string, string][] = [
    ["unknown number", registry(4), "9", 'model "m" has no version 9 (latest is 4)'],
    ["no versions yet", registry(0), "1", 'model "m" has no versions yet; run train first (make train)'],
    [
      "latest of nothing",
      registry(0),
      "latest",
      'model "m" has no versions yet; run train first (make train)',
    ],
    [
      "unknown alias",
      registry(4, { champion: 2, staging: 4 }),
      "@prod",
      'model "m" has no alias "prod" (aliases: @champion=2, @staging=4); use a version number or "latest"',
    ],
    [
      "no aliases at all",
      registry(4),
      "@champion",
      'model "m" has no alias "champion" (it has no aliases); use a version number or "latest"',
    ],
    [
      "alias of an unregistered model",
      registry(0, {}, false),
      "@champion",
      'model "m" has no versions yet; run train first (make train)',
    ],
  ];
  for (const [name, client, spec, message] of cases) {
    await t.step(name, async () => {
      await assert.rejects(() => resolveModelVersion(client, "m", spec), (error: unknown) => {
        assert.ok(error instanceof PipelineError);
        assert.equal(error.message, message);
        return true;
      });
    });
  }
});

Deno.test("resolveModelVersion() refuses a bad name or spec before calling MLflow", async () => {
  let calls = 0;
  const client = new MlflowClient({
    trackingUri: "http://mlflow.test:5500",
    fetch: () => {
      calls++;
      return Promise.resolve(new Response("OK"));
    },
  });
  await assert.rejects(() => resolveModelVersion(client, "../m", "1"), UsageError);
  await assert.rejects(() => resolveModelVersion(client, "m", "-1"), UsageError);
  assert.equal(calls, 0);
});
