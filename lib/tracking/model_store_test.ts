import assert from "node:assert/strict";
import { sha256Hex } from "../models/artifact.ts";
import { buildTinyModelFiles } from "../serving/_tiny_model.ts";
import { createFakeMlflow, fakeMlflowClient, type FakeMlflowState } from "./_fake_mlflow.ts";
import { downloadModelVersion, loadRegisteredModel, MODEL_JSON_SHA256_TAG } from "./model_store.ts";

const NAME = "amazon-reviews-sentiment";

function clientOf(registry: Omit<FakeMlflowState, "name">) {
  const fake = createFakeMlflow({ name: NAME, ...registry });
  return fakeMlflowClient(fake);
}

Deno.test("loadRegisteredModel() downloads, verifies and loads the version a spec names", async () => {
  const files = await buildTinyModelFiles();
  const client = clientOf({
    versions: {
      "1": { runId: "run1", files, tags: { [MODEL_JSON_SHA256_TAG]: sha256Hex(files.get("model.json")!) } },
    },
    aliases: { champion: "1" },
  });
  const loaded = await loadRegisteredModel(client, NAME, "@champion");
  assert.equal(loaded.version.version, 1);
  assert.equal(loaded.downloadUri, "mlflow-artifacts:/1/run1/artifacts/model");
  assert.equal(loaded.model.predict({ title: "Great", text: "I love it, works great" }).label, "positive");
});

Deno.test("loadRegisteredModel() refuses a version that is not READY, before downloading anything", async () => {
  const files = await buildTinyModelFiles();
  const client = clientOf({
    versions: { "1": { runId: "run1", files, status: "PENDING_REGISTRATION" } },
    aliases: {},
  });
  await assert.rejects(loadRegisteredModel(client, NAME, "1"), {
    name: "PipelineError",
    message:
      `model "${NAME}" version 1 is PENDING_REGISTRATION, not READY; wait for its registration to finish`,
  });
});

Deno.test("loadRegisteredModel() names a version whose model folder is empty", async () => {
  const client = clientOf({ versions: { "1": { runId: "run1", files: {} } }, aliases: {} });
  await assert.rejects(loadRegisteredModel(client, NAME, "latest"), {
    name: "PipelineError",
    message: `model "${NAME}" version 1 has no files at mlflow-artifacts:/1/run1/artifacts/model; ` +
      "register a version that train uploaded",
  });
});

Deno.test("downloadModelVersion() refuses a model.json other than the one recorded at registration", async () => {
  const files = await buildTinyModelFiles();
  const client = clientOf({
    versions: { "1": { runId: "run1", files, tags: { [MODEL_JSON_SHA256_TAG]: "0".repeat(64) } } },
    aliases: {},
  });
  const version = await client.getModelVersion(NAME, 1);
  await assert.rejects(downloadModelVersion(client, version), {
    name: "PipelineError",
    message: /model\.json does not match the checksum recorded when version 1 was registered/,
  });
});

Deno.test("downloadModelVersion() caps the download's size", async () => {
  const files = await buildTinyModelFiles();
  const client = clientOf({ versions: { "1": { runId: "run1", files } }, aliases: {} });
  const version = await client.getModelVersion(NAME, 1);
  await assert.rejects(downloadModelVersion(client, version, { maxBytes: 10 }), {
    name: "PipelineError",
    message: /is over 10 bytes/,
  });
});
