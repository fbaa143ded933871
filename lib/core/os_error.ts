/**
 * One place that turns the operating-system errors a user can cause or meet while reading and writing
 * files (a full disk, a quota, a read-only mount, a folder owned by someone else, too many open files, a
 * symbolic link where a file is written) into a {@linkcode FileSystemError}: one line naming the path, the
 * cause in words, and what to do.
 *
 * Deno reports these as `Error`s with a POSIX `code` (`ENOSPC`, `EROFS`, ...) and, for `EACCES`/`EPERM`,
 * as `Deno.errors.PermissionDenied`, which is the file system's refusal; the sandbox's refusal is
 * `Deno.errors.NotCapable` and is not handled here.
 *
 * @module
 */
import { dirname } from "node:path";
import { statfs } from "node:fs/promises";
import { PipelineError } from "./errors.ts";
import { formatBytes } from "./format.ts";

/** The error codes {@linkcode describeFsError} explains. */
export const FS_ERROR_CODES = ["ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EMFILE", "ENFILE"] as const;

/** One of {@linkcode FS_ERROR_CODES}. */
export type FsErrorCode = typeof FS_ERROR_CODES[number];

/** A file-system failure with its path and code, explained on one line. */
export class FileSystemError extends PipelineError {
  /** The POSIX code, e.g. `ENOSPC`. */
  readonly code: FsErrorCode;
  /** The file or folder concerned. */
  readonly path: string;

  /**
   * @param message The one-line explanation.
   * @param code The POSIX code.
   * @param path The file or folder concerned.
   * @param options `cause` keeps the original error.
   */
  constructor(message: string, code: FsErrorCode, path: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "FileSystemError";
    this.code = code;
    this.path = path;
  }
}

/** What the caller knows when an operation failed. */
export interface FsErrorContext {
  /** The file or folder being read or written; else the path in Deno's message, if any. */
  path?: string;
  /** Bytes the whole write needs, when the stage can tell (for "needs about ..."). */
  neededBytes?: number;
  /** Bytes already written when it failed (kept for callers; the message states the need and the free space). */
  writtenBytes?: number;
}

/** The POSIX code of an error, when it is one of {@linkcode FS_ERROR_CODES}. */
export function fsErrorCode(error: unknown): FsErrorCode | undefined {
  if (!(error instanceof Error)) return undefined;
  const code = (error as Error & { code?: unknown }).code;
  if (typeof code === "string" && (FS_ERROR_CODES as readonly string[]).includes(code)) {
    return code as FsErrorCode;
  }
  // Older messages carry only the number: "No space left on device (os error 28)".
  const number = /\(os error (\d+)\)/.exec(error.message)?.[1];
  const byNumber: Record<string, FsErrorCode> = {
    "28": "ENOSPC",
    "122": "EDQUOT",
    "30": "EROFS",
    "13": "EACCES",
    "1": "EPERM",
    "24": "EMFILE",
    "23": "ENFILE",
  };
  return number === undefined ? undefined : byNumber[number];
}

/** The path in a Deno error message such as `... (os error 28): writefile 'data/raw/x'`, if any. */
function pathInMessage(message: string): string | undefined {
  return /: \w+ '([^']+)'(?: -> '[^']+')?$/.exec(message)?.[1];
}

/**
 * Free bytes for an unprivileged user on the file system holding `path` (or its nearest existing parent),
 * or `undefined` when it cannot be told (the stage was not granted `--allow-sys=statfs`, or the call
 * failed).
 */
export async function freeBytes(path: string): Promise<number | undefined> {
  if (Deno.permissions.querySync({ name: "sys", kind: "statfs" }).state !== "granted") return undefined;
  let probe = path;
  for (let i = 0; i < 64; i++) {
    try {
      const info = await statfs(probe);
      return Number(info.bavail) * Number(info.bsize);
    } catch (error) {
      const parent = dirname(probe);
      if (!(error instanceof Error) || parent === probe) return undefined;
      probe = parent;
    }
  }
  return undefined;
}

/** `owned by uid 0 (mode 755)`, or "" when the folder cannot be looked at. */
async function ownership(path: string): Promise<string> {
  for (const candidate of [path, dirname(path)]) {
    try {
      const info = await Deno.lstat(candidate);
      if (info.uid === null) return "";
      const mode = info.mode === null ? "" : ` mode ${(info.mode & 0o7777).toString(8)}`;
      return ` (${candidate} is owned by uid ${info.uid}${mode})`;
    } catch {
      // Not there, or not readable either: try the parent, else say nothing.
    }
  }
  return "";
}

/**
 * Explains a file-system error on one line, or returns `undefined` when `error` is not one of
 * {@linkcode FS_ERROR_CODES} (a bug, a missing file: the caller handles those).
 *
 * @param error What the file operation threw.
 * @param context The path and sizes the caller knows.
 * @returns A {@linkcode FileSystemError} whose message names the path, the cause and the remedy.
 *
 * @example Usage
 * ```ts ignore
 * import { describeFsError } from "./os_error.ts";
 * try {
 *   await Deno.writeTextFile("data/raw/x.csv", text);
 * } catch (error) {
 *   throw (await describeFsError(error, { path: "data/raw/x.csv" })) ?? error;
 * }
 * // error: no space left on the device holding data/raw/x.csv (0 B free); free space there, ...
 * ```
 */
export async function describeFsError(
  error: unknown,
  context: FsErrorContext = {},
): Promise<FileSystemError | undefined> {
  if (error instanceof FileSystemError) return error;
  const code = fsErrorCode(error);
  if (code === undefined) return undefined;
  const path = context.path ?? pathInMessage((error as Error).message) ?? "a file";
  const folder = context.path === undefined && path === "a file" ? "its folder" : dirname(path);
  let message: string;
  switch (code) {
    case "ENOSPC":
    case "EDQUOT": {
      const free = await freeBytes(path);
      // Measured after the caller removed its temporary files: what a rerun would find.
      const facts = [
        context.neededBytes !== undefined ? `needs about ${formatBytes(context.neededBytes)}` : "",
        free !== undefined ? `${formatBytes(free)} free` : "",
      ].filter((fact) => fact !== "");
      const shortfall = context.neededBytes !== undefined && free !== undefined
        ? context.neededBytes - free
        : undefined;
      const amount = shortfall !== undefined && shortfall > 0 ? ` at least ${formatBytes(shortfall)} of` : "";
      message = code === "ENOSPC"
        ? `no space left on the device holding ${path}${facts.length ? ` (${facts.join(", ")})` : ""}; ` +
          `free${amount} space there, or move data/ to a larger disk, then run again`
        : `disk quota exceeded writing ${path}${facts.length ? ` (${facts.join(", ")})` : ""}; ` +
          `free${amount} space within your quota or ask for a larger one, then run again`;
      break;
    }
    case "EROFS":
      message = `${folder} is on a read-only file system (writing ${path}); remount it read-write ` +
        `(mount -o remount,rw <mount point>) or point the stage at a writable folder`;
      break;
    case "EACCES":
    case "EPERM":
      message = `permission denied by the file system on ${path}${await ownership(path)}; ` +
        `make ${folder} writable for the user running the stage (e.g. chown -R "$(id -u)" ${folder}) ` +
        `or run the stage as its owner`;
      break;
    case "EMFILE":
    case "ENFILE":
      message = `too many open files ${code === "EMFILE" ? "in this process" : "on this system"} ` +
        `while opening ${path}; raise the limit (ulimit -n 65536) or run fewer stages at once`;
      break;
  }
  return new FileSystemError(message, code, path, { cause: error });
}

/**
 * Runs a file operation and rethrows a file-system error from it as a {@linkcode FileSystemError}.
 *
 * @param context What to name in the message.
 * @param operation The file operation.
 */
export async function withFsErrors<T>(context: FsErrorContext, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    throw (await describeFsError(error, context)) ?? error;
  }
}

/**
 * Refuses a long write early when the device holding `dir` has less free space than the write needs, so a
 * stage fails in a second with the estimate rather than an hour in. Does nothing when the free space cannot
 * be told (no `--allow-sys=statfs`).
 *
 * @param dir The output folder.
 * @param neededBytes The estimate.
 * @param basis How the estimate was made, for the message, e.g. `the size of data/raw/train.csv`.
 * @throws {FileSystemError} (`ENOSPC`) `<dir> needs about 1.2 GB (<basis>) but 300 MB is free on its device; ...`.
 */
export async function ensureFreeSpace(dir: string, neededBytes: number, basis: string): Promise<void> {
  const free = await freeBytes(dir);
  if (free === undefined || free >= neededBytes) return;
  throw new FileSystemError(
    `${dir} needs about ${formatBytes(neededBytes)} (${basis}) but ${
      formatBytes(free)
    } is free on its device; ` +
      `free at least ${formatBytes(neededBytes - free)} there or move data/ to a larger disk, ` +
      "or pass --skip-space-check to try anyway",
    "ENOSPC",
    dir,
  );
}
