/**
 * Atomic, buffered, checksummed file output.
 *
 * A stage writes to `<path>.partial` and renames it to `<path>` only once everything was written and
 * flushed to disk, so the next stage never reads a half-written file, and a killed stage leaves at most a
 * `.partial` file that the next run overwrites. {@linkcode exists} tells whether such a file (or any
 * path) is there.
 *
 * @module
 */
import { createHash, type Hash } from "node:crypto";

/** Suffix of a file still being written. */
export const PARTIAL_SUFFIX = ".partial";

const FLUSH_BYTES = 1 << 20;

/** Summary of a committed file. */
export interface CommittedFile {
  /** Final path. */
  path: string;
  /** Bytes written. */
  bytes: number;
  /** Lower-case hex SHA-256 of the bytes written. */
  sha256: string;
}

/**
 * A text file written through a 1 MB buffer to `<path>.partial`, renamed to `<path>` on
 * {@linkcode AtomicTextWriter.commit}. Disposing it without committing removes the partial file.
 *
 * @example Usage
 * ```ts ignore
 * import { AtomicTextWriter } from "./atomic_file.ts";
 * await using out = await AtomicTextWriter.create("data/batches/train_batch_0.csv");
 * out.write('2,"Great","Works well"\n');
 * const { sha256 } = await out.commit();
 * ```
 */
export class AtomicTextWriter implements AsyncDisposable {
  readonly path: string;
  readonly partialPath: string;
  #file: Deno.FsFile;
  #hash: Hash = createHash("sha256");
  #encoder = new TextEncoder();
  #pending: string[] = [];
  #pendingLength = 0;
  #bytes = 0;
  #done = false;

  private constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.partialPath = path + PARTIAL_SUFFIX;
    this.#file = file;
  }

  /** Opens `<path>.partial` for writing, truncating any leftover from an interrupted run. */
  static async create(path: string): Promise<AtomicTextWriter> {
    const file = await Deno.open(path + PARTIAL_SUFFIX, { write: true, create: true, truncate: true });
    return new AtomicTextWriter(path, file);
  }

  /** Bytes written so far (flushed or buffered). */
  get bytesWritten(): number {
    return this.#bytes + this.#pendingLength;
  }

  /**
   * Queues text; returns a promise only when the buffer was flushed, so a hot loop can skip `await`
   * most of the time: `const p = out.write(s); if (p) await p;`.
   */
  write(text: string): Promise<void> | undefined {
    this.#pending.push(text);
    // String length undercounts multi-byte UTF-8, which only makes flushes slightly later.
    this.#pendingLength += text.length;
    if (this.#pendingLength >= FLUSH_BYTES) return this.#flush();
    return undefined;
  }

  async #flush(): Promise<void> {
    if (this.#pending.length === 0) return;
    const bytes = this.#encoder.encode(this.#pending.join(""));
    this.#pending = [];
    this.#pendingLength = 0;
    this.#hash.update(bytes);
    this.#bytes += bytes.length;
    let offset = 0;
    while (offset < bytes.length) offset += await this.#file.write(bytes.subarray(offset));
  }

  /** Flushes, syncs, closes and renames the file into place. */
  async commit(): Promise<CommittedFile> {
    await this.#flush();
    await this.#file.syncData();
    this.#file.close();
    this.#done = true;
    await Deno.rename(this.partialPath, this.path);
    return { path: this.path, bytes: this.#bytes, sha256: this.#hash.digest("hex") };
  }

  /** Closes and deletes the partial file; the final path is left untouched. */
  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    try {
      this.#file.close();
    } catch { /* already closed */ }
    await Deno.remove(this.partialPath).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.abort();
  }
}

/** Writes a whole small file (a manifest, a report) atomically. */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path + PARTIAL_SUFFIX, text);
  await Deno.rename(path + PARTIAL_SUFFIX, path);
}

/**
 * Whether `path` exists (a file, a folder, or a link to one): `false` only when it is not found; any
 * other failure to look (no permission, a file where a folder was expected) is thrown.
 *
 * @example Usage
 * ```ts ignore
 * import { exists } from "./atomic_file.ts";
 * if (!(await exists("/usr/bin/fasttext"))) console.warn("fastText is not installed");
 * ```
 */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * The size of a file in bytes, or `undefined` when there is no file at `path`. Any other error (no
 * permission, an I/O error) is thrown, not taken for "missing".
 *
 * @param path The file.
 * @returns Its size, or `undefined` when it does not exist.
 *
 * @example Usage
 * ```ts ignore
 * import { fileSize } from "./atomic_file.ts";
 * const partial = (await fileSize("data/raw/archive.zip.partial")) ?? 0; // bytes to resume from
 * ```
 */
export async function fileSize(path: string): Promise<number | undefined> {
  try {
    return (await Deno.stat(path)).size;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}
