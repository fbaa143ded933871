/**
 * The tokenizer's lexer: one pass over a cleaned (lower-case, NFKC) text that finds, left to right, each
 * URL, number, word, `!` run, emoticon, punctuation run and emoji, as a hand-written loop over UTF-16 code
 * units. It replaces a regular expression with one alternative per kind (kept in `token_scanner_test.ts` as
 * the specification, and compared with this scanner on random and real-like text): matching that pattern
 * built a match array and a substring per token, and the tokenizer then looked each word up in a `Map` by
 * that new string, which together were about three quarters of a review's tokenizing time. The scanner
 * allocates nothing; it reports each piece by its position, and a word with a hash of its code units, so
 * that the tokenizer's per-word memo can be probed without cutting the word out of the text.
 *
 * The kinds, tried in this order at each position (the first that matches wins, as the alternatives of the
 * pattern did); "alnum" is a letter or a number (`[\p{L}\p{N}]`), a word character also a mark
 * (`[\p{L}\p{M}\p{N}]`):
 *
 * | kind | what | pattern |
 * |---|---|---|
 * | URL | `http://`, `https://` or `www.`, then up to whitespace, `<`, `>`, `"` or `'` | `(?:https?:\/\/\|www\.)[^\s<>"']+` |
 * | number | digits with `.`/`,` groups, not followed by an alnum | `\d+(?:[.,]\d+)*(?![\p{L}\p{N}])` |
 * | word | word characters, inner apostrophes kept | `[\p{L}\p{M}\p{N}]+(?:'[\p{L}\p{M}\p{N}]+)*` |
 * | exclamation | a run of `!` | `!+` |
 * | smile | `:)`, `;-]`, `=d`, `<3`, not followed by an alnum | `(?:[:;=]-?[)\]dp]\|<3)(?![\p{L}\p{N}])` |
 * | frown | `:(`, `:'-(`, `=/`, `;\|`, not followed by an alnum | `[:;=]'?-?[(\[/\\\|](?![\p{L}\p{N}])` |
 * | punctuation | a run of `.,;:?()[]` | `[.,;:?()[\]]+` |
 * | emoji | one Extended_Pictographic code point | `\p{Extended_Pictographic}` |
 *
 * Anything else is skipped one code point at a time (a surrogate pair is one code point, a lone surrogate
 * is one too). A number followed by a letter ("22nd", "mp3") is a word; "1.5x" is the number "1", the
 * punctuation "." and the word "5x", exactly as the pattern's backtracking gives.
 *
 * @example Usage
 * ```ts
 * import { TokenKind, TokenScanner } from "./token_scanner.ts";
 * const scanner = new TokenScanner();
 * scanner.reset("great :) 42!");
 * const kinds: TokenKind[] = [];
 * for (let kind = scanner.next(); kind !== TokenKind.End; kind = scanner.next()) kinds.push(kind);
 * // [Word, Smile, Number, Exclamation]; scanner.start / scanner.end give each one's range
 * ```
 *
 * @module
 */

/** What {@linkcode TokenScanner.next} found. */
export const enum TokenKind {
  /** The text is exhausted. */
  End,
  Url,
  Number,
  Word,
  Exclamation,
  Smile,
  Frown,
  Punctuation,
  Emoji,
}

// Character classes as bit flags, per code point.
const WORD = 1; // [\p{L}\p{M}\p{N}]
const ALNUM = 2; // [\p{L}\p{N}]
const PICTOGRAPHIC = 4; // \p{Extended_Pictographic}
const SPACE = 8; // \s
const KNOWN = 128; // the entry below has been computed

const WORD_CHAR = /^[\p{L}\p{M}\p{N}]$/u;
const ALNUM_CHAR = /^[\p{L}\p{N}]$/u;
const PICTOGRAPHIC_CHAR = /^\p{Extended_Pictographic}$/u;
const SPACE_CHAR = /^\s$/u;

function classify(point: number): number {
  const char = String.fromCodePoint(point);
  return KNOWN | (WORD_CHAR.test(char) ? WORD : 0) | (ALNUM_CHAR.test(char) ? ALNUM : 0) |
    (PICTOGRAPHIC_CHAR.test(char) ? PICTOGRAPHIC : 0) | (SPACE_CHAR.test(char) ? SPACE : 0);
}

// Classes of the Basic Multilingual Plane, filled in on first sight of each code point by the same Unicode
// property escapes the pattern used (so both agree on every Unicode version the runtime has); ASCII up
// front. A lone surrogate is none of the classes, as in a `u` pattern.
const BMP_CLASSES = new Uint8Array(0x10000);
for (let c = 0; c < 0x80; c++) BMP_CLASSES[c] = classify(c);
for (let c = 0xd800; c <= 0xdfff; c++) BMP_CLASSES[c] = KNOWN;
// Astral code points (emoji, historic scripts), memoised by code point.
const ASTRAL_CLASSES = new Map<number, number>();

const APOSTROPHE = 0x27;

/**
 * Finds the tokens of a cleaned text one at a time, allocating nothing. Not re-entrant: one text at a time
 * per scanner.
 */
export class TokenScanner {
  /** Start (UTF-16 offset) of the last piece found. */
  start = 0;
  /** End (exclusive) of the last piece found. */
  end = 0;
  /** For a {@linkcode TokenKind.Word}: a 32-bit hash of its code units ({@linkcode hashCodeUnits}). */
  hash = 0;
  #text = "";
  #at = 0;

  /** Starts scanning `text` from its beginning. */
  reset(text: string): void {
    this.#text = text;
    this.#at = 0;
    this.start = 0;
    this.end = 0;
  }

  /**
   * Finds the next piece from where the last one ended.
   *
   * @returns Its kind, with its range in {@linkcode TokenScanner.start} and {@linkcode TokenScanner.end}.
   */
  next(): TokenKind {
    const text = this.#text;
    const length = text.length;
    let i = this.#at;
    while (i < length) {
      const c = text.charCodeAt(i);
      let kind = TokenKind.End;
      let end = i;
      // Most characters are lower-case ASCII letters or a space; test for a word first when it cannot be
      // a URL, whose prefix starts with h or w.
      if (c >= 0x61 && c <= 0x7a && c !== 0x68 && c !== 0x77) {
        end = this.#word(text, i);
        kind = TokenKind.Word;
      } else if (c === 0x20) {
        i++;
        continue;
      } else if ((c === 0x68 || c === 0x77) && (end = urlEnd(text, i)) > i) {
        kind = TokenKind.Url;
      } else if (c >= 0x30 && c <= 0x39 && (end = numberEnd(text, i)) > i) {
        kind = TokenKind.Number;
      } else if (c === 0x21) {
        end = i + 1;
        while (end < length && text.charCodeAt(end) === 0x21) end++;
        kind = TokenKind.Exclamation;
      } else if ((c === 0x3a || c === 0x3b || c === 0x3d || c === 0x3c) && (end = smileEnd(text, i)) > i) {
        kind = TokenKind.Smile;
      } else if ((c === 0x3a || c === 0x3b || c === 0x3d) && (end = frownEnd(text, i)) > i) {
        kind = TokenKind.Frown;
      } else if (isPunctuation(c)) {
        end = i + 1;
        while (end < length && isPunctuation(text.charCodeAt(end))) end++;
        kind = TokenKind.Punctuation;
      } else {
        const classes = classesAt(text, i);
        const width = c >= 0xd800 && c <= 0xdbff && isLowSurrogate(text, i + 1) ? 2 : 1;
        if (classes & WORD) {
          end = this.#word(text, i);
          kind = TokenKind.Word;
        } else if (classes & PICTOGRAPHIC) {
          end = i + width;
          kind = TokenKind.Emoji;
        } else {
          i += width;
          continue;
        }
      }
      this.start = i;
      this.end = end;
      this.#at = end;
      return kind;
    }
    this.#at = length;
    this.start = length;
    this.end = length;
    return TokenKind.End;
  }

  /** End of the word starting at `i` (a word character), hashing its code units into `hash` on the way. */
  #word(text: string, i: number): number {
    const length = text.length;
    let h = HASH_OFFSET;
    let j = i;
    for (;;) {
      // A run of word characters.
      while (j < length) {
        const c = text.charCodeAt(j);
        if (c < 0x80) {
          if (!(ASCII_WORD[c]! === 1)) break;
          h = Math.imul(h ^ c, HASH_PRIME);
          j++;
        } else {
          if (!(classesAt(text, j) & WORD)) break;
          h = Math.imul(h ^ c, HASH_PRIME);
          j++;
          if (c >= 0xd800 && c <= 0xdbff && isLowSurrogate(text, j)) {
            h = Math.imul(h ^ text.charCodeAt(j), HASH_PRIME);
            j++;
          }
        }
      }
      // An inner apostrophe continues the word when a word character follows it.
      if (j + 1 < length && text.charCodeAt(j) === APOSTROPHE && (classesAt(text, j + 1) & WORD)) {
        h = Math.imul(h ^ APOSTROPHE, HASH_PRIME);
        j++;
        continue;
      }
      this.hash = h >>> 0;
      return j;
    }
  }
}

// FNV-1a's offset basis as a signed 32-bit integer, so that the hash stays an integer in the scan loop
// (token_hash.ts says why).
const HASH_OFFSET = 0x811c9dc5 | 0;
const HASH_PRIME = 0x01000193;

/**
 * The hash {@linkcode TokenScanner} gives a word: 32-bit FNV-1a over its UTF-16 code units.
 *
 * @param text The text.
 * @param start First code unit.
 * @param end One past the last.
 * @returns An unsigned 32-bit hash.
 */
export function hashCodeUnits(text: string, start = 0, end = text.length): number {
  let h = HASH_OFFSET;
  for (let i = start; i < end; i++) h = Math.imul(h ^ text.charCodeAt(i), HASH_PRIME);
  return h >>> 0;
}

const ASCII_WORD = new Uint8Array(0x80);
for (let c = 0; c < 0x80; c++) ASCII_WORD[c] = BMP_CLASSES[c]! & WORD ? 1 : 0;

function isLowSurrogate(text: string, i: number): boolean {
  if (i >= text.length) return false;
  const c = text.charCodeAt(i);
  return c >= 0xdc00 && c <= 0xdfff;
}

/** The classes of the code point starting at `i` (0 past the end). */
function classesAt(text: string, i: number): number {
  if (i >= text.length) return 0;
  const c = text.charCodeAt(i);
  if (c >= 0xd800 && c <= 0xdbff && isLowSurrogate(text, i + 1)) {
    const point = 0x10000 + ((c - 0xd800) << 10) + (text.charCodeAt(i + 1) - 0xdc00);
    let classes = ASTRAL_CLASSES.get(point);
    if (classes === undefined) {
      classes = classify(point);
      ASTRAL_CLASSES.set(point, classes);
    }
    return classes;
  }
  let classes = BMP_CLASSES[c]!;
  if (classes === 0) {
    classes = classify(c);
    BMP_CLASSES[c] = classes;
  }
  return classes;
}

/** Whether the code point at `i` is a letter or a number (false past the end): the lookaheads' test. */
function alnumAt(text: string, i: number): boolean {
  return (classesAt(text, i) & ALNUM) !== 0;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

// . , ; : ? ( ) [ ]
function isPunctuation(c: number): boolean {
  return c === 0x2e || c === 0x2c || c === 0x3b || c === 0x3a || c === 0x3f || c === 0x28 || c === 0x29 ||
    c === 0x5b || c === 0x5d;
}

/** End of a URL at `i`, or `i` when none starts there. */
function urlEnd(text: string, i: number): number {
  let j: number;
  if (text.startsWith("www.", i)) j = i + 4;
  else if (text.startsWith("http://", i)) j = i + 7;
  else if (text.startsWith("https://", i)) j = i + 8;
  else return i;
  const start = j;
  while (j < text.length) {
    const c = text.charCodeAt(j);
    // [^\s<>"']: whitespace is BMP only, so code units decide as code points would.
    if (c === 0x3c || c === 0x3e || c === 0x22 || c === 0x27) break;
    if (c < 0x80 ? BMP_CLASSES[c]! & SPACE : classesAt(text, j) & SPACE) break;
    j++;
  }
  return j > start ? j : i;
}

/**
 * End of a number at `i` (a digit), or `i` when the pattern does not match there. Its greedy extent is
 * taken when no alnum follows; otherwise backtracking can only drop the last `[.,]\d+` group (a shorter
 * digit run is always followed by a digit), which succeeds when there is one.
 */
function numberEnd(text: string, i: number): number {
  const length = text.length;
  let j = i + 1;
  while (j < length && isDigit(text.charCodeAt(j))) j++;
  let lastGroup = -1;
  while (j + 1 < length) {
    const c = text.charCodeAt(j);
    if ((c !== 0x2e && c !== 0x2c) || !isDigit(text.charCodeAt(j + 1))) break;
    lastGroup = j;
    j += 2;
    while (j < length && isDigit(text.charCodeAt(j))) j++;
  }
  if (!alnumAt(text, j)) return j;
  return lastGroup >= 0 ? lastGroup : i;
}

/** End of a smiling emoticon at `i`, or `i`. */
function smileEnd(text: string, i: number): number {
  const c = text.charCodeAt(i);
  let j = i + 1;
  if (c === 0x3c) {
    if (text.charCodeAt(j) !== 0x33) return i; // <3
    j++;
  } else {
    if (text.charCodeAt(j) === 0x2d) j++; // -
    const face = text.charCodeAt(j);
    // ) ] d p
    if (face !== 0x29 && face !== 0x5d && face !== 0x64 && face !== 0x70) return i;
    j++;
  }
  return alnumAt(text, j) ? i : j;
}

/** End of a frowning emoticon at `i` (one of `:;=`), or `i`. */
function frownEnd(text: string, i: number): number {
  let j = i + 1;
  if (text.charCodeAt(j) === APOSTROPHE) j++;
  if (text.charCodeAt(j) === 0x2d) j++; // -
  const face = text.charCodeAt(j);
  // ( [ / \ |
  if (face !== 0x28 && face !== 0x5b && face !== 0x2f && face !== 0x5c && face !== 0x7c) return i;
  j++;
  return alnumAt(text, j) ? i : j;
}
