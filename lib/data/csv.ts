/**
 * RFC 4180 pieces for the Kaggle `kritanjalijain/amazon-reviews` format: no header, three columns
 * `polarity,title,text`, every field double-quoted with `""` escapes, and a newline inside a field written
 * as the two characters `\n`. Because of that last rule one record is always one physical line, so these
 * helpers work on single lines and never need a multi-line quote state machine (see
 * `lib/data/review_reader.ts` for why that matters).
 *
 * A {@linkcode Review} in memory holds real newlines; {@linkcode formatReviewLine} writes them as `\n` and
 * {@linkcode parseReviewLine} turns `\n` back into a newline, so a review survives a write/read round trip.
 *
 * @module
 */
import type { Polarity, Review } from "./review.ts";

/** What {@linkcode parseCsvLine} returns for a line that is not valid CSV. */
export interface CsvLineError {
  /** Short, stable reason, e.g. `unbalanced quotes`. */
  error: string;
}

/** Number of fields of a review line. */
export const REVIEW_FIELD_COUNT = 3;

const QUOTE = 34; // "
const COMMA = 44; // ,
const ESCAPED_NEWLINE = "\\n";
const REAL_NEWLINES = /\r\n|\r|\n/g;

function quoteField(value: string): string {
  // Fast path: most fields need neither replacement, and includes() is much cheaper than a regex replace.
  let escaped = value.includes('"') ? value.replaceAll('"', '""') : value;
  if (escaped.includes("\n") || escaped.includes("\r")) {
    escaped = escaped.replace(REAL_NEWLINES, ESCAPED_NEWLINE);
  }
  return '"' + escaped + '"';
}

/**
 * Formats a review as one line of the dataset, terminated by LF: every field quoted, `"` doubled, and a
 * real line break inside the title or text (CRLF, CR or LF) written as the two characters `\n`, so the
 * record stays on one physical line.
 *
 * @param review The review to write.
 * @returns The line, including its final `\n`.
 *
 * @example Usage
 * ```ts
 * import { formatReviewLine } from "./csv.ts";
 * formatReviewLine({ polarity: 2, title: 'A "great" pan', text: "Heats evenly.\nEasy to clean." });
 * // '"2","A ""great"" pan","Heats evenly.\\nEasy to clean."\n'
 * ```
 */
export function formatReviewLine(review: Review): string {
  return `"${review.polarity}",${quoteField(review.title)},${quoteField(review.text)}\n`;
}

/**
 * Quotes one value as a CSV field (`"` doubled, always quoted); real line breaks are kept, so use it for
 * report files such as `rejects.csv`, not for dataset rows.
 */
export function quoteCsvField(value: string): string {
  return '"' + (value.includes('"') ? value.replaceAll('"', '""') : value) + '"';
}

/**
 * Why a line holding a bare CR is rejected: the file ends its lines with CR alone (classic Mac), so what
 * was read as one line is several.
 */
export const CR_ONLY_REASON =
  "bare CR inside the line: the file has CR-only line ends; convert them to LF (e.g. tr '\\r' '\\n')";

/**
 * The `raw` column of every stage's `rejects.csv`: the line as read, quoted, with each NUL byte written as
 * the two characters `\0`, so a rejects file stays text that any tool can open (one rule for all stages).
 *
 * @example Usage
 * ```ts
 * import { formatRejectedRaw } from "./csv.ts";
 * formatRejectedRaw('"2","a\0b","c"'); // '"""2"",""a\\0b"",""c"""'
 * ```
 */
export function formatRejectedRaw(raw: string): string {
  return quoteCsvField(raw.includes("\0") ? raw.replaceAll("\0", "\\0") : raw);
}

/**
 * Splits one physical line (without its trailing LF or CR) into fields.
 *
 * Quoted fields may contain commas and `""` (an escaped quote); unquoted fields are accepted too, because
 * Python's `csv` module writes `2,Title,Text` when no field needs quoting. It is strict where a lenient
 * parser would silently corrupt a row: a quoted field that never closes is `unbalanced quotes`, a character
 * after a closing quote other than a comma is `unexpected character after closing quote`, and a `"` inside
 * an unquoted field is `quote inside unquoted field` (no conforming writer produces that, so the row was
 * damaged).
 *
 * @param line One line of text, without its line terminator.
 * @returns The field values (quotes removed, `""` unescaped, `\n` left as written), or a
 *   {@linkcode CsvLineError}.
 *
 * @example Usage
 * ```ts
 * import { parseCsvLine } from "./csv.ts";
 * parseCsvLine('"2","Good, cheap","He said ""wow"""'); // ["2", "Good, cheap", 'He said "wow"']
 * parseCsvLine('"2","Good'); // { error: "unbalanced quotes" }
 * ```
 */
export function parseCsvLine(line: string): string[] | CsvLineError {
  const fields: string[] = [];
  const length = line.length;
  let position = 0;
  // Each iteration reads one field starting at `position`; a line always has at least one field.
  while (true) {
    if (line.charCodeAt(position) === QUOTE) {
      let cursor = position + 1;
      let doubled = false;
      let close: number;
      // indexOf jumps from quote to quote, which is far faster than a char-by-char loop on long texts.
      while (true) {
        close = line.indexOf('"', cursor);
        if (close < 0) return { error: "unbalanced quotes" };
        if (line.charCodeAt(close + 1) !== QUOTE) break;
        doubled = true;
        cursor = close + 2;
      }
      const raw = line.slice(position + 1, close);
      fields.push(doubled ? raw.replaceAll('""', '"') : raw);
      const next = close + 1;
      if (next === length) return fields;
      if (line.charCodeAt(next) !== COMMA) return { error: "unexpected character after closing quote" };
      position = next + 1;
      if (position === length) {
        fields.push("");
        return fields;
      }
    } else {
      let comma = line.indexOf(",", position);
      if (comma < 0) comma = length;
      const quote = line.indexOf('"', position);
      if (quote >= 0 && quote < comma) return { error: "quote inside unquoted field" };
      fields.push(line.slice(position, comma));
      if (comma === length) return fields;
      position = comma + 1;
      if (position === length) {
        fields.push("");
        return fields;
      }
    }
  }
}

/** Turns the dataset's two-character `\n` escape back into a real newline. */
export function decodeNewlines(value: string): string {
  return value.includes(ESCAPED_NEWLINE) ? value.replaceAll(ESCAPED_NEWLINE, "\n") : value;
}

function isBlank(value: string): boolean {
  const trimmed = value.trim();
  if (trimmed === "") return true;
  // A field made only of `\n` escapes is blank once decoded; only then does it start with a backslash.
  if (trimmed.charCodeAt(0) !== 92) return false;
  return trimmed.replaceAll(ESCAPED_NEWLINE, "").trim() === "";
}

/**
 * Parses and validates one review line: CSV syntax, exactly 3 fields, a polarity of `1` or `2`, and a title
 * or a text that is not blank (an empty title alone is fine: many real rows have one).
 *
 * @param line One line of text, without its line terminator.
 * @returns The review (with `\n` escapes decoded to newlines), or a short, stable reason for rejecting it.
 *
 * @example Usage
 * ```ts
 * import { parseReviewLine } from "./csv.ts";
 * parseReviewLine('"1","","Broke after a week.\\nReturned it."');
 * // { polarity: 1, title: "", text: "Broke after a week.\nReturned it." }
 * parseReviewLine('"5","Meh","ok"'); // { error: 'label not 1 or 2 (got "5")' }
 * ```
 */
export function parseReviewLine(line: string): Review | CsvLineError {
  const fields = parseCsvLine(line);
  // A CR left inside a line that does not parse is a line end the framer did not split at: name that cause,
  // not the symptom (`unexpected character after closing quote`, a wrong field count).
  const malformed = !Array.isArray(fields) || fields.length !== REVIEW_FIELD_COUNT;
  if (malformed && line.includes("\r")) return { error: CR_ONLY_REASON };
  if (!Array.isArray(fields)) return fields;
  if (fields.length !== REVIEW_FIELD_COUNT) {
    return { error: `wrong field count (expected ${REVIEW_FIELD_COUNT}, got ${fields.length})` };
  }
  const [label, title, text] = fields as [string, string, string];
  let polarity: Polarity;
  if (label === "1") polarity = 1;
  else if (label === "2") polarity = 2;
  else return { error: `label not 1 or 2 (got ${JSON.stringify(label.slice(0, 20))})` };
  if (isBlank(title) && isBlank(text)) return { error: "empty title and text" };
  return { polarity, title: decodeNewlines(title), text: decodeNewlines(text) };
}
