import assert from "node:assert/strict";
import { PipelineError, UsageError } from "../core/errors.ts";
import { ENGINES } from "../models/engines.ts";
import { loadModel } from "../models/artifact.ts";
import { createFakeMlflow, fakeMlflowClient, type FakeMlflowState } from "../tracking/_fake_mlflow.ts";
import { buildTinyModelFiles } from "./_tiny_model.ts";
import { createWordListPredictor } from "./_wordlist_model.ts";
import { createMlflowModelLoader } from "./mlflow_model_loader.ts";
import { ReloadingModelProvider } from "./model_provider.ts";

const NAME = "amazon-reviews-sentiment";

function fakeMlflow(registry: Omit<FakeMlflowState, "name">) {
  const fake = createFakeMlflow({ name: NAME, ...registry });
  const client = fakeMlflowClient(fake);
  return { client, calls: fake.calls };
}

/** A builder that checks the downloaded files and returns the word-list predictor. */
function buildFrom(seen: Map<string, Uint8Array>[]) {
  return (files: Map<string, Uint8Array>) => {
    seen.push(files);
    if (!files.has("model.json")) throw new PipelineError("model artifact has no model.json");
    return createWordListPredictor();
  };
}

Deno.test("createMlflowModelLoader() loads the version an alias points at, with its run id and files", async () => {
  const { client } = fakeMlflow({
    versions: {
      "1": { runId: "run1", files: { "model.json": "{}" } },
      "2": { runId: "run2", files: { "model.json": "{}", "engine.bin": "E" } },
    },
    aliases: { champion: "2" },
  });
  const seen: Map<string, Uint8Array>[] = [];
  const load = createMlflowModelLoader({ client, name: NAME, spec: "@champion", build: buildFrom(seen) });
  const model = await load(undefined);
  assert.equal(model.name, NAME);
  assert.equal(model.version, "2");
  assert.equal(model.runId, "run2");
  assert.equal(model.requested, "@champion");
  assert.equal(model.source, "mlflow-artifacts:/1/run2/artifacts/model");
  assert.deepEqual([...seen[0]!.keys()].sort(), ["engine.bin", "model.json"]);
  assert.equal(new TextDecoder().decode(seen[0]!.get("engine.bin")), "E");
  assert.equal(model.predictor.predict({ title: "great", text: "" }).label, "positive");
});

Deno.test("createMlflowModelLoader() skips the download when the resolved version is already serving", async () => {
  const state: FakeMlflowState = {
    name: NAME,
    versions: { "1": { runId: "run1", files: { "model.json": "{}" } } },
    aliases: { champion: "1" },
  };
  const fake = createFakeMlflow(state);
  const client = fakeMlflowClient(fake);
  const calls = fake.calls;
  const seen: Map<string, Uint8Array>[] = [];
  const provider = new ReloadingModelProvider(
    createMlflowModelLoader({ client, name: NAME, spec: "@champion", build: buildFrom(seen) }),
  );
  assert.equal((await provider.reload()).status, "loaded");
  calls.length = 0;
  const again = await provider.reload();
  assert.equal(again.status, "unchanged");
  assert.equal(seen.length, 1, "built once");
  assert.ok(!calls.some((path) => path.includes("mlflow-artifacts")), "no artifact was fetched again");

  // The alias moves: the next reload picks the new version up.
  state.versions["2"] = { runId: "run2", files: { "model.json": "{}" } };
  state.aliases.champion = "2";
  const moved = await provider.reload();
  assert.equal(moved.status, "loaded");
  assert.equal(moved.previous?.version, "1");
  assert.equal(provider.current()?.version, "2");
});

Deno.test("createMlflowModelLoader() fails with one clear line for a missing version, alias or file", async () => {
  const { client } = fakeMlflow({
    versions: { "1": { runId: "run1", files: { "engine.bin": "E" } } },
    aliases: { champion: "1" },
  });
  const seen: Map<string, Uint8Array>[] = [];
  await assert.rejects(
    createMlflowModelLoader({ client, name: NAME, spec: "9", build: buildFrom(seen) })(undefined),
    { name: "PipelineError", message: `model "${NAME}" has no version 9 (latest is 1)` },
  );
  await assert.rejects(
    createMlflowModelLoader({ client, name: NAME, spec: "@prod", build: buildFrom(seen) })(undefined),
    { name: "PipelineError", message: /has no alias "prod" \(aliases: @champion=1\)/ },
  );
  await assert.rejects(
    createMlflowModelLoader({ client, name: NAME, spec: "latest", build: buildFrom(seen) })(undefined),
    { name: "PipelineError", message: `model "${NAME}" version 1: model artifact has no model.json` },
  );
});

Deno.test("createMlflowModelLoader() refuses a version that is not READY", async () => {
  const { client } = fakeMlflow({
    versions: { "1": { runId: "run1", files: {}, status: "PENDING_REGISTRATION" } },
    aliases: {},
  });
  await assert.rejects(
    createMlflowModelLoader({ client, name: NAME, spec: "1", build: buildFrom([]) })(undefined),
    { name: "PipelineError", message: /version 1 is PENDING_REGISTRATION, not READY/ },
  );
});

Deno.test("createMlflowModelLoader() rejects a bad spec or model name before any request", () => {
  const { client, calls } = fakeMlflow({ versions: {}, aliases: {} });
  assert.throws(
    () => createMlflowModelLoader({ client, name: NAME, spec: "-1", build: buildFrom([]) }),
    (error: unknown) =>
      error instanceof UsageError && /--model_version expects a version number/.test(error.message),
  );
  assert.throws(
    () => createMlflowModelLoader({ client, name: "a/b", spec: "1", build: buildFrom([]) }),
    UsageError,
  );
  assert.equal(calls.length, 0);
});

Deno.test("createMlflowModelLoader() loads and scores a real model artifact through loadModel and the engines", async () => {
  const files = await buildTinyModelFiles();
  const { client } = fakeMlflow({ versions: { "1": { runId: "run1", files } }, aliases: {} });
  const model = await createMlflowModelLoader({
    client,
    name: NAME,
    spec: "latest",
    build: (downloaded) => loadModel(downloaded, ENGINES),
  })(undefined);
  assert.equal(model.version, "1");
  const positive = model.predictor.predict({ title: "Great", text: "I love it, works great" });
  const negative = model.predictor.predict({ title: "Terrible", text: "broke after a week, waste of money" });
  assert.equal(positive.label, "positive");
  assert.equal(negative.label, "negative");
  assert.ok(positive.positiveProbability > negative.positiveProbability);
});

Deno.test("createMlflowModelLoader() refuses a tampered artifact with the version in the message", async () => {
  const files = await buildTinyModelFiles();
  const engine = files.get("engine.bin")!.slice();
  engine[engine.length - 1]! ^= 0xff;
  files.set("engine.bin", engine);
  const { client } = fakeMlflow({ versions: { "2": { runId: "run2", files } }, aliases: {} });
  await assert.rejects(
    createMlflowModelLoader({ client, name: NAME, spec: "2", build: (f) => loadModel(f, ENGINES) })(
      undefined,
    ),
    {
      name: "PipelineError",
      message: /^model "amazon-reviews-sentiment" version 2: .*engine\.bin fails its checksum/,
    },
  );
});

Deno.test("createMlflowModelLoader() serves the fallback until the alias exists, then the alias on reload", async () => {
  const state: FakeMlflowState = {
    name: NAME,
    versions: {
      "1": { runId: "run1", files: { "model.json": "{}" } },
      "2": { runId: "run2", files: { "model.json": "{}" } },
    },
    aliases: {},
  };
  const fake = createFakeMlflow(state);
  const client = fakeMlflowClient(fake);
  const load = createMlflowModelLoader({
    client,
    name: NAME,
    spec: "@champion",
    fallbackSpec: "latest",
    build: buildFrom([]),
  });
  const first = await load(undefined);
  assert.equal(first.version, "2");
  state.aliases.champion = "1";
  const second = await load(first);
  assert.equal(second.version, "1");
});

Deno.test("createMlflowModelLoader() refuses a model.json that differs from the checksum train recorded", async () => {
  const { client } = fakeMlflow({
    versions: {
      "1": {
        runId: "run1",
        files: { "model.json": '{"edited":true}' },
        tags: { model_json_sha256: "0".repeat(64) },
      },
    },
    aliases: {},
  });
  const load = createMlflowModelLoader({ client, name: NAME, spec: "1", build: buildFrom([]) });
  await assert.rejects(() => load(undefined), (error: Error) => {
    assert.ok(error instanceof PipelineError);
    assert.match(error.message, /model\.json does not match the checksum recorded/);
    return true;
  });
});
