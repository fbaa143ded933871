import { strict as assert } from "node:assert";
import fc from "fast-check";
import {
  bigramHash,
  FeatureBuffer,
  featuresOfBytes,
  featuresOfTokens,
  hashBytes,
  hashToken,
} from "./hashing.ts";

const encoder = new TextEncoder();

Deno.test("hashToken() equals hashBytes() of the UTF-8 encoding, for any string", () => {
  for (const token of ["", "a", "café", "naïve", "日本", "👍", "t:great", "not_good", "\ud800", "a\udc00b"]) {
    const bytes = encoder.encode(token);
    assert.equal(hashToken(token), hashBytes(bytes, 0, bytes.length), JSON.stringify(token));
  }
  fc.assert(fc.property(fc.string({ unit: "binary" }), (token) => {
    const bytes = encoder.encode(token);
    return hashToken(token) === hashBytes(bytes, 0, bytes.length);
  }));
});

Deno.test("hashToken() is the 32-bit FNV-1a of the bytes (a fixed value, so saved models stay valid)", () => {
  // Published FNV-1a test vectors.
  assert.equal(hashToken(""), 0x811c9dc5);
  assert.equal(hashToken("a"), 0xe40c292c);
  assert.equal(hashToken("foobar"), 0xbf9cf968);
  assert.equal(
    bigramHash(hashToken("not"), hashToken("good")),
    bigramHash(hashToken("not"), hashToken("good")),
  );
  assert.notEqual(
    bigramHash(hashToken("not"), hashToken("good")),
    bigramHash(hashToken("good"), hashToken("not")),
  );
});

Deno.test("featuresOfTokens() gives tokens then adjacent pairs, skipping empty tokens", () => {
  const config = { buckets: 1 << 20, ngrams: 2 as const };
  const out = new FeatureBuffer();
  featuresOfTokens(["not", "", "good", "good"], config, out);
  const ids = [...out.ids.subarray(0, out.length)];
  const not = hashToken("not") % config.buckets;
  const good = hashToken("good") % config.buckets;
  assert.deepEqual(ids, [
    not,
    good,
    bigramHash(hashToken("not"), hashToken("good")) % config.buckets,
    good,
    bigramHash(hashToken("good"), hashToken("good")) % config.buckets,
  ]);
  featuresOfTokens(["not", "good"], { ...config, ngrams: 1 }, out);
  assert.deepEqual([...out.ids.subarray(0, out.length)], [not, good]);
  featuresOfTokens([], config, out);
  assert.equal(out.length, 0);
});

Deno.test("featuresOfBytes() gives the same ids as featuresOfTokens() for the same line", () => {
  const config = { buckets: 1009, ngrams: 2 as const };
  const fromTokens = new FeatureBuffer();
  const fromBytes = new FeatureBuffer();
  fc.assert(fc.property(
    fc.array(fc.string({ unit: "grapheme", minLength: 1 }).filter((t) => !/\s/.test(t)), { maxLength: 300 }),
    (tokens) => {
      featuresOfTokens(tokens, config, fromTokens);
      const line = encoder.encode(`2\t${tokens.join(" ")}\n`);
      featuresOfBytes(line, 2, line.length - 1, config, fromBytes);
      assert.deepEqual(
        [...fromBytes.ids.subarray(0, fromBytes.length)],
        [...fromTokens.ids.subarray(0, fromTokens.length)],
      );
    },
  ));
});

Deno.test("FeatureBuffer.push() grows past its initial size", () => {
  const out = new FeatureBuffer();
  for (let i = 0; i < 1000; i++) out.push(i);
  assert.equal(out.length, 1000);
  assert.equal(out.ids[999], 999);
});
