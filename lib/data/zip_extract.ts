/**
 * Streaming extraction of one entry of a (possibly multi-GB, zip64) archive on disk, with CRC-32 checks.
 *
 * Built on `npm:@zip.js/zip.js`: a {@linkcode ZipReader} over {@linkcode FsFileReader}, a random-access
 * reader on a `Deno.FsFile`, so only the central directory and the current window of compressed data are
 * in memory (about 125 MB peak measured on a 488 MB entry).
 * Web workers are off: Deno runs `DecompressionStream` on the JS thread anyway, and workers would need
 * extra permissions and only cost time. `checkCrc32` is on, which is what turns a flipped byte into an
 * error instead of silently corrupt training data.
 *
 * @module
 */
import { type Entry, type FileEntry, Reader, ZipReader } from "@zip.js/zip.js";
import { PipelineError } from "../core/errors.ts";

/** zip.js's message for a CRC mismatch (`ERR_INVALID_CRC32`); matched to give a precise error. */
const CRC_MESSAGE = "Invalid CRC32";

/** Folders that archivers add next to the real content and that never hold the dataset. */
const IGNORED_FOLDERS = new Set(["__MACOSX"]);

/**
 * A zip.js {@linkcode Reader} that reads byte ranges of an open `Deno.FsFile` on demand.
 *
 * zip.js may ask for several ranges concurrently, while a file has a single cursor, so `seek` + `read`
 * pairs are serialised through a promise queue.
 */
export class FsFileReader extends Reader<Deno.FsFile> {
  #file: Deno.FsFile;
  #queue: Promise<unknown> = Promise.resolve();

  /** @param file An open file; the caller keeps ownership and closes it. */
  constructor(file: Deno.FsFile) {
    super(file);
    this.#file = file;
  }

  /** Reads the file size, which zip.js needs to find the end-of-central-directory record. */
  override async init(): Promise<void> {
    this.size = (await this.#file.stat()).size;
  }

  /** Reads `length` bytes at `offset`, fewer at the end of the file. */
  override readUint8Array(offset: number, length: number): Promise<Uint8Array> {
    const result = this.#queue.then(async () => {
      await this.#file.seek(offset, Deno.SeekMode.Start);
      const data = new Uint8Array(length);
      let filled = 0;
      while (filled < length) {
        const count = await this.#file.read(data.subarray(filled));
        if (count === null) return data.subarray(0, filled);
        filled += count;
      }
      return data;
    });
    // A failed read must not poison the queue for the next caller; the error still reaches this caller.
    this.#queue = result.catch(() => undefined);
    return result;
  }
}

/**
 * An archive that cannot be read or extracted: not a zip, truncated, an entry whose CRC-32 does not match,
 * an encrypted entry or an unsupported compression method. The caller adds the remedy (re-download or
 * replace the file) since it knows where the archive came from.
 */
export class ZipExtractError extends PipelineError {
  /** The archive. */
  readonly zipPath: string;
  /** The entry being extracted, if the failure was within one. */
  readonly entry: string | undefined;
  /** What zip.js reported, e.g. `CRC-32 mismatch`. */
  readonly detail: string;
  /** Whether the bytes themselves are damaged (as opposed to a valid but unsupported archive). */
  readonly corrupt: boolean;

  /** Builds the error; the message reads `<zip> is corrupt: <detail> in <entry>`. */
  constructor(zipPath: string, entry: string | undefined, detail: string, corrupt: boolean, cause?: unknown) {
    const where = entry === undefined ? "" : ` in entry "${entry}"`;
    super(`${zipPath} ${corrupt ? "is corrupt" : "cannot be extracted"}: ${detail}${where}`, { cause });
    this.name = "ZipExtractError";
    this.zipPath = zipPath;
    this.entry = entry;
    this.detail = detail;
    this.corrupt = corrupt;
  }
}

/** A decompressed entry being streamed. */
export interface EntryStream {
  /** The decompressed bytes. */
  readable: ReadableStream<Uint8Array>;
  /**
   * Settles when extraction ends: rejects with a {@linkcode ZipExtractError} on a CRC mismatch or damaged
   * data. Only trust the bytes read from `readable` once this has resolved: zip.js can only compare the
   * CRC-32 after the last byte.
   */
  done: Promise<void>;
  /** Declared uncompressed size in bytes. */
  size: number;
  /**
   * Stops the extraction early; `done` then resolves. Cancelling `readable` (as a consumer that stops at a
   * row limit does) has the same effect.
   */
  cancel(): void;
}

/**
 * Finds the entry for `basename` among archive or folder paths: at the top level, else exactly one folder
 * down (the Kaggle archive `amazon_review_polarity_csv.tgz` and its zip copies hold
 * `amazon_review_polarity_csv/train.csv`).
 *
 * @param paths Entry paths with `/` separators.
 * @param basename The file to find, e.g. `train.csv`.
 * @param where Names the archive or folder in the error message.
 * @returns The matching path, or `undefined` when there is none.
 * @throws {PipelineError} When several folders one level down hold `basename`.
 *
 * @example Usage
 * ```ts
 * import { findDatasetEntry } from "./zip_extract.ts";
 * findDatasetEntry(["amazon/train.csv", "amazon/test.csv"], "train.csv", "a.zip"); // "amazon/train.csv"
 * ```
 */
export function findDatasetEntry(
  paths: readonly string[],
  basename: string,
  where: string,
): string | undefined {
  const wanted = basename.toLowerCase();
  const normalised = paths.map((path) => ({ path, parts: path.replace(/^\.\//, "").split("/") }));
  const top = normalised.find(({ parts }) => parts.length === 1 && parts[0]!.toLowerCase() === wanted);
  if (top) return top.path;
  const nested = normalised.filter(({ parts }) =>
    parts.length === 2 && parts[1]!.toLowerCase() === wanted && !IGNORED_FOLDERS.has(parts[0]!) &&
    !parts[0]!.startsWith(".")
  );
  if (nested.length > 1) {
    const found = nested.map(({ path }) => path).join(", ");
    throw new PipelineError(`${where} holds several ${basename} (${found}); keep only one of them`);
  }
  return nested[0]?.path;
}

/**
 * Whether the file starts with a zip signature (a local file header, or the end record of an empty zip).
 * Used to tell a zip from a plain CSV without trusting the file name.
 */
export async function isZipFile(path: string): Promise<boolean> {
  using file = await Deno.open(path, { read: true });
  const head = new Uint8Array(4);
  let filled = 0;
  while (filled < head.length) {
    const count = await file.read(head.subarray(filled));
    if (count === null) break;
    filled += count;
  }
  return filled === 4 && head[0] === 0x50 && head[1] === 0x4b &&
    ((head[2] === 0x03 && head[3] === 0x04) || (head[2] === 0x05 && head[3] === 0x06));
}

function isFileEntry(entry: Entry): entry is FileEntry {
  return !entry.directory;
}

function isSystemError(error: unknown): boolean {
  // Deno's own errors (permissions, I/O) keep their identity; only zip.js failures mean a bad archive.
  return error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied ||
    error instanceof Deno.errors.NotFound || error instanceof Deno.errors.Interrupted ||
    (error instanceof Error && error.name === "AbortError");
}

function describeZipFailure(error: unknown): { detail: string; corrupt: boolean } {
  const message = error instanceof Error ? error.message.split("\n")[0]! : String(error);
  if (message === CRC_MESSAGE) return { detail: "CRC-32 mismatch", corrupt: true };
  if (/encrypt|compression method|unsupported/i.test(message)) return { detail: message, corrupt: false };
  return { detail: message, corrupt: true };
}

/**
 * An open zip archive. Dispose it (or call {@linkcode ZipArchive.close}) to close the file.
 *
 * @example Usage
 * ```ts ignore
 * import { ZipArchive } from "./zip_extract.ts";
 * await using zip = await ZipArchive.open("data/downloads/train.csv.zip");
 * const entry = zip.open(zip.find("train.csv")!);
 * for await (const chunk of entry.readable) console.log(chunk.length);
 * await entry.done; // throws on a CRC mismatch
 * ```
 */
export class ZipArchive implements AsyncDisposable {
  /** Path of the archive. */
  readonly path: string;
  #file: Deno.FsFile;
  #reader: ZipReader<Deno.FsFile>;
  #entries: Map<string, FileEntry>;

  private constructor(
    path: string,
    file: Deno.FsFile,
    reader: ZipReader<Deno.FsFile>,
    entries: Map<string, FileEntry>,
  ) {
    this.path = path;
    this.#file = file;
    this.#reader = reader;
    this.#entries = entries;
  }

  /**
   * Opens an archive and reads its central directory.
   *
   * @throws {ZipExtractError} When the file is not a readable zip.
   */
  static async open(path: string): Promise<ZipArchive> {
    const file = await Deno.open(path, { read: true });
    const reader = new ZipReader(new FsFileReader(file), { useWebWorkers: false, checkCrc32: true });
    try {
      const entries = new Map<string, FileEntry>();
      for (const entry of await reader.getEntries()) {
        if (isFileEntry(entry)) entries.set(entry.filename, entry);
      }
      return new ZipArchive(path, file, reader, entries);
    } catch (error) {
      await reader.close().catch(() => {});
      file.close();
      if (isSystemError(error)) throw error;
      const { detail, corrupt } = describeZipFailure(error);
      throw new ZipExtractError(path, undefined, detail, corrupt, error);
    }
  }

  /** Paths of the file entries, in archive order. */
  get names(): string[] {
    return [...this.#entries.keys()];
  }

  /** The entry for `basename` at the top level or one folder down (see {@linkcode findDatasetEntry}). */
  find(basename: string): string | undefined {
    return findDatasetEntry(this.names, basename, this.path);
  }

  /**
   * Starts streaming one entry. Read `readable` to the end, then await `done`.
   *
   * @param name An entry path from {@linkcode ZipArchive.names}.
   * @param options `signal` aborts the extraction (the caller's Ctrl-C).
   */
  open(name: string, options: { signal?: AbortSignal } = {}): EntryStream {
    const entry = this.#entries.get(name);
    if (!entry) throw new PipelineError(`${this.path} has no entry "${name}"`);
    const stop = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
    const pipe = new TransformStream<Uint8Array, Uint8Array>();
    const done = entry.getData(pipe.writable, { checkCrc32: true, signal, useWebWorkers: false }).then(
      () => undefined,
      (error: unknown) => {
        // An early stop (cancel(), or the consumer cancelling the stream at a row limit) is not a failure;
        // the caller's own signal is, and keeps its reason.
        if (stop.signal.aborted && !options.signal?.aborted) return;
        if (options.signal?.aborted || isSystemError(error)) throw error;
        const { detail, corrupt } = describeZipFailure(error);
        throw new ZipExtractError(this.path, name, detail, corrupt, error);
      },
    );
    // Keep an unobserved rejection from crashing the process before the caller awaits `done`.
    done.catch(() => {});
    // A thin wrapper, so that a consumer that cancels the stream (e.g. readReviews at its row limit) marks
    // the stop as intended before zip.js sees its writable fail.
    const source = pipe.readable.getReader();
    const readable = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { done, value } = await source.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel(reason) {
        stop.abort();
        return source.cancel(reason);
      },
    }, { highWaterMark: 0 });
    return {
      readable,
      done,
      size: entry.uncompressedSize,
      cancel: () => {
        stop.abort();
        source.cancel().catch(() => {});
      },
    };
  }

  /** Closes the archive and its file. */
  async close(): Promise<void> {
    try {
      await this.#reader.close();
    } finally {
      try {
        this.#file.close();
      } catch { /* already closed */ }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
