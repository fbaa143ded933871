/**
 * Which processed training batches belong to the current split.
 *
 * `split_batches` replaces the batches of `data/batches/`, but the processed files in `data/processed/`
 * are another stage's outputs: after a new split, `train_batch_1.tsv` may still hold the tokens of the old
 * split's batch 1. Training on it beside the new batches would mix two datasets without a word. A processed
 * batch belongs to the current split when its meta file records the split's input checksum
 * (`manifest.source.sha256`) and its source batch has the checksum the manifest lists for that number.
 *
 * {@linkcode splitMismatch} is the decision, a pure function; {@linkcode retireProcessedBatches} applies it
 * when a split is made (deleting what no longer belongs), and train applies it before reading anything.
 *
 * @module
 */
import { join } from "node:path";
import { acquireLock, describeHolder, LockBusyError } from "../core/lock.ts";
import type { BatchManifest } from "./batches.ts";
import { type ProcessedMeta, readProcessedMeta } from "./processed_data.ts";

/** Name of processed batch `index`, e.g. `train_batch_0.tsv`. */
export function processedBatchFileName(index: number): string {
  return `train_batch_${index}.tsv`;
}

const PROCESSED_BATCH_FILE = /^train_batch_(0|[1-9]\d*)\.(tsv|meta\.json|rejects\.csv)$/;

/** `0, 1, 2` or `0-35` for a run of consecutive numbers; `none` when empty. */
export function describeIndexes(indexes: readonly number[]): string {
  if (indexes.length === 0) return "none";
  const sorted = [...indexes].sort((a, b) => a - b);
  const consecutive = sorted.every((value, i) => i === 0 || value === sorted[i - 1]! + 1);
  return consecutive && sorted.length > 2 ? `${sorted[0]}-${sorted.at(-1)}` : sorted.join(", ");
}

/** `batch 3`, `batches 0, 2`, `batches 0-35` or `no batches`. */
export function describeBatches(indexes: readonly number[]): string {
  if (indexes.length === 0) return "no batches";
  return `${indexes.length === 1 ? "batch" : "batches"} ${describeIndexes(indexes)}`;
}

function short(sha256: string): string {
  return sha256.slice(0, 12);
}

/**
 * Why processed batch `index` does not belong to the split `manifest` describes, or undefined when it does.
 *
 * @param index The batch number (from the processed file's name).
 * @param meta The processed file's meta.
 * @param manifest The current split's manifest.
 * @returns Why not, in words that do not depend on the batch number (so that batches can be grouped by
 *   reason), or undefined.
 *
 * @example Usage
 * ```ts ignore
 * import { splitMismatch } from "./split_membership.ts";
 * const reason = splitMismatch(1, meta, manifest);
 * if (reason) console.log(`skipping train_batch_1.tsv: not from the current split; ${reason}`);
 * ```
 */
export function splitMismatch(
  index: number,
  meta: ProcessedMeta,
  manifest: BatchManifest,
): string | undefined {
  if (meta.split === undefined) return "its meta file records no split (made by an older version)";
  if (meta.split.sourceSha256 !== manifest.source.sha256) {
    return `it was made from a split of another input (sha256 ${
      short(meta.split.sourceSha256)
    }…, the current ` +
      `split's is ${short(manifest.source.sha256)}…)`;
  }
  const entry = manifest.batches.find((batch) => batch.index === index);
  if (entry === undefined) {
    return `the current split has only ${describeBatches(manifest.batches.map((b) => b.index))}`;
  }
  if (meta.split.index !== index || meta.sourceSha256 !== entry.sha256) {
    return "its source batch differs from the current split's (same input, other batch boundaries)";
  }
  return undefined;
}

/** What {@linkcode retireProcessedBatches} deleted. */
export interface RetiredBatches {
  /** Batch numbers whose processed files were deleted, ascending. */
  indexes: number[];
  /** Every deleted file, relative to the processed folder. */
  files: string[];
  /** Reason per batch number. */
  reasons: Map<number, string>;
  /** Batches left alone because a preprocess run holds their lock, with that run's description. */
  busy: Map<number, string>;
}

/**
 * Deletes the processed training batches (`train_batch_N.tsv`, `.meta.json`, `.rejects.csv`) in
 * `processedDir` that do not belong to the split `manifest` describes: they are derived data of a split
 * that no longer exists, and leaving them would let `train --batches all` pick them up. A batch whose
 * processed files match the new split (an identical batch of the same input) is kept. The `.tsv` goes
 * first, so an interrupted run never leaves a data file without its meta. Each batch is retired under its
 * output lock (`train_batch_N.tsv.lock`, the one preprocess holds); one that a preprocess run is writing is
 * left alone and listed in `busy` (train still skips it if it does not belong to the split).
 *
 * @param processedDir The processed folder; a missing folder means nothing to retire.
 * @param manifest The manifest of the split just made.
 * @returns What was deleted, with the reason per batch.
 */
export async function retireProcessedBatches(
  processedDir: string,
  manifest: BatchManifest,
): Promise<RetiredBatches> {
  const byIndex = new Map<number, string[]>();
  try {
    for await (const entry of Deno.readDir(processedDir)) {
      const match = entry.isFile ? PROCESSED_BATCH_FILE.exec(entry.name) : null;
      if (!match) continue;
      const index = Number(match[1]);
      byIndex.set(index, [...(byIndex.get(index) ?? []), entry.name]);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return { indexes: [], files: [], reasons: new Map(), busy: new Map() };
    }
    throw error;
  }
  const retired: RetiredBatches = { indexes: [], files: [], reasons: new Map(), busy: new Map() };
  for (const index of [...byIndex.keys()].sort((a, b) => a - b)) {
    const names = byIndex.get(index)!;
    const tsv = processedBatchFileName(index);
    let reason: string | undefined;
    if (!names.includes(tsv)) {
      reason = "its .tsv is missing";
    } else {
      let meta: ProcessedMeta | undefined;
      try {
        meta = await readProcessedMeta(join(processedDir, tsv));
      } catch {
        reason = "its meta file is missing or unreadable";
      }
      if (meta !== undefined) reason = splitMismatch(index, meta, manifest);
    }
    if (reason === undefined) continue;
    let lock;
    try {
      lock = await acquireLock(join(processedDir, `${tsv}.lock`), {
        stage: "split_batches",
        what: join(processedDir, tsv),
      });
    } catch (error) {
      if (!(error instanceof LockBusyError)) throw error;
      retired.busy.set(index, describeHolder(error.holder));
      continue;
    }
    await using _lock = lock;
    // The .tsv first: a file set interrupted half-way is then only orphaned meta or rejects.
    const ordered = [...names].sort((a, b) => (a === tsv ? -1 : b === tsv ? 1 : a.localeCompare(b)));
    for (const name of ordered) {
      try {
        await Deno.remove(join(processedDir, name));
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
      retired.files.push(name);
    }
    retired.indexes.push(index);
    retired.reasons.set(index, reason);
  }
  return retired;
}
