/**
 * The binary model file (`engine.bin`) of a {@linkcode LinearModel}: a JSON header with the shape, the
 * hash, the output layer and the training history, then only the embedding rows that are not zero.
 *
 * Format versions: 2 records the pooling (`"mean"` or `"sqrt"`); 1, written before pooling was a
 * setting, has no such field and always means the mean. This build reads both and writes 2, so a model
 * saved by an older build keeps scoring exactly as it did, and an older build refuses a version-2 file
 * instead of scoring it with the wrong pooling.
 *
 * Layout (all numbers little-endian):
 *
 * | bytes | content |
 * |---|---|
 * | 0..8 | magic `HLINEAR1` |
 * | 8..12 | header length H (uint32) |
 * | 12..12+H | header, UTF-8 JSON ({@linkcode LinearHeader}); output weights and bias as JSON numbers, exact |
 * | then, 4-aligned | `rows` bucket numbers (uint32, ascending) |
 * | then | `rows × dim` embedding values (float32), row by row |
 *
 * Rows start at zero and only the buckets some review touched move (see `model.ts`), so storing the
 * non-zero rows keeps a model of a small dataset small (1,600 reviews: 0.2 MB, 15,000: 20 MB, with 2M
 * buckets), while one trained on millions of reviews uses nearly every bucket anyway. The
 * file holds only training results (no timestamps): the same training gives the same bytes.
 *
 * @module
 */
import { PipelineError } from "../../core/errors.ts";
import { HASH_FUNCTION } from "./hashing.ts";
import {
  bucketScoresOf,
  type LinearHistory,
  LinearModel,
  type LinearShape,
  type Pooling,
  POOLINGS,
} from "./model.ts";

/** Engine name, recorded in the artifact's `model.json` and in the header. */
export const LINEAR_ENGINE_NAME = "hashed-linear";
/** The format version this build writes. */
export const LINEAR_FORMAT_VERSION = 2;
/** The format versions this build reads. */
export const LINEAR_FORMAT_VERSIONS_READ: readonly number[] = [1, 2];

const MAGIC = new TextEncoder().encode("HLINEAR1");
const PREFIX_BYTES = 12;

/** The JSON header of a linear model file. */
export interface LinearHeader {
  format: typeof LINEAR_ENGINE_NAME;
  format_version: number;
  byte_order: "little";
  hash: string;
  dim: number;
  buckets: number;
  ngrams: 1 | 2;
  /** Absent in format version 1, which always pooled by the mean. */
  pooling?: Pooling;
  bias: number;
  output: number[];
  /** Number of stored (non-zero) embedding rows. */
  rows: number;
  history: LinearHistory;
}

const align4 = (n: number): number => Math.ceil(n / 4) * 4;

function assertLittleEndian(): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new PipelineError("this machine is big-endian; hashed-linear model files are little-endian only");
  }
}

/**
 * Serialises a model into the bytes of its model file.
 *
 * @param model The model.
 * @returns The file's bytes.
 *
 * @example Usage
 * ```ts
 * import { LinearModel } from "./model.ts";
 * import { deserializeLinear, serializeLinear } from "./model_format.ts";
 * const model = LinearModel.create({ dim: 4, buckets: 64, ngrams: 2 }, 1);
 * model.trainTokens(["good"], 1, 0.5);
 * const copy = deserializeLinear(serializeLinear(model));
 * console.assert(copy.predictTokensProba(["good"]) === model.predictTokensProba(["good"]));
 * ```
 */
export function serializeLinear(model: LinearModel): Uint8Array<ArrayBuffer> {
  assertLittleEndian();
  const { dim, buckets, ngrams, pooling } = model.shape;
  const rows = model.countUsedRows();
  const header: LinearHeader = {
    format: LINEAR_ENGINE_NAME,
    format_version: LINEAR_FORMAT_VERSION,
    byte_order: "little",
    hash: HASH_FUNCTION,
    dim,
    buckets,
    ngrams,
    pooling,
    bias: model.bias,
    output: [...model.output],
    rows,
    history: { ...model.history },
  };
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const idsOffset = align4(PREFIX_BYTES + headerBytes.length);
  const valuesOffset = idsOffset + rows * 4;
  const bytes = new Uint8Array(valuesOffset + rows * dim * 4);
  bytes.set(MAGIC, 0);
  new DataView(bytes.buffer).setUint32(8, headerBytes.length, true);
  bytes.set(headerBytes, PREFIX_BYTES);
  const ids = new Uint32Array(bytes.buffer, idsOffset, rows);
  const values = new Float32Array(bytes.buffer, valuesOffset, rows * dim);
  const embeddings = model.embeddings;
  let stored = 0;
  for (let b = 0; b < buckets; b++) {
    const row = b * dim;
    let used = false;
    for (let j = 0; j < dim; j++) {
      if (embeddings[row + j] !== 0) {
        used = true;
        break;
      }
    }
    if (!used) continue;
    ids[stored] = b;
    values.set(embeddings.subarray(row, row + dim), stored * dim);
    stored++;
  }
  return bytes;
}

/**
 * Reads a model file back.
 *
 * @param bytes The file's bytes.
 * @returns The model.
 * @throws {PipelineError} for a foreign, truncated or corrupt file, another format version, or a hash
 *   function this build does not have, each naming the problem and what to do.
 */
export function deserializeLinear(bytes: Uint8Array): LinearModel {
  assertLittleEndian();
  if (bytes.length < PREFIX_BYTES) {
    throw new PipelineError(`model file is truncated (${bytes.length} bytes); download or train it again`);
  }
  for (let i = 0; i < MAGIC.length; i++) {
    if (bytes[i] !== MAGIC[i]) {
      throw new PipelineError(
        "model file is not a hashed-linear model (wrong magic bytes); check the artifact",
      );
    }
  }
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8, true);
  if (PREFIX_BYTES + headerLength > bytes.length) {
    throw new PipelineError("model file is truncated inside its header; download or train it again");
  }
  let header: LinearHeader;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength)));
  } catch (error) {
    throw new PipelineError("model file header is not valid JSON; the file is corrupt, train it again", {
      cause: error,
    });
  }
  if (header?.format !== LINEAR_ENGINE_NAME) {
    throw new PipelineError(
      `model file format is ${JSON.stringify(header?.format)}, expected "${LINEAR_ENGINE_NAME}"`,
    );
  }
  if (!LINEAR_FORMAT_VERSIONS_READ.includes(header.format_version)) {
    throw new PipelineError(
      `hashed-linear format version ${header.format_version} is not supported by this build (supports ${
        LINEAR_FORMAT_VERSIONS_READ.join(", ")
      }); retrain or upgrade`,
    );
  }
  if (header.hash !== HASH_FUNCTION) {
    throw new PipelineError(
      `model hashes features with "${header.hash}", this build with "${HASH_FUNCTION}"; retrain the model`,
    );
  }
  const corrupt = (what: string) =>
    new PipelineError(`model file is corrupt: ${what}; download or train it again`);
  const { dim, buckets, ngrams, rows } = header;
  if (!Number.isInteger(dim) || dim < 1 || dim > 1000) throw corrupt(`dim is ${dim}`);
  if (!Number.isInteger(buckets) || buckets < 1 || buckets * dim > 2 ** 31 - 1) {
    throw corrupt(`buckets is ${buckets}`);
  }
  if (ngrams !== 1 && ngrams !== 2) throw corrupt(`ngrams is ${ngrams}`);
  const pooling: Pooling = header.format_version === 1 ? "mean" : header.pooling as Pooling;
  if (!POOLINGS.includes(pooling)) throw corrupt(`pooling is ${JSON.stringify(header.pooling)}`);
  if (!Number.isInteger(rows) || rows < 0 || rows > buckets) throw corrupt(`rows is ${rows}`);
  if (!Array.isArray(header.output) || header.output.length !== dim) throw corrupt("output layer size");
  if (![header.bias, ...header.output].every((v) => typeof v === "number" && Number.isFinite(v))) {
    throw corrupt("output layer is not finite");
  }
  const idsOffset = align4(PREFIX_BYTES + headerLength);
  const valuesOffset = idsOffset + rows * 4;
  const end = valuesOffset + rows * dim * 4;
  if (end !== bytes.length) {
    throw new PipelineError(
      `model file has ${bytes.length} bytes but its header describes ${end}; download or train it again`,
    );
  }
  // Copy into aligned buffers: the artifact bytes may sit at any offset of a larger download.
  const aligned = bytes.slice(idsOffset, end);
  const ids = new Uint32Array(aligned.buffer, 0, rows);
  const values = new Float32Array(aligned.buffer, rows * 4, rows * dim);
  const embeddings = new Float32Array(buckets * dim);
  let previous = -1;
  for (let r = 0; r < rows; r++) {
    const bucket = ids[r]!;
    if (bucket <= previous || bucket >= buckets) throw corrupt(`row ${r} has bucket ${bucket}`);
    previous = bucket;
    embeddings.set(values.subarray(r * dim, (r + 1) * dim), bucket * dim);
  }
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!)) throw corrupt("an embedding is not finite");
  }
  const shape: LinearShape = { dim, buckets, ngrams, pooling };
  const history: LinearHistory = {
    examples: Number(header.history?.examples) || 0,
    sessions: Number(header.history?.sessions) || 0,
  };
  const output = Float64Array.from(header.output);
  // From the stored rows alone: reading the whole table would fault in tens of megabytes of zero pages.
  const scores = bucketScoresOf(shape, embeddings, output, ids);
  return new LinearModel(shape, embeddings, output, header.bias, history, scores);
}
