/**
 * Loading a model without stalling the requests being served. `loadModel` verifies every file's SHA-256
 * and decodes the engine synchronously; for the linear model that means writing its rows into an 80 MB
 * table of fresh memory, and each first write to a page is a page fault: about 60 ms on a busy 2-core
 * machine, during which a server on the same thread answers nothing (its p99 rose fourfold during
 * reloads). Here a worker does that work and transfers the decoded table back, so the server's thread only
 * builds the tokenizer and wraps the arrays. The worker is started once and kept: starting one costs the
 * calling thread about 5 ms. Engines whose codec cannot move between threads (no `pack`/`unpack`, e.g. the
 * forest) are loaded on the calling thread, as before.
 *
 * @module
 */
import { ENGINES } from "../models/engines.ts";
import { PipelineError } from "../core/errors.ts";
import { loadModel, type SentimentModel } from "../models/artifact.ts";
import type { LoadAnswer, LoadRequest } from "./background_load_worker.ts";

function engineName(files: Map<string, Uint8Array>): string | undefined {
  try {
    return JSON.parse(new TextDecoder().decode(files.get("model.json"))).engine;
  } catch {
    return undefined; // loadModel says what is wrong with it
  }
}

/**
 * Loads models like `loadModel(files, ENGINES)`, with the checksums and the engine's decoding done on a
 * worker thread when the engine can move between threads.
 *
 * @example Usage
 * ```ts ignore
 * import { BackgroundModelLoader } from "./background_load.ts";
 * using loader = new BackgroundModelLoader();
 * const model = await loader.load(files);
 * model.predict({ title: "Great", text: "Works well" });
 * ```
 */
export class BackgroundModelLoader implements Disposable {
  #worker: Worker | undefined;
  #next = 0;
  #waiting = new Map<number, { resolve: (answer: LoadAnswer) => void; reject: (error: Error) => void }>();

  /**
   * Loads a model.
   *
   * @param files Paths relative to `model/` → bytes, as downloaded.
   * @returns The model; the same errors as `loadModel(files, ENGINES)`.
   */
  async load(files: Map<string, Uint8Array>): Promise<SentimentModel> {
    const codec = ENGINES.find((candidate) => candidate.name === engineName(files));
    if (!codec?.pack || !codec.unpack) return loadModel(files, ENGINES);
    const answer = await this.#ask(files);
    if (!answer.ok) throw answer.expected ? new PipelineError(answer.message) : new Error(answer.message);
    return loadModel(files, ENGINES, { decoded: codec.unpack(answer.state) });
  }

  /** Stops the worker; a later `load` starts a new one. */
  close(): void {
    this.#worker?.terminate();
    this.#worker = undefined;
    for (const { reject } of this.#waiting.values()) reject(new Error("the model loader was closed"));
    this.#waiting.clear();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #ask(files: Map<string, Uint8Array>): Promise<LoadAnswer> {
    const worker = this.#worker ??= this.#start();
    const id = this.#next++;
    return new Promise<LoadAnswer>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      // Structured clone copies the files: the caller keeps its own.
      worker.postMessage({ id, files: [...files] } satisfies LoadRequest);
    });
  }

  #start(): Worker {
    const worker = new Worker(new URL("./background_load_worker.ts", import.meta.url), { type: "module" });
    worker.onmessage = (event: MessageEvent<LoadAnswer & { id: number }>) => {
      const waiting = this.#waiting.get(event.data.id);
      this.#waiting.delete(event.data.id);
      waiting?.resolve(event.data);
    };
    worker.onerror = (event) => {
      // An error the worker did not catch (it catches loading errors): fail what waits, start afresh.
      event.preventDefault();
      const error = new Error(`the model loading worker failed: ${event.message}`);
      for (const { reject } of this.#waiting.values()) reject(error);
      this.#waiting.clear();
      worker.terminate();
      if (this.#worker === worker) this.#worker = undefined;
    };
    // An idle loader must not keep a finished process alive.
    (worker as Worker & { unref?: () => void }).unref?.();
    return worker;
  }
}
