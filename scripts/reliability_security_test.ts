/**
 * Reliability, security: what each stage's permission set denies (a probe script run under every set),
 * secrets that must never surface (canary credentials through the whole pipeline, then a search of every
 * output, file, MLflow param, tag and artifact), artifact locations from MLflow that must not be trusted,
 * and a real MLflow server with basic authentication (a dedicated server on a free port).
 *
 * Needs the shared test server at MLFLOW_TRACKING_URI (`make mlflow-test`, port 5501), and MLflow's auth
 * extra in `.venv` (`pip install "mlflow[auth]==3.17.2"`, i.e. Flask-WTF) for the basic-auth server.
 * See docs/reliability.md for the whole table.
 */
import assert from "node:assert/strict";
import {
  createProjectRoot,
  errorLines,
  mlflowEnv,
  ok,
  type ProjectRoot,
  REPO_ROOT,
  requireServer,
  runTask,
  type StageRun,
  testMlflowServer,
} from "./_testing.ts";

const STAGE_TIMEOUT_MS = 120_000;
const trackingUri = Deno.env.get("MLFLOW_TRACKING_URI") ?? "http://127.0.0.1:5501";
const NO_KAGGLE = { KAGGLE_API_TOKEN: "", KAGGLE_USERNAME: "", KAGGLE_KEY: "", KAGGLE_API_BASE_URL: "" };

async function prepareData(root: ProjectRoot, env: Record<string, string> = NO_KAGGLE): Promise<StageRun[]> {
  const runs: StageRun[] = [];
  for (
    const [task, args] of [
      ["ingest", ["--source", "sample", "--rows", "600", "--test-rows", "150"]],
      ["split_batches", []],
      ["preprocess_batch", ["0"]],
      ["preprocess_test", []],
    ] as const
  ) {
    runs.push(ok(await runTask(root, task, [...args], { env, timeoutMs: STAGE_TIMEOUT_MS }), task));
  }
  return runs;
}

// ---------------------------------------------------------------------------------------------------
// Permissions

/**
 * Tries each operation and prints `{name: "denied" | "allowed" | "allowed (<error>)"}`: denied means Deno
 * refused it (NotCapable); anything else got past the permission check. Network grants are asked, not
 * used, where using them would need the internet.
 */
const PROBE = `
const results = {};
async function attempt(name, fn) {
  try {
    await fn();
    results[name] = "allowed";
  } catch (error) {
    results[name] = error instanceof Deno.errors.NotCapable ? "denied" : "allowed (" + error.name + ")";
  }
}
for (const folder of ["raw", "downloads", "external", "batches", "processed"]) {
  await attempt("write data/" + folder, () => Deno.writeTextFile("data/" + folder + "/probe.txt", "x"));
  await attempt("read data/" + folder, () => Deno.readDir("data/" + folder)[Symbol.asyncIterator]().next());
}
await attempt("write next to deno.json", () => Deno.writeTextFile("probe.txt", "x"));
await attempt("write outside the project", () => Deno.writeTextFile("../probe-escape.txt", "x"));
await attempt("read deno.json", () => Deno.readTextFile("deno.json"));
await attempt("read the project's parent", () => Deno.readDir("..")[Symbol.asyncIterator]().next());
await attempt("read /etc/passwd", () => Deno.readTextFile("/etc/passwd"));
await attempt("env HOME", () => Deno.env.get("HOME"));
await attempt("run a program", () => new Deno.Command("true").output());
await attempt("fetch another local port", () => fetch("http://127.0.0.1:5501/health", { signal: AbortSignal.timeout(3000) }));
await attempt("fetch an outside host", () => fetch("https://example.com/", { signal: AbortSignal.timeout(3000) }));
await attempt("listen on port 8001", () => Deno.listen({ hostname: "127.0.0.1", port: 8001 }).close());
await attempt("system info", () => Deno.hostname());
await attempt("load a native library", () => Deno.dlopen("libc.so.6", {}));
for (const host of ["127.0.0.1:5500", "www.kaggle.com:443", "0.0.0.0:8000"]) {
  results["granted net " + host] = Deno.permissions.querySync({ name: "net", host }).state;
}
console.log(JSON.stringify(results));
`;

/** What every stage may do; everything else in the probe must be denied. */
const GRANTS: Record<string, { write: string[]; read: string[]; net: string[] }> = {
  ingest: {
    write: ["raw", "downloads"],
    read: ["raw", "downloads", "external"],
    net: ["www.kaggle.com:443"],
  },
  split_batches: { write: ["batches", "processed"], read: ["raw", "batches", "processed"], net: [] },
  preprocess_batch: { write: ["processed"], read: ["batches", "processed"], net: [] },
  preprocess_test: { write: ["processed"], read: ["raw", "processed"], net: [] },
  train: { write: [], read: ["processed"], net: ["127.0.0.1:5500"] },
  // evaluate reads per-source test files (--sources) from data/external.
  evaluate: { write: [], read: ["external", "processed"], net: ["127.0.0.1:5500"] },
  predict: { write: [], read: ["external", "raw"], net: ["127.0.0.1:5500"] },
  serve: { write: [], read: [], net: ["127.0.0.1:5500", "0.0.0.0:8000"] },
};

const ALWAYS_DENIED = [
  "write next to deno.json",
  "write outside the project",
  "read deno.json",
  "read the project's parent",
  "read /etc/passwd",
  "env HOME",
  "run a program",
  "fetch another local port",
  "fetch an outside host",
  "listen on port 8001",
  "system info",
  "load a native library",
];

Deno.test("each stage's permission set denies what the stage does not need: files, env, programs, hosts", async (t) => {
  await using root = await createProjectRoot();
  for (const folder of ["raw", "downloads", "external", "batches", "processed"]) {
    await Deno.mkdir(root.resolve("data", folder), { recursive: true });
  }
  await Deno.writeTextFile(root.resolve("probe.ts"), PROBE);
  for (const [stage, grant] of Object.entries(GRANTS)) {
    await t.step(stage, async () => {
      const output = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-q", `-P=${stage}`, "--no-prompt", "probe.ts"],
        cwd: root.path,
        env: { NO_COLOR: "1" },
        stdin: "null",
      }).output();
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(output.code, 0, stderr);
      const results: Record<string, string> = JSON.parse(new TextDecoder().decode(output.stdout));
      for (const name of ALWAYS_DENIED) assert.equal(results[name], "denied", `${stage}: ${name}`);
      for (const folder of ["raw", "downloads", "external", "batches", "processed"]) {
        assert.equal(
          results[`write data/${folder}`],
          grant.write.includes(folder) ? "allowed" : "denied",
          `${stage}: write data/${folder}`,
        );
        assert.equal(
          results[`read data/${folder}`],
          grant.read.includes(folder) ? "allowed" : "denied",
          `${stage}: read data/${folder}`,
        );
      }
      for (const host of ["127.0.0.1:5500", "www.kaggle.com:443", "0.0.0.0:8000"]) {
        assert.equal(
          results[`granted net ${host}`],
          grant.net.includes(host) ? "granted" : "prompt",
          `${stage}: net ${host}`,
        );
      }
      // A denied write left nothing behind.
      for (const folder of ["raw", "downloads", "external", "batches", "processed"]) {
        const exists = await Deno.stat(root.resolve("data", folder, "probe.txt")).then(
          () => true,
          () => false,
        );
        assert.equal(exists, grant.write.includes(folder), `${stage}: data/${folder}/probe.txt`);
        await Deno.remove(root.resolve("data", folder, "probe.txt")).catch(() => {});
      }
      assert.ok(!(await Deno.stat(root.resolve("probe.txt")).then(() => true, () => false)));
    });
  }
});

Deno.test("an MLflow stage with MLFLOW_ALLOW_NET reaches exactly that server and no other host", async () => {
  await using root = await createProjectRoot();
  await Deno.writeTextFile(
    root.resolve("probe.ts"),
    `const r = {};
for (const host of ["127.0.0.1:5501", "127.0.0.1:5500", "localhost:5501", "mlflow:5000"]) {
  r[host] = Deno.permissions.querySync({ name: "net", host }).state;
}
console.log(JSON.stringify(r));`,
  );
  // What the train task runs with MLFLOW_ALLOW_NET set (the Makefile derives it from the URI).
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "-P=train", "--allow-net=127.0.0.1:5501", "probe.ts"],
    cwd: root.path,
    stdin: "null",
  }).output();
  assert.deepEqual(JSON.parse(new TextDecoder().decode(output.stdout)), {
    "127.0.0.1:5501": "granted",
    "127.0.0.1:5500": "prompt",
    "localhost:5501": "prompt",
    "mlflow:5000": "prompt",
  });
});

// ---------------------------------------------------------------------------------------------------
// Secrets

/** Fake Kaggle API that refuses every credential, on a port of its own. */
function refusingKaggle(): { base: string; host: string; close: () => Promise<void> } {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () =>
      new Response(JSON.stringify({ code: 401, message: "Unauthenticated" }), {
        status: 401,
        headers: { "content-type": "application/json" },
      }),
  );
  return {
    base: `http://127.0.0.1:${server.addr.port}`,
    host: `127.0.0.1:${server.addr.port}`,
    close: () => server.shutdown(),
  };
}

async function filesUnder(dir: string): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) files.push(...await filesUnder(path));
    else files.push(path);
  }
  return files;
}

Deno.test("canary secrets never appear in output, errors, data files, MLflow params, tags or artifacts", async () => {
  const client = await requireServer(trackingUri);
  const id = crypto.randomUUID().replaceAll("-", "");
  const canaries = {
    KAGGLE_KEY: `kagglekey${id}`,
    KAGGLE_API_TOKEN: `KGAT_canarytoken${id}`,
    MLFLOW_TRACKING_PASSWORD: `mlflowpassword${id}`,
    MLFLOW_TRACKING_TOKEN: `mlflowtoken${id}`,
  };
  const basic = btoa(`canary-user:${canaries.MLFLOW_TRACKING_PASSWORD}`);
  const secrets = [...Object.values(canaries), id, basic, btoa(`canary-user:${canaries.KAGGLE_KEY}`)];
  const name = `test-reliability-secrets-${id.slice(0, 8)}`;
  // Every stage gets every secret: a stage not granted a variable cannot read it, which is the point.
  const env = {
    ...canaries,
    KAGGLE_USERNAME: "canary-user",
    MLFLOW_TRACKING_USERNAME: "canary-user",
    ...mlflowEnv(trackingUri, name),
  };
  const outputs: { what: string; run: StageRun }[] = [];
  await using root = await createProjectRoot();
  const data = await prepareData(root, env);
  data.forEach((run, i) => outputs.push({ what: `data stage ${i}`, run }));

  const kaggle = refusingKaggle();
  try {
    for (
      const [what, extra] of [
        ["token", { KAGGLE_USERNAME: "", KAGGLE_KEY: "" }],
        ["username and key", { KAGGLE_API_TOKEN: "" }],
      ] as const
    ) {
      const run = await runTask(root, "ingest", [
        "--source",
        "kaggle",
        "--kaggle-api-base",
        kaggle.base,
        "--force",
      ], {
        env: { ...env, ...extra, INGEST_ALLOW_NET: `--allow-net=${kaggle.host}` },
        timeoutMs: STAGE_TIMEOUT_MS,
      });
      assert.equal(run.code, 1, `Kaggle refused the ${what}:\n${run.stderr}`);
      assert.match(errorLines(run)[0]!, /credentials|401|unauthori/i);
      outputs.push({ what: `ingest --source kaggle (${what}, refused)`, run });
    }
  } finally {
    await kaggle.close();
  }

  const train = ok(
    await runTask(root, "train", ["--batches", "0", "--json"], {
      env,
      timeoutMs: STAGE_TIMEOUT_MS,
    }),
    "train",
  );
  outputs.push({ what: "train", run: train });
  const evaluate = ok(
    await runTask(root, "evaluate", ["--model_version", "1", "--json"], { env, timeoutMs: STAGE_TIMEOUT_MS }),
    "evaluate",
  );
  outputs.push({ what: "evaluate", run: evaluate });
  outputs.push({
    what: "predict",
    run: ok(
      await runTask(root, "predict", ["--title", "t", "--message", "great", "--model_version", "1"], {
        env,
        timeoutMs: STAGE_TIMEOUT_MS,
      }),
      "predict",
    ),
  });
  const unknown = await runTask(
    root,
    "predict",
    ["--title", "t", "--message", "m", "--model_version", "42"],
    {
      env,
      timeoutMs: STAGE_TIMEOUT_MS,
    },
  );
  assert.equal(unknown.code, 1);
  outputs.push({ what: "predict of an unknown version (error)", run: unknown });

  const haystacks: { what: string; text: string }[] = outputs.flatMap(({ what, run }) => [
    { what: `${what} stdout`, text: run.stdout },
    { what: `${what} stderr`, text: run.stderr },
  ]);
  for (const path of await filesUnder(root.resolve("data"))) {
    haystacks.push({ what: path, text: new TextDecoder().decode(await Deno.readFile(path)) });
  }
  for (const runId of [JSON.parse(train.stdout).run_id, JSON.parse(evaluate.stdout).run_id]) {
    const run = await client.getRun(runId);
    haystacks.push({ what: `run ${runId} params, tags, metrics`, text: JSON.stringify(run) });
    for (const [path, bytes] of await client.downloadArtifactDir(run.info.artifactUri)) {
      haystacks.push({ what: `run ${runId} artifact ${path}`, text: new TextDecoder().decode(bytes) });
    }
  }
  const version = await client.getModelVersion(name, 1);
  haystacks.push({ what: "model version 1", text: JSON.stringify(version) });
  haystacks.push({ what: "registered model", text: JSON.stringify(await client.getRegisteredModel(name)) });

  assert.ok(haystacks.length > 20, `searched ${haystacks.length} places`);
  for (const { what, text } of haystacks) {
    for (const secret of secrets) assert.ok(!text.includes(secret), `a secret appears in ${what}`);
  }
});

// ---------------------------------------------------------------------------------------------------
// Artifact locations from MLflow are data, not paths

/** Forwards to the real server, except for the requests `override` answers itself. */
function overridingProxy(upstream: string, override: (url: URL) => Response | undefined) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const url = new URL(request.url);
    const answer = override(url);
    if (answer) return answer;
    const response = await fetch(upstream + url.pathname + url.search, {
      method: request.method,
      headers: request.headers,
      body: request.body === null ? undefined : await request.arrayBuffer(),
    });
    return new Response(await response.arrayBuffer(), { status: response.status, headers: response.headers });
  });
  return { uri: `http://127.0.0.1:${server.addr.port}`, close: () => server.shutdown() };
}

Deno.test("predict refuses artifact locations from MLflow that point outside the model: .., absolute, other hosts, file:", async (t) => {
  await requireServer(trackingUri);
  const name = `test-reliability-paths-${crypto.randomUUID().slice(0, 8)}`;
  await using root = await createProjectRoot();
  await prepareData(root);
  ok(
    await runTask(root, "train", ["--batches", "0", "--trees", "3"], {
      env: mlflowEnv(trackingUri, name),
      timeoutMs: STAGE_TIMEOUT_MS,
    }),
    "train",
  );
  const cases: [string, (url: URL) => Response | undefined, RegExp][] = [
    [
      "a listed file named ../../../etc/passwd",
      (url) =>
        url.pathname === "/api/2.0/mlflow-artifacts/artifacts"
          ? Response.json({ files: [{ path: "../../../etc/passwd", is_dir: false }] })
          : undefined,
      /MLflow listed an unsafe artifact name "..\/..\/..\/etc\/passwd"/,
    ],
    [
      "a listed folder named ..",
      (url) =>
        url.pathname === "/api/2.0/mlflow-artifacts/artifacts"
          ? Response.json({ files: [{ path: "..", is_dir: true }] })
          : undefined,
      /MLflow listed an unsafe artifact name "\.\."/,
    ],
    [
      "a download URI on another host",
      (url) =>
        url.pathname.endsWith("/get-download-uri")
          ? Response.json({ artifact_uri: "mlflow-artifacts://evil.example.com:443/x" })
          : undefined,
      /points at evil\.example\.com:443, not at 127\.0\.0\.1/,
    ],
    [
      "a download URI with ..",
      (url) =>
        url.pathname.endsWith("/get-download-uri")
          ? Response.json({ artifact_uri: "mlflow-artifacts:/1/../../../etc" })
          : undefined,
      /artifact path "1\/..\/..\/..\/etc" must not contain empty, "\." or "\.\." segments/,
    ],
    [
      "a local file: download URI",
      (url) =>
        url.pathname.endsWith("/get-download-uri")
          ? Response.json({ artifact_uri: "file:///etc" })
          : undefined,
      /artifact URI "file:\/\/\/etc" uses file:/,
    ],
  ];
  for (const [what, override, message] of cases) {
    await t.step(what, async () => {
      const proxy = overridingProxy(trackingUri, override);
      try {
        const run = await runTask(
          root,
          "predict",
          ["--title", "t", "--message", "m", "--model_version", "1"],
          {
            env: mlflowEnv(proxy.uri, name),
            timeoutMs: STAGE_TIMEOUT_MS,
          },
        );
        assert.equal(run.code, 1, run.stderr);
        assert.equal(errorLines(run).length, 1, run.stderr);
        assert.match(errorLines(run)[0]!, message);
      } finally {
        await proxy.close();
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------------
// A real MLflow server with basic authentication

Deno.test("against an MLflow server with basic auth, stages work with the credentials from the environment and a wrong password is one clear line", async (t) => {
  const conf = `${REPO_ROOT}/.tmp-test/mlflow-auth-conf`;
  const data = `${REPO_ROOT}/.tmp-test/mlflow-auth`;
  const password = `pw-${crypto.randomUUID()}`;
  await Deno.mkdir(`${conf}/bin`, { recursive: true });
  await Deno.writeTextFile(
    `${conf}/basic_auth.ini`,
    [
      "[mlflow]",
      "default_permission = READ",
      `database_uri = sqlite:///${data}/basic_auth.db`,
      "admin_username = admin",
      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
      // No auth_cache_ttl_seconds, although every request re-hashes the password (PBKDF2, 1-3 s per call
      // measured on 2 busy cores): with the cache on, MLflow 3.17.2 answers a Bearer header with a 500
      // (TypeError in _auth_cache_key) instead of a 401.
      "",
    ].join("\n"),
  );
  // tools/mlflow_server.sh runs `<dir>/python ... <dir>/mlflow server ...`: these two wrappers add
  // `--app-name basic-auth` to the project's own MLflow.
  await Deno.writeTextFile(`${conf}/bin/python`, `#!/bin/sh\nexec "${REPO_ROOT}/.venv/bin/python" "$@"\n`, {
    mode: 0o755,
  });
  await Deno.writeTextFile(
    `${conf}/bin/mlflow`,
    `#!/bin/sh\nexec "${REPO_ROOT}/.venv/bin/mlflow" "$@" --app-name basic-auth\n`,
    { mode: 0o755 },
  );
  await using server = testMlflowServer("mlflow-auth", {
    mlflow: `${conf}/bin/mlflow`,
    env: {
      MLFLOW_AUTH_CONFIG_PATH: `${conf}/basic_auth.ini`,
      MLFLOW_AUTH_ADMIN_PASSWORD: password,
      MLFLOW_FLASK_SERVER_SECRET_KEY: crypto.randomUUID(),
    },
  });
  try {
    await server.start();
  } catch (error) {
    throw new Error(
      `the basic-auth MLflow server did not start; it needs MLflow's auth extra: .venv/bin/pip install "mlflow[auth]==3.17.2" (${error})`,
    );
  }
  const name = `test-reliability-auth-${crypto.randomUUID().slice(0, 8)}`;
  const base = mlflowEnv(server.uri, name);
  await using root = await createProjectRoot();
  await prepareData(root);

  await t.step("the server really requires credentials", async () => {
    const response = await fetch(`${server.uri}/api/2.0/mlflow/experiments/get-by-name?experiment_name=x`);
    await response.body?.cancel();
    assert.equal(response.status, 401);
  });
  await t.step("train and predict with MLFLOW_TRACKING_USERNAME/PASSWORD", async () => {
    const env = { ...base, MLFLOW_TRACKING_USERNAME: "admin", MLFLOW_TRACKING_PASSWORD: password };
    const train = ok(
      await runTask(root, "train", ["--batches", "0", "--trees", "3", "--json"], {
        env,
        timeoutMs: STAGE_TIMEOUT_MS,
      }),
      "train",
    );
    assert.equal(JSON.parse(train.stdout).model_version, "1");
    const predict = ok(
      await runTask(root, "predict", ["--title", "t", "--message", "great", "--json"], {
        env,
        timeoutMs: STAGE_TIMEOUT_MS,
      }),
      "predict",
    );
    assert.equal(JSON.parse(predict.stdout).model_version, "1");
  });
  const at = `^error: MLflow at ${server.uri.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}`;
  const cases: [string, Record<string, string>, RegExp][] = [
    [
      "a wrong password",
      { MLFLOW_TRACKING_USERNAME: "admin", MLFLOW_TRACKING_PASSWORD: "wrong-password-canary" },
      new RegExp(
        `${at} rejected the credentials \\(401 on GET .*\\); check MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN$`,
      ),
    ],
    [
      "no credentials",
      {},
      new RegExp(
        `${at} requires authentication \\(401 on GET .*\\); set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD`,
      ),
    ],
    [
      "a bearer token, which basic auth does not take",
      { MLFLOW_TRACKING_TOKEN: "token-canary-value" },
      new RegExp(`${at} rejected the credentials \\(401`),
    ],
  ];
  for (const [what, credentials, message] of cases) {
    await t.step(`${what}: exit 1, one line, no secret echoed`, async () => {
      const run = await runTask(root, "predict", ["--title", "t", "--message", "m"], {
        env: { ...base, ...credentials },
        timeoutMs: STAGE_TIMEOUT_MS,
      });
      assert.equal(run.code, 1, run.stderr);
      assert.equal(errorLines(run).length, 1, run.stderr);
      assert.match(errorLines(run)[0]!, message);
      assert.doesNotMatch(run.stderr + run.stdout, /canary|\n\s+at /);
    });
  }
});
