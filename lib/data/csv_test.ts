import assert from "node:assert/strict";
import { decodeNewlines, formatReviewLine, parseCsvLine, parseReviewLine, quoteCsvField } from "./csv.ts";

Deno.test("formatReviewLine() quotes every field, doubles quotes and ends with LF", () => {
  assert.equal(
    formatReviewLine({ polarity: 2, title: 'A "great" pan', text: "Heats evenly, cleans up fast" }),
    '"2","A ""great"" pan","Heats evenly, cleans up fast"\n',
  );
});

Deno.test("formatReviewLine() writes CRLF, CR and LF inside a field as one two-character \\n each", () => {
  const line = formatReviewLine({ polarity: 1, title: "Two\nlines", text: "a\r\nb\rc\nd" });
  assert.equal(line, '"1","Two\\nlines","a\\nb\\nc\\nd"\n');
  assert.equal(line.indexOf("\n"), line.length - 1, "the record stays on one physical line");
});

Deno.test("formatReviewLine() keeps an empty title as an empty quoted field", () => {
  assert.equal(formatReviewLine({ polarity: 1, title: "", text: "Broke." }), '"1","","Broke."\n');
});

Deno.test("parseCsvLine() splits quoted fields with commas and doubled quotes", () => {
  assert.deepEqual(parseCsvLine('"2","Good, cheap","He said ""wow"""'), [
    "2",
    "Good, cheap",
    'He said "wow"',
  ]);
});

Deno.test("parseCsvLine() accepts unquoted fields as Python's csv module writes them", () => {
  assert.deepEqual(parseCsvLine("2,Title,Some text"), ["2", "Title", "Some text"]);
  assert.deepEqual(parseCsvLine('2,"Quoted, title",plain'), ["2", "Quoted, title", "plain"]);
});

Deno.test("parseCsvLine() keeps empty fields, including a trailing one", () => {
  assert.deepEqual(parseCsvLine('"1","",""'), ["1", "", ""]);
  assert.deepEqual(parseCsvLine("1,,"), ["1", "", ""]);
  assert.deepEqual(parseCsvLine('"1","x",'), ["1", "x", ""]);
  assert.deepEqual(parseCsvLine(""), [""]);
});

Deno.test("parseCsvLine() leaves \\n escapes as written", () => {
  assert.deepEqual(parseCsvLine('"2","t","a\\nb"'), ["2", "t", "a\\nb"]);
});

Deno.test("parseCsvLine() reports unbalanced quotes", () => {
  assert.deepEqual(parseCsvLine('"2","Title","text that never closes'), { error: "unbalanced quotes" });
  assert.deepEqual(parseCsvLine('"2","a","ends on an escaped quote ""'), { error: "unbalanced quotes" });
});

Deno.test("parseCsvLine() reports characters after a closing quote", () => {
  assert.deepEqual(parseCsvLine('"2","He said "hi" to me","ok"'), {
    error: "unexpected character after closing quote",
  });
  assert.deepEqual(parseCsvLine('"2" ,"a","b"'), { error: "unexpected character after closing quote" });
});

Deno.test("parseCsvLine() rejects a quote inside an unquoted field", () => {
  assert.deepEqual(parseCsvLine('2,Title,a 12" pan'), { error: "quote inside unquoted field" });
});

Deno.test("parseCsvLine() round-trips what formatReviewLine() writes", () => {
  const review = { polarity: 2 as const, title: '"Quoted" title, with comma', text: 'x""y, "z"' };
  const line = formatReviewLine(review).slice(0, -1);
  assert.deepEqual(parseCsvLine(line), ["2", review.title, review.text]);
});

Deno.test("parseReviewLine() returns a review with \\n escapes decoded", () => {
  assert.deepEqual(parseReviewLine('"1","","Broke after a week.\\n\\nReturned it."'), {
    polarity: 1,
    title: "",
    text: "Broke after a week.\n\nReturned it.",
  });
});

Deno.test("parseReviewLine() rejects a wrong field count with the count", () => {
  assert.deepEqual(parseReviewLine('"2","only two"'), { error: "wrong field count (expected 3, got 2)" });
  assert.deepEqual(parseReviewLine('"2","a","b","c"'), { error: "wrong field count (expected 3, got 4)" });
  assert.deepEqual(parseReviewLine("not a csv line at all"), {
    error: "wrong field count (expected 3, got 1)",
  });
});

Deno.test("parseReviewLine() rejects a label other than 1 or 2 and quotes it", () => {
  assert.deepEqual(parseReviewLine('"5","Meh","ok"'), { error: 'label not 1 or 2 (got "5")' });
  assert.deepEqual(parseReviewLine('"positive","a","b"'), { error: 'label not 1 or 2 (got "positive")' });
  assert.deepEqual(parseReviewLine('" 2","a","b"'), { error: 'label not 1 or 2 (got " 2")' });
});

Deno.test("parseReviewLine() rejects a row whose title and text are both blank", () => {
  assert.deepEqual(parseReviewLine('"2","",""'), { error: "empty title and text" });
  assert.deepEqual(parseReviewLine('"2","  ","\\n\\n "'), { error: "empty title and text" });
});

Deno.test("parseReviewLine() accepts an empty title or an empty text alone", () => {
  assert.deepEqual(parseReviewLine('"2","","Fine"'), { polarity: 2, title: "", text: "Fine" });
  assert.deepEqual(parseReviewLine('"1","Bad",""'), { polarity: 1, title: "Bad", text: "" });
});

Deno.test("parseReviewLine() turns a formatted review back into the same review", () => {
  const review = { polarity: 1 as const, title: "Line\nbreak", text: 'He said "no",\nthen\n\nleft' };
  assert.deepEqual(parseReviewLine(formatReviewLine(review).slice(0, -1)), review);
});

Deno.test("decodeNewlines() replaces every two-character \\n and nothing else", () => {
  assert.equal(decodeNewlines("a\\nb\\n\\nc"), "a\nb\n\nc");
  assert.equal(decodeNewlines("C:\\temp"), "C:\\temp");
});

Deno.test("quoteCsvField() always quotes and doubles quotes", () => {
  assert.equal(quoteCsvField('say "hi", ok'), '"say ""hi"", ok"');
  assert.equal(quoteCsvField(""), '""');
});
