/**
 * The tokenizer's bounded per-word memo, probed with a word's position in a text and its hash, so that a
 * word already seen costs no substring and no string hashing: the key is compared with the text in place,
 * code unit by code unit.
 *
 * Generational eviction: lookups hit the current table, then the previous one (promoting the entry); when
 * the current table holds half the bound it becomes the previous one and the old previous one is dropped.
 * Frequent words stay, rare ones age out, and a hit costs one probe, with no LRU bookkeeping on the hot
 * path.
 *
 * @example Usage
 * ```ts
 * import { WordMemo } from "./word_memo.ts";
 * import { hashCodeUnits } from "./token_scanner.ts";
 * const memo = new WordMemo<number>(1000);
 * const text = "the cat";
 * memo.set("cat", hashCodeUnits("cat"), 3);
 * memo.get(text, 4, 7, hashCodeUnits(text, 4, 7)); // 3
 * ```
 *
 * @module
 */

/**
 * One generation: open addressing with linear probing. A slot holds a word's hash and entry number side by
 * side, and the words' code units are stored end to end in one array, so a probe reads two small arrays
 * and no string object.
 */
class Table<V> {
  /** The words, by entry (read only to promote an entry to the next generation). */
  readonly keys: string[] = [];
  readonly values: V[] = [];
  /** Per slot: the hash, then 1 + the entry number (0 = empty). */
  readonly #slots: Int32Array;
  readonly #mask: number;
  /** Code units of every word, entry after entry. */
  #units = new Uint16Array(1024);
  /** Entry `e`'s units are `#units[#ends[e - 1] ?? 0, #ends[e])`. */
  readonly #ends: Int32Array;

  constructor(capacity: number) {
    let size = 8;
    while (size < 2 * capacity) size *= 2;
    this.#slots = new Int32Array(2 * size);
    this.#mask = size - 1;
    this.#ends = new Int32Array(capacity + 1);
  }

  get size(): number {
    return this.keys.length;
  }

  /** Entry number of the word `text[start, end)` with this hash, or -1. */
  find(text: string, start: number, end: number, hash: number): number {
    const slots = this.#slots;
    const mask = this.#mask;
    const units = this.#units;
    const ends = this.#ends;
    const length = end - start;
    const signed = hash | 0;
    for (let s = hash & mask;; s = (s + 1) & mask) {
      const entry = slots[2 * s + 1]! - 1;
      if (entry < 0) return -1;
      if (slots[2 * s] !== signed) continue;
      // ends is shifted by one: ends[e] is where entry e starts, ends[e + 1] where it ends.
      const from = ends[entry]!;
      if (ends[entry + 1]! - from !== length) continue;
      let k = 0;
      while (k < length && units[from + k] === text.charCodeAt(start + k)) k++;
      if (k === length) return entry;
    }
  }

  /** Adds a word known to be absent; at most `capacity` words. */
  add(key: string, hash: number, value: V): void {
    const slots = this.#slots;
    const mask = this.#mask;
    let s = hash & mask;
    while (slots[2 * s + 1] !== 0) s = (s + 1) & mask;
    const entry = this.keys.length;
    slots[2 * s] = hash;
    slots[2 * s + 1] = entry + 1;
    const from = this.#ends[entry]!;
    if (from + key.length > this.#units.length) {
      const grown = new Uint16Array(2 * (from + key.length));
      grown.set(this.#units);
      this.#units = grown;
    }
    for (let k = 0; k < key.length; k++) this.#units[from + k] = key.charCodeAt(k);
    this.#ends[entry + 1] = from + key.length;
    this.keys.push(key);
    this.values.push(value);
  }
}

/** A bounded memo from words to values. */
export class WordMemo<V> {
  readonly #generation: number;
  #current: Table<V>;
  #previous: Table<V> | undefined;

  /** @param bound Most entries held (at least 2). */
  constructor(bound: number) {
    this.#generation = Math.max(1, Math.floor(bound / 2));
    this.#current = new Table(this.#generation);
  }

  /** Entries held now (a word promoted from the previous generation counts in both). */
  get size(): number {
    return this.#current.size + (this.#previous?.size ?? 0);
  }

  /**
   * The value of the word `text[start, end)`, or undefined.
   *
   * @param hash The word's {@linkcode hashCodeUnits} hash (the scanner computes it while reading the word).
   */
  get(text: string, start: number, end: number, hash: number): V | undefined {
    const current = this.#current;
    const entry = current.find(text, start, end, hash);
    if (entry >= 0) return current.values[entry];
    const previous = this.#previous;
    if (previous === undefined) return undefined;
    const old = previous.find(text, start, end, hash);
    if (old < 0) return undefined;
    const value = previous.values[old]!;
    this.set(previous.keys[old]!, hash, value);
    return value;
  }

  /** Stores the value of a word that {@linkcode WordMemo.get} did not find. */
  set(word: string, hash: number, value: V): void {
    if (this.#current.size >= this.#generation) {
      this.#previous = this.#current;
      this.#current = new Table(this.#generation);
    }
    this.#current.add(word, hash, value);
  }
}
