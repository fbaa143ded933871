/**
 * `deno task feature_study`: how tokenizer settings and epochs change the linear model's accuracy on real
 * reviews, measured two ways:
 *
 * - **random split**: 80/20 hold-out over all reviews, three seeds, mean accuracy;
 * - **leave one source out**: train on seven of the folder's sources, score the eighth, for each source;
 *   the pooled accuracy over all reviews, then the mean over sources. It rewards what transfers to a
 *   product domain the training data did not cover, which a random split cannot see.
 *
 * It reads every `*.csv` of `--data` (default `../shared/data/reviews`, the development data: not shipped
 * with the project), writes its processed copies under `.tmp-bench/features/` and prints a Markdown table;
 * the figures in `docs/model/index.md` come from it. About 2 minutes on 2 cores for 18,753 reviews.
 *
 * @module
 */
import { basename, join } from "node:path";
import { AtomicTextWriter } from "../lib/core/atomic_file.ts";
import { PipelineError } from "../lib/core/errors.ts";
import {
  type LinearParams,
  resolveLinearParams,
  scoreLinear,
  type TrainingFile,
  trainLinear,
} from "../lib/models/linear/trainer.ts";
import { formatProcessedLine } from "../lib/data/processed_data.ts";
import { fileStream, readReviews } from "../lib/data/review_reader.ts";
import { createTokenizer, type TokenizerConfig } from "../lib/features/tokenizer.ts";
import { defineStage, runStage, type StageContext, type StageResult } from "../scripts/_cli.ts";

/** One row of the study: a tokenizer configuration and linear parameters. */
export interface StudyVariant {
  name: string;
  tokenizer: Partial<TokenizerConfig>;
  params: Partial<LinearParams>;
}

/** The rows of the table: the previous defaults first, then one change at a time, then the defaults. */
export const VARIANTS: readonly StudyVariant[] = [
  {
    name: "`t:` and plain titles, no lexicon, 5 epochs (before)",
    tokenizer: { title: "both", lexicon: false },
    params: { epochs: 5 },
  },
  { name: "`t:` and plain titles, no lexicon", tokenizer: { title: "both", lexicon: false }, params: {} },
  { name: "plain titles, no lexicon", tokenizer: { title: "plain", lexicon: false }, params: {} },
  { name: "plain titles, lexicon, 5 epochs", tokenizer: {}, params: { epochs: 5 } },
  { name: "plain titles, lexicon, 20 epochs", tokenizer: {}, params: { epochs: 20 } },
  { name: "plain titles, lexicon, no negation marking", tokenizer: { negation: false }, params: {} },
  { name: "**plain titles, lexicon (the defaults)**", tokenizer: {}, params: {} },
];

const SEEDS = [1000, 1001, 1002];
const OUT_DIR = ".tmp-bench/features";

const spec = defineStage({
  name: "feature_study",
  usage: `Usage: deno task feature_study [--data DIR]

Trains the linear model (10 epochs and the other defaults unless a row says otherwise) under several tokenizer
settings on the real reviews of DIR (default ../shared/data/reviews), and prints accuracy on a random 80/20
split (3 seeds) and leave-one-source-out (train on all CSV files but one, score that one) as a Markdown table.`,
  options: { data: { type: "string" } },
});

type Ctx = StageContext<typeof spec.options>;

/**
 * Tokenises every CSV of `dir` with `config` into `<out>/<source>.tsv`, dropping reviews without tokens as
 * the preprocess stages do.
 *
 * @returns One training file per CSV, keyed by its position in `csvs`.
 */
export async function prepareSources(
  dir: string,
  csvs: readonly string[],
  config: Partial<TokenizerConfig>,
  out: string,
): Promise<TrainingFile[]> {
  const tokenizer = createTokenizer(config);
  await Deno.mkdir(out, { recursive: true });
  const files: TrainingFile[] = [];
  for (const [key, name] of csvs.entries()) {
    using input = await Deno.open(join(dir, name));
    await using output = await AtomicTextWriter.create(join(out, basename(name, ".csv") + ".tsv"));
    let rows = 0;
    for await (const { review } of readReviews(fileStream(input))) {
      const tokens = tokenizer.tokenizeReview(review);
      if (tokens.length === 0) continue;
      const flushed = output.write(formatProcessedLine(review.polarity, tokens));
      if (flushed) await flushed;
      rows++;
    }
    const { path } = await output.commit();
    files.push({ path, rows, key });
  }
  return files;
}

/** Accuracy of one configuration on a random split and leaving each source out. */
export interface StudyResult {
  /** Mean accuracy over the random 80/20 splits. */
  random: number;
  /** Leave-one-source-out accuracy over all reviews (each source scored by the model trained without it). */
  pooled: number;
  /** Leave-one-source-out accuracy of each source, in the order of the files. */
  perSource: number[];
}

/**
 * Trains and scores the linear model on `files`: three random 80/20 splits, then once per file with that file
 * held out.
 */
export async function measure(
  files: readonly TrainingFile[],
  params: LinearParams,
  signal?: AbortSignal,
): Promise<StudyResult> {
  let random = 0;
  for (const [i, seed] of SEEDS.entries()) {
    const holdout = { fraction: 0.2, seed };
    const { model } = await trainLinear({
      files,
      params: { ...params, seed: params.seed + i },
      holdout,
      signal,
    });
    random += (await scoreLinear(model, files, { holdout, signal })).accuracy / SEEDS.length;
  }
  const perSource: number[] = [];
  let correct = 0;
  let rows = 0;
  for (const held of files) {
    const { model } = await trainLinear({
      files: files.filter((file) => file !== held),
      params,
      ...(signal ? { signal } : {}),
    });
    const score = await scoreLinear(model, [held], signal ? { signal } : {});
    perSource.push(score.accuracy);
    correct += score.accuracy * score.rows;
    rows += score.rows;
  }
  return { random, pooled: correct / rows, perSource };
}

const percent = (value: number) => (100 * value).toFixed(1);

async function main(ctx: Ctx): Promise<StageResult> {
  const dir = ctx.values.data ?? "../shared/data/reviews";
  let csvs: string[];
  try {
    csvs = (await Array.fromAsync(Deno.readDir(dir))).filter((entry) =>
      entry.isFile && entry.name.endsWith(".csv")
    )
      .map((entry) => entry.name).sort();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new PipelineError(`${dir} not found; pass --data DIR`);
    throw error;
  }
  if (csvs.length < 2) {
    throw new PipelineError(`${dir} needs at least two CSV files (sources) to leave one out`);
  }
  const prepared = new Map<string, TrainingFile[]>();
  const rows: string[] = [];
  const results = [];
  for (const variant of VARIANTS) {
    const key = JSON.stringify(variant.tokenizer);
    let files = prepared.get(key);
    if (!files) {
      files = await prepareSources(dir, csvs, variant.tokenizer, join(OUT_DIR, String(prepared.size)));
      prepared.set(key, files);
    }
    const params = resolveLinearParams(variant.params);
    const result = await measure(files, params, ctx.signal);
    ctx.log.info(variant.name, { random: result.random, pooled: result.pooled });
    results.push({ variant: variant.name, epochs: params.epochs, ...result });
    const mean = result.perSource.reduce((sum, value) => sum + value, 0) / result.perSource.length;
    rows.push(
      `| ${variant.name} | ${params.epochs} | ${percent(result.random)} | ${percent(result.pooled)} | ${
        percent(mean)
      } | ${result.perSource.map(percent).join(" / ")} |`,
    );
  }
  const reviews = [...prepared.values()][0]!.reduce((sum, file) => sum + file.rows, 0);
  const table = [
    `${reviews} reviews in ${csvs.length} sources of ${dir}; per source, in order: ${
      csvs.map((name) => basename(name, ".csv")).join(", ")
    }`,
    "",
    "| tokens | epochs | random 80/20 | leave one source out: pooled | mean of sources | per source |",
    "|---|---:|---:|---:|---:|---|",
    ...rows,
  ].join("\n");
  return { json: { sources: csvs, reviews, results }, text: table };
}

if (import.meta.main) await runStage(spec, Deno.args, main);
