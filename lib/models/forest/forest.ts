/**
 * The project's random forest for sparse binary text features: training on all cores and prediction.
 *
 * Trees are grown by {@linkcode TreeBuilder} in Web Workers (`forest_worker.ts`) that all read the same
 * `SharedArrayBuffer`s of the dataset; trees are handed out one at a time to whichever worker is free, and
 * the forest is assembled in tree order. Because each tree's randomness depends only on the seed and its
 * index, the result is identical bit for bit for any number of workers.
 *
 * A trained forest is one flat `Int32Array` per tree (pre-order nodes, 8 bytes each), cheap to serialise
 * (`model_format.ts`) and fast to walk. Predicting one review marks its words in a stamp array, then walks
 * each tree with an O(1) test per node; ~98% of steps go to the adjacent left child ("word absent").
 * For many reviews on all cores, see `parallel_predict.ts`.
 *
 * About 650 lines because training, prediction and the exact decomposition of a prediction over its path
 * all walk the same flat node layout, which is defined here.
 *
 * @module
 */
import { PipelineError } from "../../core/errors.ts";
import { SparseDataset, type SparseDatasetBuffers } from "./sparse_dataset.ts";
import {
  leafValues,
  NODE_VALUE_SCALE,
  OOB_SCALE,
  type OobAccumulator,
  TreeBuilder,
  type TreeResult,
  type TreeSettings,
} from "./tree_builder.ts";

/** How many words each split looks at: a rule of the vocabulary size, or a count. */
export type MaxFeatures = "sqrt" | "log2" | "all" | number;

/** Training parameters of a forest. */
export interface ForestParams {
  /** Number of trees. @default {100} */
  trees: number;
  /** Words tried per split: "sqrt" (of the vocabulary size), "log2", "all", or a count. @default {"sqrt"} */
  maxFeatures: MaxFeatures;
  /** Maximum depth of a tree, root at 0; 0 = unlimited. @default {0} */
  maxDepth: number;
  /** Minimum reviews (distinct, before bootstrap weighting) in each leaf. @default {1} */
  minSamplesLeaf: number;
  /** Grow each tree on a bootstrap sample (needed for out-of-bag accuracy). @default {true} */
  bootstrap: boolean;
  /** Seed of every random choice; same seed + same data = same forest, bit for bit. @default {42} */
  seed: number;
}

/** The defaults of {@linkcode ForestParams}. */
export const DEFAULT_FOREST_PARAMS: Readonly<ForestParams> = Object.freeze({
  trees: 100,
  maxFeatures: "sqrt",
  maxDepth: 0,
  minSamplesLeaf: 1,
  bootstrap: true,
  seed: 42,
});

/**
 * Fills in defaults and validates parameters.
 *
 * @param params Any subset of the parameters.
 * @returns The complete, validated parameters.
 * @throws {RangeError} naming the first invalid parameter.
 *
 * @example Usage
 * ```ts
 * import { resolveForestParams } from "./forest.ts";
 * const params = resolveForestParams({ trees: 10 });
 * console.assert(params.seed === 42);
 * ```
 */
export function resolveForestParams(params: Partial<ForestParams> = {}): ForestParams {
  const resolved: ForestParams = { ...DEFAULT_FOREST_PARAMS, ...params };
  const integer = (name: keyof ForestParams, min: number, max = 2 ** 31 - 1) => {
    const value = resolved[name];
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      throw new RangeError(
        `forest parameter ${name} must be an integer between ${min} and ${max}, got ${value}`,
      );
    }
  };
  integer("trees", 1, 32767); // out-of-bag votes are summed in 32-bit fixed point
  integer("maxDepth", 0);
  integer("minSamplesLeaf", 1);
  integer("seed", -(2 ** 31), 2 ** 32 - 1);
  if (typeof resolved.maxFeatures === "number") integer("maxFeatures", 1);
  else if (!["sqrt", "log2", "all"].includes(resolved.maxFeatures)) {
    throw new RangeError(
      `forest parameter maxFeatures must be "sqrt", "log2", "all" or a count, got ${
        JSON.stringify(resolved.maxFeatures)
      }`,
    );
  }
  if (typeof resolved.bootstrap !== "boolean") {
    throw new RangeError(`forest parameter bootstrap must be a boolean, got ${resolved.bootstrap}`);
  }
  return resolved;
}

/**
 * The number of words a split visits for a vocabulary of `numFeatures` words (as scikit-learn: floor,
 * at least 1, at most the vocabulary).
 */
export function resolveMaxFeatures(maxFeatures: MaxFeatures, numFeatures: number): number {
  let k: number;
  if (maxFeatures === "sqrt") k = Math.floor(Math.sqrt(numFeatures));
  else if (maxFeatures === "log2") k = Math.floor(Math.log2(numFeatures));
  else if (maxFeatures === "all") k = numFeatures;
  else k = maxFeatures;
  return Math.max(1, Math.min(numFeatures, k));
}

/** Size and shape of a trained forest. */
export interface ForestStats {
  /** Number of trees. */
  trees: number;
  /** Nodes of all trees. */
  nodes: number;
  /** Leaves of all trees. */
  leaves: number;
  /** Depth of the deepest leaf of any tree. */
  maxDepth: number;
  /** Mean over trees of each tree's deepest leaf. */
  meanMaxDepth: number;
  /** Reviews the forest was trained on. */
  trainRows: number;
  /** Reviews that were out of bag for at least one tree (the base of the out-of-bag accuracy). */
  oobRows: number;
}

/** Everything a {@linkcode Forest} is made of; what `model_format.ts` stores. */
export interface ForestData {
  /** Parameters the forest was trained with. */
  params: ForestParams;
  /** Vocabulary size; every id given to predict must be below it. */
  numFeatures: number;
  /**
   * The nodes of each tree, two Int32 slots per node in pre-order (see `TreeResult` in tree_builder.ts):
   * `[word, right child]` for an internal node, `[-1, Float32 bits of P(positive)]` for a leaf. Kept per
   * tree so that neither training nor loading ever holds two copies of the forest.
   */
  trees: Int32Array[];
  /**
   * Each tree's node values (see `TreeResult.nodeValues`), for explanations; absent in models saved
   * before explanations existed.
   */
  nodeValues?: Uint16Array[];
  /** Mean impurity-based importance per word, summing to 1 (all zero if no tree has a split). */
  importances: Float64Array;
  /** Out-of-bag accuracy, or null without bootstrap or when no review was out of bag. */
  oobAccuracy: number | null;
  /** Size and shape. */
  stats: ForestStats;
}

/** A forest's prediction for one review, decomposed over the words its trees tested. */
export interface PathContributions {
  /** Mean over trees of the root's positive share: the prediction before any split. */
  bias: number;
  /** The vocabulary ids tested on the review's paths, in the order first met. */
  words: Uint32Array;
  /**
   * Per word of `words`: the mean over trees of the change in positive share at each split on it. Words
   * absent from the review contribute too (the split went "absent").
   */
  contributions: Float64Array;
}

/** A word and its importance. */
export interface RankedFeature {
  /** Vocabulary id. */
  feature: number;
  /** The word, when names were given. */
  name?: string;
  /** Share of the forest's impurity decrease. */
  importance: number;
}

/** A trained forest. Predict methods accept the ids that `Vectorizer.transform` returns. */
export class Forest {
  /** Parameters it was trained with. */
  readonly params: ForestParams;
  /** Vocabulary size. */
  readonly numFeatures: number;
  /** Out-of-bag accuracy, or null. */
  readonly oobAccuracy: number | null;
  /** Size and shape. */
  readonly stats: ForestStats;
  readonly #data: ForestData;
  readonly #values: Float32Array[];
  readonly #mark: Uint32Array;
  #markValue = 0;
  // Scratch of explainProba, allocated on its first call.
  #explainSums: Float64Array | undefined;
  #explainSeen: Uint8Array | undefined;

  /** @param data Arrays and metadata, from {@linkcode trainForest} or `deserializeForest`. */
  constructor(data: ForestData) {
    this.#data = data;
    this.params = data.params;
    this.numFeatures = data.numFeatures;
    this.oobAccuracy = data.oobAccuracy;
    this.stats = data.stats;
    this.#values = data.trees.map(leafValues);
    this.#mark = new Uint32Array(data.numFeatures);
  }

  /** The arrays behind the forest (not copies); for serialisation. */
  toData(): ForestData {
    return this.#data;
  }

  /**
   * Probability that a review is positive: the mean over trees of the positive fraction of the leaf it
   * reaches.
   *
   * @param ids The review's vocabulary ids (any order; duplicates are harmless).
   * @returns A probability in [0, 1].
   * @throws {RangeError} if an id is not below `numFeatures` (a vocabulary from another model).
   */
  predictProba(ids: ArrayLike<number>): number {
    const mark = this.#markRow(ids);
    const trees = this.#data.trees;
    const values = this.#values;
    const marks = this.#mark;
    let sum = 0;
    for (let t = 0; t < trees.length; t++) {
      const nodes = trees[t]!;
      let i = 0;
      let f = nodes[0]!;
      while (f >= 0) {
        i = marks[f] === mark ? nodes[2 * i + 1]! : i + 1;
        f = nodes[2 * i]!;
      }
      sum += values[t]![2 * i + 1]!;
    }
    return sum / trees.length;
  }

  /**
   * Probabilities of both classes for one review, `[negative, positive]`; they sum to 1.
   *
   * @param ids The review's vocabulary ids.
   */
  predictClassProba(ids: ArrayLike<number>): [negative: number, positive: number] {
    const positive = this.predictProba(ids);
    return [1 - positive, positive];
  }

  /**
   * Probability of the positive class for many reviews.
   *
   * @param rows A dataset, or any iterable of id lists.
   * @param onProgress Called now and then with the number of rows done.
   * @returns One probability per row, in order.
   */
  predictProbaBatch(
    rows: SparseDataset | Iterable<ArrayLike<number>>,
    onProgress?: (done: number) => void,
  ): Float64Array {
    if (rows instanceof SparseDataset) {
      // Row by row with the word marks: measured 7x faster than walking each tree over a block of rows with
      // a binary search per node, because ~98% of the steps go to the adjacent left child (already cached).
      const out = new Float64Array(rows.numRows);
      for (let r = 0; r < rows.numRows; r++) {
        out[r] = this.predictProba(rows.row(r));
        if (onProgress && (r & 0x3fff) === 0x3fff) onProgress(r + 1);
      }
      onProgress?.(rows.numRows);
      return out;
    }
    const values: number[] = [];
    for (const ids of rows) {
      values.push(this.predictProba(ids));
      if (onProgress && (values.length & 0x3fff) === 0) onProgress(values.length);
    }
    onProgress?.(values.length);
    return Float64Array.from(values);
  }

  /** Whether the forest stores the node values {@linkcode Forest.explainProba} needs. */
  get explainable(): boolean {
    return this.#data.nodeValues !== undefined;
  }

  /**
   * Decomposes {@linkcode Forest.predictProba} exactly over the splits on each tree's path (the
   * path-contribution method, Saabas 2014): walking down a tree, each split moves the value from the
   * node's positive share to its child's, and that change is credited to the split's word. Along a path the
   * changes add up to the leaf's value minus the root's, so `bias + Σ contributions` equals the
   * prediction, up to floating-point rounding.
   *
   * @param ids The review's vocabulary ids.
   * @returns The bias and the contribution of each word tested on the paths.
   * @throws {RangeError} for a forest without node values (saved before explanations) or a bad id.
   *
   * @example Usage
   * ```ts
   * import { SparseDataset } from "./sparse_dataset.ts";
   * import { trainForest } from "./forest.ts";
   * const data = SparseDataset.fromRows(2, [[0], [1], [0], [1]], [1, 0, 1, 0]);
   * const forest = await trainForest(data, { trees: 3, bootstrap: false }, { workers: 0 });
   * const { bias, contributions } = forest.explainProba([0]);
   * const total = contributions.reduce((sum, c) => sum + c, bias);
   * console.assert(Math.abs(total - forest.predictProba([0])) < 1e-12);
   * ```
   */
  explainProba(ids: ArrayLike<number>): PathContributions {
    const nodeValues = this.#data.nodeValues;
    if (nodeValues === undefined) {
      throw new RangeError("this forest was saved without node values, so it cannot explain; retrain it");
    }
    const mark = this.#markRow(ids);
    const trees = this.#data.trees;
    const values = this.#values;
    const marks = this.#mark;
    // Sums per word in a dense scratch array (a Map per split cost 30 times a prediction), with the words
    // touched listed once each: a deep forest tests a thousand words or more on one review's paths.
    const sums = this.#explainSums ??= new Float64Array(this.numFeatures);
    const seen = this.#explainSeen ??= new Uint8Array(this.numFeatures);
    const touched: number[] = [];
    const scale = 1 / NODE_VALUE_SCALE;
    let bias = 0;
    for (let t = 0; t < trees.length; t++) {
      const nodes = trees[t]!;
      const leaves = values[t]!;
      const inner = nodeValues[t]!;
      let i = 0;
      let f = nodes[0]!;
      let value = f < 0 ? leaves[1]! : inner[0]! * scale;
      bias += value;
      while (f >= 0) {
        i = marks[f] === mark ? nodes[2 * i + 1]! : i + 1;
        const next = nodes[2 * i]!;
        const reached = next < 0 ? leaves[2 * i + 1]! : inner[i]! * scale;
        if (seen[f] === 0) {
          seen[f] = 1;
          touched.push(f);
        }
        sums[f]! += reached - value;
        value = reached;
        f = next;
      }
    }
    const share = 1 / trees.length;
    const words = Uint32Array.from(touched);
    const contributions = new Float64Array(words.length);
    for (let k = 0; k < words.length; k++) {
      const word = words[k]!;
      contributions[k] = sums[word]! * share;
      sums[word] = 0;
      seen[word] = 0;
    }
    return { bias: bias * share, words, contributions };
  }

  /** Mean impurity-based importance per word id (a copy), summing to 1. */
  featureImportances(): Float64Array {
    return this.#data.importances.slice();
  }

  /**
   * The most important words.
   *
   * @param k How many.
   * @param names Vocabulary terms by id (e.g. `vectorizer.terms`), to report words rather than ids.
   * @returns Up to `k` words with a non-zero importance, most important first (ties by id).
   */
  topFeatures(k: number, names?: readonly string[]): RankedFeature[] {
    const importances = this.#data.importances;
    const ids: number[] = [];
    for (let f = 0; f < importances.length; f++) if (importances[f]! > 0) ids.push(f);
    ids.sort((a, b) => importances[b]! - importances[a]! || a - b);
    return ids.slice(0, k).map((feature) => {
      const ranked: RankedFeature = { feature, importance: importances[feature]! };
      if (names) ranked.name = names[feature];
      return ranked;
    });
  }

  #markRow(ids: ArrayLike<number>): number {
    let mark = (this.#markValue + 1) >>> 0;
    if (mark === 0) {
      this.#mark.fill(0);
      mark = 1;
    }
    this.#markValue = mark;
    const marks = this.#mark;
    const limit = this.numFeatures;
    for (let k = 0; k < ids.length; k++) {
      const id = ids[k]!;
      if (!(id >= 0 && id < limit)) {
        throw new RangeError(`feature id ${id} is outside this forest's vocabulary of ${limit} words`);
      }
      marks[id] = mark;
    }
    return mark;
  }
}

/** Training progress, reported after each tree. */
export interface TrainProgress {
  /** Trees finished. */
  treesDone: number;
  /** Trees in the forest. */
  trees: number;
  /** Nodes grown so far. */
  nodes: number;
}

/** Options of {@linkcode trainForest}. */
export interface TrainOptions {
  /**
   * Web Workers growing trees in parallel; 0 grows them on the calling thread (no worker, no module read
   * permission needed). @default {navigator.hardwareConcurrency}
   */
  workers?: number;
  /** Called after each finished tree. */
  onProgress?: (progress: TrainProgress) => void;
  /** Aborting terminates the workers and rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Message to a worker. */
export type WorkerRequest =
  | { type: "init"; data: SparseDatasetBuffers }
  | { type: "build"; index: number; settings: TreeSettings }
  /** Asks for the worker's out-of-bag votes, once all trees are built. */
  | { type: "finish" }
  | {
    type: "score";
    /** The model file bytes, shared. */
    model: SharedArrayBuffer;
    data: SparseDatasetBuffers;
    /** Float64 probabilities, one per row, shared. */
    out: SharedArrayBuffer;
    start: number;
    end: number;
  };

/** Message from a worker. */
export type WorkerResponse =
  | { type: "tree"; tree: TreeResult }
  | { type: "oob"; sum?: Int32Array<ArrayBuffer>; trees?: Int32Array<ArrayBuffer> }
  | { type: "scored"; start: number; end: number }
  | { type: "error"; message: string; stack?: string };

/**
 * Trains a forest.
 *
 * @param dataset Training reviews (its column index is built here if missing).
 * @param params Any subset of {@linkcode ForestParams}; the rest are defaults.
 * @param options Workers, progress, cancellation.
 * @returns The forest.
 *
 * @example Usage
 * ```ts
 * import { SparseDataset } from "./sparse_dataset.ts";
 * import { trainForest } from "./forest.ts";
 * const data = SparseDataset.fromRows(2, [[0], [1], [0], [1]], [1, 0, 1, 0]);
 * const forest = await trainForest(data, { trees: 5, bootstrap: false }, { workers: 0 });
 * console.assert(forest.predictProba(new Uint32Array([0])) === 1);
 * ```
 */
export async function trainForest(
  dataset: SparseDataset,
  params: Partial<ForestParams> = {},
  options: TrainOptions = {},
): Promise<Forest> {
  const resolved = resolveForestParams(params);
  if (dataset.numRows === 0) throw new RangeError("cannot train a forest on an empty dataset");
  const settings: TreeSettings = {
    mtry: resolveMaxFeatures(resolved.maxFeatures, dataset.numFeatures),
    maxDepth: resolved.maxDepth,
    minSamplesLeaf: resolved.minSamplesLeaf,
    bootstrap: resolved.bootstrap,
    seed: resolved.seed,
  };
  const workers = Math.min(resolved.trees, options.workers ?? navigator.hardwareConcurrency ?? 1);
  if (!Number.isInteger(workers) || workers < 0) {
    throw new RangeError(`workers must be a non-negative integer, got ${options.workers}`);
  }
  options.signal?.throwIfAborted();
  dataset.columns();
  const oob: OobAccumulator = {
    sum: new Int32Array(dataset.numRows),
    trees: new Int32Array(dataset.numRows),
  };
  // Integer sums: the same totals whatever the order in which workers report.
  const addOutOfBag = (part: Partial<OobAccumulator> | undefined) => {
    if (!part?.sum || !part.trees) return;
    for (let r = 0; r < dataset.numRows; r++) {
      oob.sum[r]! += part.sum[r]!;
      oob.trees[r]! += part.trees[r]!;
    }
  };
  const results: TreeResult[] = new Array(resolved.trees);
  let done = 0;
  let nodes = 0;
  const onTree = (tree: TreeResult) => {
    results[tree.index] = tree;
    done += 1;
    nodes += tree.nodes.length / 2;
    options.onProgress?.({ treesDone: done, trees: resolved.trees, nodes });
  };
  if (workers === 0) {
    const builder = new TreeBuilder(dataset);
    for (let t = 0; t < resolved.trees; t++) {
      // Yield between trees so that an abort (e.g. Ctrl-C) is seen.
      await new Promise((resolve) => setTimeout(resolve, 0));
      options.signal?.throwIfAborted();
      onTree(builder.build(t, settings));
    }
    addOutOfBag(builder.takeOutOfBag());
  } else {
    await buildInWorkers(dataset, settings, resolved.trees, workers, onTree, addOutOfBag, options.signal);
  }
  return assembleForest(resolved, dataset, results, oob);
}

async function buildInWorkers(
  dataset: SparseDataset,
  settings: TreeSettings,
  trees: number,
  count: number,
  onTree: (tree: TreeResult) => void,
  onOutOfBag: (oob: Partial<OobAccumulator>) => void,
  signal: AbortSignal | undefined,
): Promise<void> {
  const pool: Worker[] = [];
  const init: WorkerRequest = { type: "init", data: dataset.buffers() };
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  let next = 0;
  let done = 0;
  let finished = 0;
  const dispatch = (worker: Worker) => {
    if (next >= trees) return;
    const request: WorkerRequest = { type: "build", index: next++, settings };
    worker.postMessage(request);
  };
  const onAbort = () => reject(signal!.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    signal?.throwIfAborted();
    for (let w = 0; w < count; w++) {
      const worker = new Worker(new URL("./forest_worker.ts", import.meta.url), { type: "module" });
      pool.push(worker);
      worker.onmessage = (event: MessageEvent<WorkerResponse>) => {
        const message = event.data;
        if (message.type === "error") {
          const error = new Error(`forest worker failed: ${message.message}`);
          if (message.stack) error.stack = message.stack;
          reject(error);
          return;
        }
        if (message.type === "oob") {
          onOutOfBag(message);
          finished += 1;
          if (finished === count) resolve();
          return;
        }
        if (message.type !== "tree") return;
        try {
          onTree(message.tree);
        } catch (error) {
          reject(error);
          return;
        }
        done += 1;
        if (done < trees) dispatch(worker);
        else for (const w of pool) w.postMessage({ type: "finish" } satisfies WorkerRequest);
      };
      worker.onerror = (event: ErrorEvent) => {
        event.preventDefault(); // report it through the promise instead of crashing the process
        reject(workerStartError(event));
      };
      worker.postMessage(init);
      dispatch(worker);
    }
    await promise;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    for (const worker of pool) worker.terminate();
  }
}

/**
 * The error for a worker that failed outside a request (the handler reports request errors itself): almost
 * always a worker that could not load its module, e.g. for lack of read permission on `lib/`.
 */
export function workerStartError(event: ErrorEvent): PipelineError {
  return new PipelineError(
    `forest worker failed: ${event.message}; the stage needs read access to lib/ (deno.json "permissions"), or run with 0 workers`,
  );
}

function assembleForest(
  params: ForestParams,
  dataset: SparseDataset,
  results: TreeResult[],
  oob: OobAccumulator,
): Forest {
  const importances = new Float64Array(dataset.numFeatures);
  let nodes = 0;
  let leaves = 0;
  let maxDepth = 0;
  let depthSum = 0;
  for (const tree of results) {
    nodes += tree.nodes.length / 2;
    leaves += tree.leaves;
    maxDepth = Math.max(maxDepth, tree.maxDepth);
    depthSum += tree.maxDepth;
    // Summed in tree order, so the floating-point result is the same for any number of workers.
    for (let k = 0; k < tree.importanceFeatures.length; k++) {
      importances[tree.importanceFeatures[k]!]! += tree.importanceValues[k]!;
    }
  }
  let importanceSum = 0;
  for (let f = 0; f < importances.length; f++) importanceSum += importances[f]!;
  if (importanceSum > 0) { for (let f = 0; f < importances.length; f++) importances[f]! /= importanceSum; }

  let oobRows = 0;
  let oobCorrect = 0;
  if (params.bootstrap) {
    for (let r = 0; r < dataset.numRows; r++) {
      const votes = oob.trees[r]!;
      if (votes === 0) continue;
      oobRows += 1;
      const positive = 2 * oob.sum[r]! > votes * OOB_SCALE ? 1 : 0;
      if (positive === dataset.labels[r]) oobCorrect += 1;
    }
  }
  return new Forest({
    params,
    numFeatures: dataset.numFeatures,
    trees: results.map((tree) => tree.nodes),
    nodeValues: results.map((tree) => tree.nodeValues),
    importances,
    oobAccuracy: oobRows > 0 ? oobCorrect / oobRows : null,
    stats: {
      trees: results.length,
      nodes,
      leaves,
      maxDepth,
      meanMaxDepth: depthSum / results.length,
      trainRows: dataset.numRows,
      oobRows,
    },
  });
}
