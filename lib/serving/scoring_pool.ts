/**
 * Scoring a batch of reviews on several threads. The server's thread handles HTTP, parsing and
 * serialising; scoring a review (tokenizing, hashing, the model) is most of a batch's cost and is the same
 * work for every review, so a batch is cut into one slice per thread: the workers score theirs while the
 * server's thread scores its own, and the answers are put back in order. It pays only where cores are idle:
 * on the busy 2-core benchmark machine two threads ran no faster than one, so `serve` starts none by
 * default (`--score-workers`). Single reviews are always scored on the server's thread, since handing them
 * over costs more than scoring them.
 *
 * Each worker loads its own copy of the model from the model's files when it is loaded or reloaded, and
 * keeps the previous one too, so a request that started before a reload is scored by the model it
 * started with. Should a worker fail or no longer hold the model, its slice is scored on the server's
 * thread: the answer is the same, only slower.
 *
 * @module
 */
import type { SentimentModel } from "../models/artifact.ts";
import type { PredictionLike, ReviewPredictor } from "./model_provider.ts";
import type { ScoringAnswer, ScoringRequest } from "./scoring_worker.ts";

/** Options of {@linkcode ScoringPool}. */
export interface ScoringPoolOptions {
  /** Worker threads; 0 scores everything on the calling thread. */
  workers: number;
  /** Smallest batch worth splitting. @default {32} */
  minBatch?: number;
}

/** A review as the scorer takes it. */
type Review = { title: string; text: string };

/** A {@linkcode ReviewPredictor} that also scores batches on the pool's threads. */
export interface BatchPredictor extends ReviewPredictor {
  /** Scores many reviews, in order, on every thread of the pool. */
  predictBatch(reviews: readonly Review[]): Promise<PredictionLike[]>;
}

/**
 * Worker threads that score slices of batches.
 *
 * @example Usage
 * ```ts ignore
 * import { ScoringPool } from "./scoring_pool.ts";
 * using pool = new ScoringPool({ workers: 1 });
 * const predictor = await pool.prepare(files, model); // model = loadModel(files, ENGINES)
 * await predictor.predictBatch(reviews);
 * ```
 */
export class ScoringPool implements Disposable {
  #workers: Worker[] = [];
  #waiting = new Map<number, (answer: ScoringAnswer) => void>();
  #nextId = 0;
  #nextModel = 0;
  #minBatch: number;

  constructor(options: ScoringPoolOptions) {
    this.#minBatch = Math.max(2, options.minBatch ?? 32);
    for (let i = 0; i < options.workers; i++) this.#workers.push(this.#start());
  }

  /** Number of worker threads. */
  get size(): number {
    return this.#workers.length;
  }

  /**
   * Loads a model in every worker and returns a predictor that scores batches on all threads.
   *
   * @param files The model's files (as downloaded), which each worker loads.
   * @param model The same model, loaded on this thread.
   * @throws When a worker cannot load the files.
   */
  async prepare(files: Map<string, Uint8Array>, model: SentimentModel): Promise<BatchPredictor> {
    const id = this.#nextModel++;
    const entries = [...files];
    const answers = await Promise.all(
      this.#workers.map((worker) => this.#ask(worker, { kind: "load", id: 0, model: id, files: entries })),
    );
    const failed = answers.find((answer) => !answer.ok);
    if (failed && !failed.ok) throw new Error(`a scoring worker could not load the model: ${failed.message}`);
    return {
      predict: (review) => model.predict(review),
      predictBatch: (reviews) => this.#scoreBatch(id, model, reviews),
      explainable: model.explainable,
      explain: (review) => model.explain(review),
    };
  }

  /** Stops the workers. */
  close(): void {
    for (const worker of this.#workers) worker.terminate();
    this.#workers = [];
    for (const resolve of this.#waiting.values()) {
      resolve({ id: -1, ok: false, message: "the pool was closed" });
    }
    this.#waiting.clear();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async #scoreBatch(
    modelId: number,
    model: SentimentModel,
    reviews: readonly Review[],
  ): Promise<PredictionLike[]> {
    const threads = this.#workers.length + 1;
    if (reviews.length < this.#minBatch || threads === 1) {
      return reviews.map((review) => model.predict(review));
    }
    const size = Math.ceil(reviews.length / threads);
    // Slices 1.. go to the workers; slice 0 is scored here while they work.
    const pending = this.#workers.map((worker, w) => {
      const start = (w + 1) * size;
      const slice = reviews.slice(start, start + size).map((r): [string, string] => [r.title, r.text]);
      return slice.length === 0
        ? Promise.resolve({ start, count: 0, answer: undefined })
        : this.#ask(worker, { kind: "score", id: 0, model: modelId, reviews: slice })
          .then((answer) => ({ start, count: slice.length, answer }));
    });
    const predictions = new Array<PredictionLike>(reviews.length);
    for (let i = 0; i < Math.min(size, reviews.length); i++) predictions[i] = model.predict(reviews[i]!);
    for (const { start, count, answer } of await Promise.all(pending)) {
      for (let i = 0; i < count; i++) {
        predictions[start + i] = answer?.ok && answer.probabilities
          ? model.predictionFor(answer.probabilities[i]!)
          : model.predict(reviews[start + i]!);
      }
    }
    return predictions;
  }

  #ask(worker: Worker, request: ScoringRequest): Promise<ScoringAnswer> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      worker.postMessage({ ...request, id });
    });
  }

  #start(): Worker {
    const worker = new Worker(new URL("./scoring_worker.ts", import.meta.url), { type: "module" });
    worker.onmessage = (event: MessageEvent<ScoringAnswer>) => {
      const resolve = this.#waiting.get(event.data.id);
      this.#waiting.delete(event.data.id);
      resolve?.(event.data);
    };
    worker.onerror = (event) => {
      // Errors are caught in the worker; this is a crash. What waits is scored on the calling thread, and
      // a fresh worker takes its place (it holds no model, so until the next load its slices fall back too).
      event.preventDefault();
      for (const [id, resolve] of this.#waiting) resolve({ id, ok: false, message: event.message });
      this.#waiting.clear();
      worker.terminate();
      const index = this.#workers.indexOf(worker);
      if (index >= 0) this.#workers[index] = this.#start();
    };
    return worker;
  }
}
