/**
 * Worker entry of {@linkcode trainForest}: receives the dataset's shared buffers once, then grows the trees
 * it is asked for and posts each back (its typed arrays transferred, not copied).
 *
 * The message handler is installed only inside a worker, so importing this module elsewhere does nothing.
 *
 * @module
 */
import type { WorkerRequest, WorkerResponse } from "./forest.ts";
import type { Forest } from "./forest.ts";
import { deserializeForest } from "./model_format.ts";
import { SparseDataset } from "./sparse_dataset.ts";
import { TreeBuilder } from "./tree_builder.ts";

/** The part of a dedicated worker's global scope used here (the default type library is the window's). */
interface WorkerScope {
  onmessage: ((event: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerResponse, transfer?: Transferable[]): void;
}

/** Handles one request; exported for tests. */
export function createHandler(post: WorkerScope["postMessage"]): (request: WorkerRequest) => void {
  let builder: TreeBuilder | undefined;
  // Scoring requests come in chunks of one job: load the model and wrap the data once per job.
  let scoring:
    | { model: SharedArrayBuffer; forest: Forest; data: SparseDataset; ids: SharedArrayBuffer }
    | undefined;
  return (request) => {
    try {
      if (request.type === "score") {
        if (scoring?.model !== request.model || scoring.ids !== request.data.ids) {
          scoring = {
            model: request.model,
            forest: deserializeForest(new Uint8Array(request.model)),
            data: SparseDataset.fromBuffers(request.data),
            ids: request.data.ids,
          };
        }
        const out = new Float64Array(request.out);
        for (let r = request.start; r < request.end; r++) {
          out[r] = scoring.forest.predictProba(scoring.data.row(r));
        }
        post({ type: "scored", start: request.start, end: request.end });
        return;
      }
      if (request.type === "init") {
        builder = new TreeBuilder(SparseDataset.fromBuffers(request.data));
        return;
      }
      if (request.type === "finish") {
        const oob = builder?.takeOutOfBag();
        post(
          { type: "oob", sum: oob?.sum, trees: oob?.trees },
          oob ? [oob.sum.buffer, oob.trees.buffer] : [],
        );
        return;
      }
      if (!builder) throw new Error("build request before init");
      const tree = builder.build(request.index, request.settings);
      post({ type: "tree", tree }, [
        tree.nodes.buffer,
        tree.nodeValues.buffer,
        tree.importanceFeatures.buffer,
        tree.importanceValues.buffer,
      ]);
    } catch (error) {
      const e = error instanceof Error ? error : new Error(String(error));
      post({ type: "error", message: e.message, stack: e.stack });
    }
  };
}

if (typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope === "function") {
  const scope = globalThis as unknown as WorkerScope;
  const handle = createHandler((message, transfer) => scope.postMessage(message, transfer));
  scope.onmessage = (event) => handle(event.data);
}
