import assert from "node:assert/strict";
import { ENGINES } from "../models/engines.ts";
import { LinearModel } from "../models/linear/model.ts";
import { loadModel } from "../models/artifact.ts";
import { linearModelFiles } from "./_linear_model.ts";
import { buildTinyLinearModelFiles, buildTinyModelFiles } from "./_tiny_model.ts";
import { BackgroundModelLoader } from "./background_load.ts";

const REVIEWS = [
  { title: "Great", text: "Works great, love it" },
  { title: "Awful", text: "Broke after a day, junk" },
  { title: "", text: "not good at all" },
];

Deno.test("BackgroundModelLoader loads a linear model on its worker, scoring exactly as loadModel does", async () => {
  using loader = new BackgroundModelLoader();
  const files = linearModelFiles();
  const expected = loadModel(files, ENGINES);
  for (let round = 0; round < 2; round++) {
    const model = await loader.load(files);
    assert.ok(model.engine instanceof LinearModel);
    assert.deepEqual(REVIEWS.map((r) => model.predict(r)), REVIEWS.map((r) => expected.predict(r)));
  }
  assert.ok(files.get("engine.bin")!.length > 0, "the caller keeps its files");
});

Deno.test("BackgroundModelLoader reports a damaged file with loadModel's message", async () => {
  using loader = new BackgroundModelLoader();
  const files = linearModelFiles();
  const damaged = files.get("engine.bin")!.slice();
  damaged[damaged.length - 1]! ^= 0xff;
  files.set("engine.bin", damaged);
  await assert.rejects(
    loader.load(files),
    (error: Error) =>
      error.name === "PipelineError" &&
      error.message === "model artifact file engine.bin fails its checksum (truncated or tampered); retrain",
  );
});

Deno.test("BackgroundModelLoader loads an engine that cannot move between threads (the forest) on the caller's", async () => {
  using loader = new BackgroundModelLoader();
  const files = await buildTinyModelFiles();
  const model = await loader.load(files);
  assert.equal(model.predict({ title: "Excellent", text: "Works perfectly, great value" }).label, "positive");
});

Deno.test("BackgroundModelLoader's models explain and calibrate exactly as loadModel's do", async () => {
  using loader = new BackgroundModelLoader();
  const calibration = {
    method: "isotonic" as const,
    input: "logit" as const,
    x: [-2, 0, 3],
    y: [0.1, 0.5, 0.8],
  };
  for (
    const files of [
      linearModelFiles(),
      buildTinyLinearModelFiles({ calibration }),
      await buildTinyModelFiles(),
    ]
  ) {
    const expected = loadModel(files, ENGINES);
    const model = await loader.load(files);
    assert.equal(model.explainable, true);
    assert.deepEqual(model.manifest.calibration, expected.manifest.calibration);
    for (const review of REVIEWS) {
      assert.deepEqual(model.explain(review), expected.explain(review));
      assert.deepEqual(model.predict(review), expected.predict(review));
    }
  }
});
