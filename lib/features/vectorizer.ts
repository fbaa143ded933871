/**
 * Turns token lists into the sparse binary features of the forest: a vocabulary of unigrams and bigrams of
 * adjacent tokens, chosen by document frequency, and a transform from tokens to sorted unique vocabulary ids.
 *
 * Fitting streams: documents are added one at a time to a {@linkcode VocabularyBuilder}. Tokens are
 * interned to integer ids, and bigrams are counted as pairs of token ids in an open-addressing table over
 * typed arrays (16 bytes per bigram, no string built per bigram), which is what makes counting millions of
 * reviews take minutes rather than hours.
 *
 * Memory is bounded: bigrams over 3.6M reviews make tens of millions of distinct terms, so the number of
 * counters (tokens + bigrams) is capped by `maxCandidates`, and when the cap is reached the builder falls
 * back to lossy counting (Manku & Motwani, 2002): the least frequent counters are dropped until at most half
 * the cap remains, and a term first seen after a drop starts from the highest count dropped so far
 * (`dfErrorBound`). So an estimated document frequency is never below the true one and at most
 * `dfErrorBound` above it, and no term more frequent than `dfErrorBound` is ever lost. With millions of
 * reviews the bound stays far below the document frequency of the 20,000th term, so the vocabulary is the
 * exact one except for terms within the bound of the cut. While the terms fit under the cap, counts are
 * exact and the bound is 0.
 *
 * Tokens are expected without spaces (a bigram is written "a b"); a space inside a token is replaced by
 * "_", and empty tokens are skipped, in fitting and transforming alike.
 *
 * About 600 lines: the builder and the {@linkcode Vectorizer} it produces share the term normalisation and
 * the serialised form, and must never drift apart.
 *
 * @module
 */
import { PipelineError } from "../core/errors.ts";

/** What goes into the vocabulary. */
export interface VectorizerConfig {
  /** 1 = unigrams only; 2 = unigrams and bigrams of adjacent tokens. @default {2} */
  ngramMax: 1 | 2;
  /** Minimum number of documents a term must appear in. @default {2} */
  minDf: number;
  /** Maximum vocabulary size: the most frequent terms by document frequency (ties by term). @default {20000} */
  maxFeatures: number;
}

/** The defaults of {@linkcode VectorizerConfig}. */
export const DEFAULT_VECTORIZER_CONFIG: Readonly<VectorizerConfig> = Object.freeze({
  ngramMax: 2,
  minDf: 2,
  maxFeatures: 20000,
});

/** Options of {@linkcode VocabularyBuilder} that do not change the result while counts are exact. */
export interface VocabularyBuilderOptions {
  /**
   * Counters (distinct tokens + bigrams) kept before the least frequent are dropped; see the module doc.
   * About 40 bytes per bigram and 100 per token. @default {8000000}
   */
  maxCandidates?: number;
}

/** Joins the two tokens of a bigram term. */
export const BIGRAM_SEPARATOR = " ";

const FORMAT = "vocabulary";
const FORMAT_VERSION = 1;
const EMPTY = -1;

/**
 * Fills in defaults and validates a vectorizer configuration.
 *
 * @param config Any subset of the configuration.
 * @returns The complete configuration.
 * @throws {RangeError} naming the first invalid field.
 */
export function resolveVectorizerConfig(config: Partial<VectorizerConfig> = {}): VectorizerConfig {
  const resolved: VectorizerConfig = { ...DEFAULT_VECTORIZER_CONFIG, ...config };
  if (resolved.ngramMax !== 1 && resolved.ngramMax !== 2) {
    throw new RangeError(`vectorizer ngramMax must be 1 or 2, got ${resolved.ngramMax}`);
  }
  if (!Number.isInteger(resolved.minDf) || resolved.minDf < 1) {
    throw new RangeError(`vectorizer minDf must be an integer >= 1, got ${resolved.minDf}`);
  }
  if (!Number.isInteger(resolved.maxFeatures) || resolved.maxFeatures < 1 || resolved.maxFeatures > 2 ** 24) {
    throw new RangeError(
      `vectorizer maxFeatures must be an integer between 1 and 2^24, got ${resolved.maxFeatures}`,
    );
  }
  return resolved;
}

/** The token as stored: spaces (the bigram separator) replaced by "_". */
function normalizeToken(token: string): string {
  return token.includes(BIGRAM_SEPARATOR) ? token.replaceAll(BIGRAM_SEPARATOR, "_") : token;
}

/**
 * The candidate terms of one document as the vectorizer sees them, with repeats: the tokens (empty ones
 * skipped, spaces replaced by "_"), then, with `ngramMax` 2, each pair of adjacent tokens joined by a space.
 *
 * @param tokens The document's tokens.
 * @param ngramMax 1 or 2.
 * @returns The terms.
 *
 * @example Usage
 * ```ts
 * import { termsOf } from "./vectorizer.ts";
 * console.assert(termsOf(["not", "good"], 2).join("|") === "not|good|not good");
 * ```
 */
export function termsOf(tokens: readonly string[], ngramMax: 1 | 2): string[] {
  const kept = tokens.filter((token) => token.length > 0).map(normalizeToken);
  const terms = [...kept];
  if (ngramMax === 2) {
    for (let i = 1; i < kept.length; i++) terms.push(kept[i - 1] + BIGRAM_SEPARATOR + kept[i]);
  }
  return terms;
}

/** Hash of a token-id pair (a murmur3-style finaliser, so that nearby ids spread over the table). */
function pairHash(a: number, b: number): number {
  let h = Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77);
  h ^= h >>> 15;
  h = Math.imul(h, 0xc2b2ae3d);
  h ^= h >>> 13;
  return h >>> 0;
}

/** Smallest power of two >= n. */
function powerOfTwoAtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * Counts document frequencies over a stream of documents, in bounded memory, and selects the vocabulary.
 *
 * @example Usage
 * ```ts
 * import { VocabularyBuilder } from "./vectorizer.ts";
 * const builder = new VocabularyBuilder({ minDf: 1 });
 * builder.add(["great", "phone"]);
 * builder.add(["great", "battery"]);
 * const vectorizer = builder.finish();
 * console.assert(vectorizer.terms[0] === "great");
 * ```
 */
export class VocabularyBuilder {
  /** The configuration the vocabulary follows. */
  readonly config: VectorizerConfig;
  readonly #maxCandidates: number;
  // Tokens: id by string; count (an upper bound of the document frequency) and last counting document by id.
  #tokenIds = new Map<string, number>();
  #tokens: (string | undefined)[] = [];
  #tokenCount = new Uint32Array(1024);
  #tokenLastDoc = new Int32Array(1024).fill(EMPTY);
  #freeTokens: number[] = [];
  // Bigrams: open addressing on (first token id, second token id) with linear probing, rebuilt on each prune.
  // One slot = 4 consecutive Int32s [first, second, count, last counting document], so a probe touches one
  // cache line: with millions of mostly-new pairs, every probe is a cache miss.
  #mask: number;
  #table: Int32Array;
  #pairs = 0;
  #docIds = new Int32Array(256);
  #documents = 0;
  #floor = 0; // highest count dropped so far = the largest possible overestimate
  #prunes = 0;
  #finished = false;

  /**
   * @param config Vocabulary settings; defaults from {@linkcode DEFAULT_VECTORIZER_CONFIG}.
   * @param options Memory bound.
   */
  constructor(config: Partial<VectorizerConfig> = {}, options: VocabularyBuilderOptions = {}) {
    this.config = resolveVectorizerConfig(config);
    const maxCandidates = options.maxCandidates ?? 8_000_000;
    if (
      !Number.isInteger(maxCandidates) || maxCandidates < 2 * this.config.maxFeatures ||
      maxCandidates > 2 ** 26
    ) {
      throw new RangeError(
        `maxCandidates must be an integer between 2 × maxFeatures (${
          2 * this.config.maxFeatures
        }) and 2^26, got ${maxCandidates}`,
      );
    }
    this.#maxCandidates = maxCandidates;
    // Start small and double; the table never holds more than maxCandidates pairs at a load of at most 1/2.
    this.#mask = 1023;
    this.#table = new Int32Array(4 * 1024).fill(EMPTY);
  }

  /** Documents added so far. */
  get documents(): number {
    return this.#documents;
  }

  /** Distinct terms (tokens and bigrams) currently counted. */
  get candidates(): number {
    return this.#tokenIds.size + this.#pairs;
  }

  /** How much any estimated document frequency may exceed the true one; 0 while counts are exact. */
  get dfErrorBound(): number {
    return this.#floor;
  }

  /** How many times the least frequent counters were dropped. */
  get prunes(): number {
    return this.#prunes;
  }

  /**
   * Counts one document: each distinct term once.
   *
   * @param tokens The document's tokens, in order.
   */
  add(tokens: readonly string[]): void {
    if (this.#finished) throw new Error("VocabularyBuilder.add() called after finish()");
    const doc = this.#documents++;
    if (this.#docIds.length < tokens.length) this.#docIds = new Int32Array(powerOfTwoAtLeast(tokens.length));
    const docIds = this.#docIds;
    let n = 0;
    for (let i = 0; i < tokens.length; i++) {
      const raw = tokens[i]!;
      if (raw.length === 0) continue;
      const token = normalizeToken(raw);
      let id = this.#tokenIds.get(token);
      if (id === undefined) {
        id = this.#newToken(token);
        this.#tokenCount[id] = this.#floor; // lossy counting: it may have been seen `floor` times before
      }
      if (this.#tokenLastDoc[id] !== doc) {
        this.#tokenLastDoc[id] = doc;
        this.#tokenCount[id]!++;
      }
      docIds[n++] = id;
    }
    if (this.config.ngramMax === 2) {
      for (let i = 1; i < n; i++) this.#countPair(docIds[i - 1]!, docIds[i]!, doc);
    }
    // Only between documents, so that a document never counts a term twice.
    if (this.#tokenIds.size + this.#pairs > this.#maxCandidates) this.#prune();
  }

  /** Selects the vocabulary; the builder cannot be used afterwards. */
  finish(): Vectorizer {
    if (this.#finished) throw new Error("VocabularyBuilder.finish() called twice");
    this.#finished = true;
    const { minDf, maxFeatures } = this.config;
    // Find the count at the cut first, so that only the terms that can make it are turned into strings and
    // sorted (there may be millions of candidates).
    const counts: number[] = [];
    for (const id of this.#tokenIds.values()) counts.push(this.#tokenCount[id]!);
    const table = this.#table;
    for (let o = 0; o < table.length; o += 4) if (table[o] !== EMPTY) counts.push(table[o + 2]!);
    let cut = minDf;
    if (counts.length > maxFeatures) {
      const sorted = Float64Array.from(counts).sort();
      cut = Math.max(minDf, sorted[sorted.length - maxFeatures]!);
    }
    const selected: [term: string, df: number][] = [];
    for (const [token, id] of this.#tokenIds) {
      if (this.#tokenCount[id]! >= cut) selected.push([token, this.#tokenCount[id]!]);
    }
    for (let o = 0; o < table.length; o += 4) {
      if (table[o] === EMPTY || table[o + 2]! < cut) continue;
      const term = this.#tokens[table[o]!]! + BIGRAM_SEPARATOR + this.#tokens[table[o + 1]!]!;
      selected.push([term, table[o + 2]!]);
    }
    selected.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    selected.length = Math.min(selected.length, maxFeatures);
    const vectorizer = new Vectorizer(this.config, selected.map((s) => s[0]), {
      documentFrequencies: selected.map((s) => s[1]),
      documents: this.#documents,
      dfErrorBound: this.#floor,
    });
    this.#tokenIds = new Map();
    this.#tokens = [];
    this.#table = new Int32Array(0);
    this.#tokenCount = new Uint32Array(0);
    return vectorizer;
  }

  #newToken(token: string): number {
    let id = this.#freeTokens.pop();
    if (id === undefined) {
      id = this.#tokens.length;
      this.#tokens.push(token);
      if (id >= this.#tokenCount.length) {
        const count = new Uint32Array(this.#tokenCount.length * 2);
        count.set(this.#tokenCount);
        this.#tokenCount = count;
        const lastDoc = new Int32Array(this.#tokenLastDoc.length * 2).fill(EMPTY);
        lastDoc.set(this.#tokenLastDoc);
        this.#tokenLastDoc = lastDoc;
      }
    } else {
      this.#tokens[id] = token;
    }
    this.#tokenIds.set(token, id);
    this.#tokenLastDoc[id] = EMPTY;
    return id;
  }

  #countPair(a: number, b: number, doc: number): void {
    const table = this.#table;
    const mask = this.#mask;
    let o = 4 * (pairHash(a, b) & mask);
    while (table[o] !== EMPTY) {
      if (table[o] === a && table[o + 1] === b) {
        if (table[o + 3] !== doc) {
          table[o + 3] = doc;
          table[o + 2]!++;
        }
        return;
      }
      o = (o + 4) & (4 * mask + 3);
    }
    table[o] = a;
    table[o + 1] = b;
    table[o + 2] = this.#floor + 1;
    table[o + 3] = doc;
    this.#pairs += 1;
    // Load at most 1/2; the table stops growing at 2 × maxCandidates slots, where a prune keeps it at 1/2.
    if (this.#pairs * 2 > mask + 1 && mask + 1 < 2 * this.#maxCandidates) this.#rehash(2 * (mask + 1));
  }

  /** Rebuilds the pair table with `capacity` slots, dropping pairs with a count <= `drop` or a dropped token. */
  #rehash(capacity: number, drop = -1): void {
    const old = this.#table;
    const mask = capacity - 1;
    const table = new Int32Array(4 * capacity).fill(EMPTY);
    let pairs = 0;
    for (let p = 0; p < old.length; p += 4) {
      const a = old[p]!;
      if (a === EMPTY) continue;
      const b = old[p + 1]!;
      if (old[p + 2]! <= drop || this.#tokens[a] === undefined || this.#tokens[b] === undefined) continue;
      let o = 4 * (pairHash(a, b) & mask);
      while (table[o] !== EMPTY) o = (o + 4) & (4 * mask + 3);
      table[o] = a;
      table[o + 1] = b;
      table[o + 2] = old[p + 2]!;
      table[o + 3] = old[p + 3]!;
      pairs += 1;
    }
    this.#mask = mask;
    this.#table = table;
    this.#pairs = pairs;
  }

  /** Drops the counters at or below the smallest threshold that leaves at most half the cap. */
  #prune(): void {
    const keep = this.#maxCandidates >>> 1;
    const histogramSize = 1 << 16;
    const histogram = new Float64Array(histogramSize + 1); // last bucket: counts >= histogramSize
    for (const id of this.#tokenIds.values()) histogram[Math.min(this.#tokenCount[id]!, histogramSize)]!++;
    const table = this.#table;
    for (let o = 0; o < table.length; o += 4) {
      if (table[o] !== EMPTY) histogram[Math.min(table[o + 2]!, histogramSize)]!++;
    }
    let threshold = this.#floor;
    let above = this.#tokenIds.size + this.#pairs; // counters with a count > threshold
    for (let c = 0; c <= threshold; c++) above -= histogram[c]!;
    while (above > keep && threshold < histogramSize - 1) {
      threshold += 1;
      above -= histogram[threshold]!;
    }
    for (const [token, id] of this.#tokenIds) {
      if (this.#tokenCount[id]! <= threshold) {
        this.#tokenIds.delete(token);
        this.#tokens[id] = undefined;
        this.#freeTokens.push(id);
      }
    }
    // A pair with a dropped token goes too: its count is at most that token's true count, so at most the
    // threshold, which keeps the lossy-counting bound.
    this.#rehash(this.#mask + 1, threshold);
    this.#floor = threshold;
    this.#prunes += 1;
  }
}

/** Fitting statistics kept with a vocabulary. */
export interface VocabularyStats {
  /** Estimated document frequency of each term, by id. */
  documentFrequencies: number[];
  /** Documents the vocabulary was fitted on. */
  documents: number;
  /** Largest possible overestimate of a document frequency (0 = exact counts). */
  dfErrorBound: number;
}

/** The JSON form of a {@linkcode Vectorizer}, stored in the model artifact. */
export interface VectorizerJSON {
  format: "vocabulary";
  format_version: number;
  config: VectorizerConfig;
  /** Term of each id; a bigram is its two tokens joined by a space. */
  terms: string[];
  document_frequencies: number[];
  documents: number;
  df_error_bound: number;
}

/** A fitted vocabulary: maps token lists to sorted unique feature ids. */
export class Vectorizer {
  /** The configuration it was fitted with. */
  readonly config: VectorizerConfig;
  /** Term of each feature id; id 0 is the most frequent. */
  readonly terms: readonly string[];
  /** Fitting statistics. */
  readonly stats: Readonly<VocabularyStats>;
  // Transform tables: tokens of any term → token index; unigram feature per token; bigram features in an
  // open-addressing table on token pairs (so a transform builds no bigram string).
  readonly #tokenIndex = new Map<string, number>();
  readonly #unigram: Int32Array;
  readonly #pairMask: number;
  readonly #pairFirst: Int32Array;
  readonly #pairSecond: Int32Array;
  readonly #pairFeature: Int32Array;
  #scratchTokens = new Int32Array(256);
  #scratchIds = new Uint32Array(512);

  /**
   * Use {@linkcode Vectorizer.fit}, a {@linkcode VocabularyBuilder} or {@linkcode Vectorizer.fromJSON}.
   *
   * @param config Configuration.
   * @param terms Unique terms, by id.
   * @param stats Fitting statistics.
   * @throws {RangeError} for repeated or malformed terms.
   */
  constructor(config: VectorizerConfig, terms: readonly string[], stats: VocabularyStats) {
    this.config = config;
    this.terms = Object.freeze([...terms]);
    this.stats = Object.freeze({ ...stats, documentFrequencies: [...stats.documentFrequencies] });
    const unigram: number[] = [];
    const pairs: [number, number, number][] = [];
    const index = (token: string): number => {
      let t = this.#tokenIndex.get(token);
      if (t === undefined) {
        t = this.#tokenIndex.size;
        this.#tokenIndex.set(token, t);
        unigram.push(-1);
      }
      return t;
    };
    const seen = new Set<string>();
    terms.forEach((term, id) => {
      if (seen.has(term)) throw new RangeError(`vocabulary term ${JSON.stringify(term)} appears twice`);
      seen.add(term);
      const parts = term.split(BIGRAM_SEPARATOR);
      if (
        parts.length > 2 || parts.some((p) => p.length === 0) || (parts.length === 2 && config.ngramMax < 2)
      ) {
        throw new RangeError(`vocabulary term ${JSON.stringify(term)} is not a ${config.ngramMax}-gram`);
      }
      if (parts.length === 1) unigram[index(term)] = id;
      else pairs.push([index(parts[0]!), index(parts[1]!), id]);
    });
    this.#unigram = Int32Array.from(unigram);
    const capacity = powerOfTwoAtLeast(2 * pairs.length + 2);
    this.#pairMask = capacity - 1;
    this.#pairFirst = new Int32Array(capacity).fill(EMPTY);
    this.#pairSecond = new Int32Array(capacity);
    this.#pairFeature = new Int32Array(capacity);
    for (const [a, b, id] of pairs) {
      let s = pairHash(a, b) & this.#pairMask;
      while (this.#pairFirst[s] !== EMPTY) s = (s + 1) & this.#pairMask;
      this.#pairFirst[s] = a;
      this.#pairSecond[s] = b;
      this.#pairFeature[s] = id;
    }
  }

  /**
   * Fits a vocabulary on documents.
   *
   * @param documents Token lists (any iterable, consumed once).
   * @param config Vocabulary settings.
   * @param options Memory bound.
   * @returns The fitted vectorizer.
   *
   * @example Usage
   * ```ts
   * import { Vectorizer } from "./vectorizer.ts";
   * const v = Vectorizer.fit([["not", "good"], ["not", "good"], ["good"]], { minDf: 2 });
   * console.assert(v.terms.join("|") === "good|not|not good");
   * ```
   */
  static fit(
    documents: Iterable<readonly string[]>,
    config: Partial<VectorizerConfig> = {},
    options: VocabularyBuilderOptions = {},
  ): Vectorizer {
    const builder = new VocabularyBuilder(config, options);
    for (const tokens of documents) builder.add(tokens);
    return builder.finish();
  }

  /** Vocabulary size (the forest's number of features). */
  get size(): number {
    return this.terms.length;
  }

  /** The id of a term ("a" or "a b"), or undefined. */
  idOf(term: string): number | undefined {
    const parts = term.split(BIGRAM_SEPARATOR);
    if (parts.length === 1) {
      const t = this.#tokenIndex.get(term);
      const id = t === undefined ? -1 : this.#unigram[t]!;
      return id >= 0 ? id : undefined;
    }
    if (parts.length !== 2) return undefined;
    const a = this.#tokenIndex.get(parts[0]!);
    const b = this.#tokenIndex.get(parts[1]!);
    if (a === undefined || b === undefined) return undefined;
    const id = this.#pairId(a, b);
    return id >= 0 ? id : undefined;
  }

  /** The term of an id, or undefined. */
  termOf(id: number): string | undefined {
    return this.terms[id];
  }

  /**
   * The vocabulary ids present in a document (binary presence), ascending and unique; terms outside the
   * vocabulary are ignored.
   *
   * @param tokens The document's tokens.
   * @param origins When given (explanations), it is cleared and receives, for each occurrence of a
   *   vocabulary term, three numbers: the id and the indexes in `tokens` of its first and last token.
   * @returns Sorted unique ids (a new array).
   *
   * @example Usage
   * ```ts
   * import { Vectorizer } from "./vectorizer.ts";
   * const v = Vectorizer.fit([["not", "good"], ["not", "good"]], { minDf: 2 });
   * console.assert(v.transform(["good", "not", "good"]).join() === "0,1");
   * ```
   */
  transform(tokens: readonly string[], origins?: number[]): Uint32Array<ArrayBuffer> {
    if (this.#scratchTokens.length < tokens.length) {
      this.#scratchTokens = new Int32Array(powerOfTwoAtLeast(tokens.length));
      this.#scratchIds = new Uint32Array(2 * this.#scratchTokens.length);
    }
    const index = this.#scratchTokens;
    const found = this.#scratchIds;
    // Position in `tokens` of each kept (non-empty) token; only explanations need it.
    const at: number[] | undefined = origins ? [] : undefined;
    if (origins) origins.length = 0;
    let n = 0;
    let k = 0;
    for (let i = 0; i < tokens.length; i++) {
      const raw = tokens[i]!;
      if (raw.length === 0) continue;
      const t = this.#tokenIndex.get(normalizeToken(raw));
      at?.push(i);
      index[n++] = t === undefined ? EMPTY : t;
      if (t !== undefined && this.#unigram[t]! >= 0) {
        found[k++] = this.#unigram[t]!;
        origins?.push(this.#unigram[t]!, i, i);
      }
    }
    if (this.config.ngramMax === 2) {
      for (let i = 1; i < n; i++) {
        const a = index[i - 1]!;
        const b = index[i]!;
        if (a === EMPTY || b === EMPTY) continue;
        const id = this.#pairId(a, b);
        if (id >= 0) {
          found[k++] = id;
          if (at) origins!.push(id, at[i - 1]!, at[i]!);
        }
      }
    }
    const ids = found.slice(0, k).sort();
    let unique = 0;
    for (let j = 0; j < k; j++) if (j === 0 || ids[j] !== ids[j - 1]) ids[unique++] = ids[j]!;
    return unique === k ? ids : ids.slice(0, unique);
  }

  #pairId(a: number, b: number): number {
    const first = this.#pairFirst;
    const mask = this.#pairMask;
    let s = pairHash(a, b) & mask;
    while (first[s] !== EMPTY) {
      if (first[s] === a && this.#pairSecond[s] === b) return this.#pairFeature[s]!;
      s = (s + 1) & mask;
    }
    return -1;
  }

  /** The JSON form for the model artifact. */
  toJSON(): VectorizerJSON {
    return {
      format: FORMAT,
      format_version: FORMAT_VERSION,
      config: { ...this.config },
      terms: [...this.terms],
      document_frequencies: [...this.stats.documentFrequencies],
      documents: this.stats.documents,
      df_error_bound: this.stats.dfErrorBound,
    };
  }

  /**
   * Restores a vectorizer from {@linkcode toJSON} output (e.g. parsed from a model artifact).
   *
   * @param json The parsed JSON.
   * @returns The vectorizer.
   * @throws {PipelineError} if the JSON is not a vocabulary this build can read.
   */
  static fromJSON(json: unknown): Vectorizer {
    const bad = (what: string) =>
      new PipelineError(`vocabulary in the model artifact is invalid: ${what}; retrain the model`);
    if (json === null || typeof json !== "object") throw bad("not an object");
    const j = json as Partial<VectorizerJSON>;
    if (j.format !== FORMAT) throw bad(`format is ${JSON.stringify(j.format)}, expected "${FORMAT}"`);
    if (j.format_version !== FORMAT_VERSION) {
      throw new PipelineError(
        `vocabulary format version ${j.format_version} is not supported by this build (supports ${FORMAT_VERSION}); retrain or upgrade`,
      );
    }
    let config: VectorizerConfig;
    try {
      config = resolveVectorizerConfig(j.config ?? {});
    } catch (error) {
      throw bad((error as Error).message);
    }
    if (!Array.isArray(j.terms) || !j.terms.every((t) => typeof t === "string")) {
      throw bad("terms must be strings");
    }
    const df = j.document_frequencies;
    if (
      !Array.isArray(df) || df.length !== j.terms.length || !df.every((d) => Number.isInteger(d) && d >= 0)
    ) {
      throw bad("document_frequencies must be one count per term");
    }
    try {
      return new Vectorizer(config, j.terms, {
        documentFrequencies: df,
        documents: Number(j.documents ?? 0),
        dfErrorBound: Number(j.df_error_bound ?? 0),
      });
    } catch (error) {
      throw bad((error as Error).message);
    }
  }
}
