import assert from "node:assert/strict";
import type { FakeMlflowState } from "../lib/tracking/_fake_mlflow.ts";
import { buildTinyModelFiles } from "../lib/serving/_tiny_model.ts";
import { createProjectRoot, runTask } from "./_testing.ts";
import { envFor, getJson, predict, serveFakeMlflow, spawnServe, waitFor } from "./_serve_testing.ts";
import denoConfig from "../deno.json" with { type: "json" };

const NAME = "amazon-reviews-sentiment";

Deno.test("serve --help prints usage and exits 0", async () => {
  await using root = await createProjectRoot();
  const run = await runTask(root, "serve", ["--help"]);
  assert.equal(run.code, 0);
  assert.match(run.stdout, /^Usage: deno task serve \[--model_version V\]/);
  assert.match(run.stdout, /POST \/reload or SIGHUP/);
});

Deno.test("serve refuses bad flags with exit 2 and a one-line error", async (t) => {
  await using root = await createProjectRoot();
  const cases: [string[], RegExp][] = [
    [["--bogus"], /^error: Unknown option '--bogus'/],
    [["--port", "http"], /^error: --port expects an integer, got "http"/],
    [["--port", "70000"], /^error: --port must be between 0 and 65535, got 70000/],
    [["--model_version=-3"], /^error: --model_version expects a version number/],
    [
      ["--model_version", "2", "--model-version", "3"],
      /^error: --model_version and --model-version disagree; give one$/m,
    ],
  ];
  for (const [args, message] of cases) {
    await t.step(args.join(" "), async () => {
      const run = await runTask(root, "serve", args);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, message);
      assert.match(run.stderr, /\n\nUsage: deno task serve/);
    });
  }
});

/** A loopback port nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

Deno.test("serve refuses a port outside its permission set with exit 1 and the remedy", async () => {
  await using root = await createProjectRoot();
  // MLflow is not running there: the listen address is checked before it is contacted.
  const mlflowPort = closedPort();
  const run = await runTask(root, "serve", ["--port", "9000"], {
    env: { MLFLOW_TRACKING_URI: `http://127.0.0.1:${mlflowPort}` },
  });
  assert.equal(run.code, 1);
  assert.equal(
    run.stderr.trim(),
    'error: stage "serve" may not listen on 0.0.0.0:9000; use --port 8000 with --host 0.0.0.0 or 127.0.0.1, ' +
      `or grant it with MLFLOW_ALLOW_NET=--allow-net=0.0.0.0:9000,127.0.0.1:${mlflowPort}`,
  );
});

Deno.test("serve explains that MLFLOW_ALLOW_NET must also name the listen address", async () => {
  await using root = await createProjectRoot();
  const run = await runTask(root, "serve", [], { env: { MLFLOW_ALLOW_NET: "--allow-net=127.0.0.1:5500" } });
  assert.equal(run.code, 1);
  assert.equal(
    run.stderr.trim(),
    'error: stage "serve" may not listen on 0.0.0.0:8000: MLFLOW_ALLOW_NET replaces the task\'s network grant; ' +
      "set MLFLOW_ALLOW_NET=--allow-net=0.0.0.0:8000,127.0.0.1:5500",
  );
});

Deno.test("serve --port 0 (a free port) says which grant it needs instead of Deno's permission error", async () => {
  await using root = await createProjectRoot();
  const run = await runTask(root, "serve", ["--port", "0", "--host", "127.0.0.1"], {
    env: { MLFLOW_ALLOW_NET: "--allow-net=127.0.0.1:5500" },
  });
  assert.equal(run.code, 1);
  assert.equal(
    run.stderr.trim(),
    'error: stage "serve" may not listen on a free port of 127.0.0.1: --port 0 needs 127.0.0.1:0 granted; ' +
      "set MLFLOW_ALLOW_NET=--allow-net=127.0.0.1:0,127.0.0.1:5500",
  );
});

Deno.test("serve exits 1 with one line when MLflow is unreachable", async () => {
  await using root = await createProjectRoot();
  const uri = `http://127.0.0.1:${closedPort()}`;
  const run = await runTask(root, "serve", ["--port", "0", "--host", "127.0.0.1"], { env: envFor(uri) });
  assert.equal(run.code, 1);
  assert.match(
    run.stderr.trim(),
    new RegExp(`^error: cannot reach MLflow at ${uri} \\(GET /health: .*\\); start a local server`),
  );
});

Deno.test("serve exits 1 with one line when the model has no versions", async () => {
  const mlflow = serveFakeMlflow({ name: NAME, versions: {}, aliases: {} });
  await using _server = mlflow.server;
  await using root = await createProjectRoot();
  const run = await runTask(root, "serve", ["--port", "0", "--host", "127.0.0.1"], {
    env: envFor(mlflow.uri),
  });
  assert.equal(run.code, 1, run.stderr);
  const lines = run.stderr.trim().split("\n");
  assert.equal(lines.at(-1), `error: model "${NAME}" has no versions yet; run train first (make train)`);
  assert.ok(
    lines.slice(0, -1).every((line) => JSON.parse(line).name === "serve"),
    "the rest are JSON log lines",
  );
});

Deno.test("serve loads the model from MLflow, answers, reloads on SIGHUP without failing requests, and stops on SIGTERM", async () => {
  const files = await buildTinyModelFiles();
  const state: FakeMlflowState = {
    name: NAME,
    versions: { "1": { runId: "run-one", files }, "2": { runId: "run-two", files } },
    aliases: { champion: "1" },
  };
  const mlflow = serveFakeMlflow(state);
  await using _server = mlflow.server;
  await using root = await createProjectRoot();
  await using serve = spawnServe(
    root,
    ["--port", "0", "--host", "127.0.0.1", "--model_version", "@champion", "--json"],
    envFor(mlflow.uri),
  );
  const base = await serve.base();
  await waitFor(
    async () => (await fetch(`${base}/ready`).then((r) => r.body?.cancel().then(() => r.ok))) ?? false,
    "ready",
  );

  const version = await getJson(`${base}/version`);
  assert.equal(version.body.model_name, NAME);
  assert.equal(version.body.model_version, "1");
  assert.equal(version.body.run_id, "run-one");
  assert.equal(version.body.model_requested, "@champion");
  assert.equal(version.body.app_version, denoConfig.version);

  const positive = await predict(base, { title: "Great", message: "I love it, works great" });
  assert.equal(positive.status, 200);
  assert.equal(positive.headers.get("x-model-version"), `${NAME}/1`);
  const body = await positive.json();
  assert.equal(body.label, "positive");
  assert.equal(body.polarity, 2);
  const invocations = await fetch(`${base}/invocations`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      dataframe_records: [{ title: "Terrible", message: "broke after a week, waste of money" }],
    }),
  });
  assert.deepEqual((await invocations.json()).predictions.map((p: { label: string }) => p.label), [
    "negative",
  ]);
  // Explanations through the real server: asked for, exact, and linked to the model card.
  assert.equal(version.body.model_explainable, true);
  assert.equal(
    (version.body.model_card as { page: string }).page,
    `${mlflow.uri}/#/models/${NAME}/versions/1`,
  );
  const explained =
    await (await predict(base, { title: "Not great", message: "Terrible, broke fast", explain: true }))
      .json();
  const e = explained.explanation;
  const total = e.words.reduce(
    (sum: number, w: { contribution: number }) => sum + w.contribution,
    e.bias + e.absent,
  );
  assert.ok(Math.abs(total - e.score) < 1e-9 && e.probability === explained.positive_probability);
  assert.deepEqual(e.words.find((w: { text: string }) => w.text === "Terrible").tokens, [
    "terrible",
    "_lexneg_",
  ]);

  // Move the alias, then SIGHUP while a stream of requests runs: every one must succeed.
  state.aliases.champion = "2";
  let stop = false;
  const statuses: number[] = [];
  const traffic = (async () => {
    while (!stop) {
      const response = await predict(base, { message: "great value" });
      statuses.push(response.status);
      await response.body?.cancel();
    }
  })();
  serve.child.kill("SIGHUP");
  await waitFor(
    async () => (await getJson(`${base}/version`)).body.model_version === "2",
    "version 2 after SIGHUP",
  );
  stop = true;
  await traffic;
  assert.ok(statuses.length > 0);
  assert.deepEqual(new Set(statuses), new Set([200]), "no request failed during the reload");

  const reload = await fetch(`${base}/reload`, { method: "POST" });
  assert.equal(reload.status, 200);
  assert.equal((await reload.json()).status, "unchanged");

  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /^model_info\{name="amazon-reviews-sentiment",version="2",run_id="run-two"\} 1$/m);
  assert.match(metrics, /^model_reloads_total\{outcome="loaded"\} 2$/m);

  serve.child.kill("SIGTERM");
  const status = await serve.child.status;
  assert.equal(status.code, 0, serve.lines.join("\n"));
  const summary = JSON.parse(await serve.stdout);
  assert.equal(summary.model.version, "2");
  assert.ok(summary.requests >= statuses.length + 5);

  const entries = serve.lines.map((line) => JSON.parse(line));
  const loads = entries.filter((e) => e.msg === "model loaded");
  assert.deepEqual(loads.map((e) => [e.trigger, e.model_version]), [["startup", "1"], ["SIGHUP", "2"]]);
  assert.ok(entries.some((e) => e.msg === "request" && e.path === "/predict" && e.status === 200));
  // Request lines are buffered: every one of them was written before the process stopped.
  assert.equal(entries.filter((e) => e.msg === "request").length, summary.requests);
  assert.equal(entries.at(-1).msg, "stopped");
});
