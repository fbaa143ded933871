/**
 * Atomic, buffered, checksummed file output.
 *
 * A stage writes to a temporary file beside the output, `<path>.<run>.partial`, and renames it to `<path>`
 * only once everything was written and flushed to disk, so the next stage never reads a half-written file.
 * The temporary name is unique to the writing process (pid and a random part) and is created exclusively
 * (`O_CREAT|O_EXCL`): two runs never write the same file, and a file or a symbolic link already at that
 * name makes the write fail instead of being written through. An output path that is a symbolic link is
 * refused too. A killed stage leaves at most `.partial` files, which the next run removes with
 * {@linkcode removeStalePartials} once it holds the folder's lock. A file-system failure (a full disk, a
 * read-only mount, ...) is rethrown as a one-line `FileSystemError` (see `os_error.ts`), after the temporary file was
 * removed. {@linkcode exists} tells whether a path is there.
 *
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { basename, join } from "node:path";
import { PipelineError } from "./errors.ts";
import { describeFsError } from "./os_error.ts";

/** Suffix of a file still being written. */
export const PARTIAL_SUFFIX = ".partial";

const FLUSH_BYTES = 1 << 20;

/** This process's part of every temporary name: pid and 32 random bits. */
const RUN_TAG = `${Deno.pid}-${crypto.getRandomValues(new Uint32Array(1))[0]!.toString(16).padStart(8, "0")}`;

/** The temporary name of `path` for this process: `<path>.<pid>-<random>.partial`. */
export function partialPath(path: string): string {
  return `${path}.${RUN_TAG}${PARTIAL_SUFFIX}`;
}

/** Summary of a committed file. */
export interface CommittedFile {
  /** Final path. */
  path: string;
  /** Bytes written. */
  bytes: number;
  /** Lower-case hex SHA-256 of the bytes written. */
  sha256: string;
}

/** Options of {@linkcode AtomicTextWriter.create}. */
export interface AtomicWriterOptions {
  /**
   * The size the file will have, when the caller can tell; a full disk's message then says how much the
   * write needs.
   */
  expectedBytes?: number;
  /** The path to name in messages, when the file is written somewhere else first (a staging folder). */
  label?: string;
  /**
   * The folder of the temporary file, on the same file system as `path`, when a permission set grants
   * the final path but no other name beside it (a tool that rewrites one page of the docs).
   * @default {the folder of `path`}
   */
  stagingDir?: string;
}

/**
 * Refuses to write `path` when it is a symbolic link: renaming over it would be safe, but the user who
 * made it expects the data where it points, and a stage never writes through a link.
 *
 * @throws {PipelineError} `<path> is a symbolic link (to <target>); ...`.
 */
export async function refuseSymlink(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw (await describeFsError(error, { path })) ?? error;
  }
  if (!info.isSymlink) return;
  const target = await Deno.readLink(path).catch(() => "elsewhere");
  throw new PipelineError(
    `${path} is a symbolic link (to ${target}); a stage never writes through a link: remove it ` +
      `(rm ${path}) and run again`,
  );
}

/**
 * A text file written through a 1 MB buffer to a temporary file created exclusively beside `path`, and
 * renamed to `path` on {@linkcode AtomicTextWriter.commit} (or {@linkcode AtomicTextWriter.finish}, then
 * {@linkcode AtomicTextWriter.publish}, to publish several files together). Disposing it without
 * committing removes the temporary file.
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
  #expectedBytes: number | undefined;
  #label: string;
  #finished: CommittedFile | undefined;
  #done = false;

  private constructor(path: string, partial: string, file: Deno.FsFile, options: AtomicWriterOptions) {
    this.path = path;
    this.partialPath = partial;
    this.#file = file;
    this.#expectedBytes = options.expectedBytes;
    this.#label = options.label ?? path;
  }

  /**
   * Creates this run's temporary file for `path`, exclusively.
   *
   * @throws {PipelineError} When `path` is a symbolic link, or when something already exists at the
   * temporary name (a link planted there), or a `FileSystemError` (see `os_error.ts`) (read-only, not writable, ...).
   */
  static async create(path: string, options: AtomicWriterOptions = {}): Promise<AtomicTextWriter> {
    await refuseSymlink(path);
    const partial = options.stagingDir === undefined
      ? partialPath(path)
      : partialPath(join(options.stagingDir, basename(path)));
    let file: Deno.FsFile;
    try {
      file = await Deno.open(partial, { write: true, createNew: true });
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) {
        throw new PipelineError(
          `${partial} already exists (a file or link nobody should have made); remove it and run again`,
          { cause: error },
        );
      }
      const shown = options.label ?? path;
      throw (await describeFsError(error, { path: shown, neededBytes: options.expectedBytes })) ?? error;
    }
    return new AtomicTextWriter(path, partial, file, options);
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
    let offset = 0;
    try {
      while (offset < bytes.length) offset += await this.#file.write(bytes.subarray(offset));
    } catch (error) {
      throw await this.#fail(error, offset);
    }
    this.#bytes += bytes.length;
  }

  /** Removes the temporary file and explains `error` (a full disk: how much was written and is needed). */
  async #fail(error: unknown, extra = 0): Promise<unknown> {
    await this.abort();
    return (await describeFsError(error, {
      path: this.#label,
      writtenBytes: this.#bytes + extra,
      neededBytes: this.#expectedBytes,
    })) ?? error;
  }

  /**
   * Flushes, syncs and closes the temporary file, without renaming it yet; {@linkcode publish} does.
   * Finishing every file of a set before publishing any means a full disk fails before anything changed.
   */
  async finish(): Promise<CommittedFile> {
    if (this.#finished) return this.#finished;
    await this.#flush();
    try {
      await this.#file.syncData();
      this.#file.close();
    } catch (error) {
      throw await this.#fail(error);
    }
    this.#finished = { path: this.path, bytes: this.#bytes, sha256: this.#hash.digest("hex") };
    return this.#finished;
  }

  /** Renames the finished temporary file into place. */
  async publish(): Promise<CommittedFile> {
    const finished = await this.finish();
    if (this.#done) throw new Error(`${this.path} was already published or aborted`);
    try {
      await refuseSymlink(this.path);
      await Deno.rename(this.partialPath, this.path);
    } catch (error) {
      throw await this.#fail(error);
    }
    this.#done = true;
    return finished;
  }

  /** Flushes, syncs, closes and renames the file into place. */
  async commit(): Promise<CommittedFile> {
    await this.finish();
    return await this.publish();
  }

  /** Closes and deletes the temporary file; the final path is left untouched. */
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

/**
 * Finishes every writer (flush, sync) before renaming any, then renames them in order: a full disk or a
 * read-only mount fails before any output changed. On failure every temporary file is removed.
 *
 * @param writers The files to publish, in the order they are renamed (put the file that vouches for the
 * others, a manifest, last).
 */
export async function publishAll(writers: readonly AtomicTextWriter[]): Promise<CommittedFile[]> {
  try {
    for (const writer of writers) await writer.finish();
    const committed: CommittedFile[] = [];
    for (const writer of writers) committed.push(await writer.publish());
    return committed;
  } catch (error) {
    for (const writer of writers) await writer.abort();
    throw error;
  }
}

/**
 * Writes a whole small file (a manifest, a report) atomically.
 *
 * @param path The file.
 * @param text Its content.
 * @param options Where the temporary file lives, the size it will have, the name in messages.
 * @returns Its path, size and SHA-256.
 */
export async function writeFileAtomic(
  path: string,
  text: string,
  options: AtomicWriterOptions = {},
): Promise<CommittedFile> {
  await using writer = await AtomicTextWriter.create(path, options);
  writer.write(text);
  return await writer.commit();
}

/**
 * Removes the temporary files (`<name>.<run>.partial`, and the `<name>.partial` of older versions) that
 * killed runs left in `dir`. Call it only while holding the folder's lock, so no live run owns them.
 *
 * @param dir The folder.
 * @param names The output names whose leftovers to remove; all `.partial` files when omitted.
 * @returns The names removed.
 */
export async function removeStalePartials(dir: string, names?: readonly string[]): Promise<string[]> {
  const removed: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return removed;
    throw (await describeFsError(error, { path: dir })) ?? error;
  }
  for (const entry of entries) {
    if (entry.isDirectory || !entry.name.endsWith(PARTIAL_SUFFIX)) continue;
    const stem = entry.name.slice(0, -PARTIAL_SUFFIX.length);
    const base = stem.replace(/\.\d+-[0-9a-f]{8}$/, "");
    if (names !== undefined && !names.includes(base)) continue;
    await Deno.remove(join(dir, entry.name)).catch(() => {});
    removed.push(entry.name);
  }
  return removed;
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
