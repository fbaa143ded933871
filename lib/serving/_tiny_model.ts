/**
 * Test support: builds real model artifacts (the files train uploads to MLflow) from a few dozen
 * hand-written reviews: the project's tokenizer and vectorizer, a small sparse forest or a small linear
 * model, and `buildModelFiles`. Tests serve it from a fake MLflow so that the whole load path (download, checksum,
 * `loadModel`, the engine codec, scoring) runs without a trained model or a tracking server.
 *
 * @module
 */
import { trainForest } from "../models/forest/forest.ts";
import { MODEL_FORMAT as FOREST_FORMAT, serializeForest } from "../models/forest/model_format.ts";
import { SparseDataset } from "../models/forest/sparse_dataset.ts";
import { buildModelFiles } from "../models/artifact.ts";
import type { Calibration } from "../models/calibration.ts";
import { LinearModel } from "../models/linear/model.ts";
import { LINEAR_ENGINE_NAME, serializeLinear } from "../models/linear/model_format.ts";
import { tokenizeReview } from "../features/tokenizer.ts";
import { VocabularyBuilder } from "../features/vectorizer.ts";

const POSITIVE = [
  ["Great product", "I love it, works great and the battery lasts"],
  ["Excellent", "Excellent quality, highly recommend"],
  ["Love it", "My kids love it, great gift"],
  ["Works perfectly", "Works perfectly, easy to set up"],
  ["Best purchase", "Best purchase this year, great value"],
  ["Very happy", "Happy with it, great sound and sturdy"],
  ["Great book", "A great read, I loved the characters"],
  ["Recommend", "Great price and fast shipping, recommend"],
  ["Perfect", "Perfect fit and great quality"],
  ["Awesome", "Awesome, works great every day"],
];

const NEGATIVE = [
  ["Terrible", "Terrible quality, broke after a week"],
  ["Waste of money", "Waste of money, it stopped working"],
  ["Disappointed", "Very disappointed, returned it for a refund"],
  ["Broken", "Arrived broken and support never answered"],
  ["Awful", "Awful sound, cheap plastic, do not buy"],
  ["Poor quality", "Poor quality, broke the first day"],
  ["Boring book", "Boring and badly written, a waste of time"],
  ["Junk", "Junk, stopped working after two days"],
  ["Do not buy", "Worst purchase ever, terrible"],
  ["Useless", "Useless, broke and the refund took weeks"],
];

/**
 * Trains the tiny model and returns its artifact files.
 *
 * @param appVersion Recorded in the manifest. @default {"0.0.0-test"}
 * @returns Paths relative to `model/` → bytes, as MLflow would serve them.
 */
export async function buildTinyModelFiles(appVersion = "0.0.0-test"): Promise<Map<string, Uint8Array>> {
  const reviews = tinyReviews();
  const tokens = reviews.map((review) => tokenizeReview(review));
  const builder = new VocabularyBuilder({ minDf: 1 });
  for (const list of tokens) builder.add(list);
  const vectorizer = builder.finish();
  const rows = tokens.map((list) => vectorizer.transform(list));
  const dataset = SparseDataset.fromRows(vectorizer.size, rows, reviews.map((review) => review.label));
  const forest = await trainForest(dataset, { trees: 25, bootstrap: false, maxFeatures: "all" }, {
    workers: 0,
  });
  return buildModelFiles({
    engineName: FOREST_FORMAT,
    engineBytes: serializeForest(forest),
    vectorizer,
    appVersion,
  });
}

function tinyReviews(): { title: string; text: string; label: 0 | 1 }[] {
  return [
    ...POSITIVE.map(([title, text]) => ({ title: title!, text: text!, label: 1 as const })),
    ...NEGATIVE.map(([title, text]) => ({ title: title!, text: text!, label: 0 as const })),
  ];
}

/**
 * Trains a tiny linear model (the default family) on the same reviews and returns its artifact files.
 *
 * @param options A calibrator to save with it.
 * @returns Paths relative to `model/` → bytes.
 */
export function buildTinyLinearModelFiles(
  options: { calibration?: Calibration } = {},
): Map<string, Uint8Array> {
  const model = LinearModel.create({ dim: 8, buckets: 1 << 12, ngrams: 2 }, 1);
  const reviews = tinyReviews().map((review) => ({ tokens: tokenizeReview(review), label: review.label }));
  for (let epoch = 0; epoch < 30; epoch++) {
    for (const review of reviews) model.trainTokens(review.tokens, review.label, 0.3 * (1 - epoch / 30));
  }
  return buildModelFiles({
    engineName: LINEAR_ENGINE_NAME,
    engineBytes: serializeLinear(model),
    appVersion: "0.0.0-test",
    ...(options.calibration ? { calibration: options.calibration } : {}),
  });
}
