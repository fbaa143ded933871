/**
 * The hashed n-gram features of the linear model: every token and every pair of adjacent tokens is mapped
 * to one of `buckets` rows of the embedding table by a hash of its UTF-8 bytes (the "hashing trick" of
 * Weinberger et al. 2009, as fastText uses it for n-grams).
 *
 * Hashing instead of a vocabulary is what lets training stream: there is no vocabulary pass, the table
 * size is fixed before the first review is read, and batches added later (`--warm-start-from`) bring
 * their new words along instead of being cut down to an old vocabulary.
 *
 * Training hashes tokens straight from the bytes of a processed file (no string is built per token), and
 * prediction hashes the tokenizer's strings; {@linkcode hashToken} encodes UTF-8 on the fly so that both
 * give the same number for the same token. The hash is part of the model format
 * ({@linkcode HASH_FUNCTION}): changing it would silently scramble every saved model, so it never changes
 * without a new name.
 *
 * @module
 */

import { FNV_OFFSET, FNV_PRIME, hashToken } from "../../features/token_hash.ts";

// The token hash lives with the tokenizer, which can hand out tokens as hashes; it is this model's.
export { hashToken };

/** Name of the hash recorded in every model; a model with another name is refused. */
export const HASH_FUNCTION = "fnv1a32-utf8/bigram-fmix32";

/** Which n-grams become features. */
export interface HashingConfig {
  /** Rows of the embedding table that features are hashed into. */
  buckets: number;
  /** 1 = tokens only; 2 = tokens and pairs of adjacent tokens. */
  ngrams: 1 | 2;
}

// fastText's multiplier for combining the hashes of two words into an n-gram hash.
const NGRAM_MULTIPLIER = 116049371;

/** MurmurHash3's 32-bit finaliser: spreads nearby integers over the whole range. */
export function fmix32(value: number): number {
  let h = value | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Hash of a pair of adjacent tokens, from the two tokens' hashes. */
export function bigramHash(first: number, second: number): number {
  return fmix32(Math.imul(first, NGRAM_MULTIPLIER) + second);
}

/**
 * 32-bit FNV-1a of `bytes[start, end)`.
 *
 * @param bytes The buffer.
 * @param start First byte.
 * @param end One past the last byte.
 * @returns An unsigned 32-bit hash.
 */
export function hashBytes(bytes: Uint8Array, start: number, end: number): number {
  let h = FNV_OFFSET;
  for (let i = start; i < end; i++) h = Math.imul(h ^ bytes[i]!, FNV_PRIME);
  return h >>> 0;
}

/**
 * `buckets - 1` when `buckets` is a power of two (up to 2^30), else -1. Then the bucket of an unsigned
 * 32-bit hash, `hash % buckets`, is `hash & mask`: the same number without a floating-point division
 * (hashes above 2^31 are not int32, so `%` on them is one).
 */
function powerOfTwoMask(buckets: number): number {
  return buckets > 0 && buckets <= 2 ** 30 && (buckets & (buckets - 1)) === 0 ? buckets - 1 : -1;
}

/**
 * A reusable buffer of feature ids: the features of one review, in order (tokens, then pairs), with
 * repeats, since a word said twice counts twice in the pooled sum.
 */
export class FeatureBuffer {
  /** The ids; only the first {@linkcode FeatureBuffer.length} are valid. */
  ids: Int32Array = new Int32Array(256);
  /** Number of valid ids. */
  length = 0;

  /** Appends one id, growing the buffer when full. */
  push(id: number): void {
    if (this.length === this.ids.length) {
      const grown = new Int32Array(this.ids.length * 2);
      grown.set(this.ids);
      this.ids = grown;
    }
    this.ids[this.length++] = id;
  }
}

/**
 * Computes the feature ids of a list of tokens (as the tokenizer returns them) into `out`. Empty tokens
 * are skipped, and pairs are formed between the tokens that remain.
 *
 * @param tokens The review's tokens.
 * @param config Buckets and n-gram order.
 * @param out Buffer to fill; it is cleared first.
 * @param origins When given (explanations), it is cleared and receives, for each id in order, the
 *   indexes in `tokens` of the first and the last token the feature is made of.
 *
 * @example Usage
 * ```ts
 * import { FeatureBuffer, featuresOfTokens } from "./hashing.ts";
 * const out = new FeatureBuffer();
 * featuresOfTokens(["not", "good"], { buckets: 1024, ngrams: 2 }, out);
 * console.assert(out.length === 3); // "not", "good", "not good"
 * ```
 */
export function featuresOfTokens(
  tokens: readonly string[],
  config: HashingConfig,
  out: FeatureBuffer,
  origins?: number[],
): void {
  out.length = 0;
  if (origins) origins.length = 0;
  const { buckets, ngrams } = config;
  const mask = powerOfTwoMask(buckets);
  let previous = -1;
  let previousIndex = -1;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.length === 0) continue;
    const h = hashToken(token);
    out.push(mask >= 0 ? h & mask : h % buckets);
    origins?.push(i, i);
    if (ngrams === 2 && previous !== -1) {
      const pair = bigramHash(previous, h);
      out.push(mask >= 0 ? pair & mask : pair % buckets);
      origins?.push(previousIndex, i);
    }
    previous = h;
    previousIndex = i;
  }
}

/**
 * Computes the feature ids of the space-separated tokens in `bytes[start, end)` (the token part of a
 * processed line) into `out`, exactly as {@linkcode featuresOfTokens} does for the same tokens as strings.
 *
 * @param bytes The buffer holding the line.
 * @param start First byte of the tokens (after the label and the tab).
 * @param end One past the last byte (the line feed's position).
 * @param config Buckets and n-gram order.
 * @param out Buffer to fill; it is cleared first.
 */
export function featuresOfBytes(
  bytes: Uint8Array,
  start: number,
  end: number,
  config: HashingConfig,
  out: FeatureBuffer,
): void {
  out.length = 0;
  const { buckets, ngrams } = config;
  const mask = powerOfTwoMask(buckets);
  let previous = -1;
  let h = FNV_OFFSET;
  let tokenStart = start;
  for (let i = start; i <= end; i++) {
    const byte = i < end ? bytes[i]! : 0x20;
    if (byte !== 0x20) {
      h = Math.imul(h ^ byte, FNV_PRIME);
      continue;
    }
    if (i > tokenStart) {
      const hash = h >>> 0;
      out.push(mask >= 0 ? hash & mask : hash % buckets);
      if (ngrams === 2 && previous !== -1) {
        const pair = bigramHash(previous, hash);
        out.push(mask >= 0 ? pair & mask : pair % buckets);
      }
      previous = hash;
    }
    h = FNV_OFFSET;
    tokenStart = i + 1;
  }
}

/**
 * Computes the feature ids of a review's tokens given as their {@linkcode hashToken} hashes (as
 * `Tokenizer.tokenizeReviewHashes` writes them) into `out`: exactly {@linkcode featuresOfTokens} of the
 * tokens, which the tokenizer never makes empty, without a string in sight.
 *
 * @param hashes The tokens' hashes, in order.
 * @param count How many of `hashes` to use.
 * @param config Buckets and n-gram order.
 * @param out Buffer to fill; it is cleared first.
 *
 * @example Usage
 * ```ts
 * import { FeatureBuffer, featuresOfTokenHashes, hashToken } from "./hashing.ts";
 * const out = new FeatureBuffer();
 * featuresOfTokenHashes(Uint32Array.of(hashToken("not"), hashToken("good")), 2, { buckets: 1024, ngrams: 2 }, out);
 * console.assert(out.length === 3); // "not", "good", "not good"
 * ```
 */
export function featuresOfTokenHashes(
  hashes: Uint32Array,
  count: number,
  config: HashingConfig,
  out: FeatureBuffer,
): void {
  out.length = 0;
  const { buckets, ngrams } = config;
  const mask = powerOfTwoMask(buckets);
  for (let i = 0; i < count; i++) {
    const h = hashes[i]!;
    out.push(mask >= 0 ? h & mask : h % buckets);
    if (ngrams === 2 && i > 0) {
      const pair = bigramHash(hashes[i - 1]!, h);
      out.push(mask >= 0 ? pair & mask : pair % buckets);
    }
  }
}
