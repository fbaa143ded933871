/**
 * The `ingest` stage's logic: get `train.csv` and `test.csv` from a source (generated sample data, a local
 * folder or zip, a zip at a URL, or Kaggle's API), validate every row and write them canonically to
 * `data/raw/`, with the rejected rows in `rejects.csv` and a manifest.
 *
 * Guarantees:
 * - One record per line downstream: every accepted row is re-written with `formatReviewLine`, whatever
 *   quoting or line endings the source used.
 * - No data lost silently: each input line is either written or listed in `rejects.csv` with its reason,
 *   so `read = accepted + rejected` holds for every file, and the manifest records the counts.
 * - Atomic: the three outputs are written to `.partial` files and renamed only once both inputs were read
 *   completely (and, for a zip, their CRC-32 matched). The manifest is written last, so it doubles as the
 *   completion marker for the "up to date" check.
 *
 * Over 600 lines because the four sources share one plan (`InputPlan`: prepare, open, explain a corrupt
 * archive, clean up), one validated write path and one manifest, which is what makes the guarantees above
 * hold for every source; the download and the zip reading are in `download.ts` and `zip_extract.ts`.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { basename, isAbsolute, join, relative, resolve, sep } from "node:path";
import { AtomicTextWriter, type CommittedFile, fileSize, publishAll } from "../core/atomic_file.ts";
import { lockOutputs } from "../core/lock.ts";
import { refuseEscapingLink } from "../core/read_guard.ts";
import { formatRejectedRaw, formatReviewLine, quoteCsvField } from "./csv.ts";
import { PipelineError } from "../core/errors.ts";
import {
  downloadFile,
  type DownloadProgress,
  type DownloadResult,
  redactUrl,
  removeDownload,
} from "./download.ts";
import { describeCredentials, downloadKaggleFile, type KaggleCredentials } from "./kaggle.ts";
import { formatBytes } from "../core/format.ts";
import type { Logger } from "../core/log.ts";
import { createProgress, defaultProgressMode } from "../core/progress.ts";
import { readReviews, type ReadStats, type RejectedRow } from "./review_reader.ts";
import { generateReviews } from "./sample_data.ts";
import { findDatasetEntry, isZipFile, ZipArchive, ZipExtractError } from "./zip_extract.ts";
import { TEST_FILE, TRAIN_FILE } from "./layout.ts";

/** The two files of the dataset, in the order they are ingested. */
export const DATASET_FILES = ["train", "test"] as const;

/** One of {@linkcode DATASET_FILES}. */
export type DatasetFile = (typeof DATASET_FILES)[number];

/** Name of the manifest in the raw folder. */
export const MANIFEST_FILE = "ingest_manifest.json";

/** Name of the rejected-rows report in the raw folder. */
export const REJECTS_FILE = "rejects.csv";

/** Header of `rejects.csv`. */
export const REJECTS_HEADER = "file,line,reason,raw\n";

/** Where the data comes from, as resolved by the stage script. */
export type IngestSource =
  | { kind: "sample"; rows: number; testRows: number; seed: number }
  | { kind: "path"; path: string }
  | { kind: "url"; url: URL }
  | { kind: "kaggle"; apiBase: URL; dataset: string; credentials: KaggleCredentials };

/** Counts and checksum of one output file. */
export interface FileReport {
  /** Output file name in the raw folder, e.g. `train.csv`. */
  file: string;
  /** Where the rows came from, e.g. `data/external/a.zip:amazon_review_polarity_csv/train.csv`. */
  origin: string;
  /** Lines read from the source (`accepted + rejected`). */
  read: number;
  /** Rows written. */
  accepted: number;
  /** Lines listed in `rejects.csv`. */
  rejected: number;
  /** Size of the written file. */
  bytes: number;
  /** SHA-256 of the written file. */
  sha256: string;
}

/** `data/raw/ingest_manifest.json`. */
export interface IngestManifest {
  /** Format version of this file. */
  version: 1;
  /** What was ingested, without secrets (for a URL: no query string). */
  source: Record<string, unknown>;
  /** Identity of source + parameters; equal keys mean a rerun would produce the same files. */
  key: string;
  /** `--limit`, or null for all rows. */
  limit: number | null;
  /** When the ingest finished (ISO 8601). */
  createdAt: string;
  /** Wall time of the ingest. */
  durationMs: number;
  /** The two dataset files. */
  files: Record<DatasetFile, FileReport>;
  /** The rejected-rows report. */
  rejects: { file: string; rows: number; bytes: number; sha256: string };
}

/** Options of {@linkcode ingest}. */
export interface IngestOptions {
  /** Where the data comes from. */
  source: IngestSource;
  /** Cap on the rows taken from each file of a real source. */
  limit?: number;
  /** Re-ingest even when the raw folder already holds this source's data. @default {false} */
  force?: boolean;
  /** Output folder, usually `data/raw`. */
  rawDir: string;
  /** Folder for downloaded archives, usually `data/downloads`. */
  downloadsDir: string;
  /** Folders the stage may read, named in the error for a path outside them. */
  readableDirs: readonly string[];
  /** Logger (stderr). */
  log: Logger;
  /** Ctrl-C. */
  signal?: AbortSignal;
  /** @default {defaultProgressMode()} */
  progressMode?: "tty" | "lines" | "off";
  /** Milliseconds between progress lines when not on a terminal. @default {15000} */
  progressIntervalMs?: number;
  /** @default {globalThis.fetch} */
  fetch?: typeof fetch;
}

/** Result of {@linkcode ingest}. */
export interface IngestResult {
  /** The raw folder already held this source's data; nothing was read or written. */
  upToDate: boolean;
  /** The manifest of the data now in the raw folder. */
  manifest: IngestManifest;
}

/** A stream of one input file's bytes. */
interface OpenedInput {
  readable: ReadableStream<Uint8Array>;
  /** Resolves once the input was read completely and verified; rejects e.g. on a CRC mismatch. */
  done: Promise<void>;
  /** Releases the file handle, if any. */
  close(): void;
}

/** How to get the two input files of a real source. */
interface InputPlan {
  /** Identity of the source for the manifest key. */
  key: string;
  /** Description for the manifest. */
  description: Record<string, unknown>;
  /** Downloads and opens what is needed; called only when not up to date. */
  prepare(): Promise<void>;
  /** Where a file's rows come from, for messages and the manifest. */
  origin(file: DatasetFile): string;
  /** Opens one input file. */
  open(file: DatasetFile): Promise<OpenedInput>;
  /** Turns a corrupt-archive error into a one-line message with the remedy (and removes a bad download). */
  explain(error: ZipExtractError): Promise<PipelineError>;
  /** Releases open archives. */
  close(): Promise<void>;
  /** After a successful ingest: removes downloads that are now in the raw folder. */
  cleanup(): Promise<void>;
}

function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/**
 * Derives the seed of one stream (`train` or `test`) from the user's seed, so that the two files come from
 * unrelated random streams and `--seed S` still fixes both.
 *
 * @example Usage
 * ```ts
 * import { streamSeed } from "./ingest.ts";
 * streamSeed(42, "train") !== streamSeed(42, "test"); // true
 * ```
 */
export function streamSeed(seed: number, stream: DatasetFile): number {
  // 48 bits of a hash: a safe integer, and no simple arithmetic relation between seeds of nearby inputs.
  return Number.parseInt(sha256Hex(`amazon-reviews-mlops/sample/${stream}/${seed}`).slice(0, 12), 16);
}

/** FNV-1a over UTF-16 code units, two 32-bit lanes combined into a 53-bit number: a compact set key. */
function lineHash(line: string): number {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ line.length;
  for (let i = 0; i < line.length; i++) {
    const code = line.charCodeAt(i);
    a = Math.imul(a ^ code, 0x01000193);
    b = Math.imul(b ^ code, 0x5bd1e995);
  }
  return (a >>> 0) * 2 ** 21 + ((b >>> 0) & 0x1fffff);
}

async function readManifest(path: string): Promise<IngestManifest | undefined> {
  try {
    const manifest = JSON.parse(await Deno.readTextFile(path)) as IngestManifest;
    return manifest?.version === 1 && manifest.files?.train && manifest.files?.test ? manifest : undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof SyntaxError) return undefined;
    throw error;
  }
}

/**
 * Whether `rawDir` holds a complete ingest with this key: manifest present with the same key, and every
 * file it lists present with its recorded size (a cheap check that catches a half-copied or edited file
 * without hashing gigabytes).
 */
export async function isUpToDate(rawDir: string, key: string): Promise<IngestManifest | undefined> {
  const manifest = await readManifest(join(rawDir, MANIFEST_FILE));
  if (!manifest || manifest.key !== key) return undefined;
  const outputs = [manifest.files.train, manifest.files.test, manifest.rejects];
  for (const output of outputs) {
    if ((await fileSize(join(rawDir, output.file))) !== output.bytes) return undefined;
  }
  return manifest;
}

/** `file,line,reason,raw` rows; `raw` is the line as read (the reader caps very long ones). */
class RejectsWriter {
  rows = 0;
  #out: AtomicTextWriter;

  constructor(out: AtomicTextWriter) {
    this.#out = out;
    out.write(REJECTS_HEADER);
  }

  add(file: string, row: RejectedRow): Promise<void> | undefined {
    this.rows++;
    const raw = row.truncated ? row.raw + "…" : row.raw;
    return this.#out.write(`${file},${row.line},${quoteCsvField(row.reason)},${formatRejectedRaw(raw)}\n`);
  }
}

function isInside(child: string, parent: string): boolean {
  const path = relative(resolve(parent), resolve(child));
  return path === "" || (path.split(sep)[0] !== ".." && !isAbsolute(path));
}

async function statSource(path: string): Promise<Deno.FileInfo> {
  try {
    return await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new PipelineError(
        `--source ${path} does not exist; pass a folder or .zip holding train.csv and test.csv, or "sample" or "kaggle"`,
      );
    }
    throw error;
  }
}

async function assertReadable(path: string, options: IngestOptions): Promise<void> {
  if (isInside(path, options.rawDir)) {
    throw new PipelineError(
      `--source ${path} is inside ${options.rawDir}, which ingest writes; pass the folder holding the original files`,
    );
  }
  const status = await Deno.permissions.query({ name: "read", path });
  if (status.state === "granted") return;
  const dirs = options.readableDirs;
  const grant = [...dirs, path].join(",");
  throw new PipelineError(
    `--source ${path} is outside the folders ingest may read (${dirs.join(", ")}); copy it under ` +
      `data/external/, or add the grant: deno run -q -P=ingest --allow-read=${grant} scripts/ingest.ts --source ${path}`,
  );
}

/** Lists paths (relative, `/`-separated) at the top of `dir` and one folder down. */
async function listTwoLevels(dir: string): Promise<string[]> {
  const paths: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile || entry.isSymlink) paths.push(entry.name);
    else if (entry.isDirectory) {
      for await (const inner of Deno.readDir(join(dir, entry.name))) {
        if (inner.isFile || inner.isSymlink) paths.push(`${entry.name}/${inner.name}`);
      }
    }
  }
  return paths.sort();
}

function fileOpener(path: string): () => Promise<OpenedInput> {
  return async () => {
    const file = await Deno.open(path, { read: true });
    return {
      readable: file.readable,
      done: Promise.resolve(),
      close() {
        // The reader cancels `file.readable` when it stops early, which closes the file already.
        try {
          file.close();
        } catch { /* already closed */ }
      },
    };
  };
}

function zipOpener(
  archive: () => ZipArchive,
  entry: string,
  signal?: AbortSignal,
): () => Promise<OpenedInput> {
  return () => {
    const stream = archive().open(entry, { signal });
    return Promise.resolve({ readable: stream.readable, done: stream.done, close: () => {} });
  };
}

/** Finds train.csv and test.csv among `paths`, or explains which is missing. */
function locate(paths: readonly string[], where: string): Record<DatasetFile, string> {
  const found: Partial<Record<DatasetFile, string>> = {};
  const missing: string[] = [];
  for (const file of DATASET_FILES) {
    const path = findDatasetEntry(paths, `${file}.csv`, where);
    if (path === undefined) missing.push(`${file}.csv`);
    else found[file] = path;
  }
  if (missing.length > 0) {
    throw new PipelineError(
      `${where} has no ${missing.join(" and ")} (looked at the top level and one folder down); ` +
        "it must hold the Kaggle dataset's train.csv and test.csv",
    );
  }
  return found as Record<DatasetFile, string>;
}

/** A zip (or two, for Kaggle) whose archives are opened in `prepare()`. */
class ArchiveSet {
  #archives = new Map<string, ZipArchive>();

  async open(path: string): Promise<ZipArchive> {
    const archive = await ZipArchive.open(path);
    this.#archives.set(path, archive);
    return archive;
  }

  get(path: string): ZipArchive {
    const archive = this.#archives.get(path);
    if (!archive) throw new Error(`archive ${path} was not opened`);
    return archive;
  }

  async close(): Promise<void> {
    for (const archive of this.#archives.values()) await archive.close().catch(() => {});
    this.#archives.clear();
  }
}

async function planPath(path: string, options: IngestOptions): Promise<InputPlan> {
  await assertReadable(path, options);
  const info = await statSource(path);
  const description = { kind: "path", path };
  if (info.isDirectory) {
    const found = locate(await listTwoLevels(path), path);
    const stats: Record<string, unknown> = {};
    for (const file of DATASET_FILES) {
      await refuseEscapingLink(join(path, found[file]), options.readableDirs);
      const fileInfo = await Deno.stat(join(path, found[file]));
      stats[file] = { path: found[file], size: fileInfo.size, mtime: fileInfo.mtime?.toISOString() ?? null };
    }
    return {
      key: JSON.stringify({ kind: "folder", path: resolve(path), files: stats }),
      description: { ...description, format: "folder" },
      prepare: () => Promise.resolve(),
      origin: (file) => join(path, found[file]),
      open: (file) => fileOpener(join(path, found[file]))(),
      explain: (error) => Promise.resolve(error),
      close: () => Promise.resolve(),
      cleanup: () => Promise.resolve(),
    };
  }
  await refuseEscapingLink(path, options.readableDirs);
  if (!info.isFile || !(await isZipFile(path))) {
    throw new PipelineError(
      `--source ${path} is neither a folder nor a zip archive; pass a folder or .zip holding train.csv and test.csv`,
    );
  }
  const archives = new ArchiveSet();
  let found: Record<DatasetFile, string> | undefined;
  return {
    key: JSON.stringify({
      kind: "zip",
      path: resolve(path),
      size: info.size,
      mtime: info.mtime?.toISOString() ?? null,
    }),
    description: { ...description, format: "zip" },
    async prepare() {
      const archive = await archives.open(path);
      found = locate(archive.names, path);
    },
    origin: (file) => `${path}:${found?.[file] ?? `${file}.csv`}`,
    open: (file) => zipOpener(() => archives.get(path), found![file], options.signal)(),
    explain: (error) =>
      Promise.resolve(
        new PipelineError(`${error.message}; nothing in ${options.rawDir} was changed, replace the archive`, {
          cause: error,
        }),
      ),
    close: () => archives.close(),
    cleanup: () => Promise.resolve(),
  };
}

function downloadReporter(
  name: string,
  options: IngestOptions,
): {
  onProgress: (p: DownloadProgress) => void;
  onNotice: (m: string) => void;
  finish: (r: DownloadResult) => void;
} {
  const started = performance.now();
  let progress: ReturnType<typeof createProgress> | undefined;
  return {
    onProgress(p) {
      // Created on the first chunk, once the total size is known.
      progress ??= createProgress(`download ${name}`, {
        unit: "MB",
        total: p.total === undefined ? undefined : Math.round(p.total / 1e5) / 10,
        mode: options.progressMode ?? defaultProgressMode(),
        intervalMs: options.progressIntervalMs,
      });
      progress.update(Math.round(p.bytes / 1e5) / 10);
    },
    onNotice: (message) => options.log.info(message),
    finish(result) {
      progress?.finish();
      if (result.reused) return;
      const seconds = (performance.now() - started) / 1000;
      const rate = seconds > 0 ? result.transferred / 1e6 / seconds : 0;
      const resumed = result.resumedFrom > 0 ? `, resumed at ${formatBytes(result.resumedFrom)}` : "";
      const md5 = result.md5Verified ? ", MD5 ok" : "";
      options.log.info(
        `downloaded ${name}: ${formatBytes(result.bytes)} in ${seconds.toFixed(1)} s (${
          rate.toFixed(1)
        } MB/s${resumed}${md5})`,
      );
    },
  };
}

/** Opens a downloaded file as either a zip entry or, when the server sent the CSV itself, a plain file. */
async function openDownloaded(
  path: string,
  file: DatasetFile,
  archives: ArchiveSet,
  signal: AbortSignal | undefined,
): Promise<{ origin: string; open: () => Promise<OpenedInput> }> {
  if (!(await isZipFile(path))) return { origin: path, open: fileOpener(path) };
  const archive = await archives.open(path);
  const entry = archive.find(`${file}.csv`);
  if (entry === undefined) {
    throw new PipelineError(
      `${path} holds no ${file}.csv (entries: ${archive.names.slice(0, 5).join(", ")})`,
    );
  }
  return { origin: `${path}:${entry}`, open: zipOpener(() => archives.get(path), entry, signal) };
}

function corruptDownload(error: ZipExtractError, rawDir: string): PipelineError {
  return new PipelineError(
    `${error.message}; nothing in ${rawDir} was changed, and the download was removed: run again to fetch it again`,
    { cause: error },
  );
}

function planKaggle(source: Extract<IngestSource, { kind: "kaggle" }>, options: IngestOptions): InputPlan {
  const archives = new ArchiveSet();
  const inputs = new Map<DatasetFile, { origin: string; open: () => Promise<OpenedInput> }>();
  const dest = (file: DatasetFile) => join(options.downloadsDir, `${file}.csv.zip`);
  return {
    key: JSON.stringify({ kind: "kaggle", apiBase: source.apiBase.href, dataset: source.dataset }),
    description: { kind: "kaggle", dataset: source.dataset, apiBase: source.apiBase.href },
    async prepare() {
      await Deno.mkdir(options.downloadsDir, { recursive: true });
      options.log.info(
        `downloading ${source.dataset} from ${source.apiBase.host} with ${
          describeCredentials(source.credentials)
        }`,
      );
      // Both downloads first: a failure on test.csv then keeps train.csv.zip for the next run.
      for (const file of DATASET_FILES) {
        const name = `${file}.csv.zip`;
        const reporter = downloadReporter(name, options);
        const result = await downloadKaggleFile({
          apiBase: source.apiBase,
          dataset: source.dataset,
          file: `${file}.csv`,
          credentials: source.credentials,
          dest: dest(file),
          signal: options.signal,
          fetch: options.fetch,
          onProgress: reporter.onProgress,
          onNotice: reporter.onNotice,
        });
        reporter.finish(result);
      }
      for (const file of DATASET_FILES) {
        try {
          inputs.set(file, await openDownloaded(dest(file), file, archives, options.signal));
        } catch (error) {
          if (!(error instanceof ZipExtractError)) throw error;
          await removeDownload(dest(file));
          throw corruptDownload(error, options.rawDir);
        }
      }
    },
    origin: (file) => inputs.get(file)?.origin ?? `kaggle:${source.dataset}/${file}.csv`,
    open: (file) => inputs.get(file)!.open(),
    async explain(error) {
      await archives.close();
      for (const file of DATASET_FILES) if (error.zipPath === dest(file)) await removeDownload(dest(file));
      return corruptDownload(error, options.rawDir);
    },
    close: () => archives.close(),
    async cleanup() {
      await archives.close();
      for (const file of DATASET_FILES) await removeDownload(dest(file));
    },
  };
}

/** The file name a URL's download is saved under: its last path segment, made safe. */
export function downloadName(url: URL): string {
  const last = decodeURIComponent(url.pathname.split("/").pop() ?? "").replace(/[^A-Za-z0-9._-]+/g, "_");
  const name = last.replace(/^[._]+/, "");
  if (name === "") return "download.zip";
  return name.toLowerCase().endsWith(".zip") ? name : `${name}.zip`;
}

function planUrl(url: URL, options: IngestOptions): InputPlan {
  const archives = new ArchiveSet();
  const dest = join(options.downloadsDir, downloadName(url));
  let found: Record<DatasetFile, string> | undefined;
  // The key hashes the full URL: a signed query may hold a secret that must not land in the manifest.
  const key = JSON.stringify({ kind: "url", sha256: sha256Hex(url.href) });
  return {
    key,
    description: { kind: "url", url: redactUrl(url), sha256: sha256Hex(url.href) },
    async prepare() {
      await Deno.mkdir(options.downloadsDir, { recursive: true });
      const name = basename(dest);
      const reporter = downloadReporter(name, options);
      const result = await downloadFile({
        url,
        dest,
        key,
        signal: options.signal,
        fetch: options.fetch,
        onProgress: reporter.onProgress,
        onNotice: reporter.onNotice,
      });
      reporter.finish(result);
      if (!(await isZipFile(dest))) {
        await removeDownload(dest);
        throw new PipelineError(
          `${
            redactUrl(url)
          } did not return a zip archive; --source URL must point to a .zip holding train.csv and test.csv`,
        );
      }
      try {
        found = locate((await archives.open(dest)).names, dest);
      } catch (error) {
        if (!(error instanceof ZipExtractError)) throw error;
        await removeDownload(dest);
        throw corruptDownload(error, options.rawDir);
      }
    },
    origin: (file) => `${dest}:${found?.[file] ?? `${file}.csv`}`,
    open: (file) => zipOpener(() => archives.get(dest), found![file], options.signal)(),
    async explain(error) {
      await archives.close();
      await removeDownload(dest);
      return corruptDownload(error, options.rawDir);
    },
    close: () => archives.close(),
    async cleanup() {
      await archives.close();
      await removeDownload(dest);
    },
  };
}

const EMPTY_STATS: ReadStats = { read: 0, accepted: 0, rejected: 0, bytes: 0 };

interface Counts {
  read: number;
  accepted: number;
  rejected: number;
}

function summaryLine(file: string, counts: Counts): string {
  return `${file}: read ${counts.read} = accepted ${counts.accepted} + rejected ${counts.rejected}`;
}

/** Streams one input through the validating reader into `out`; rejected lines go to `rejects`. */
async function convertInput(
  file: DatasetFile,
  plan: InputPlan,
  out: AtomicTextWriter,
  rejects: RejectsWriter,
  options: IngestOptions,
): Promise<Counts> {
  const name = `${file}.csv`;
  const origin = plan.origin(file);
  const progress = createProgress(`writing ${name}`, {
    unit: "rows",
    mode: options.progressMode ?? defaultProgressMode(),
    intervalMs: options.progressIntervalMs,
  });
  let firstReject: RejectedRow | undefined;
  const input = await plan.open(file);
  const rows = readReviews(input.readable, {
    limit: options.limit,
    signal: options.signal,
    onReject(row) {
      firstReject ??= row;
      return rejects.add(name, row);
    },
  });
  let counts: Counts;
  try {
    while (true) {
      const next = await rows.next();
      if (next.done) {
        const { read, accepted, rejected } = next.value;
        counts = { read, accepted, rejected };
        break;
      }
      const pending = out.write(formatReviewLine(next.value.review));
      if (pending) await pending;
      progress.update(next.value.line);
    }
    // For a zip this is where a CRC mismatch surfaces: only after the last byte.
    await input.done;
  } catch (error) {
    // Run the reader's cleanup (it cancels the source, which stops a zip extraction) if the failure was
    // ours, e.g. a full disk, while the reader was suspended at a row.
    await rows.return(EMPTY_STATS).catch(() => {});
    // `done` has settled now; a zip error there is the real cause of whatever the reader saw (e.g.
    // "Invalid CRC32" from a stream that zip.js aborted under it).
    const zipError = await input.done.then(() => undefined, (cause: unknown) => cause);
    const cause = zipError instanceof ZipExtractError ? zipError : error;
    if (cause instanceof ZipExtractError) throw await plan.explain(cause);
    throw cause;
  } finally {
    progress.finish();
    input.close();
  }
  if (counts.accepted === 0) {
    const why = firstReject ? ` (line ${firstReject.line}: ${firstReject.reason})` : "";
    throw new PipelineError(
      counts.read === 0
        ? `${origin} is empty; it must hold reviews as polarity,title,text`
        : `none of the ${counts.read} lines of ${origin} is a valid review${why}; it must be the Kaggle format polarity,title,text`,
    );
  }
  options.log.info(summaryLine(name, counts));
  return counts;
}

async function writeSample(
  source: Extract<IngestSource, { kind: "sample" }>,
  outputs: Record<DatasetFile, AtomicTextWriter>,
  options: IngestOptions,
): Promise<Record<DatasetFile, Counts>> {
  // Train lines are remembered (as 53-bit hashes, ~30 bytes each) so that no test review repeats a train
  // review word for word: short generated reviews can coincide, and a duplicate would leak into evaluation.
  const trainLines = new Set<number>();
  const counts = {} as Record<DatasetFile, Counts>;
  for (const file of DATASET_FILES) {
    const rows = file === "train" ? source.rows : source.testRows;
    const progress = createProgress(`generating ${file}.csv`, {
      unit: "rows",
      total: rows,
      mode: options.progressMode ?? defaultProgressMode(),
      intervalMs: options.progressIntervalMs,
    });
    let written = 0;
    let skipped = 0;
    // The generator is unbounded here; it is only cut when enough distinct rows were written.
    const reviews = generateReviews({ rows: Number.MAX_SAFE_INTEGER, seed: streamSeed(source.seed, file) });
    for (const review of reviews) {
      if (written === rows) break;
      if (options.signal?.aborted) throw options.signal.reason;
      const line = formatReviewLine(review);
      if (file === "train") trainLines.add(lineHash(line));
      else if (trainLines.has(lineHash(line))) {
        skipped++;
        continue;
      }
      const pending = outputs[file].write(line);
      if (pending) await pending;
      progress.update(++written);
    }
    progress.finish();
    if (skipped > 0) options.log.info(`skipped ${skipped} generated test rows that repeat a train row`);
    counts[file] = { read: written, accepted: written, rejected: 0 };
    options.log.info(summaryLine(`${file}.csv`, counts[file]));
  }
  return counts;
}

function sourceKey(source: IngestSource, plan: InputPlan | undefined, limit: number | undefined): string {
  const base = source.kind === "sample"
    ? JSON.stringify({ kind: "sample", rows: source.rows, testRows: source.testRows, seed: source.seed })
    : plan!.key;
  return `${base}|limit=${limit ?? "all"}`;
}

function describeSource(source: IngestSource, plan: InputPlan | undefined): Record<string, unknown> {
  if (source.kind === "sample") {
    return { kind: "sample", rows: source.rows, testRows: source.testRows, seed: source.seed };
  }
  return plan!.description;
}

interface Written {
  files: Record<DatasetFile, FileReport>;
  rejects: CommittedFile;
  rejectedRows: number;
}

/**
 * Writes train.csv, test.csv and rejects.csv to temporary files, then the manifest `manifestFor` makes of
 * them, and renames all four only once everything was written and synced (a full disk fails before any
 * output changed); on any failure the writers' disposal removes the temporary files.
 */
async function writeOutputs(
  source: IngestSource,
  plan: InputPlan | undefined,
  options: IngestOptions,
  manifestFor: (written: Written) => IngestManifest,
): Promise<{ written: Written; manifest: IngestManifest }> {
  const { rawDir, log } = options;
  await using train = await AtomicTextWriter.create(join(rawDir, TRAIN_FILE));
  await using test = await AtomicTextWriter.create(join(rawDir, TEST_FILE));
  await using rejectsOut = await AtomicTextWriter.create(join(rawDir, REJECTS_FILE));
  const rejects = new RejectsWriter(rejectsOut);
  const outputs: Record<DatasetFile, AtomicTextWriter> = { train, test };

  let counts: Record<DatasetFile, Counts>;
  const origins = {} as Record<DatasetFile, string>;
  if (source.kind === "sample" || plan === undefined) {
    counts = await writeSample(source as Extract<IngestSource, { kind: "sample" }>, outputs, options);
    for (const file of DATASET_FILES) origins[file] = `generated:${file}`;
  } else {
    counts = {} as Record<DatasetFile, Counts>;
    for (const file of DATASET_FILES) {
      origins[file] = plan.origin(file);
      log.info(`reading ${origins[file]}`);
      counts[file] = await convertInput(file, plan, outputs[file], rejects, options);
    }
  }

  const files = {} as Record<DatasetFile, FileReport>;
  for (const file of DATASET_FILES) {
    const { bytes, sha256 } = await outputs[file].finish();
    files[file] = { file: `${file}.csv`, origin: origins[file], ...counts[file], bytes, sha256 };
  }
  const written = { files, rejects: await rejectsOut.finish(), rejectedRows: rejects.rows };
  const manifest = manifestFor(written);
  await using manifestOut = await AtomicTextWriter.create(join(rawDir, MANIFEST_FILE));
  manifestOut.write(JSON.stringify(manifest, null, 2) + "\n");
  await manifestOut.finish();

  // Publish: the old manifest goes first, so a crash between the renames leaves no manifest (= not up to
  // date, the next run redoes it) rather than a manifest that describes a mix of old and new files.
  await Deno.remove(join(rawDir, MANIFEST_FILE)).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
  await publishAll([train, test, rejectsOut, manifestOut]);
  return { written, manifest };
}

/** The source as shown in the summary and in `--json`: `sample`, `kaggle`, the path or the URL (redacted). */
export function sourceLabel(source: IngestSource): string {
  switch (source.kind) {
    case "sample":
      return "sample";
    case "kaggle":
      return "kaggle";
    case "path":
      return source.path;
    case "url":
      return redactUrl(source.url);
  }
}

/**
 * Runs the ingest: checks whether the raw folder is already up to date, gets the inputs, writes
 * `train.csv`, `test.csv`, `rejects.csv` and the manifest atomically.
 *
 * @returns Whether it was up to date, and the manifest of what the raw folder now holds.
 * @throws {PipelineError} For a missing or unreadable source, a source outside the read grant, a download
 * failure, a corrupt archive or a file without a single valid row. The raw folder is then unchanged.
 *
 * @example Usage
 * ```ts ignore
 * import { ingest } from "./ingest.ts";
 * import { createLogger } from "../core/log.ts";
 * const { manifest } = await ingest({
 *   source: { kind: "sample", rows: 1000, testRows: 200, seed: 42 },
 *   rawDir: "data/raw",
 *   downloadsDir: "data/downloads",
 *   readableDirs: ["data/raw", "data/downloads", "data/external"],
 *   log: createLogger({ name: "ingest" }),
 * });
 * console.log(manifest.files.train.accepted); // 1000
 * ```
 */
export async function ingest(options: IngestOptions): Promise<IngestResult> {
  const started = performance.now();
  const { source, rawDir, log } = options;
  const plan = source.kind === "path"
    ? await planPath(source.path, options)
    : source.kind === "url"
    ? planUrl(source.url, options)
    : source.kind === "kaggle"
    ? planKaggle(source, options)
    : undefined;
  const key = sourceKey(source, plan, options.limit);
  // One ingest at a time per raw folder: a second run would mix its rows into the same outputs.
  await using _lock = await lockOutputs(rawDir, { stage: "ingest", log, signal: options.signal });

  if (!options.force) {
    const current = await isUpToDate(rawDir, key);
    if (current) {
      log.info(
        `${rawDir} is up to date with source ${sourceLabel(source)} (ingested ${current.createdAt}); ` +
          "pass --force to ingest again",
      );
      return { upToDate: true, manifest: current };
    }
  }

  let written: Written;
  let manifest: IngestManifest;
  try {
    // Downloads come first: data/raw gets no temporary file until there is data.
    await plan?.prepare();
    ({ written, manifest } = await writeOutputs(source, plan, options, (done) => ({
      version: 1,
      source: describeSource(source, plan),
      key,
      limit: options.limit ?? null,
      createdAt: new Date().toISOString(),
      durationMs: Math.round(performance.now() - started),
      files: done.files,
      rejects: {
        file: REJECTS_FILE,
        rows: done.rejectedRows,
        bytes: done.rejects.bytes,
        sha256: done.rejects.sha256,
      },
    })));
  } finally {
    await plan?.close();
  }
  const { files, rejectedRows } = written;
  await plan?.cleanup();
  for (const file of DATASET_FILES) {
    log.info(
      `wrote ${join(rawDir, `${file}.csv`)} (${formatBytes(files[file].bytes)}, ${
        files[file].accepted
      } rows)`,
    );
  }
  if (rejectedRows > 0) log.info(`wrote ${join(rawDir, REJECTS_FILE)} (${rejectedRows} rejected lines)`);
  return { upToDate: false, manifest };
}
