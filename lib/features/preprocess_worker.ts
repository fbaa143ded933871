/**
 * A tokenizer worker of the preprocess pool (`preprocess.ts`): receives a {@linkcode WorkerRequest}, answers
 * with a {@linkcode WorkerResponse} carrying the chunk's processed lines. Only ever loaded with
 * `new Worker(...)`; registering the message handler is its whole purpose, so nothing else imports it.
 *
 * @module
 */
import { tokenizeChunk, type WorkerRequest, type WorkerResponse } from "./preprocess.ts";

// The worker global scope, typed by hand: this file is type-checked together with window-scope modules.
const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerResponse): void;
};

scope.onmessage = (event) => {
  const { id, chunk, finished } = event.data;
  let response: WorkerResponse;
  try {
    response = { id, result: tokenizeChunk(chunk) };
  } catch (error) {
    // Sent back rather than thrown, so the pool can name the failing chunk in one line.
    response = { id, error: error instanceof Error ? error.message : String(error) };
  }
  // Before the answer: the pool reads this counter to decide where the next chunk goes.
  Atomics.add(finished, 0, 1);
  scope.postMessage(response);
};
