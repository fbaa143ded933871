/**
 * Stage `preprocess_batch`: tokenizes one training batch, `data/batches/train_batch_<N>.csv`, into
 * `data/processed/train_batch_<N>.tsv` (one `<polarity>\t<tokens>` line per review), with
 * `train_batch_<N>.meta.json` (source SHA-256, counts, tokenizer info) and `train_batch_<N>.rejects.csv`.
 * A rerun on an unchanged batch with an unchanged tokenizer does nothing ("up to date"); `--force` redoes it.
 *
 * Run: `deno task preprocess_batch N [--force] [--workers N] [--json]`
 * (`deno run -q -P=preprocess_batch --v8-flags=--max-semi-space-size=2,--max-old-space-size=512
 * scripts/preprocess_batch.ts`: reads data/batches, data/processed and lib (the worker module), writes
 * data/processed). The V8 flags keep each thread's heap small (V8 sizes heaps for the machine's RAM
 * otherwise): measured peak RSS ~200 MB instead of ~300-440 MB with two threads, for 5-10% more CPU time.
 * The live heap is a few tens of MB (a bounded word cache, a few chunks), far below the 512 MB cap.
 *
 * @example Usage
 * ```sh
 * deno task preprocess_batch 0
 * deno task preprocess_batch --batch 3 --force --json
 * ```
 *
 * @module
 */
import { join } from "node:path";
import { defineStage, runStage, type StageContext, type StageResult } from "./_cli.ts";
import { PREPROCESS_HELP, PREPROCESS_OPTIONS, preprocessStage, workersFlag } from "./_preprocess_cli.ts";
import { MANIFEST_FILE, readManifest } from "../lib/data/batches.ts";
import { BATCHES_DIR, batchFileName, listBatchIndexes, PROCESSED_DIR } from "../lib/data/layout.ts";
import { PipelineError, UsageError } from "../lib/core/errors.ts";
import { parseIntegerFlag } from "../lib/core/flags.ts";

const USAGE = `Usage: deno task preprocess_batch N ${PREPROCESS_HELP.flags}
       deno task preprocess_batch --batch N [...]

Tokenizes ${BATCHES_DIR}/train_batch_N.csv into ${PROCESSED_DIR}/train_batch_N.tsv, one line
"<polarity><TAB><tokens>" per review, plus train_batch_N.meta.json (source SHA-256, row counts,
tokenizer version) and train_batch_N.rejects.csv (lines that gave no row, with line number and reason).
Skips the work when the batch and the tokenizer are unchanged since the last run.

Options:
  N, --batch N     Batch number (0, 1, 2, ...), as written by split_batches
${PREPROCESS_HELP.options}`;

/** Command line of the stage. */
export const spec = defineStage({
  name: "preprocess_batch",
  usage: USAGE,
  options: {
    batch: { type: "string" },
    ...PREPROCESS_OPTIONS,
  },
  allowPositionals: true,
});

type PreprocessBatchContext = StageContext<typeof spec.options>;

/** The batch number from `N` or `--batch N`; exactly one of them, a non-negative integer. */
export function batchNumber(ctx: Pick<PreprocessBatchContext, "values" | "positionals">): number {
  const flag = ctx.values.batch;
  if (ctx.positionals.length > 1) {
    throw new UsageError(
      `expected one batch number, got ${ctx.positionals.length}: ${ctx.positionals.join(" ")}`,
    );
  }
  const positional = ctx.positionals[0];
  if (flag !== undefined && positional !== undefined) {
    throw new UsageError("give the batch number either as N or as --batch N, not both");
  }
  const value = flag ?? positional;
  if (value === undefined) throw new UsageError("missing batch number; e.g. deno task preprocess_batch 0");
  return parseIntegerFlag(flag !== undefined ? "--batch" : "batch number", value, { min: 0 });
}

/** Tokenizes one batch; see the module doc. */
export async function main(ctx: PreprocessBatchContext): Promise<StageResult> {
  const batch = batchNumber(ctx);
  const workers = workersFlag(ctx);
  const source = join(BATCHES_DIR, batchFileName(batch));
  const available = await listBatchIndexes(BATCHES_DIR, ".csv");
  if (!available.includes(batch)) {
    throw new PipelineError(
      `batch ${batch} not found in ${BATCHES_DIR} (available: ${
        available.length > 0 ? available.join(", ") : "none"
      }); run split_batches first`,
    );
  }

  // The split manifest says which batches belong together; a batch it does not list, or whose bytes
  // differ from its checksum, is a leftover of another split and would silently mix two datasets.
  const manifest = await readManifest(BATCHES_DIR);
  const entry = manifest?.batches.find((candidate) => candidate.index === batch);
  if (manifest && !entry) {
    throw new PipelineError(
      `batch ${batch} is not listed in ${
        join(BATCHES_DIR, MANIFEST_FILE)
      } (a leftover of an older split?); ` +
        `rerun "deno task split_batches --force"`,
    );
  }
  return await preprocessStage(ctx, {
    batch,
    source,
    expectedSha256: entry?.sha256,
    ...(manifest && entry ? { split: { sourceSha256: manifest.source.sha256, index: entry.index } } : {}),
    output: join(PROCESSED_DIR, batchFileName(batch, ".tsv")),
    workers,
  });
}

if (import.meta.main) await runStage(spec, Deno.args, main);
