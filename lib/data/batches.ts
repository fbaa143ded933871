/**
 * Splitting the training CSV into batch files, with a manifest that makes the split checkable and
 * repeatable.
 *
 * Every line of the input is validated with {@linkcode readReviews}; accepted lines are copied unchanged
 * (their exact text plus LF; only a CRLF line end becomes LF and a leading BOM is dropped) into
 * `train_batch_<i>.csv`, rejected ones go to `rejects.csv` with their line number and reason, so
 * `lines read = rows + rejected` holds and concatenating the batches gives back the input's accepted lines.
 * The new files are written into a staging folder and moved into place only when all of them are complete,
 * so an interrupted run leaves the previous split untouched; files of an earlier, larger split are removed
 * only after that. A split holds the output folder's lock (`.lock`) from start to end, so a second split of the
 * same folder refuses, naming the first.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { AtomicTextWriter, partialPath, refuseSymlink } from "../core/atomic_file.ts";
import { lockOutputs } from "../core/lock.ts";
import { ensureFreeSpace, withFsErrors } from "../core/os_error.ts";
import { formatRejectedRaw, quoteCsvField } from "./csv.ts";
import { PipelineError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { batchFileName, batchIndexOf } from "./layout.ts";
import { fileStream, readReviews, type ReadStats, type RejectedRow } from "./review_reader.ts";
import { openInput } from "../core/read_guard.ts";

/** Rows per batch when neither a batch size nor a batch count is given. */
export const DEFAULT_BATCH_SIZE = 100_000;
/** File name of the manifest inside the output folder. */
export const MANIFEST_FILE = "manifest.json";
/** File name of the rejected lines report inside the output folder. */
export const REJECTS_FILE = "rejects.csv";
/** Version of the manifest layout; a manifest of another version is never trusted. */
export const MANIFEST_VERSION = 1;

/** A batch's file being written by a split that did not finish (`<name>.<pid>-<random>.partial`). */
const BATCH_PARTIAL = /^train_batch_\d+\.csv(\.\d+-[0-9a-f]{8})?\.partial$/;
const STAGING_DIR = ".staging";

/** One batch in the manifest. */
export interface BatchEntry {
  /** 0-based batch number. */
  index: number;
  /** File name inside the output folder. */
  file: string;
  /** Reviews in the batch. */
  rows: number;
  /** Size of the file. */
  bytes: number;
  /** Lower-case hex SHA-256 of the file. */
  sha256: string;
  /** Input line number (1-based) of the batch's first row. */
  first_line: number;
}

/** The flags a split was made with; a rerun with other flags splits again. */
export interface SplitRequest {
  /** `--batch-size`, or null when `--num-batches` was given. */
  batch_size: number | null;
  /** `--num-batches`, or null. */
  num_batches: number | null;
}

/** `manifest.json`: what was split, how, and what came out. */
export interface BatchManifest {
  version: number;
  /** ISO time the split finished. */
  created_at: string;
  source: {
    /** Input path as given. */
    path: string;
    bytes: number;
    sha256: string;
    /** Physical lines read: `rows + rejected`. */
    rows: number;
  };
  /** The flags of this split. */
  request: SplitRequest;
  /** Largest number of rows in one batch. */
  batch_size: number;
  /** Reviews written to batches. */
  rows: number;
  /** Lines written to the rejects file. */
  rejected: number;
  rejects: {
    file: string;
    rows: number;
    bytes: number;
    sha256: string;
    /** Rejected lines per reason (the reason without its details in parentheses). */
    by_reason: Record<string, number>;
  };
  batches: BatchEntry[];
}

/** Options of {@linkcode splitBatches}. */
export interface SplitBatchesOptions {
  /** The CSV to split. */
  input: string;
  /** Folder of the batches, the manifest and the rejects file; created when missing. */
  outputDir: string;
  /** Rows per batch. Mutually exclusive with `numBatches`. @default {100000} */
  batchSize?: number;
  /** Number of batches of nearly equal size (costs one extra pass to count lines). */
  numBatches?: number;
  /** Split even when the manifest says the input and the request are unchanged. @default {false} */
  force?: boolean;
  /**
   * Refuse before writing when the output's device has less free space than the input's size (`force`
   * does not turn this off). @default {true}
   */
  checkSpace?: boolean;
  /** Aborting it stops at the next chunk; nothing of the new split is published. */
  signal?: AbortSignal;
  /** Where decisions (skip, why a redo, rejects) are logged. */
  log?: Logger;
  /** Called as the input is read, in a first "scan" pass (when needed) and the "split" pass. */
  onProgress?: (phase: "scan" | "split", bytesDone: number, bytesTotal: number) => void;
  /** Line length cap passed to the reader. */
  maxLineBytes?: number;
}

/** What {@linkcode splitBatches} did. */
export interface SplitBatchesResult {
  /** Number of batch files. */
  batches: number;
  /** Reviews in the batches. */
  rows: number;
  /** Rejected input lines. */
  rejected: number;
  /** True when the existing split was up to date and nothing was written. */
  skipped: boolean;
  /** Path of the manifest. */
  manifest: string;
  /** Input size. */
  bytes: number;
}

/** Counts and checksum of one streaming pass over a file. */
export interface FileScan {
  bytes: number;
  sha256: string;
  /** Physical lines, counted like the reader does (a final line without LF counts). */
  lines: number;
}

/**
 * Hashes a file and counts its lines in one streaming pass.
 *
 * @param path The file.
 * @param options Abort signal and a progress callback (bytes so far).
 * @returns Size, SHA-256 and line count.
 */
export async function scanFile(
  path: string,
  options: { signal?: AbortSignal; onProgress?: (bytes: number) => void } = {},
): Promise<FileScan> {
  using file = await Deno.open(path);
  const hash = createHash("sha256");
  const buffer = new Uint8Array(1 << 20);
  let bytes = 0;
  let lines = 0;
  let last = 0x0a;
  while (true) {
    options.signal?.throwIfAborted();
    const count = await file.read(buffer);
    if (count === null) break;
    const chunk = buffer.subarray(0, count);
    hash.update(chunk);
    bytes += count;
    // TypedArray.indexOf is native, so hopping from LF to LF beats a byte loop by a wide margin.
    for (let at = chunk.indexOf(0x0a); at >= 0; at = chunk.indexOf(0x0a, at + 1)) lines++;
    last = chunk[count - 1]!;
    options.onProgress?.(bytes);
  }
  if (last !== 0x0a) lines++;
  return { bytes, sha256: hash.digest("hex"), lines };
}

/**
 * Reads `manifest.json` from a folder.
 *
 * @returns The manifest, or undefined when it is missing, unreadable or of another version.
 */
export async function readManifest(outputDir: string): Promise<BatchManifest | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(outputDir, MANIFEST_FILE));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  return isManifest(value) ? value : undefined;
}

/** Checks the fields a skip decision relies on, so a hand-edited manifest means "split again", not a crash. */
function isManifest(value: unknown): value is BatchManifest {
  const m = value as Partial<BatchManifest> | null;
  return typeof m === "object" && m !== null && m.version === MANIFEST_VERSION &&
    typeof m.source?.bytes === "number" && typeof m.source.sha256 === "string" &&
    typeof m.request === "object" && m.request !== null &&
    typeof m.rejects?.file === "string" && typeof m.rejects.bytes === "number" &&
    Array.isArray(m.batches) &&
    m.batches.every((b) => typeof b?.file === "string" && typeof b.bytes === "number");
}

/** Why an existing split cannot be reused, or undefined when it can. */
async function staleReason(
  manifest: BatchManifest,
  outputDir: string,
  request: SplitRequest,
  scan: FileScan,
): Promise<string | undefined> {
  if (manifest.source.bytes !== scan.bytes || manifest.source.sha256 !== scan.sha256) {
    return "the input changed since the last split";
  }
  if (
    manifest.request.batch_size !== request.batch_size || manifest.request.num_batches !== request.num_batches
  ) {
    return "the flags differ from the last split";
  }
  // A size check catches a deleted, truncated or replaced file without reading every batch again.
  for (const { file, bytes } of [...manifest.batches, manifest.rejects]) {
    try {
      if ((await Deno.stat(join(outputDir, file))).size !== bytes) return `${file} was modified`;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return `${file} is missing`;
      throw error;
    }
  }
  return undefined;
}

/** Array-split sizes: `total` lines into `parts` batches whose sizes differ by at most one. */
function splitTarget(total: number, parts: number, index: number): number {
  if (index >= parts - 1) return Infinity; // the last batch takes whatever is left
  return Math.floor(total / parts) + (index < total % parts ? 1 : 0);
}

function reasonKey(reason: string): string {
  const paren = reason.indexOf(" (");
  return paren < 0 ? reason : reason.slice(0, paren);
}

async function removeIfExists(path: string, recursive = false): Promise<void> {
  try {
    await Deno.remove(path, { recursive });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/**
 * Splits a review CSV into batch files of `batchSize` rows (or `numBatches` nearly equal batches), with
 * `manifest.json` and `rejects.csv`, or does nothing when the manifest shows the same input (size and
 * SHA-256), the same flags and intact batch files.
 *
 * @param options Input, output folder, batch size or count, force, signal, logger, progress.
 * @returns Counts, and whether the work was skipped.
 * @throws {PipelineError} When the input is missing or holds no valid review.
 *
 * @example Usage
 * ```ts ignore
 * import { splitBatches } from "./batches.ts";
 * const result = await splitBatches({ input: "data/raw/train.csv", outputDir: "data/batches", batchSize: 50_000 });
 * console.log(result.batches, result.rows, result.skipped);
 * ```
 */
export async function splitBatches(options: SplitBatchesOptions): Promise<SplitBatchesResult> {
  const { input, outputDir, numBatches, signal, log } = options;
  if (options.batchSize !== undefined && numBatches !== undefined) {
    throw new RangeError("batchSize and numBatches are mutually exclusive");
  }
  const batchSize = numBatches === undefined ? options.batchSize ?? DEFAULT_BATCH_SIZE : undefined;
  for (const [name, value] of [["batchSize", batchSize], ["numBatches", numBatches]] as const) {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 1)) {
      throw new RangeError(`${name} must be a positive integer, got ${value}`);
    }
  }
  const request: SplitRequest = { batch_size: batchSize ?? null, num_batches: numBatches ?? null };
  const manifestPath = join(outputDir, MANIFEST_FILE);

  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(input);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new PipelineError(`${input} not found`);
    throw error;
  }
  if (!info.isFile) throw new PipelineError(`${input} is not a file; point the stage at a CSV file`);
  await using _lock = await lockOutputs(outputDir, { stage: "split_batches", log, signal });

  // A first pass is needed to count lines for --num-batches, or to hash the input when a previous split
  // could be reused; hashing is several times faster than splitting, so checking first pays off.
  const previous = options.force ? undefined : await readManifest(outputDir);
  let scan: FileScan | undefined;
  if (numBatches !== undefined || (previous !== undefined && previous.source.bytes === info.size)) {
    scan = await scanFile(input, {
      signal,
      onProgress: (bytes) => options.onProgress?.("scan", bytes, info.size),
    });
  }
  if (previous !== undefined && scan !== undefined) {
    const reason = await staleReason(previous, outputDir, request, scan);
    if (reason === undefined) {
      log?.info(`${outputDir} is up to date (same input and flags); use --force to split again`);
      return {
        batches: previous.batches.length,
        rows: previous.rows,
        rejected: previous.rejected,
        skipped: true,
        manifest: manifestPath,
        bytes: previous.source.bytes,
      };
    }
    log?.info(`splitting again: ${reason}`);
  } else if (previous !== undefined) {
    log?.info("splitting again: the input changed since the last split");
  }

  // The staging folder's name is this run's own, made exclusively; a killed run's is removed under the lock.
  for await (const entry of Deno.readDir(outputDir)) {
    if (entry.name.startsWith(STAGING_DIR)) await removeIfExists(join(outputDir, entry.name), true);
  }
  // The new split is written beside the old one before replacing it: about the input's size.
  if (options.checkSpace !== false) {
    await ensureFreeSpace(outputDir, info.size, `about the size of ${input}`);
  }
  const staging = partialPath(join(outputDir, STAGING_DIR));
  await withFsErrors({ path: staging }, () => Deno.mkdir(staging));
  try {
    const manifest = await writeStaged(options, staging, request, info.size, scan?.lines);
    if (manifest.rows === 0) {
      const detail = manifest.source.rows === 0
        ? "it is empty"
        : `all ${manifest.source.rows} lines were rejected (e.g. ${firstReason(manifest)})`;
      throw new PipelineError(
        `${input} has no valid review rows: ${detail}; check the file or run ingest again`,
      );
    }
    await publish(outputDir, staging, manifest);
    if (manifest.rejected > 0) {
      const reasons = Object.entries(manifest.rejects.by_reason).map(([reason, n]) => `${n} ${reason}`).join(
        ", ",
      );
      log?.warn(`rejected ${manifest.rejected} lines (${reasons}); see ${join(outputDir, REJECTS_FILE)}`);
    }
    if (numBatches !== undefined && manifest.batches.length < numBatches) {
      log?.warn(
        `wrote ${manifest.batches.length} batches instead of ${numBatches}: the input has too few valid rows`,
      );
    }
    return {
      batches: manifest.batches.length,
      rows: manifest.rows,
      rejected: manifest.rejected,
      skipped: false,
      manifest: manifestPath,
      bytes: manifest.source.bytes,
    };
  } finally {
    await removeIfExists(staging, true);
  }
}

function firstReason(manifest: BatchManifest): string {
  return Object.keys(manifest.rejects.by_reason)[0] ?? "unknown";
}

/** Reads the input once and writes the batches and the rejects file into `staging`. */
async function writeStaged(
  options: SplitBatchesOptions,
  staging: string,
  request: SplitRequest,
  total: number,
  lineCount: number | undefined,
): Promise<BatchManifest> {
  const { input, signal } = options;
  const target = (index: number): number =>
    request.num_batches === null ? request.batch_size! : splitTarget(lineCount!, request.num_batches, index);

  // Named in messages by their final paths; a full disk's message says the split needs about the input's size.
  const writerOptions = (name: string) => ({ label: join(options.outputDir, name), expectedBytes: total });
  await using rejects = await AtomicTextWriter.create(
    join(staging, REJECTS_FILE),
    writerOptions(REJECTS_FILE),
  );
  rejects.write("line,reason,raw\n");
  const byReason: Record<string, number> = {};
  const onReject = (row: RejectedRow): Promise<void> | undefined => {
    const key = reasonKey(row.reason);
    byReason[key] = (byReason[key] ?? 0) + 1;
    return rejects.write(`${row.line},${quoteCsvField(row.reason)},${formatRejectedRaw(row.raw)}\n`);
  };

  const batches: BatchEntry[] = [];
  let writer: AtomicTextWriter | undefined;
  let rows = 0;
  let firstLine = 0;
  const hash = createHash("sha256");
  using file = await openInput(input);
  const source = fileStream(file, { onChunk: (chunk) => hash.update(chunk) });
  const lines = readReviews(source, {
    onReject,
    signal,
    maxLineBytes: options.maxLineBytes,
    onProgress: (stats) => options.onProgress?.("split", stats.bytes, total),
  });
  try {
    let next: IteratorResult<{ line: number; raw: string }, ReadStats>;
    while (!(next = await lines.next()).done) {
      const { line, raw } = next.value;
      if (writer === undefined) {
        const name = batchFileName(batches.length);
        writer = await AtomicTextWriter.create(join(staging, name), writerOptions(name));
        rows = 0;
        firstLine = line;
      }
      const flushed = writer.write(raw + "\n");
      if (flushed) await flushed;
      if (++rows >= target(batches.length)) {
        batches.push(await commitBatch(writer, batches.length, rows, firstLine));
        writer = undefined;
      }
    }
    if (writer !== undefined) {
      batches.push(await commitBatch(writer, batches.length, rows, firstLine));
      writer = undefined;
    }
    const stats = next.value;
    const rejected = await rejects.commit();
    return {
      version: MANIFEST_VERSION,
      created_at: new Date().toISOString(),
      source: { path: input, bytes: stats.bytes, sha256: hash.digest("hex"), rows: stats.read },
      request,
      batch_size: request.num_batches === null
        ? request.batch_size!
        : Math.ceil(lineCount! / request.num_batches),
      rows: stats.accepted,
      rejected: stats.rejected,
      rejects: {
        file: REJECTS_FILE,
        rows: stats.rejected,
        bytes: rejected.bytes,
        sha256: rejected.sha256,
        by_reason: byReason,
      },
      batches,
    };
  } finally {
    await writer?.abort();
  }
}

async function commitBatch(
  writer: AtomicTextWriter,
  index: number,
  rows: number,
  firstLine: number,
): Promise<BatchEntry> {
  const { bytes, sha256 } = await writer.commit();
  return { index, file: batchFileName(index), rows, bytes, sha256, first_line: firstLine };
}

/**
 * Moves a complete staged split into `outputDir`. The new manifest is written and synced first (a full disk
 * fails before anything changed) and no target may be a symbolic link; then the old manifest goes (so a
 * crash in between never leaves a manifest describing other files), then the files, then the new manifest,
 * then the files of an earlier, larger split.
 */
async function publish(outputDir: string, staging: string, manifest: BatchManifest): Promise<void> {
  await using manifestOut = await AtomicTextWriter.create(join(outputDir, MANIFEST_FILE));
  manifestOut.write(JSON.stringify(manifest, null, 2) + "\n");
  await manifestOut.finish();
  const names = [...manifest.batches.map((batch) => batch.file), REJECTS_FILE];
  for (const name of names) await refuseSymlink(join(outputDir, name));
  await removeIfExists(join(outputDir, MANIFEST_FILE));
  for (const name of names) {
    const target = join(outputDir, name);
    await withFsErrors({ path: target }, () => Deno.rename(join(staging, name), target));
  }
  await manifestOut.publish();
  for await (const entry of Deno.readDir(outputDir)) {
    const index = batchIndexOf(entry.name, ".csv");
    const stale = index !== undefined ? index >= manifest.batches.length : BATCH_PARTIAL.test(entry.name);
    if (stale && entry.isFile) await removeIfExists(join(outputDir, entry.name));
  }
}
