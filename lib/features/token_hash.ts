/**
 * A token's 32-bit fingerprint: FNV-1a over its UTF-8 bytes. The hashed linear model turns tokens into
 * features with it (its model files name it, `lib/models/linear/hashing.ts`), and the tokenizer can hand
 * out tokens as these numbers directly ({@linkcode Tokenizer.tokenizeReviewHashes}), memoised with each
 * word, so that scoring a review builds and hashes no token string.
 *
 * @module
 */

/**
 * FNV-1a's 32-bit offset basis, as a signed 32-bit integer: the same bits under `^` and `Math.imul`, and a
 * hash loop that starts from it keeps its hash in an integer register. Started from 0x811c9dc5 (above
 * 2^31), V8 keeps the hash a double and converts it at every character: a third of a word scan's time.
 */
export const FNV_OFFSET = 0x811c9dc5 | 0;
/** FNV-1a's 32-bit prime. */
export const FNV_PRIME = 0x01000193;

/**
 * 32-bit FNV-1a of a string's UTF-8 encoding, without encoding it (lone surrogates count as U+FFFD, as
 * `TextEncoder` writes them).
 *
 * @param token The token.
 * @returns An unsigned 32-bit hash, equal to FNV-1a of `new TextEncoder().encode(token)`.
 *
 * @example Usage
 * ```ts
 * import { hashToken } from "./token_hash.ts";
 * hashToken("a"); // 0xe40c292c
 * ```
 */
export function hashToken(token: string): number {
  let h = FNV_OFFSET;
  const length = token.length;
  for (let i = 0; i < length; i++) {
    let c = token.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, FNV_PRIME);
      continue;
    }
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < length ? token.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        const point = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        i++;
        h = Math.imul(h ^ (0xf0 | (point >> 18)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((point >> 12) & 0x3f)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((point >> 6) & 0x3f)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | (point & 0x3f)), FNV_PRIME);
        continue;
      }
      c = 0xfffd;
    }
    h = Math.imul(h ^ (0xe0 | (c >> 12)), FNV_PRIME);
    h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), FNV_PRIME);
    h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
  }
  return h >>> 0;
}

/**
 * A reusable, growing list of token hashes: a review's tokens as {@linkcode hashToken} numbers, in order.
 *
 * @example Usage
 * ```ts
 * import { hashToken, TokenHashes } from "./token_hash.ts";
 * const hashes = new TokenHashes();
 * hashes.push(hashToken("good"));
 * hashes.length; // 1
 * ```
 */
export class TokenHashes {
  /** The hashes; only the first {@linkcode TokenHashes.length} are valid. */
  values: Uint32Array = new Uint32Array(256);
  /** Number of valid hashes. */
  length = 0;

  /** Appends one hash (an unsigned 32-bit integer), growing the list when full. */
  push(hash: number): void {
    if (this.length === this.values.length) {
      const grown = new Uint32Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length++] = hash;
  }
}
