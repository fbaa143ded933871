/**
 * Scoring a review from its token hashes (what `predict` and the API do) gives exactly the number scoring
 * its tokens gives (what evaluate, explanations and every earlier build did): the same features, bucket for
 * bucket, so the same probability to the last bit, with and without a calibrator.
 */
import { strict as assert } from "node:assert";
import fc from "fast-check";
import { generateReviews } from "../../data/sample_data.ts";
import { createTokenizer, tokenizeReview } from "../../features/tokenizer.ts";
import { TokenHashes } from "../../features/token_hash.ts";
import { buildModelFiles, loadModel } from "../artifact.ts";
import { ENGINES } from "../engines.ts";
import { bigramHash, FeatureBuffer, featuresOfTokenHashes, featuresOfTokens, hashToken } from "./hashing.ts";
import { LinearModel } from "./model.ts";
import { LINEAR_ENGINE_NAME, serializeLinear } from "./model_format.ts";

const reviewText = fc.string({
  unit: fc.constantFrom(
    ..."abcXYZ019 '!?.,;:()<>&/-=`nt",
    "not ",
    "good ",
    "bad ",
    "never ",
    ":)",
    "😀",
    "é",
  ),
  maxLength: 80,
});
const review = fc.record({ title: reviewText, text: reviewText });

Deno.test("featuresOfTokenHashes() gives featuresOfTokens()'s buckets, for power-of-two buckets and others", () => {
  const tokens = fc.array(fc.string({ minLength: 1, maxLength: 6 }), { maxLength: 30 });
  const buckets = fc.oneof(
    fc.integer({ min: 1, max: 5000 }),
    fc.integer({ min: 0, max: 30 }).map((k) => 2 ** k),
  );
  fc.assert(
    fc.property(tokens, buckets, fc.constantFrom(1 as const, 2 as const), (list, count, ngrams) => {
      const config = { buckets: count, ngrams };
      const fromTokens = new FeatureBuffer();
      featuresOfTokens(list, config, fromTokens);
      const fromHashes = new FeatureBuffer();
      featuresOfTokenHashes(Uint32Array.from(list, hashToken), list.length, config, fromHashes);
      // The plain definition: a token's bucket is its hash modulo the buckets, a pair's its bigram hash's.
      const expected: number[] = [];
      list.forEach((token, i) => {
        expected.push(hashToken(token) % count);
        if (ngrams === 2 && i > 0) {
          expected.push(bigramHash(hashToken(list[i - 1]!), hashToken(token)) % count);
        }
      });
      assert.deepEqual([...fromTokens.ids.subarray(0, fromTokens.length)], expected);
      assert.deepEqual([...fromHashes.ids.subarray(0, fromHashes.length)], expected);
    }),
    { numRuns: 500 },
  );
});

Deno.test("tokenizeReviewHashes() gives the hashes of tokenizeReview()'s tokens, in every title form", () => {
  const out = new TokenHashes();
  for (const title of ["plain", "prefixed", "both"] as const) {
    for (const lexicon of [true, false]) {
      const tokenizer = createTokenizer({ title, lexicon, cacheSize: 64 });
      fc.assert(
        fc.property(review, (r) => {
          tokenizer.tokenizeReviewHashes(r, out);
          assert.deepEqual(
            [...out.values.subarray(0, out.length)],
            tokenizer.tokenizeReview(r).map(hashToken),
          );
        }),
        { numRuns: 300 },
      );
    }
  }
  const tokenizer = createTokenizer();
  for (const r of generateReviews({ rows: 300, seed: 5 })) {
    tokenizer.tokenizeReviewHashes(r, out);
    assert.deepEqual([...out.values.subarray(0, out.length)], tokenizer.tokenizeReview(r).map(hashToken));
  }
});

function modelFiles(calibration?: Parameters<typeof buildModelFiles>[0]["calibration"]) {
  const model = LinearModel.create({ dim: 8, buckets: 1 << 12, ngrams: 2 }, 3);
  for (const r of generateReviews({ rows: 400, seed: 9 })) {
    model.trainTokens(tokenizeReview(r), r.polarity === 2 ? 1 : 0, 0.2);
  }
  return buildModelFiles({
    engineName: LINEAR_ENGINE_NAME,
    engineBytes: serializeLinear(model),
    appVersion: "0.0.0-test",
    ...(calibration ? { calibration } : {}),
  });
}

Deno.test("a linear model's predict() equals scoring its tokens, to the last bit, with and without a calibrator", () => {
  const calibrations = [
    undefined,
    { method: "platt" as const, input: "logit" as const, a: 0.7, b: -0.1 },
  ];
  for (const calibration of calibrations) {
    const model = loadModel(modelFiles(calibration), ENGINES);
    const check = (r: { title: string; text: string }) => {
      const fromTokens = model.predictTokens(model.tokenizer.tokenizeReview(r));
      assert.deepEqual(model.predict(r), fromTokens);
      // An explanation reports the probability predict serves.
      assert.equal(model.explain(r).probability, fromTokens.positiveProbability);
    };
    fc.assert(fc.property(review, check), { numRuns: 300 });
    for (const r of generateReviews({ rows: 300, seed: 21 })) check(r);
  }
});
