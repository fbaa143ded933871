/**
 * One tuning trial of the linear model: train on the reviews a hold-out split keeps, score the reviews it
 * holds out. {@linkcode runLinearTrial} runs in the calling thread; {@linkcode runLinearTrialInWorker}
 * runs it in a Web Worker (`trial_worker.ts`), which is how a search keeps every core busy while each
 * trial stays single-threaded and deterministic.
 *
 * @module
 */
import { PipelineError } from "../../core/errors.ts";
import { deserializeLinear, serializeLinear } from "./model_format.ts";
import {
  type HoldoutSplit,
  type LinearParams,
  type LinearProgress,
  type LinearScore,
  scoreLinear,
  type TrainingFile,
  trainLinear,
} from "./trainer.ts";

/** What a trial needs; plain data, so it can be posted to a worker. */
export interface LinearTrialRequest {
  files: TrainingFile[];
  params: LinearParams;
  holdout: HoldoutSplit;
  /** Engine file of a model to continue training (a warm start). */
  initial?: Uint8Array;
}

/** What a trial produced. */
export interface LinearTrialResult {
  /** Score on the held-out reviews. */
  validation: LinearScore;
  /** Training reviews per epoch. */
  rows: number;
  positives: number;
  epochLosses: number[];
  /** Seconds spent training (not scoring). */
  seconds: number;
  /** The trained model's engine file. */
  engineBytes: Uint8Array<ArrayBuffer>;
}

/**
 * Runs one trial in the calling thread.
 *
 * @param request Files, parameters, hold-out split, optional warm-start model.
 * @param signal Aborts between chunks.
 * @returns Validation score, training statistics and the engine file.
 */
export async function runLinearTrial(
  request: LinearTrialRequest,
  signal?: AbortSignal,
  onProgress?: (progress: LinearProgress) => void,
): Promise<LinearTrialResult> {
  const trained = await trainLinear({
    files: request.files,
    params: request.params,
    holdout: request.holdout,
    ...(request.initial ? { initial: deserializeLinear(request.initial) } : {}),
    ...(signal ? { signal } : {}),
    ...(onProgress ? { onProgress } : {}),
  });
  const validation = await scoreLinear(trained.model, request.files, {
    holdout: request.holdout,
    ...(signal ? { signal } : {}),
  });
  return {
    validation,
    rows: trained.rows,
    positives: trained.positives,
    epochLosses: trained.epochLosses,
    seconds: trained.seconds,
    engineBytes: serializeLinear(trained.model),
  };
}

/** Messages a trial worker posts back. */
export type TrialWorkerResponse =
  | { type: "progress"; progress: LinearProgress }
  | { type: "done"; result: LinearTrialResult }
  | { type: "error"; message: string; name: string };

/**
 * Runs one trial in a new Web Worker, terminated when the trial ends or `signal` aborts.
 *
 * @param request The trial.
 * @param signal Terminates the worker and rejects with `signal.reason`.
 * @param onProgress Called after each shuffle block the worker trained on.
 * @returns The trial's result. A failure inside the worker rejects with an error of the same name and
 *   message (a `PipelineError` stays one, so the stage still prints one line).
 */
export function runLinearTrialInWorker(
  request: LinearTrialRequest,
  signal?: AbortSignal,
  onProgress?: (progress: LinearProgress) => void,
): Promise<LinearTrialResult> {
  signal?.throwIfAborted();
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./trial_worker.ts", import.meta.url), { type: "module" });
    const finish = () => {
      signal?.removeEventListener("abort", onAbort);
      worker.terminate();
    };
    const onAbort = () => {
      finish();
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    worker.onmessage = (event: MessageEvent<TrialWorkerResponse>) => {
      const message = event.data;
      if (message.type === "progress") {
        onProgress?.(message.progress);
        return;
      }
      finish();
      if (message.type === "done") resolve(message.result);
      else reject(Object.assign(new (errorClass(message.name))(message.message), { name: message.name }));
    };
    worker.onerror = (event) => {
      event.preventDefault();
      finish();
      reject(new Error(`linear trial worker failed: ${event.message}`));
    };
    worker.postMessage(request);
  });
}

/** Rebuilds the class of an error that crossed the worker boundary (only plain data can be posted). */
function errorClass(name: string): new (message: string) => Error {
  return name === "PipelineError" ? PipelineError : name === "RangeError" ? RangeError : Error;
}
