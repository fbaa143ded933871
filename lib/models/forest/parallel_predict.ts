/**
 * Batch scoring on all cores: the forest is serialised once into shared memory, each worker loads it
 * without copying, and the rows are handed out in chunks to whichever worker is free. Walking a deep
 * forest costs ~100-300 ns per tree per review (measured), so scoring 400k reviews with 100 trees is
 * CPU-bound and scales with cores.
 *
 * @module
 */
import { type Forest, type WorkerRequest, type WorkerResponse, workerStartError } from "./forest.ts";
import { serializeForestShared } from "./model_format.ts";
import type { SparseDataset } from "./sparse_dataset.ts";

/** Options of {@linkcode predictInWorkers}. */
export interface PredictOptions {
  /** Workers; 0 or 1 scores on the calling thread. @default {navigator.hardwareConcurrency} */
  workers?: number;
  /** Rows per chunk handed to a worker. @default {8192} */
  chunkRows?: number;
  /** Called after each chunk with the number of rows done. */
  onProgress?: (done: number) => void;
  /** Aborting terminates the workers and rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Probability of the positive class for every row of a dataset, computed in Web Workers. The results equal
 * {@linkcode Forest.predictProbaBatch} bit for bit.
 *
 * @param forest The forest.
 * @param data Rows to score, built with `SparseDatasetBuilder` (shared memory); labels are ignored.
 * @param options Workers, progress, cancellation.
 * @returns One probability per row.
 *
 * @example Usage
 * ```ts ignore
 * import { predictInWorkers } from "./parallel_predict.ts";
 * const probabilities = await predictInWorkers(forest, testSet, { onProgress: (n) => progress.update(n) });
 * ```
 */
export async function predictInWorkers(
  forest: Forest,
  data: SparseDataset,
  options: PredictOptions = {},
): Promise<Float64Array> {
  const chunkRows = options.chunkRows ?? 8192;
  const chunks = Math.ceil(data.numRows / chunkRows);
  const workers = Math.min(chunks, options.workers ?? navigator.hardwareConcurrency ?? 1);
  options.signal?.throwIfAborted();
  if (workers <= 1) return forest.predictProbaBatch(data, options.onProgress);

  const model = serializeForestShared(forest).buffer;
  const out = new Float64Array(new SharedArrayBuffer(8 * data.numRows));
  const buffers = data.buffers();
  const pool: Worker[] = [];
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  let next = 0;
  let done = 0;
  const dispatch = (worker: Worker) => {
    if (next >= data.numRows) return;
    const start = next;
    next = Math.min(data.numRows, next + chunkRows);
    const request: WorkerRequest = { type: "score", model, data: buffers, out: out.buffer, start, end: next };
    worker.postMessage(request);
  };
  const onAbort = () => reject(options.signal!.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (let w = 0; w < workers; w++) {
      const worker = new Worker(new URL("./forest_worker.ts", import.meta.url), { type: "module" });
      pool.push(worker);
      worker.onmessage = (event: MessageEvent<WorkerResponse>) => {
        const message = event.data;
        if (message.type === "error") {
          reject(new Error(`forest worker failed: ${message.message}`));
          return;
        }
        if (message.type !== "scored") return;
        done += message.end - message.start;
        options.onProgress?.(done);
        if (done === data.numRows) resolve();
        else dispatch(worker);
      };
      worker.onerror = (event: ErrorEvent) => {
        event.preventDefault(); // report it through the promise instead of crashing the process
        reject(workerStartError(event));
      };
      dispatch(worker);
    }
    await promise;
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    for (const worker of pool) worker.terminate();
  }
  // A plain copy: callers may keep it for long, and shared memory cannot be transferred or detached.
  return out.slice();
}
