/**
 * Test support: the files of a small linear model (the default family), trained in a blink on two
 * reviews, as train would upload them. `flipped` trains the opposite labels, for a second, different model.
 *
 * @module
 */
import { tokenizeReview } from "../features/tokenizer.ts";
import { buildModelFiles } from "../models/artifact.ts";
import { LinearModel } from "../models/linear/model.ts";
import { LINEAR_ENGINE_NAME, serializeLinear } from "../models/linear/model_format.ts";

/**
 * Builds the files.
 *
 * @param flipped Train "great" as negative and "awful" as positive. @default {false}
 * @returns Paths relative to `model/` → bytes.
 */
export function linearModelFiles(flipped = false): Map<string, Uint8Array> {
  const model = LinearModel.create({ dim: 4, buckets: 1 << 12, ngrams: 2 }, 1);
  const good = { title: "Great", text: "Works great, love it" };
  const bad = { title: "Awful", text: "Broke after a day, junk" };
  for (let i = 0; i < 200; i++) {
    model.trainTokens(tokenizeReview(good), flipped ? 0 : 1, 0.5);
    model.trainTokens(tokenizeReview(bad), flipped ? 1 : 0, 0.5);
  }
  return buildModelFiles({
    engineName: LINEAR_ENGINE_NAME,
    engineBytes: serializeLinear(model),
    appVersion: "0.0.0-test",
  });
}
