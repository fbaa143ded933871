/**
 * Where the pipeline's data lives: the stage folders under `data/` and the names of the files in them.
 * The data is a chain of stage folders, each written by one stage and read by the next:
 *
 * | folder            | written by                        | holds                                         |
 * | ----------------- | --------------------------------- | --------------------------------------------- |
 * | `data/external/`  | you                               | datasets to ingest from a path                |
 * | `data/downloads/` | ingest                            | downloaded archives, kept to resume           |
 * | `data/raw/`       | ingest (then never changed)       | `train.csv`, `test.csv`, rejects, manifest    |
 * | `data/batches/`   | split_batches                     | `train_batch_N.csv`, manifest, rejects        |
 * | `data/processed/` | preprocess_batch, preprocess_test | `train_batch_N.tsv`, `test.tsv`, their meta   |
 *
 * Paths are relative to the project root (the stages run there, and their permission sets in deno.json
 * name the same folders). This module is the one place that spells them.
 *
 * @module
 */
import { join } from "node:path";

/** Datasets a user puts there to ingest from a path. */
export const EXTERNAL_DIR = "data/external";
/** Downloaded archives (kept so an interrupted download resumes). */
export const DOWNLOADS_DIR = "data/downloads";
/** Ingested data: immutable after ingest. */
export const RAW_DIR = "data/raw";
/** Training batches written by split_batches. */
export const BATCHES_DIR = "data/batches";
/** Tokenised files written by preprocess_batch and preprocess_test. */
export const PROCESSED_DIR = "data/processed";

/** Name of the training set in `data/raw/` (and in the datasets ingest reads). */
export const TRAIN_FILE = "train.csv";
/** Name of the test set in `data/raw/` (and in the datasets ingest reads). */
export const TEST_FILE = "test.csv";
/** The ingested training set. */
export const RAW_TRAIN_PATH: string = join(RAW_DIR, TRAIN_FILE);
/** The ingested test set. */
export const RAW_TEST_PATH: string = join(RAW_DIR, TEST_FILE);
/** The tokenised test set that evaluate scores. */
export const PROCESSED_TEST_PATH: string = join(PROCESSED_DIR, "test.tsv");

const BATCH_PREFIX = "train_batch_";
// Batch numbers are written without leading zeros, so each batch has exactly one name.
const BATCH_INDEX = "(0|[1-9]\\d*)";

/** Extension of a batch file: the split CSV, or its tokenised TSV. */
export type BatchExtension = ".csv" | ".tsv";

/**
 * Name of batch `index` in its folder.
 *
 * @example Usage
 * ```ts
 * import { batchFileName } from "./layout.ts";
 * batchFileName(3); // "train_batch_3.csv"
 * batchFileName(3, ".tsv"); // "train_batch_3.tsv"
 * ```
 */
export function batchFileName(index: number, extension: BatchExtension = ".csv"): string {
  return `${BATCH_PREFIX}${index}${extension}`;
}

/**
 * The batch number of a file name that is `train_batch_<N><suffix>`, or `undefined`.
 *
 * @param name A file name (no folder).
 * @param suffix What follows the number, e.g. `".csv"`, `".tsv"`, `".csv.partial"`, or `""` for a stem.
 *
 * @example Usage
 * ```ts
 * import { batchIndexOf } from "./layout.ts";
 * batchIndexOf("train_batch_12.tsv", ".tsv"); // 12
 * batchIndexOf("train_batch_012.tsv", ".tsv"); // undefined
 * ```
 */
export function batchIndexOf(name: string, suffix: string): number | undefined {
  const escaped = suffix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const match = new RegExp(`^${BATCH_PREFIX}${BATCH_INDEX}${escaped}$`).exec(name);
  return match ? Number(match[1]) : undefined;
}

/**
 * The batch numbers of the batch files in a folder, ascending; empty when the folder does not exist.
 *
 * @param dir E.g. {@linkcode BATCHES_DIR} or {@linkcode PROCESSED_DIR}.
 * @param extension `.csv` for split batches, `.tsv` for processed ones.
 */
export async function listBatchIndexes(dir: string, extension: BatchExtension): Promise<number[]> {
  const found: number[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      const index = entry.isFile ? batchIndexOf(entry.name, extension) : undefined;
      if (index !== undefined) found.push(index);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return found;
    throw error;
  }
  return found.sort((a, b) => a - b);
}
