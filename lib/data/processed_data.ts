/**
 * The processed data format: what `preprocess_batch` / `preprocess_test` write and `train` / `evaluate` read.
 *
 * `data/processed/<name>.tsv` holds one line per review, `<polarity>\t<tok tok tok>\n`: the label (1 or 2),
 * a tab, then the review's tokens (from `lib/features/tokenizer.ts`) separated by single spaces. Tokens never contain
 * whitespace and are never empty; {@linkcode formatProcessedLine} refuses any that would, so splitting a line
 * on `" "` always gives back exactly the tokens written. Beside it:
 * - `<name>.meta.json`: source file and its SHA-256, row counts, the tokenizer's info, the output's size and
 *   SHA-256, creation time ({@linkcode ProcessedMeta});
 * - `<name>.rejects.csv`: the source lines that produced no row, with line number and reason.
 *
 * A plain text format rather than JSON lines: it is about half the size, and reading it is a split, not a
 * parse, which matters when train reads millions of lines.
 *
 * @module
 */
import { basename } from "node:path";
import { AtomicTextWriter, type CommittedFile, publishAll } from "../core/atomic_file.ts";
import { PipelineError } from "../core/errors.ts";
import type { Polarity } from "./review.ts";
import { openInput } from "../core/read_guard.ts";
import { batchIndexOf } from "./layout.ts";

/** Identifies the file format in the meta file. */
export const PROCESSED_FORMAT = "processed-tsv/1";

/** One processed review. */
export interface ProcessedRow {
  polarity: Polarity;
  tokens: string[];
}

/**
 * The split a processed training batch belongs to, as `preprocess_batch` read it from
 * `data/batches/manifest.json`: the split's input checksum and the batch's number in it. With the batch's
 * own checksum (`sourceSha256`) it tells whether the batch is still part of the current split.
 */
export interface ProcessedSplit {
  /** Lower-case hex SHA-256 of the CSV that was split (`manifest.source.sha256`). */
  sourceSha256: string;
  /** The batch's number in that split. */
  index: number;
}

/** Contents of `<name>.meta.json`. */
export interface ProcessedMeta {
  /** Always {@linkcode PROCESSED_FORMAT}. */
  format: string;
  /** Source CSV path as given to the stage, e.g. `data/batches/train_batch_0.csv`. */
  source: string;
  /** Lower-case hex SHA-256 of the source bytes that were read. */
  sourceSha256: string;
  /** Size of the source in bytes. */
  sourceBytes: number;
  /** Source lines read; `read = rows + rejected`. */
  read: number;
  /** Lines written to the `.tsv`. */
  rows: number;
  /** Source lines rejected (listed in the `.rejects.csv`). */
  rejected: number;
  /** Rows per polarity, e.g. `{"1": 480, "2": 520}`. */
  labels: Record<string, number>;
  /** The split of a training batch; absent for the test set, hand-made batches and older files. */
  split?: ProcessedSplit;
  /** `tokenizerInfo()` of the code that wrote the file. */
  tokenizer: Record<string, unknown> & { version: string };
  /** Size and SHA-256 of the `.tsv`, so a consumer can tell it is the file this meta describes. */
  output: { bytes: number; sha256: string };
  /** ISO 8601 time the file was committed. */
  created: string;
}

const TSV_SUFFIX = ".tsv";

function stem(path: string): string {
  for (const suffix of [TSV_SUFFIX, ".meta.json", ".rejects.csv"]) {
    if (path.endsWith(suffix)) return path.slice(0, -suffix.length);
  }
  return path;
}

/** Path of the meta file of a processed file: `x.tsv` → `x.meta.json`. */
export function processedMetaPath(path: string): string {
  return stem(path) + ".meta.json";
}

/** Path of the rejects file of a processed file: `x.tsv` → `x.rejects.csv`. */
export function processedRejectsPath(path: string): string {
  return stem(path) + ".rejects.csv";
}

/**
 * The command that (re)makes a processed file, for error messages: `deno task preprocess_batch 3` for
 * `train_batch_3.tsv`, `deno task preprocess_test` for `test.tsv`.
 *
 * @param path A processed file path.
 * @returns A shell command.
 */
export function processedCommand(path: string): string {
  const name = basename(stem(path));
  const batch = batchIndexOf(name, "");
  if (batch !== undefined) return `deno task preprocess_batch ${batch}`;
  if (name === "test") return "deno task preprocess_test";
  return "deno task preprocess_batch N or deno task preprocess_test";
}

// Whitespace other than a plain space, two spaces in a row (an empty token), or a space at either end.
const BAD_TOKEN_SPACING = /[^\S ]| {2}|^ | $/;

/**
 * Formats one processed line. Throws instead of writing a line that would not read back as the same tokens,
 * because that would be a tokenizer bug, and silently changing the data would hide it.
 *
 * @param polarity The review's label.
 * @param tokens Tokens without whitespace, none empty.
 * @returns `<polarity>\t<tokens joined by " ">\n`.
 * @throws {RangeError} When a token is empty or contains whitespace.
 *
 * @example Usage
 * ```ts
 * import { formatProcessedLine } from "./processed_data.ts";
 * formatProcessedLine(2, ["t:great", "works"]); // "2\tt:great works\n"
 * ```
 */
export function formatProcessedLine(polarity: Polarity, tokens: readonly string[]): string {
  const joined = tokens.join(" ");
  // Checked on the joined line rather than token by token, which is cheaper: a space inside a token shows
  // up as one space too many, an empty token as a doubled or edge space, and any other whitespace
  // character is refused outright.
  let spaces = 0;
  for (let at = joined.indexOf(" "); at >= 0; at = joined.indexOf(" ", at + 1)) spaces++;
  if (
    spaces !== Math.max(0, tokens.length - 1) || BAD_TOKEN_SPACING.test(joined) ||
    (tokens.length === 1 && tokens[0] === "")
  ) {
    const bad = tokens.find((token) => token === "" || /\s/.test(token));
    throw new RangeError(`token ${JSON.stringify(bad)} is empty or contains whitespace; tokens must not`);
  }
  return `${polarity}\t${joined}\n`;
}

/** Options of {@linkcode ProcessedWriter.commit}: the meta fields the writer cannot know itself. */
export type ProcessedCommitInfo = Omit<ProcessedMeta, "format" | "rows" | "labels" | "output" | "created">;

/**
 * Writes a processed file atomically (a temporary file renamed on commit), with its meta file. Disposing
 * it without committing removes the partial file and leaves any previous version untouched.
 *
 * @example Usage
 * ```ts ignore
 * import { ProcessedWriter } from "./processed_data.ts";
 * await using out = await ProcessedWriter.create("data/processed/test.tsv");
 * out.write(2, ["t:great", "works"]);
 * await out.commit({ source, sourceSha256, sourceBytes, read: 1, rejected: 0, tokenizer: tokenizerInfo() });
 * ```
 */
export class ProcessedWriter implements AsyncDisposable {
  /** Path of the `.tsv`. */
  readonly path: string;
  #file: AtomicTextWriter;
  #labels: Record<string, number> = { "1": 0, "2": 0 };

  private constructor(path: string, file: AtomicTextWriter) {
    this.path = path;
    this.#file = file;
  }

  /** Opens `<path>.partial` for writing. */
  static async create(path: string): Promise<ProcessedWriter> {
    return new ProcessedWriter(path, await AtomicTextWriter.create(path));
  }

  /** Rows written so far. */
  get rows(): number {
    return this.#labels["1"]! + this.#labels["2"]!;
  }

  /**
   * Writes one row; returns a promise only when the buffer was flushed (see `AtomicTextWriter.write`).
   * @throws {RangeError} When a token is empty or contains whitespace.
   */
  write(polarity: Polarity, tokens: readonly string[]): Promise<void> | undefined {
    const line = formatProcessedLine(polarity, tokens);
    this.#labels[polarity] = this.#labels[polarity]! + 1;
    return this.#file.write(line);
  }

  /**
   * Writes lines already made by {@linkcode formatProcessedLine} (e.g. by a worker), with their label
   * counts; returns a promise only when the buffer was flushed.
   */
  writeFormatted(lines: string, labels: { 1: number; 2: number }): Promise<void> | undefined {
    this.#labels["1"] = this.#labels["1"]! + labels[1];
    this.#labels["2"] = this.#labels["2"]! + labels[2];
    return this.#file.write(lines);
  }

  /**
   * Finishes the `.tsv` and its `<name>.meta.json`, then publishes `before` (e.g. the rejects file), the
   * `.tsv` and the meta file, in that order, only once all of them were written and synced: a full disk
   * fails before the previous version changed. Returns the meta.
   */
  async commit(info: ProcessedCommitInfo, before: readonly AtomicTextWriter[] = []): Promise<ProcessedMeta> {
    const committed: CommittedFile = await this.#file.finish();
    const meta: ProcessedMeta = {
      format: PROCESSED_FORMAT,
      source: info.source,
      sourceSha256: info.sourceSha256,
      sourceBytes: info.sourceBytes,
      read: info.read,
      rows: this.rows,
      rejected: info.rejected,
      ...(info.split !== undefined ? { split: info.split } : {}),
      labels: { ...this.#labels },
      tokenizer: info.tokenizer,
      output: { bytes: committed.bytes, sha256: committed.sha256 },
      created: new Date().toISOString(),
    };
    await using metaOut = await AtomicTextWriter.create(processedMetaPath(this.path));
    metaOut.write(JSON.stringify(meta, null, 2) + "\n");
    await publishAll([...before, this.#file, metaOut]);
    return meta;
  }

  /** Removes the partial file. */
  abort(): Promise<void> {
    return this.#file.abort();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.abort();
  }
}

function notFound(path: string, error: unknown): PipelineError {
  return new PipelineError(`${path} not found; run "${processedCommand(path)}" first`, { cause: error });
}

/**
 * Reads the meta file of a processed file.
 *
 * @param path The `.tsv` path (or the meta path itself).
 * @returns The parsed meta.
 * @throws {PipelineError} When the meta file is missing or not a processed meta file.
 *
 * @example Usage
 * ```ts ignore
 * import { readProcessedMeta } from "./processed_data.ts";
 * const meta = await readProcessedMeta("data/processed/test.tsv");
 * console.log(meta.rows, meta.tokenizer.version);
 * ```
 */
export async function readProcessedMeta(path: string): Promise<ProcessedMeta> {
  const metaPath = path.endsWith(".meta.json") ? path : processedMetaPath(path);
  let text: string;
  try {
    text = await Deno.readTextFile(metaPath);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw notFound(metaPath, error);
    throw error;
  }
  let meta: unknown;
  try {
    meta = JSON.parse(text);
  } catch (error) {
    throw new PipelineError(
      `${metaPath} is not valid JSON; rerun "${processedCommand(metaPath)} --force"`,
      { cause: error },
    );
  }
  if (
    typeof meta !== "object" || meta === null || (meta as ProcessedMeta).format !== PROCESSED_FORMAT ||
    typeof (meta as ProcessedMeta).tokenizer?.version !== "string"
  ) {
    throw new PipelineError(
      `${metaPath} is not a ${PROCESSED_FORMAT} meta file; rerun "${processedCommand(metaPath)} --force"`,
    );
  }
  return meta as ProcessedMeta;
}

/** Options of {@linkcode readProcessed}. */
export interface ReadProcessedOptions {
  /** Aborting it makes the read throw `signal.reason` at the next chunk. */
  signal?: AbortSignal;
}

const NO_TOKENS: readonly string[] = Object.freeze([]);

/**
 * Streams the rows of a processed file with flat memory: one 64 KB chunk and its lines at a time.
 *
 * @param path The `.tsv` path.
 * @param options An abort signal.
 * @returns An async generator of rows in file order. A row without tokens has an empty `tokens` array.
 * @throws {PipelineError} When the file is missing (naming the command that makes it), a line is not
 *   `<1|2>\t<tokens>`, or the last line has no LF (a truncated file).
 *
 * @example Usage
 * ```ts ignore
 * import { readProcessed } from "./processed_data.ts";
 * for await (const { polarity, tokens } of readProcessed("data/processed/train_batch_0.tsv")) {
 *   console.log(polarity, tokens.length);
 * }
 * ```
 */
export async function* readProcessed(
  path: string,
  options: ReadProcessedOptions = {},
): AsyncGenerator<ProcessedRow> {
  const { signal } = options;
  signal?.throwIfAborted();
  let file: Deno.FsFile;
  try {
    file = await openInput(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw notFound(path, error);
    throw error;
  }
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const buffer = new Uint8Array(1 << 16);
  let carry = "";
  let lineNumber = 0;

  const parse = (line: string): ProcessedRow => {
    lineNumber++;
    const label = line.charCodeAt(0);
    if ((label !== 49 && label !== 50) || line.charCodeAt(1) !== 9) {
      throw new PipelineError(
        `${path} line ${lineNumber} is not "<1|2>\\t<tokens>" (starts ${
          JSON.stringify(line.slice(0, 20))
        }); rerun "${processedCommand(path)} --force"`,
      );
    }
    // A fresh array even for no tokens, so a consumer may push to it.
    const tokens = line.length > 2 ? line.slice(2).split(" ") : [...NO_TOKENS];
    return { polarity: label === 49 ? 1 : 2, tokens };
  };

  try {
    while (true) {
      signal?.throwIfAborted();
      const read = await file.read(buffer);
      if (read === null) break;
      let text: string;
      try {
        text = carry + decoder.decode(buffer.subarray(0, read), { stream: true });
      } catch (error) {
        throw new PipelineError(
          `${path} is not valid UTF-8 after line ${lineNumber}; rerun "${processedCommand(path)} --force"`,
          { cause: error },
        );
      }
      const last = text.lastIndexOf("\n");
      if (last < 0) {
        carry = text;
        continue;
      }
      carry = text.slice(last + 1);
      // Lines of one chunk are split first and yielded after: the parse loop stays synchronous and tight.
      const lines = text.slice(0, last).split("\n");
      for (let i = 0; i < lines.length; i++) yield parse(lines[i]!);
    }
    // The writer ends every line with LF and commits atomically, so text after the last LF means the file
    // was cut short or edited: refuse it rather than train on a truncated row.
    if (carry + decoder.decode() !== "") {
      throw new PipelineError(
        `${path} ends in the middle of line ${lineNumber + 1} (truncated?); rerun "${
          processedCommand(path)
        } --force"`,
      );
    }
  } finally {
    file.close();
  }
}
