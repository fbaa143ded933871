/**
 * The scanner against its specification: the regular expression the tokenizer matched with before the
 * scanner replaced it (tokenizer version 1), built here exactly as it was. On any text both must find the
 * same pieces, of the same kinds, at the same places.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { generateReviews } from "../data/sample_data.ts";
import { hashCodeUnits, TokenKind, TokenScanner } from "./token_scanner.ts";

// Groups: 1 URL, 2 number, 3 word, 4 "!" run, 5 smiling emoticon, 6 frowning emoticon, 7 other
// punctuation, 8 emoji. The ASCII variant was used for all-ASCII text, the Unicode one for the rest.
function tokenPattern(letter: string, alnum: string, flags: string): RegExp {
  return new RegExp(
    [
      String.raw`((?:https?:\/\/|www\.)[^\s<>"']+)`,
      String.raw`(\d+(?:[.,]\d+)*(?!${alnum}))`,
      String.raw`(${letter}+(?:'${letter}+)*)`,
      String.raw`(!+)`,
      String.raw`((?:[:;=]-?[)\]dp]|<3)(?!${alnum}))`,
      String.raw`([:;=]'?-?[(\[/\\|](?!${alnum}))`,
      String.raw`([.,;:?()[\]]+)`,
      flags.includes("u") ? String.raw`(\p{Extended_Pictographic})` : "(?!)()",
    ].join("|"),
    flags,
  );
}
const TOKEN = tokenPattern(String.raw`[\p{L}\p{M}\p{N}]`, String.raw`[\p{L}\p{N}]`, "gu");
const TOKEN_ASCII = tokenPattern("[a-z0-9]", "[a-z0-9]", "g");
const KINDS = [
  TokenKind.Url,
  TokenKind.Number,
  TokenKind.Word,
  TokenKind.Exclamation,
  TokenKind.Smile,
  TokenKind.Frown,
  TokenKind.Punctuation,
  TokenKind.Emoji,
];

type Piece = [kind: TokenKind, start: number, end: number];

function byPattern(text: string): Piece[] {
  const pattern = /[\u0080-\uffff]/.test(text) ? TOKEN : TOKEN_ASCII;
  return [...text.matchAll(pattern)].map((match) => {
    const group = match.findIndex((value, i) => i > 0 && value !== undefined);
    return [KINDS[group - 1]!, match.index, match.index + match[0].length];
  });
}

const scanner = new TokenScanner();

function byScanner(text: string): Piece[] {
  const pieces: Piece[] = [];
  scanner.reset(text);
  for (let kind = scanner.next(); kind !== TokenKind.End; kind = scanner.next()) {
    pieces.push([kind, scanner.start, scanner.end]);
    if (kind === TokenKind.Word) {
      assert.equal(scanner.hash, hashCodeUnits(text, scanner.start, scanner.end), "word hash");
    }
  }
  return pieces;
}

// The scanner reads cleaned text: lower case (the tokenizer lower-cases before scanning).
const check = (text: string) =>
  assert.deepEqual(byScanner(text.toLowerCase()), byPattern(text.toLowerCase()));

Deno.test("TokenScanner finds what the pattern finds, on the cases its backtracking makes subtle", () => {
  const cases = [
    "",
    "great product, works well!!! 5 stars :)",
    "22nd mp3 1.5x 1,000.50 4,5. 3.14.15a 1.2.3x 7,",
    "http://a.com/x?y=1 https://b.io www.c.org www. www http:// https:x <30 <3 <3a",
    ":-) ;) =d :p :-p :] :d8 :( :'( :-/ ;| =\\ :'-( :-'( :( x :/a ::) .:) (:",
    "don't won't 'quoted' it's o'neil'x x'' ''",
    "naïve café\u0301 日本語 ελληνικά x\u0301y \u0301x",
    "😀👍 ℹ️ ©® 🄰 𝐀𝐁 1𝐀 2² ٣4 a\ud800b \udc00c \ud83d",
    "tabs\tand\nnew\u00a0lines\u2028and\u3000ideographic spaces",
    "!!!?!... ,,, ;;; [x] (y)",
  ];
  for (const text of cases) check(text);
});

Deno.test("TokenScanner finds what the pattern finds, on random text", () => {
  const tricky = fc.constantFrom(
    ..."abchtpwdnsXYZ0123 '!?.,;:()[]<>&#/\\|-=\"`_3",
    "http://",
    "https://",
    "www.",
    "\u00a0",
    "\u2028",
    "é",
    "\u0301",
    "²",
    "٣",
    "ß",
    "😀",
    "ℹ",
    "𝐀",
    "\ud800",
    "\udc00",
  );
  fc.assert(fc.property(fc.string({ unit: tricky, maxLength: 60 }), check), { numRuns: 5000 });
  fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 60 }), check), { numRuns: 2000 });
  fc.assert(fc.property(fc.string({ unit: "grapheme", maxLength: 60 }), check), { numRuns: 2000 });
});

Deno.test("TokenScanner finds what the pattern finds, on review-like text", () => {
  for (const review of generateReviews({ rows: 500, seed: 7 })) {
    check(review.title);
    check(review.text);
  }
});

Deno.test("TokenScanner can be reset mid-text and reused", () => {
  scanner.reset("one two three");
  assert.equal(scanner.next(), TokenKind.Word);
  scanner.reset("four");
  assert.equal(scanner.next(), TokenKind.Word);
  assert.deepEqual([scanner.start, scanner.end], [0, 4]);
  assert.equal(scanner.next(), TokenKind.End);
  assert.equal(scanner.next(), TokenKind.End);
});
