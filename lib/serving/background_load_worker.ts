/**
 * Worker of `BackgroundModelLoader` (./background_load.ts): verifies a model's files and decodes
 * its engine with `loadModel`, then hands the engine back by transfer. Checksums of large files and the
 * decoding (a linear model touches tens of megabytes of fresh memory) happen here, on this thread, instead
 * of stalling the server's.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { ENGINES } from "../models/engines.ts";
import { loadModel } from "../models/artifact.ts";

/** What the main thread sends: a request number and the model's files. */
export interface LoadRequest {
  id: number;
  files: [string, Uint8Array][];
}

/** What the worker answers: the packed engine, or the failure's message and whether it was expected. */
export type LoadAnswer =
  | { ok: true; state: unknown }
  | { ok: false; message: string; expected: boolean };

self.onmessage = (event: MessageEvent<LoadRequest>) => {
  const { id, files } = event.data;
  try {
    const model = loadModel(new Map(files), ENGINES);
    const codec = ENGINES.find((candidate) => candidate.name === model.manifest.engine)!;
    const { state, transfer } = codec.pack!(model.engine);
    self.postMessage({ id, ok: true, state } satisfies LoadAnswer & { id: number }, transfer);
  } catch (error) {
    const expected = error instanceof Error && error.name === "PipelineError";
    const message = error instanceof Error ? error.message : String(error);
    self.postMessage({ id, ok: false, message, expected } satisfies LoadAnswer & { id: number });
  }
};
