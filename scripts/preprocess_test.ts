/**
 * Stage `preprocess_test`: tokenizes the test set, `data/raw/test.csv`, into `data/processed/test.tsv`
 * (one `<polarity>\t<tokens>` line per review), with `test.meta.json` (source SHA-256, counts, tokenizer
 * info) and `test.rejects.csv`. A rerun on an unchanged test set with an unchanged tokenizer does nothing
 * ("up to date"); `--force` redoes it.
 *
 * Run: `deno task preprocess_test [--force] [--workers N] [--json]`
 * (`deno run -q -P=preprocess_test --v8-flags=--max-semi-space-size=2,--max-old-space-size=512
 * scripts/preprocess_test.ts`: reads data/raw, data/processed and lib (the worker module), writes
 * data/processed). The V8 flags keep each thread's heap small (V8 sizes heaps for the machine's RAM
 * otherwise): measured peak RSS ~200 MB instead of ~300-440 MB with two threads, for 5-10% more CPU time.
 * The live heap is a few tens of MB (a bounded word cache, a few chunks), far below the 512 MB cap.
 *
 * @example Usage
 * ```sh
 * deno task preprocess_test --json
 * ```
 *
 * @module
 */
import { defineStage, requireIngested, runStage, type StageContext, type StageResult } from "./_cli.ts";
import { PREPROCESS_HELP, PREPROCESS_OPTIONS, preprocessStage, workersFlag } from "./_preprocess_cli.ts";
import { PROCESSED_TEST_PATH, RAW_TEST_PATH } from "../lib/data/layout.ts";

const USAGE = `Usage: deno task preprocess_test ${PREPROCESS_HELP.flags}

Tokenizes ${RAW_TEST_PATH} into ${PROCESSED_TEST_PATH}, one line "<polarity><TAB><tokens>" per review, plus
data/processed/test.meta.json (source SHA-256, row counts, tokenizer version) and
data/processed/test.rejects.csv (lines that gave no row, with line number and reason).
Skips the work when the test set and the tokenizer are unchanged since the last run.

Options:
${PREPROCESS_HELP.options}`;

/** Command line of the stage. */
export const spec = defineStage({
  name: "preprocess_test",
  usage: USAGE,
  options: PREPROCESS_OPTIONS,
});

/** Tokenizes the test set; see the module doc. */
export async function main(ctx: StageContext<typeof spec.options>): Promise<StageResult> {
  const workers = workersFlag(ctx);
  await requireIngested(RAW_TEST_PATH);

  return await preprocessStage(ctx, { source: RAW_TEST_PATH, output: PROCESSED_TEST_PATH, workers });
}

if (import.meta.main) await runStage(spec, Deno.args, main);
