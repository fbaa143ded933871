/**
 * Worker entry of {@linkcode runLinearTrialInWorker}: receives one {@linkcode LinearTrialRequest}, runs
 * it, posts the result back (the engine file transferred, not copied) and waits to be terminated.
 *
 * The message handler is installed only inside a worker, so importing this module elsewhere does nothing.
 *
 * @module
 */
import { type LinearTrialRequest, runLinearTrial, type TrialWorkerResponse } from "./trial.ts";

/** The part of a dedicated worker's global scope used here (the default type library is the window's). */
interface WorkerScope {
  onmessage: ((event: MessageEvent<LinearTrialRequest>) => void) | null;
  postMessage(message: TrialWorkerResponse, transfer?: Transferable[]): void;
}

/** Runs one request and posts its outcome; exported for tests. */
export async function handleTrialRequest(
  request: LinearTrialRequest,
  post: WorkerScope["postMessage"],
): Promise<void> {
  try {
    const result = await runLinearTrial(
      request,
      undefined,
      (progress) => post({ type: "progress", progress }),
    );
    post({ type: "done", result }, [result.engineBytes.buffer]);
  } catch (error) {
    const e = error instanceof Error ? error : new Error(String(error));
    post({ type: "error", message: e.message, name: e.name });
  }
}

if (typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope === "function") {
  const scope = globalThis as unknown as WorkerScope;
  scope.onmessage = (event) => {
    handleTrialRequest(event.data, (message, transfer) => scope.postMessage(message, transfer));
  };
}
