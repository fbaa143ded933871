/**
 * Stage `split_batches`: reads `data/raw/train.csv` and writes `data/batches/train_batch_<i>.csv`,
 * `data/batches/manifest.json` (source size and SHA-256, per-batch rows, bytes, SHA-256 and first input
 * line) and `data/batches/rejects.csv` (`line,reason,raw` of every line that is not a valid review).
 *
 * Accepted lines are copied unchanged, so concatenating the batches gives back the input's valid rows.
 * A rerun with the same input and flags does nothing ("up to date"); `--force` splits again.
 *
 * A new split retires the processed batches of the old one: every `data/processed/train_batch_<i>.*`
 * that does not match the new manifest is deleted, and the log says which and why, so that no later
 * `train --batches all` can mix two splits (`lib/data/split_membership.ts`).
 *
 * Run: `deno task split_batches [--batch-size N | --num-batches N] [--force] [--json]`
 * (`deno run -q -P=split_batches scripts/split_batches.ts`, reads data/raw and data/batches, writes
 * data/batches; reads and deletes in data/processed the batches of an old split).
 *
 * @example Usage
 * ```sh
 * deno task split_batches --batch-size 50000
 * ```
 *
 * @module
 */
import { defineStage, requireIngested, runStage, type StageContext, type StageResult } from "./_cli.ts";
import { DEFAULT_BATCH_SIZE, readManifest, splitBatches } from "../lib/data/batches.ts";
import { describeBatches, retireProcessedBatches } from "../lib/data/split_membership.ts";
import { UsageError } from "../lib/core/errors.ts";
import { intFlag } from "../lib/core/flags.ts";
import { createProgress, type Progress } from "../lib/core/progress.ts";
import { BATCHES_DIR, PROCESSED_DIR, RAW_TRAIN_PATH } from "../lib/data/layout.ts";

const USAGE =
  `Usage: deno task split_batches [--batch-size N | --num-batches N] [--force] [--skip-space-check]
                                [--json] [--help]

Splits ${RAW_TRAIN_PATH} into ${BATCHES_DIR}/train_batch_0.csv, train_batch_1.csv, ... and writes
${BATCHES_DIR}/manifest.json (checksums, row counts) and ${BATCHES_DIR}/rejects.csv (lines that are not
valid reviews, with their line number and reason). Skips the work when the input and the flags are
unchanged since the last run. Processed batches in ${PROCESSED_DIR}/ that do not belong to the new
split are deleted (the log names them), so train never mixes two splits.

Options:
  --batch-size N    Rows per batch (default ${DEFAULT_BATCH_SIZE})
  --num-batches N   Split into N batches of nearly equal size instead (counts the lines first)
  --force           Split again even when the input and the flags are unchanged
  --skip-space-check
                    Write even when the disk has less free space than the input's size, which the
                    new split needs beside the old one (--force does not skip this check)
  --json            Print {batches, rows, rejected, skipped, manifest, retired} as JSON on stdout
  -h, --help        Show this help
`;

/** Command line of the stage. */
export const spec = defineStage({
  name: "split_batches",
  usage: USAGE,
  options: {
    "batch-size": { type: "string" },
    "num-batches": { type: "string" },
    force: { type: "boolean" },
    "skip-space-check": { type: "boolean" },
  },
});

/** Splits the training CSV; see the module doc. */
export async function main(ctx: StageContext<typeof spec.options>): Promise<StageResult> {
  const { values } = ctx;
  if (values["batch-size"] !== undefined && values["num-batches"] !== undefined) {
    throw new UsageError("--batch-size and --num-batches are mutually exclusive; give one of them");
  }
  const numBatches = intFlag("--num-batches", values["num-batches"], { min: 1 });
  const batchSize = numBatches === undefined
    ? intFlag("--batch-size", values["batch-size"], { min: 1 }) ?? DEFAULT_BATCH_SIZE
    : undefined;

  await requireIngested(RAW_TRAIN_PATH);

  const started = performance.now();
  const progress: Partial<Record<"scan" | "split", Progress>> = {};
  const result = await (async () => {
    try {
      return await splitBatches({
        input: RAW_TRAIN_PATH,
        outputDir: BATCHES_DIR,
        batchSize,
        numBatches,
        force: ctx.values.force === true,
        checkSpace: ctx.values["skip-space-check"] !== true,
        signal: ctx.signal,
        log: ctx.log,
        onProgress: (phase, done, total) => {
          progress[phase] ??= createProgress(phase === "scan" ? "checking input" : "splitting", {
            unit: "MB",
            total: Math.ceil(total / 1e6),
          });
          progress[phase].update(Math.floor(done / 1e6));
        },
      });
    } finally {
      progress.scan?.finish();
      progress.split?.finish();
    }
  })();

  const seconds = (performance.now() - started) / 1000;
  // Checked on every run, also an up-to-date one: a split interrupted before this step left them behind.
  const manifest = await readManifest(BATCHES_DIR);
  const retired = manifest ? await retireProcessedBatches(PROCESSED_DIR, manifest) : undefined;
  if (retired && retired.indexes.length > 0) {
    const byReason = new Map<string, number[]>();
    for (const [index, reason] of retired.reasons) {
      byReason.set(reason, [...(byReason.get(reason) ?? []), index]);
    }
    for (const [reason, indexes] of byReason) {
      ctx.log.info(
        `retired processed ${describeBatches(indexes)} of an older split from ${PROCESSED_DIR} ` +
          `(deleted their .tsv, .meta.json and .rejects.csv): ${reason}`,
      );
    }
  }
  for (const [index, holder] of retired?.busy ?? []) {
    ctx.log.warn(
      `${PROCESSED_DIR}/train_batch_${index}.tsv does not belong to the new split but ${holder} is writing it; ` +
        `left in place (train skips it)`,
    );
  }
  const summary = result.skipped
    ? `${BATCHES_DIR} is up to date: ${result.batches} batches, ${result.rows} rows, ${result.rejected} rejected`
    : `wrote ${result.batches} batches to ${BATCHES_DIR}: ${result.rows} rows, ${result.rejected} rejected, ` +
      `${(result.bytes / 1e6).toFixed(1)} MB in ${seconds.toFixed(1)} s (${
        (result.bytes / 1e6 / Math.max(seconds, 1e-3)).toFixed(0)
      } MB/s)`;
  return {
    json: {
      batches: result.batches,
      rows: result.rows,
      rejected: result.rejected,
      skipped: result.skipped,
      manifest: result.manifest,
      retired: retired?.indexes ?? [],
    },
    text: summary,
  };
}

if (import.meta.main) await runStage(spec, Deno.args, main);
