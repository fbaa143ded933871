/**
 * The binary model file of a {@linkcode Forest}: a small JSON header followed by the forest's typed arrays,
 * stored as they are in memory, so loading is a header parse plus views on the bytes (no per-node objects).
 *
 * Layout (all integers little-endian):
 *
 * | bytes | content |
 * |---|---|
 * | 0..8 | magic `SPFOREST` |
 * | 8..12 | header length H (uint32) |
 * | 12..12+H | header, UTF-8 JSON: `format: "sparse-forest"`, `format_version`, params, stats, array table |
 * | then | each array at the 8-aligned offset its table entry gives |
 *
 * The file holds only training results (no timestamps), so the same training gives the same bytes. The
 * model-artifact layer checks the SHA-256 of the whole artifact; here we check structure, so a truncated or
 * foreign file fails with one clear line instead of a wrong prediction.
 *
 * @module
 */
import { PipelineError } from "../../core/errors.ts";
import {
  Forest,
  type ForestData,
  type ForestParams,
  type ForestStats,
  resolveForestParams,
} from "./forest.ts";

/** `format` value in the header. */
export const MODEL_FORMAT = "sparse-forest";
/** The format version this build writes and reads. */
export const MODEL_FORMAT_VERSION = 1;

const MAGIC = new TextEncoder().encode("SPFOREST");
const PREFIX_BYTES = 12;

type ArrayName = "tree_start" | "nodes" | "importances" | "node_values";
type ArrayType = "uint32" | "int32" | "float64" | "uint16";

/** An entry of the header's array table. */
interface ArrayEntry {
  type: ArrayType;
  offset: number;
  length: number;
}

/** The JSON header of a model file. */
export interface ModelHeader {
  format: typeof MODEL_FORMAT;
  format_version: number;
  byte_order: "little";
  num_features: number;
  params: ForestParams;
  stats: ForestStats;
  oob_accuracy: number | null;
  /** Every array but `node_values`, which models saved before explanations lack. */
  arrays: Record<Exclude<ArrayName, "node_values">, ArrayEntry> & { node_values?: ArrayEntry };
}

const ELEMENT_BYTES: Record<ArrayType, number> = { uint32: 4, int32: 4, float64: 8, uint16: 2 };
/**
 * The arrays, in file order: `tree_start[t]` = first node of tree t (length trees + 1); `nodes` = all trees'
 * nodes, two Int32 slots each (see `TreeResult`); `importances` = one per word; `node_values` = every
 * node's quantised positive share, for explanations (optional: a reader that does not know it ignores it,
 * so adding it needed no new format version).
 */
const ARRAY_TYPES: Record<ArrayName, ArrayType> = {
  tree_start: "uint32",
  nodes: "int32",
  importances: "float64",
  node_values: "uint16",
};

function assertLittleEndian(): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new PipelineError("this machine is big-endian; sparse-forest model files are little-endian only");
  }
}

const align8 = (n: number): number => Math.ceil(n / 8) * 8;

/**
 * Serialises a forest into the model file bytes.
 *
 * @param forest A trained or loaded forest.
 * @returns The file's bytes; identical for identical forests.
 *
 * @example Usage
 * ```ts
 * import { SparseDataset } from "./sparse_dataset.ts";
 * import { trainForest } from "./forest.ts";
 * import { deserializeForest, serializeForest } from "./model_format.ts";
 * const data = SparseDataset.fromRows(2, [[0], [1]], [1, 0]);
 * const forest = await trainForest(data, { trees: 2, bootstrap: false }, { workers: 0 });
 * const copy = deserializeForest(serializeForest(forest));
 * console.assert(copy.predictProba(new Uint32Array([0])) === 1);
 * ```
 */
export function serializeForest(forest: Forest): Uint8Array<ArrayBuffer> {
  return serializeInto(forest, (size) => new Uint8Array(size));
}

/**
 * Serialises a forest into a `SharedArrayBuffer`, so that workers can load it without a copy each
 * (`predictInWorkers`).
 *
 * @param forest A trained or loaded forest.
 * @returns The same bytes as {@linkcode serializeForest}, in shared memory.
 */
export function serializeForestShared(forest: Forest): Uint8Array<SharedArrayBuffer> {
  return serializeInto(forest, (size) => new Uint8Array(new SharedArrayBuffer(size)));
}

function serializeInto<B extends ArrayBufferLike>(
  forest: Forest,
  allocate: (size: number) => Uint8Array<B>,
): Uint8Array<B> {
  assertLittleEndian();
  const data = forest.toData();
  const treeStart = new Uint32Array(data.trees.length + 1);
  data.trees.forEach((nodes, t) => (treeStart[t + 1] = treeStart[t]! + nodes.length / 2));
  // The trees stay separate arrays in memory; they are written one after the other as one `nodes` array.
  const arrays: Partial<Record<ArrayName, ArrayBufferView[]>> = {
    tree_start: [treeStart],
    nodes: data.trees,
    importances: [data.importances],
    ...(data.nodeValues ? { node_values: data.nodeValues } : {}),
  };
  const names = (Object.keys(ARRAY_TYPES) as ArrayName[]).filter((name) => arrays[name] !== undefined);
  const lengthOf = (name: ArrayName) =>
    arrays[name]!.reduce((sum, a) => sum + a.byteLength, 0) / ELEMENT_BYTES[ARRAY_TYPES[name]];
  // The header's length depends on the offsets it lists, and the offsets on the header's length: lay the
  // arrays out after a header with placeholder offsets, then widen until the real header fits.
  let dataStart = 0;
  let header: ModelHeader;
  let headerBytes: Uint8Array;
  for (;;) {
    let offset = dataStart;
    const table = {} as ModelHeader["arrays"];
    for (const name of names) {
      const type = ARRAY_TYPES[name];
      table[name] = { type, offset, length: lengthOf(name) };
      offset = align8(offset + lengthOf(name) * ELEMENT_BYTES[type]);
    }
    header = {
      format: MODEL_FORMAT,
      format_version: MODEL_FORMAT_VERSION,
      byte_order: "little",
      num_features: data.numFeatures,
      params: data.params,
      stats: data.stats,
      oob_accuracy: data.oobAccuracy,
      arrays: table,
    };
    headerBytes = new TextEncoder().encode(JSON.stringify(header));
    const needed = align8(PREFIX_BYTES + headerBytes.length);
    if (needed <= dataStart) break;
    dataStart = needed;
  }
  const last = header.arrays[names.at(-1)!]!;
  const bytes = allocate(last.offset + last.length * ELEMENT_BYTES[last.type]);
  bytes.set(MAGIC, 0);
  new DataView(bytes.buffer).setUint32(8, headerBytes.length, true);
  bytes.set(headerBytes, PREFIX_BYTES);
  for (const name of names) {
    let offset = header.arrays[name]!.offset;
    for (const array of arrays[name]!) {
      bytes.set(new Uint8Array(array.buffer, array.byteOffset, array.byteLength), offset);
      offset += array.byteLength;
    }
  }
  return bytes;
}

/**
 * Reads the header of a model file without loading the arrays.
 *
 * @param bytes The model file.
 * @returns The header.
 * @throws {PipelineError} for a foreign, truncated or corrupt file or an unsupported format version.
 */
export function readModelHeader(bytes: Uint8Array): ModelHeader {
  if (bytes.length < PREFIX_BYTES) {
    throw new PipelineError(`model file is truncated (${bytes.length} bytes); download or train it again`);
  }
  for (let i = 0; i < MAGIC.length; i++) {
    if (bytes[i] !== MAGIC[i]) {
      throw new PipelineError(
        "model file is not a sparse-forest model (wrong magic bytes); check the artifact path",
      );
    }
  }
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8, true);
  if (PREFIX_BYTES + headerLength > bytes.length) {
    throw new PipelineError(
      `model file is truncated: its header needs ${
        PREFIX_BYTES + headerLength
      } bytes, the file has ${bytes.length}; download or train it again`,
    );
  }
  let header: Partial<ModelHeader>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(
      bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength),
    ));
  } catch (error) {
    throw new PipelineError("model file header is not valid JSON; the file is corrupt, train it again", {
      cause: error,
    });
  }
  if (header === null || typeof header !== "object" || header.format !== MODEL_FORMAT) {
    throw new PipelineError(
      `model file format is ${
        JSON.stringify(header?.format)
      }, expected "${MODEL_FORMAT}"; check the artifact`,
    );
  }
  if (header.format_version !== MODEL_FORMAT_VERSION) {
    throw new PipelineError(
      `model format version ${header.format_version} is not supported by this build (supports ${MODEL_FORMAT_VERSION}); retrain or upgrade`,
    );
  }
  return header as ModelHeader;
}

/**
 * Loads a forest from model file bytes. Arrays are views on `bytes` where alignment allows (no copy), so
 * keep `bytes` unchanged while the forest is in use.
 *
 * @param bytes The model file.
 * @returns The forest.
 * @throws {PipelineError} for a foreign, truncated or corrupt file or an unsupported format version.
 */
export function deserializeForest(bytes: Uint8Array): Forest {
  assertLittleEndian();
  const header = readModelHeader(bytes);
  const corrupt = (what: string) =>
    new PipelineError(`model file is corrupt: ${what}; download or train it again`);
  const numFeatures = header.num_features;
  if (!Number.isInteger(numFeatures) || numFeatures < 1) throw corrupt(`num_features is ${numFeatures}`);
  let params: ForestParams;
  try {
    params = resolveForestParams(header.params);
  } catch (error) {
    throw corrupt((error as Error).message);
  }

  const view = <T>(
    name: ArrayName,
    make: (buffer: ArrayBufferLike, offset: number, length: number) => T,
    copy: (bytes: Uint8Array<ArrayBuffer>) => T,
  ): T => {
    const entry = header.arrays?.[name];
    const type = ARRAY_TYPES[name];
    if (
      !entry || entry.type !== type || !Number.isInteger(entry.offset) || !Number.isInteger(entry.length) ||
      entry.offset < 0 || entry.length < 0
    ) {
      throw corrupt(`array "${name}" is missing or malformed in the header`);
    }
    const size = ELEMENT_BYTES[type];
    const end = entry.offset + entry.length * size;
    if (end > bytes.length) {
      throw new PipelineError(
        `model file is truncated: array "${name}" ends at byte ${end}, the file has ${bytes.length}; download or train it again`,
      );
    }
    const start = bytes.byteOffset + entry.offset;
    if (start % size === 0) return make(bytes.buffer, start, entry.length);
    return copy(bytes.slice(entry.offset, end));
  };
  const treeStart = view(
    "tree_start",
    (b, o, n) => new Uint32Array(b, o, n),
    (c) => new Uint32Array(c.buffer),
  );
  const nodes = view("nodes", (b, o, n) => new Int32Array(b, o, n), (c) => new Int32Array(c.buffer));
  const importances = view(
    "importances",
    (b, o, n) => new Float64Array(b, o, n),
    (c) => new Float64Array(c.buffer),
  );
  const allNodeValues = header.arrays?.node_values === undefined
    ? undefined
    : view("node_values", (b, o, n) => new Uint16Array(b, o, n), (c) => new Uint16Array(c.buffer));

  // Structure checks (one pass over the nodes): a walk can then never leave its tree or index past an array.
  const treeCount = treeStart.length - 1;
  const nodeCount = nodes.length / 2;
  if (treeCount < 1 || treeCount !== header.stats?.trees) throw corrupt(`it lists ${treeCount} trees`);
  if (!Number.isInteger(nodeCount)) throw corrupt("the node array has an odd length");
  if (importances.length !== numFeatures) throw corrupt("importances do not match the vocabulary size");
  if (treeStart[0] !== 0 || treeStart[treeCount] !== nodeCount) {
    throw corrupt("tree offsets do not cover the nodes");
  }
  if (allNodeValues !== undefined && allNodeValues.length !== nodeCount) {
    throw corrupt("node values do not match the nodes");
  }
  const values = new Float32Array(nodes.buffer, nodes.byteOffset, nodes.length);
  const trees: Int32Array[] = [];
  const nodeValues: Uint16Array[] = [];
  for (let t = 0; t < treeCount; t++) {
    const first = treeStart[t]!;
    const size = treeStart[t + 1]! - first;
    if (size <= 0) throw corrupt(`tree ${t} is empty`);
    for (let i = 0; i < size; i++) {
      const f = nodes[2 * (first + i)]!;
      if (f >= 0) {
        const right = nodes[2 * (first + i) + 1]!;
        // Pre-order: both children come after the node and inside the tree.
        if (f >= numFeatures || right <= i + 1 || right >= size) {
          throw corrupt(`node ${i} of tree ${t} is invalid`);
        }
      } else {
        const v = values[2 * (first + i) + 1]!;
        if (f !== -1 || !(v >= 0 && v <= 1)) throw corrupt(`leaf ${i} of tree ${t} is invalid`);
      }
    }
    trees.push(nodes.subarray(2 * first, 2 * (first + size)));
    if (allNodeValues) nodeValues.push(allNodeValues.subarray(first, first + size));
  }
  const data: ForestData = {
    params,
    numFeatures,
    trees,
    ...(allNodeValues ? { nodeValues } : {}),
    importances,
    oobAccuracy: header.oob_accuracy ?? null,
    stats: header.stats,
  };
  return new Forest(data);
}
