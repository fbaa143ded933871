/**
 * Explanations through the HTTP API: `/predict` and `/invocations` return them when asked (a body flag,
 * MLflow's `params`, or `?explain=true`), exactly the model's own, and not otherwise; `/version` says
 * whether the model explains and where its model card is.
 */
import assert from "node:assert/strict";
import { loadModel } from "../models/artifact.ts";
import { ENGINES } from "../models/engines.ts";
import { buildTinyLinearModelFiles, buildTinyModelFiles } from "./_tiny_model.ts";
import { wordListModel } from "./_wordlist_model.ts";
import { createApi } from "./handler.ts";
import { modelCardLinks } from "./mlflow_model_loader.ts";
import { type LoadedModel, staticModelProvider } from "./model_provider.ts";

const BASE = "http://localhost";
const linear = loadModel(buildTinyLinearModelFiles(), ENGINES);
const forest = loadModel(await buildTinyModelFiles(), ENGINES);

function served(predictor: LoadedModel["predictor"]): LoadedModel {
  return {
    predictor,
    name: "tiny",
    version: "4",
    runId: "run-4",
    modelCard: modelCardLinks("http://mlflow:5000", "tiny", "4", "run-4"),
    loadedAt: new Date(),
  };
}

function api(model: LoadedModel) {
  return createApi({ provider: staticModelProvider(model), appVersion: "1.0.0", accessLog: false });
}

function post(path: string, body: unknown): Request {
  return new Request(BASE + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

const REVIEW = { title: "Not good", message: "It didn't work, broke after a week" };

Deno.test("POST /predict explains a review when asked, exactly as the model does", async () => {
  const response = await api(served(linear)).handler(post("/predict", { ...REVIEW, explain: true }));
  assert.equal(response.status, 200);
  const body = await response.json();
  const expected = linear.explain({ title: REVIEW.title, text: REVIEW.message });
  assert.equal(body.label, "negative");
  assert.equal(body.explanation.method, "linear-decomposition");
  assert.equal(body.explanation.score, expected.score);
  assert.equal(body.explanation.probability, body.positive_probability);
  assert.deepEqual(body.explanation.words, JSON.parse(JSON.stringify(expected.words)));
  assert.equal(body.explanation.top_features.length, Math.min(10, expected.features.length));
  const good = body.explanation.words.find((w: { text: string }) => w.text === "good");
  assert.deepEqual([good.field, good.start, good.end, good.tokens[0]], ["title", 4, 8, "not_good"]);
  const total = body.explanation.words.reduce(
    (sum: number, w: { contribution: number }) => sum + w.contribution,
    0,
  );
  assert.ok(Math.abs(body.explanation.bias + total - body.explanation.score) < 1e-9);
});

Deno.test("POST /predict answers without an explanation unless asked", async () => {
  const server = api(served(linear));
  for (const url of ["/predict", "/predict?explain=false", "/predict?other=1"]) {
    const body = await (await server.handler(post(url, REVIEW))).json();
    assert.deepEqual(
      Object.keys(body).sort(),
      ["label", "polarity", "positive_probability", "probability"],
      url,
    );
  }
  const off = await (await server.handler(post("/predict", { ...REVIEW, explain: false }))).json();
  assert.equal(off.explanation, undefined);
});

Deno.test("POST /predict?explain=true explains every review of a list, a forest's too", async () => {
  const body = await (await api(served(forest)).handler(post("/predict?explain=true", [REVIEW, {
    message: "Great, love it",
  }]))).json();
  assert.equal(body.predictions.length, 2);
  for (const [i, prediction] of body.predictions.entries()) {
    const review = i === 0
      ? { title: REVIEW.title, text: REVIEW.message }
      : { title: "", text: "Great, love it" };
    const expected = forest.explain(review);
    assert.equal(prediction.explanation.method, "path-contribution");
    assert.equal(prediction.explanation.score, expected.score);
    assert.equal(prediction.explanation.absent, expected.absent);
    assert.equal(prediction.positive_probability, expected.probability);
  }
});

Deno.test("POST /invocations explains with MLflow's params or the query string", async () => {
  const server = api(served(linear));
  const split = {
    dataframe_split: { columns: ["title", "message"], data: [[REVIEW.title, REVIEW.message]] },
  };
  for (
    const [url, body] of [["/invocations", { ...split, params: { explain: true } }], [
      "/invocations?explain",
      split,
    ]]
  ) {
    const answer = await (await server.handler(post(url as string, body))).json();
    const [prediction] = answer.predictions;
    assert.deepEqual(Object.keys(prediction).sort(), ["explanation", "label", "polarity", "probability"]);
    assert.equal(
      prediction.explanation.score,
      linear.explain({ title: REVIEW.title, text: REVIEW.message }).score,
    );
  }
  const plain = await (await server.handler(post("/invocations", { ...split, params: { other: 1 } }))).json();
  assert.deepEqual(Object.keys(plain.predictions[0]).sort(), ["label", "polarity", "probability"]);
});

Deno.test("explain requests that cannot be met are 400s that say why", async () => {
  const server = api(served(linear));
  const cases: [Request, RegExp][] = [
    [post("/predict", { ...REVIEW, explain: "yes" }), /"explain" must be true or false, got string/],
    [post("/predict?explain=maybe", REVIEW), /query parameter explain must be true or false, got "maybe"/],
    [post("/invocations", { inputs: [REVIEW], params: [1] }), /"params" must be an object, got a list/],
    [
      post("/invocations", { inputs: [REVIEW], params: { explain: 1 } }),
      /params: "explain" must be true or false/,
    ],
  ];
  for (const [request, message] of cases) {
    const response = await server.handler(request);
    assert.equal(response.status, 400);
    assert.match((await response.json()).message, message);
  }
  const cannot = await api(wordListModel("2")).handler(post("/predict", { ...REVIEW, explain: true }));
  assert.equal(cannot.status, 400);
  assert.match((await cannot.json()).message, /wordlist-demo version 2 cannot explain its predictions/);
});

Deno.test("GET /version says whether the model explains and links its model card", async () => {
  const body = await (await api(served(linear)).handler(new Request(BASE + "/version"))).json();
  assert.equal(body.model_explainable, true);
  assert.deepEqual(body.model_card, {
    page: "http://mlflow:5000/#/models/tiny/versions/4",
    markdown: "http://mlflow:5000/get-artifact?path=model_card.md&run_uuid=run-4",
  });
  const stand = await (await api(wordListModel("2")).handler(new Request(BASE + "/version"))).json();
  assert.equal(stand.model_explainable, false);
  assert.equal(stand.model_card, null);
});
