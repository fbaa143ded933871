/**
 * What the two tokenizing stages, `preprocess_batch` and `preprocess_test`, share on the command line:
 * their common flags (`--force`, `--workers N`) and the usage lines that describe them, the parsing of
 * `--workers`, and the run of {@linkcode preprocessFile} with the result it prints (`--json` object and
 * one-line summary).
 *
 * @example A stage built on it
 * ```ts
 * import { defineStage, type StageContext, type StageResult } from "./_cli.ts";
 * import { PREPROCESS_HELP, PREPROCESS_OPTIONS, preprocessStage, workersFlag } from "./_preprocess_cli.ts";
 * import { PROCESSED_TEST_PATH, RAW_TEST_PATH } from "../lib/data/layout.ts";
 *
 * const usage = `Usage: deno task preprocess_test ${PREPROCESS_HELP.flags}
 *
 * Options:
 * ${PREPROCESS_HELP.options}`;
 * const spec = defineStage({ name: "preprocess_test", usage, options: PREPROCESS_OPTIONS });
 *
 * async function main(ctx: StageContext<typeof spec.options>): Promise<StageResult> {
 *   const workers = workersFlag(ctx); // before the input checks: a bad flag is a usage error (exit 2)
 *   const [source, output] = [RAW_TEST_PATH, PROCESSED_TEST_PATH];
 *   return await preprocessStage(ctx, { source, output, workers });
 * }
 * ```
 *
 * @module
 */
import type { StageContext, StageResult } from "./_cli.ts";
import { intFlag } from "../lib/core/flags.ts";
import { INLINE_MAX_BYTES, preprocessFile, PROCESSED_SIZE_RATIO } from "../lib/features/preprocess.ts";
import type { ProcessedSplit } from "../lib/data/processed_data.ts";

/** The usage text of the flags both stages take. */
export const PREPROCESS_HELP = {
  /** For the `Usage:` line, after the stage's own arguments. */
  flags: "[--force] [--workers N] [--skip-space-check] [--json] [--help]",
  /** The `Options:` lines, after the stage's own options. */
  options: `  --force          Rebuild even when the output is up to date
  --workers N      Tokenizer threads besides the main thread, which helps when they are
                   busy; 0 tokenizes on the main thread only (default: 0 for inputs under
                   ${INLINE_MAX_BYTES / 2 ** 20} MB, else one less than the CPU cores, at least 1)
  --skip-space-check
                   Write even when the disk has less free space than the output needs
                   (about ${PROCESSED_SIZE_RATIO}x the source; --force does not skip this check)
  --json           Print {output, rows, rejected, skipped, seconds, ...} as JSON on stdout
  -h, --help       Show this help
`,
} as const;

/** The `StageSpec.options` both stages declare (`--help` and `--json` come from `runStage`). */
export const PREPROCESS_OPTIONS = {
  force: { type: "boolean" },
  workers: { type: "string" },
  "skip-space-check": { type: "boolean" },
} as const;

/** The flags {@linkcode preprocessStage} and {@linkcode workersFlag} read. */
type PreprocessContext = StageContext<typeof PREPROCESS_OPTIONS>;

/** Most tokenizer threads `--workers` accepts. */
const MAX_WORKERS = 64;

/**
 * The `--workers N` value: an integer from 0 to 64, or `undefined` when the flag is absent (then
 * {@linkcode preprocessFile} picks the count from the input's size).
 *
 * @throws {UsageError} When the value is not such an integer.
 */
export function workersFlag(ctx: Pick<PreprocessContext, "values">): number | undefined {
  return intFlag("--workers", ctx.values.workers, { min: 0, max: MAX_WORKERS });
}

/** What {@linkcode preprocessStage} tokenizes. */
export interface PreprocessStageInput {
  /** The review CSV, as printed in the result. */
  source: string;
  /** The `.tsv` to write. */
  output: string;
  /** From {@linkcode workersFlag}. */
  workers: number | undefined;
  /** SHA-256 the source must have (a batch's checksum in the split manifest), when known. */
  expectedSha256?: string;
  /** The split the batch belongs to, recorded in the meta file (see `ProcessedMeta.split`). */
  split?: ProcessedSplit;
  /** The batch number, for `preprocess_batch`: the first field of the `--json` object. */
  batch?: number;
}

/**
 * Tokenizes `input.source` into `input.output` with the stage's `--force`, signal and logger, and returns
 * what the stage prints: with `--json` `{batch?, output, rows, rejected, skipped, seconds, read, meta,
 * rejects, source, sourceSha256}`, else one line saying what was written or that it was up to date.
 */
export async function preprocessStage(
  ctx: PreprocessContext,
  input: PreprocessStageInput,
): Promise<StageResult> {
  const result = await preprocessFile({
    source: input.source,
    ...(input.expectedSha256 !== undefined ? { expectedSha256: input.expectedSha256 } : {}),
    ...(input.split !== undefined ? { split: input.split } : {}),
    output: input.output,
    force: ctx.values.force === true,
    checkSpace: ctx.values["skip-space-check"] !== true,
    workers: input.workers,
    signal: ctx.signal,
    log: ctx.log,
  });
  return {
    json: {
      ...(input.batch !== undefined ? { batch: input.batch } : {}),
      output: result.output,
      rows: result.rows,
      rejected: result.rejected,
      skipped: result.skipped,
      seconds: Number(result.seconds.toFixed(3)),
      read: result.read,
      meta: result.meta,
      rejects: result.rejects,
      source: input.source,
      sourceSha256: result.sourceSha256,
    },
    text: result.skipped
      ? `${result.output} is up to date: ${result.rows} rows, ${result.rejected} rejected`
      : `wrote ${result.output}: ${result.rows} rows, ${result.rejected} rejected in ${
        result.seconds.toFixed(1)
      } s`,
  };
}
