/**
 * A lock on an output that one run of a stage writes at a time (`data/raw`, `data/batches`, one processed
 * file, the benchmark folder), so a second run started meanwhile refuses with one line naming the first
 * instead of mixing its files with it.
 *
 * The lock is the kernel's advisory lock (`flock`, through `Deno.FsFile.tryLock`) on a small lock file.
 * The kernel releases it when its holder exits, however it exits (SIGKILL, OOM kill), so a lock is never
 * left stale, and it does not depend on process ids: it works between containers that share a volume (each
 * has its own pid namespace, where pid 1 may be every container's stage) and, on Linux, on NFS (which maps
 * it to a POSIX lock). The file also holds the holder's stage, pid (as its own pid namespace sees it), host
 * when known, and start time, but only to name the holder in messages: nothing trusts the pid. A lock file
 * left by a dead run (its content still there, no kernel lock) is taken over, and the caller is told, so it
 * can remove the dead run's temporary files. The lock file is removed on release.
 *
 * @module
 */
import { join } from "node:path";
import { removeStalePartials } from "./atomic_file.ts";
import { PipelineError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { describeFsError, withFsErrors } from "./os_error.ts";

/** What a lock file records about its holder. */
export interface LockHolder {
  /** Stage name, e.g. `ingest`. */
  stage: string;
  /** Process id, as the holder's own pid namespace sees it. */
  pid: number;
  /** Host name, when the stage may read it. */
  host?: string;
  /** When the holder took the lock (ISO 8601). */
  startedAt: string;
}

/** A held lock; release it (or dispose of it) when the outputs are published. */
export interface HeldLock extends AsyncDisposable {
  /** The lock file. */
  readonly path: string;
  /** The holder recorded in a lock file that a dead run left, if this lock took it over. */
  readonly tookOver: LockHolder | undefined;
  /** Removes the lock file and releases the lock. */
  release(): Promise<void>;
}

/** Options of {@linkcode acquireLock}. */
export interface AcquireLockOptions {
  /** The stage taking the lock, recorded for the message another run prints. */
  stage: string;
  /** What the lock protects, for messages, e.g. `data/raw`. */
  what: string;
  /** How long to wait for a busy lock before refusing, in milliseconds. @default {0} */
  waitMs?: number;
  /** Stops waiting. */
  signal?: AbortSignal;
}

/** A second run found the lock held. */
export class LockBusyError extends PipelineError {
  /** The holder, as its lock file names it (undefined when it had not written it yet). */
  readonly holder: LockHolder | undefined;

  /**
   * @param message One line naming the holder.
   * @param holder The holder.
   */
  constructor(message: string, holder: LockHolder | undefined) {
    super(message);
    this.name = "LockBusyError";
    this.holder = holder;
  }
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const value = JSON.parse(text) as Partial<LockHolder>;
    if (
      typeof value.stage === "string" && typeof value.pid === "number" && typeof value.startedAt === "string"
    ) {
      return value as LockHolder;
    }
  } catch {
    // Empty (being written) or damaged: nothing to name.
  }
  return undefined;
}

/** `ingest (pid 4242 on host-a, started 2026-01-01T10:00:00.000Z, 12 s ago)`. */
export function describeHolder(holder: LockHolder | undefined): string {
  if (holder === undefined) return "another run";
  const ageMs = Date.now() - Date.parse(holder.startedAt);
  const age = Number.isFinite(ageMs) && ageMs >= 0 ? `, ${Math.round(ageMs / 1000)} s ago` : "";
  const host = holder.host ? ` on ${holder.host}` : "";
  return `${holder.stage} (pid ${holder.pid}${host}, started ${holder.startedAt}${age})`;
}

function hostName(): string | undefined {
  if (Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state !== "granted") return undefined;
  try {
    return Deno.hostname();
  } catch {
    return undefined;
  }
}

async function readHolder(path: string): Promise<LockHolder | undefined> {
  try {
    return parseHolder(await Deno.readTextFile(path));
  } catch {
    return undefined;
  }
}

async function openLockFile(path: string): Promise<Deno.FsFile> {
  try {
    const info = await Deno.lstat(path);
    if (info.isSymlink) {
      throw new PipelineError(
        `${path} is a symbolic link; a stage never writes through a link: remove it (rm ${path}) and run again`,
      );
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw (await describeFsError(error, { path })) ?? error;
  }
  try {
    return await Deno.open(path, { read: true, write: true, create: true });
  } catch (error) {
    throw (await describeFsError(error, { path })) ?? error;
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });

/**
 * Takes the lock at `path` (its folder must exist), or refuses when another live run holds it.
 *
 * @param path The lock file, e.g. `data/raw/.ingest.lock`.
 * @param options The stage, what the lock protects, how long to wait.
 * @returns The held lock.
 * @throws {LockBusyError} `data/raw is in use by ingest (pid 4242, started ...); wait for it to finish ...`.
 *
 * @example Usage
 * ```ts ignore
 * import { acquireLock } from "./lock.ts";
 * await using lock = await acquireLock("data/raw/.lock", { stage: "ingest", what: "data/raw" });
 * if (lock.tookOver) console.warn(`took over the lock of a dead run`);
 * ```
 */
export async function acquireLock(path: string, options: AcquireLockOptions): Promise<HeldLock> {
  const deadline = Date.now() + (options.waitMs ?? 0);
  while (true) {
    options.signal?.throwIfAborted();
    const file = await openLockFile(path);
    let locked: boolean;
    try {
      locked = await file.tryLock(true);
    } catch (error) {
      file.close();
      throw new PipelineError(
        `cannot lock ${path}: ${(error as Error).message}; the file system holding ${options.what} ` +
          "does not support file locks, so two runs at once could not be told apart",
        { cause: error },
      );
    }
    if (!locked) {
      file.close();
      const holder = await readHolder(path);
      if (Date.now() < deadline) {
        await sleep(200, options.signal);
        continue;
      }
      throw new LockBusyError(
        `${options.what} is in use by ${describeHolder(holder)}; wait for it to finish (or stop it), ` +
          "then run again",
        holder,
      );
    }
    // The previous holder may have removed the file between our open and our lock: then we hold a lock on
    // a file nobody else can find, and must lock the new one instead.
    const [held, current] = await Promise.all([
      file.stat(),
      Deno.lstat(path).catch(() => undefined),
    ]);
    if (current === undefined || current.ino !== held.ino || current.dev !== held.dev) {
      file.close();
      continue;
    }
    const previous = await readHolder(path);
    const holder: LockHolder = {
      stage: options.stage,
      pid: Deno.pid,
      ...(hostName() !== undefined ? { host: hostName() } : {}),
      startedAt: new Date().toISOString(),
    };
    try {
      await file.truncate(0);
      await file.write(new TextEncoder().encode(JSON.stringify(holder) + "\n"));
    } catch (error) {
      // Still held, so no other run can be using it: a full disk must not leave an empty lock file behind.
      await Deno.remove(path).catch(() => {});
      file.close();
      throw (await describeFsError(error, { path })) ?? error;
    }
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      // Removed while still locked, so a waiting run finds the file gone and makes a new one.
      await Deno.remove(path).catch(() => {});
      file.close();
    };
    return { path, tookOver: previous, release, [Symbol.asyncDispose]: release };
  }
}

/** Options of {@linkcode lockOutputs}. */
export interface LockOutputsOptions {
  /** The stage taking the lock. */
  stage: string;
  /** Lock file name inside the folder. @default {".lock"} */
  lockName?: string;
  /** What the lock protects, for messages. @default {the folder} */
  what?: string;
  /** Output names whose leftover temporary files are removed; all `.partial` files when omitted. */
  outputs?: readonly string[];
  /** Says when a dead run's lock was taken over. */
  log?: Pick<Logger, "info" | "warn">;
  /** Stops waiting. */
  signal?: AbortSignal;
}

/**
 * Creates `dir` if needed, takes its lock (or refuses, naming the run that holds it), and removes the
 * temporary files that killed runs left there: every stage that writes a shared folder starts with it.
 *
 * @param dir The output folder.
 * @param options The stage, the lock file's name, the outputs it covers.
 * @returns The held lock; release it once the outputs are published.
 */
export async function lockOutputs(dir: string, options: LockOutputsOptions): Promise<HeldLock> {
  await withFsErrors({ path: dir }, () => Deno.mkdir(dir, { recursive: true }));
  const lock = await acquireLock(join(dir, options.lockName ?? ".lock"), {
    stage: options.stage,
    what: options.what ?? dir,
    signal: options.signal,
  });
  try {
    if (lock.tookOver) {
      options.log?.warn(
        `took over the lock of ${describeHolder(lock.tookOver)}, which ended without releasing it`,
      );
    }
    const removed = await removeStalePartials(dir, options.outputs);
    if (removed.length > 0) {
      options.log?.info(`removed ${removed.length} temporary file(s) left by an interrupted run in ${dir}`);
    }
  } catch (error) {
    await lock.release();
    throw error;
  }
  return lock;
}
