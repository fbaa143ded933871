/**
 * Preprocessing: a review CSV in, a processed file out (`lib/data/processed_data.ts`), through the one tokenizer.
 *
 * The main thread reads and validates the CSV (`readReviews`) and hashes its bytes on the way; chunks of
 * {@linkcode DEFAULT_CHUNK_SIZE} reviews go to a pool of workers that tokenize them
 * (`preprocess_worker.ts`), and to the main thread itself when every worker is busy; the main thread writes
 * the results back in source order. Only a few chunks are ever in flight, so memory stays flat at any input
 * size, and reading never runs ahead of tokenizing by more than that.
 *
 * Every source line ends up either as a row of the `.tsv` or as a line of the `.rejects.csv`
 * (`read = rows + rejected`): lines `readReviews` rejects (bad CSV, bad label, empty) and reviews whose text
 * yields no token at all (nothing a model could learn from).
 *
 * A run is skipped when the existing meta file says the output was made from a source with the same
 * SHA-256, of the same split, by a tokenizer with the same info, and the output still has the size the
 * meta recorded.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { basename, dirname } from "node:path";
import { AtomicTextWriter, fileSize } from "../core/atomic_file.ts";
import { lockOutputs } from "../core/lock.ts";
import { ensureFreeSpace } from "../core/os_error.ts";
import { formatRejectedRaw, quoteCsvField } from "../data/csv.ts";
import { PipelineError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import {
  formatProcessedLine,
  type ProcessedMeta,
  processedMetaPath,
  processedRejectsPath,
  type ProcessedSplit,
  ProcessedWriter,
  readProcessedMeta,
} from "../data/processed_data.ts";
import { createProgress } from "../core/progress.ts";
import type { Polarity } from "../data/review.ts";
import { fileStream, readReviews, type ReadStats, type RejectedRow } from "../data/review_reader.ts";
import { sameTokenizer, tokenizeReview, tokenizerInfo } from "./tokenizer.ts";
import { openInput } from "../core/read_guard.ts";

/**
 * Reviews per chunk sent to a worker: big enough to amortise messaging (~15 ms of work each), small enough
 * that a chunk rarely outlives a young-generation GC. Measured peak RSS on 375k real reviews, main thread +
 * 1 worker: 218 MB with 500, 269 MB with 2,000, 370 MB with 5,000, for the same CPU time.
 */
export const DEFAULT_CHUNK_SIZE = 500;

/** Sources smaller than this are tokenized on the main thread: starting workers would take longer. */
export const INLINE_MAX_BYTES: number = 2 << 20;

/** Reason recorded in the rejects file for a review without any token. */
export const NO_TOKENS_REASON = "no tokens after cleaning";

/** A chunk of reviews as sent to a worker (plain arrays: cheap to structured-clone). */
export interface ReviewChunk {
  polarities: Polarity[];
  titles: string[];
  texts: string[];
}

/** A tokenized chunk. */
export interface TokenizedChunk {
  /** Processed lines of the reviews that had tokens, in order. */
  lines: string;
  /** Rows per label in `lines`. */
  labels: { 1: number; 2: number };
  /** Indexes (within the chunk) of reviews that had no token; they are not in `lines`. */
  empty: number[];
}

/** Message to a tokenizer worker. */
export interface WorkerRequest {
  id: number;
  chunk: ReviewChunk;
  /**
   * The worker's count of finished chunks, shared with the pool: the worker adds 1 as soon as a chunk is
   * done, before its answer is even sent, so the main thread knows how much work a worker really has left.
   */
  finished: Int32Array;
}

/** Message from a tokenizer worker. */
export type WorkerResponse = { id: number; result: TokenizedChunk } | { id: number; error: string };

/**
 * Tokenizes a chunk of reviews into processed lines. Runs in the workers and, for small inputs, inline.
 *
 * @param chunk Reviews as parallel arrays.
 * @returns The lines, label counts and the indexes of reviews without tokens.
 *
 * @example Usage
 * ```ts
 * import { tokenizeChunk } from "./preprocess.ts";
 * tokenizeChunk({ polarities: [2, 1], titles: ["Great", ""], texts: ["Works", "..."] });
 * // { lines: "2\tgreat works _lexpos_\n", labels: { 1: 0, 2: 1 }, empty: [1] }
 * ```
 */
export function tokenizeChunk(chunk: ReviewChunk): TokenizedChunk {
  const lines: string[] = [];
  const labels = { 1: 0, 2: 0 };
  const empty: number[] = [];
  for (let i = 0; i < chunk.polarities.length; i++) {
    const polarity = chunk.polarities[i]!;
    const tokens = tokenizeReview({ title: chunk.titles[i]!, text: chunk.texts[i]! });
    if (tokens.length === 0) {
      empty.push(i);
      continue;
    }
    lines.push(formatProcessedLine(polarity, tokens));
    labels[polarity] += 1;
  }
  return { lines: lines.join(""), labels, empty };
}

/** Tokenizes chunks somewhere: in workers or inline. */
interface ChunkRunner {
  /** How many workers run chunks (0 = inline). */
  readonly workers: number;
  run(chunk: ReviewChunk): Promise<TokenizedChunk>;
  close(): void;
}

function inlineRunner(): ChunkRunner {
  return {
    workers: 0,
    run: (chunk) => Promise.resolve(tokenizeChunk(chunk)),
    close() {},
  };
}

/**
 * A pool of tokenizer workers. Each chunk goes to the least busy worker; when every worker already has a
 * chunk queued behind the one it is tokenizing, the main thread tokenizes the chunk itself, so its spare
 * time (reading and writing take little) is used without ever starving a worker. Every chunk has its
 * own promise, so awaiting them in dispatch order gives the results in source order. A failed worker fails
 * every pending chunk.
 *
 * How busy a worker is comes from a counter in shared memory that the worker bumps when it finishes a
 * chunk, not from its answers: those are delivered only when the main thread's event loop turns, which it
 * does not while it reads and tokenizes, so a worker looked busy long after it had gone idle. Measured on
 * 375k real reviews with one worker: the main thread used to tokenize 64% of the chunks (the worker 36%)
 * at 39,800 reviews/s; with the counter the split is even.
 */
function workerPool(size: number): ChunkRunner {
  const url = new URL("./preprocess_worker.ts", import.meta.url).href;
  interface Slot {
    worker: Worker;
    /** Chunks sent to the worker. */
    posted: number;
    /** Chunks the worker has finished (shared memory, written by the worker). */
    finished: Int32Array;
  }
  const pending = new Map<
    number,
    { resolve: (r: TokenizedChunk) => void; reject: (e: Error) => void }
  >();
  let failure: Error | undefined;
  let nextId = 0;

  const fail = (error: Error): void => {
    failure ??= error;
    for (const { reject } of pending.values()) reject(failure);
    pending.clear();
  };

  const slots: Slot[] = Array.from({ length: size }, () => {
    const slot: Slot = {
      worker: new Worker(url, { type: "module" }),
      posted: 0,
      finished: new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT)),
    };
    slot.worker.onmessage = (event: MessageEvent<WorkerResponse>) => {
      const message = event.data;
      const waiter = pending.get(message.id);
      if (!waiter) return;
      pending.delete(message.id);
      if ("error" in message) waiter.reject(new Error(`tokenizer worker failed: ${message.error}`));
      else waiter.resolve(message.result);
    };
    slot.worker.onerror = (event: ErrorEvent) => {
      // Handled here: unhandled, a worker error would also kill the whole process with a stack trace.
      event.preventDefault();
      fail(new PipelineError(`tokenizer worker failed: ${event.message.split("\n")[0]}`));
    };
    return slot;
  });

  return {
    workers: size,
    run(chunk) {
      if (failure) return Promise.reject(failure);
      const queued = (candidate: Slot) => candidate.posted - Atomics.load(candidate.finished, 0);
      let slot = slots[0]!;
      for (const other of slots) if (queued(other) < queued(slot)) slot = other;
      // Two chunks per worker: one being tokenized and one queued, so it never waits for the main thread.
      if (queued(slot) >= 2) {
        try {
          return Promise.resolve(tokenizeChunk(chunk));
        } catch (error) {
          return Promise.reject(error);
        }
      }
      const id = nextId++;
      slot.posted += 1;
      const promise = new Promise<TokenizedChunk>((resolve, reject) => pending.set(id, { resolve, reject }));
      slot.worker.postMessage({ id, chunk, finished: slot.finished } satisfies WorkerRequest);
      return promise;
    },
    close() {
      for (const { worker } of slots) worker.terminate();
      fail(new Error("tokenizer pool closed"));
    },
  };
}

/**
 * Processed bytes per source byte, with a margin: the tokens' prefixes and lexicon tokens make a processed
 * file larger than its CSV (measured 1.13 on real reviews, 1.17 on generated ones).
 */
export const PROCESSED_SIZE_RATIO = 1.25;

/** Options of {@linkcode preprocessFile}. */
export interface PreprocessOptions {
  /** The review CSV. */
  source: string;
  /** The `.tsv` to write; its meta and rejects files go beside it. */
  output: string;
  /** Rebuild even when the output is up to date. @default {false} */
  force?: boolean;
  /**
   * Refuse before writing when the output's device has less free space than the source's size times
   * {@linkcode PROCESSED_SIZE_RATIO} (`force` does not turn this off). @default {true}
   */
  checkSpace?: boolean;
  /**
   * Tokenizer worker threads besides the main thread, which reads, writes, and tokenizes whenever every
   * worker has a chunk queued; 0 tokenizes on the main thread only.
   * @default {0 under 2 MB, else one less than the CPU cores (at least 1)}
   */
  workers?: number;
  /** Reviews per chunk. @default {DEFAULT_CHUNK_SIZE} */
  chunkSize?: number;
  /** Aborting it stops the run and removes the partial outputs. */
  signal?: AbortSignal;
  /**
   * SHA-256 the source must have (a batch's checksum in the split manifest). A source that differs, such as
   * a batch left over from an interrupted or older split, is refused and nothing is written.
   */
  expectedSha256?: string;
  /**
   * The split the source batch belongs to, recorded in the meta file; an output recorded under another
   * split (or none) is rebuilt.
   */
  split?: ProcessedSplit;
  /** Where to log what happened. */
  log?: Logger;
  /** Progress display. @default {"tty" on a terminal, else "lines"} */
  progress?: "tty" | "lines" | "off";
}

/** What {@linkcode preprocessFile} did. */
export interface PreprocessResult {
  /** The `.tsv` path. */
  output: string;
  /** The meta file path. */
  meta: string;
  /** The rejects file path. */
  rejects: string;
  /** Source lines read (from the meta when skipped). */
  read: number;
  /** Rows in the output. */
  rows: number;
  /** Source lines rejected. */
  rejected: number;
  /** True when the output was up to date and nothing was written. */
  skipped: boolean;
  /** Wall time of this call. */
  seconds: number;
  /** SHA-256 of the source. */
  sourceSha256: string;
  /** Workers used (0 = main thread). */
  workers: number;
}

/** SHA-256 of a file, streamed. */
async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  const buffer = new Uint8Array(1 << 20);
  while (true) {
    const read = await file.read(buffer);
    if (read === null) break;
    hash.update(buffer.subarray(0, read));
  }
  return hash.digest("hex");
}

/**
 * Returns the existing meta when the output is up to date with `source` (same source SHA-256, same
 * tokenizer info, output size as recorded), else a reason why not.
 */
async function checkUpToDate(
  source: string,
  output: string,
  sourceBytes: number,
  split: ProcessedSplit | undefined,
): Promise<{ meta: ProcessedMeta } | { reason: string }> {
  if ((await fileSize(processedMetaPath(output))) === undefined) return { reason: "no meta file" };
  let meta: ProcessedMeta;
  try {
    meta = await readProcessedMeta(output);
  } catch (error) {
    if (error instanceof PipelineError) return { reason: "unreadable meta file" };
    throw error;
  }
  if (!sameTokenizer(meta.tokenizer, tokenizerInfo())) return { reason: "tokenizer changed" };
  if (meta.split?.sourceSha256 !== split?.sourceSha256 || meta.split?.index !== split?.index) {
    return { reason: "split changed" };
  }
  if ((await fileSize(output)) !== meta.output?.bytes) return { reason: "output missing or changed" };
  // Size first: a different size settles it without reading the whole source.
  if (meta.sourceBytes !== sourceBytes) return { reason: "source changed" };
  if ((await sha256File(source)) !== meta.sourceSha256) return { reason: "source changed" };
  return { meta };
}

interface InFlight {
  /** Set once `result` settled, so the writer can take finished chunks without waiting. */
  settled: boolean;
  /** Source line number of each review of the chunk. */
  lineNumbers: number[];
  /** Raw source line of each review, kept for the rejects file. */
  raws: string[];
  /** Lines `readReviews` rejected while this chunk was being filled. */
  rejects: RejectedRow[];
  result: Promise<TokenizedChunk>;
}

/**
 * Preprocesses one review CSV into a processed file, its meta file and its rejects file, all written
 * atomically; skips the work when the output is up to date.
 *
 * @param options Source, output, force, workers, signal, log, progress.
 * @returns Counts, paths and whether the run was skipped.
 * @throws {PipelineError} When the source does not exist or a worker fails.
 *
 * @example Usage
 * ```ts ignore
 * import { preprocessFile } from "./preprocess.ts";
 * const result = await preprocessFile({ source: "data/raw/test.csv", output: "data/processed/test.tsv" });
 * console.log(result.rows, result.rejected, result.skipped);
 * ```
 */
export async function preprocessFile(options: PreprocessOptions): Promise<PreprocessResult> {
  const started = performance.now();
  const { source, output, signal, log } = options;
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) {
    throw new RangeError(`chunkSize must be a positive integer, got ${chunkSize}`);
  }
  const sourceBytes = await fileSize(source);
  if (sourceBytes === undefined) throw new PipelineError(`${source} not found`);
  const paths = { output, meta: processedMetaPath(output), rejects: processedRejectsPath(output) };

  // One run per output file: two runs of the same batch would write the same outputs.
  await using _lock = await lockOutputs(dirname(output), {
    stage: "preprocess",
    lockName: `${basename(output)}.lock`,
    what: output,
    outputs: [basename(paths.output), basename(paths.meta), basename(paths.rejects)],
    log,
    signal,
  });
  if (!options.force) {
    const check = await checkUpToDate(source, output, sourceBytes, options.split);
    if ("meta" in check) {
      const { meta } = check;
      log?.info(`${output} is up to date with ${source}; skipping (use --force to rebuild)`);
      return {
        ...paths,
        read: meta.read,
        rows: meta.rows,
        rejected: meta.rejected,
        skipped: true,
        seconds: (performance.now() - started) / 1000,
        sourceSha256: meta.sourceSha256,
        workers: 0,
      };
    }
    log?.debug(`rebuilding ${output}`, { reason: check.reason });
  }

  if (options.checkSpace !== false) {
    await ensureFreeSpace(
      dirname(output),
      Math.ceil(sourceBytes * PROCESSED_SIZE_RATIO),
      `${PROCESSED_SIZE_RATIO} times the size of ${source}`,
    );
  }
  const workers = options.workers ??
    (sourceBytes < INLINE_MAX_BYTES ? 0 : Math.max(1, (navigator.hardwareConcurrency || 1) - 1));
  if (!Number.isSafeInteger(workers) || workers < 0) {
    throw new RangeError(`workers must be a non-negative integer, got ${workers}`);
  }
  // Finished chunks are written as soon as they reach the head of the queue; the main thread waits for an
  // unfinished head only when this many chunks are in flight. Until then it keeps reading (and tokenizing
  // when the workers are busy), so it never idles behind one slow chunk. Enough to keep every thread busy,
  // few enough (a few MB) for flat memory.
  const maxInFlight = 4 * (workers + 1);

  await using out = await ProcessedWriter.create(output);
  await using rejectsOut = await AtomicTextWriter.create(paths.rejects);
  rejectsOut.write("line,reason,raw\n");
  let rejected = 0;
  const writeReject = (row: RejectedRow): Promise<void> | undefined => {
    rejected += 1;
    return rejectsOut.write(`${row.line},${quoteCsvField(row.reason)},${formatRejectedRaw(row.raw)}\n`);
  };

  const progress = createProgress(`preprocess ${basename(source)}`, {
    unit: "reviews",
    mode: options.progress,
  });
  const runner = workers === 0 ? inlineRunner() : workerPool(workers);
  const hash = createHash("sha256");
  using file = await openInput(source);
  // Hashing the bytes as they stream past records exactly what was read, without a second pass.
  const bytes = fileStream(file, { onChunk: (chunk) => hash.update(chunk) });

  const queue: InFlight[] = [];
  let chunk: ReviewChunk = { polarities: [], titles: [], texts: [] };
  let readerRejects: RejectedRow[] = [];
  let lineNumbers: number[] = [];
  let raws: string[] = [];

  const dispatch = (): void => {
    const result = runner.run(chunk);
    const entry: InFlight = { settled: false, lineNumbers, raws, rejects: readerRejects, result };
    // Also marks the promise handled; the real handling is the `await` in drain(), in order.
    result.then(() => entry.settled = true, () => entry.settled = true);
    queue.push(entry);
    chunk = { polarities: [], titles: [], texts: [] };
    lineNumbers = [];
    raws = [];
    readerRejects = [];
  };

  const drain = async (): Promise<void> => {
    const done = queue.shift()!;
    const tokenized = await done.result;
    const written = out.writeFormatted(tokenized.lines, tokenized.labels);
    if (written) await written;
    // Merge the reader's rejects with the chunk's empty reviews, so the rejects file is in line order.
    const empty = tokenized.empty.map((i) => ({
      line: done.lineNumbers[i]!,
      reason: NO_TOKENS_REASON,
      raw: done.raws[i]!,
    }));
    const rows = empty.length === 0
      ? done.rejects
      : [...done.rejects, ...empty].sort((a, b) => a.line - b.line);
    for (const row of rows) {
      const pending = writeReject(row);
      if (pending) await pending;
    }
    progress.update(out.rows + rejected);
  };

  let stats: ReadStats;
  try {
    const reader = readReviews(bytes, {
      signal,
      onReject: (row) => void readerRejects.push(row),
    });
    while (true) {
      const next = await reader.next();
      if (next.done) {
        stats = next.value;
        break;
      }
      const { line, review, raw } = next.value;
      chunk.polarities.push(review.polarity);
      chunk.titles.push(review.title);
      chunk.texts.push(review.text);
      lineNumbers.push(line);
      raws.push(raw);
      if (chunk.polarities.length >= chunkSize) {
        dispatch();
        while (queue.length > 0 && (queue[0]!.settled || queue.length >= maxInFlight)) await drain();
      }
    }
    if (chunk.polarities.length > 0 || readerRejects.length > 0) dispatch();
    while (queue.length > 0) await drain();
  } finally {
    runner.close();
    progress.finish();
  }
  signal?.throwIfAborted();

  if (stats.read !== out.rows + rejected) {
    // Every line is either a row or a reject; anything else is a bug here, not bad data.
    throw new Error(
      `accounting error: read ${stats.read} lines but wrote ${out.rows} rows and ${rejected} rejects`,
    );
  }
  const sourceSha256 = hash.digest("hex");
  if (options.expectedSha256 !== undefined && options.expectedSha256 !== sourceSha256) {
    throw new PipelineError(
      `${source} does not match the checksum in its split manifest (left from an interrupted or older split?); ` +
        `rerun "deno task split_batches --force"`,
    );
  }
  const meta = await out.commit({
    source,
    sourceSha256,
    sourceBytes: stats.bytes,
    read: stats.read,
    rejected,
    ...(options.split !== undefined ? { split: options.split } : {}),
    tokenizer: tokenizerInfo(),
  }, [rejectsOut]);
  const seconds = (performance.now() - started) / 1000;
  log?.info(`wrote ${output}`, {
    rows: meta.rows,
    rejected,
    seconds: Number(seconds.toFixed(2)),
    reviews_per_s: Math.round(stats.read / seconds),
    workers: runner.workers,
  });
  if (rejected > 0) log?.warn(`${rejected} source lines rejected; see ${paths.rejects}`);
  return {
    ...paths,
    read: stats.read,
    rows: meta.rows,
    rejected,
    skipped: false,
    seconds,
    sourceSha256,
    workers: runner.workers,
  };
}
