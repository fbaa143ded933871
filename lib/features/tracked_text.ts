/**
 * A string that remembers where each of its characters came from in the text it was derived from, through
 * the edits a tokenizer's cleaning makes (regex replacements, Unicode normalisation, lower-casing). It lets
 * an explanation point at the words a person typed although the model read a cleaned copy of them.
 *
 * Each character `i` of {@linkcode TrackedText.text} maps to the range `[starts[i], ends[i])` of the
 * original. A replacement maps every character it writes to the whole range it replaced, so a word whose
 * apostrophe was written `&#39;` maps back to all of `don&#39;t`.
 *
 * @module
 */

/** Raised when an edit cannot be tracked character by character (never for ASCII text). */
export class UntrackableEdit extends Error {
  override name = "UntrackableEdit";
}

const graphemes = new Intl.Segmenter("en", { granularity: "grapheme" });

/**
 * A derived string with the source range of each of its UTF-16 units.
 *
 * @example Usage
 * ```ts
 * import { TrackedText } from "./tracked_text.ts";
 * const text = TrackedText.of("Don&#39;t");
 * text.replace(/&#39;/g, () => "'");
 * text.lower();
 * text.text; // "don't"
 * text.sourceRange(0, 5); // [0, 9]
 * ```
 */
export class TrackedText {
  /** The current text. */
  text: string;
  #starts: number[];
  #ends: number[];

  private constructor(text: string, starts: number[], ends: number[]) {
    this.text = text;
    this.#starts = starts;
    this.#ends = ends;
  }

  /** Starts tracking `source`: every character maps to itself. */
  static of(source: string): TrackedText {
    const starts = new Array<number>(source.length);
    const ends = new Array<number>(source.length);
    for (let i = 0; i < source.length; i++) {
      starts[i] = i;
      ends[i] = i + 1;
    }
    return new TrackedText(source, starts, ends);
  }

  /**
   * The source range of the characters `[start, end)` of the current text.
   *
   * @returns `[sourceStart, sourceEnd]`; an empty range maps to an empty range at its position.
   */
  sourceRange(start: number, end: number): [number, number] {
    if (end <= start) {
      const at = start < this.#starts.length ? this.#starts[start]! : (this.#ends.at(-1) ?? 0);
      return [at, at];
    }
    return [this.#starts[start]!, this.#ends[end - 1]!];
  }

  /**
   * Replaces every match of a global regex by what `replacer` returns for it, as `String.replace` does
   * with a function (the regex must have no named groups).
   */
  replace(pattern: RegExp, replacer: (match: string, ...groups: string[]) => string): void {
    if (!pattern.global) throw new TypeError("TrackedText.replace needs a global regex");
    const source = this.text;
    let text = "";
    const starts: number[] = [];
    const ends: number[] = [];
    let copied = 0;
    for (const match of source.matchAll(pattern)) {
      const at = match.index;
      this.#copy(copied, at, starts, ends);
      text += source.slice(copied, at);
      const replacement = replacer(match[0], ...match.slice(1).map((group) => group as string));
      const [from, to] = this.sourceRange(at, at + match[0].length);
      for (let k = 0; k < replacement.length; k++) {
        starts.push(from);
        ends.push(to);
      }
      text += replacement;
      copied = at + match[0].length;
    }
    this.#copy(copied, source.length, starts, ends);
    text += source.slice(copied);
    this.text = text;
    this.#starts = starts;
    this.#ends = ends;
  }

  /**
   * Unicode NFKC, one grapheme cluster at a time (composition never crosses a cluster).
   *
   * @throws {UntrackableEdit} if that differs from normalising the whole text.
   */
  normalizeNfkc(): void {
    const whole = this.text.normalize("NFKC");
    if (whole === this.text) return;
    this.#perSegment(
      Array.from(graphemes.segment(this.text), (s) => [s.index, s.segment] as const),
      (s) => s.normalize("NFKC"),
      whole,
    );
  }

  /**
   * Lower-cases the text. When that keeps its length (all but a few letters, such as `İ`), each character
   * keeps its place; otherwise each code point maps to what it becomes on its own, which has the same
   * length as in context (the one context rule, Greek final sigma, swaps σ for ς).
   *
   * @throws {UntrackableEdit} if the code-point-wise lengths do not add up to the whole text's.
   */
  lower(): void {
    const whole = this.text.toLowerCase();
    if (whole.length === this.text.length) {
      this.text = whole;
      return;
    }
    const points: (readonly [number, string])[] = [];
    let index = 0;
    for (const point of this.text) {
      points.push([index, point]);
      index += point.length;
    }
    this.#perSegment(points, (s) => s.toLowerCase(), whole, "length");
  }

  #perSegment(
    segments: readonly (readonly [number, string])[],
    edit: (segment: string) => string,
    expected: string,
    match: "text" | "length" = "text",
  ): void {
    let text = "";
    const starts: number[] = [];
    const ends: number[] = [];
    for (const [at, segment] of segments) {
      const edited = edit(segment);
      const [from, to] = this.sourceRange(at, at + segment.length);
      for (let k = 0; k < edited.length; k++) {
        starts.push(from);
        ends.push(to);
      }
      text += edited;
    }
    if (match === "text" ? text !== expected : text.length !== expected.length) {
      throw new UntrackableEdit("an edit changed text across segment boundaries");
    }
    this.text = expected;
    this.#starts = starts;
    this.#ends = ends;
  }

  #copy(from: number, to: number, starts: number[], ends: number[]): void {
    for (let i = from; i < to; i++) {
      starts.push(this.#starts[i]!);
      ends.push(this.#ends[i]!);
    }
  }
}
