/**
 * `deno task feature_study`: how the linear model's settings (pooling, naive-Bayes weighting, epochs,
 * tokenizer) change its accuracy on real reviews, and its margin over the peers of the benchmark, measured
 * two ways:
 *
 * - **random split**: 80/20 hold-out over all reviews, three seeds, accuracy over the three test sets;
 * - **leave one source out**: train on seven of the folder's sources, score the eighth, for each source;
 *   the pooled accuracy over all reviews, then the mean over sources. It rewards what transfers to a
 *   product domain the training data did not cover, which a random split cannot see.
 *
 * The peers (`tools/bench_peers.py`: scikit-learn's forest, TF-IDF + logistic regression on words, on
 * characters, and on both, NB-SVM, fastText) are trained and scored on exactly the same splits, from the raw title and text of the
 * same reviews. Every accuracy and every margin (ours minus the best peer) comes with a 95% bootstrap
 * interval over reviews (`_intervals.ts`); margins are paired, review by review. Training times are summed
 * over the 11 fits of each model in this one run (ours single-threaded, including its tokenizing, fastText
 * on every core), so their ratio means something even on a busy machine.
 *
 * It reads every `*.csv` of `--data` (default `../shared/data/reviews`, the development data: not shipped
 * with the project), writes its processed copies under `.tmp-bench/features/` and prints Markdown tables;
 * the figures in `docs/model/index.md` and `LINEAR_RECIPE_DOMAIN_SHIFT` in `lib/models/model_card.ts` come from
 * it. About 5 minutes on 2 cores for 18,752 reviews without the peers, 25 with them on a busy machine (the
 * character n-grams and the forest take most; `--no-peers` skips them; they need `make bench-deps`).
 *
 * @module
 */
import { basename, join } from "node:path";
import { AtomicTextWriter } from "../lib/core/atomic_file.ts";
import { PipelineError } from "../lib/core/errors.ts";
import {
  type HoldoutSplit,
  isHoldoutRow,
  type LinearParams,
  resolveLinearParams,
  scoreLinear,
  type TrainingFile,
  trainLinear,
} from "../lib/models/linear/trainer.ts";
import type { LinearModel } from "../lib/models/linear/model.ts";
import { formatProcessedLine, readProcessed } from "../lib/data/processed_data.ts";
import { fileStream, readReviews } from "../lib/data/review_reader.ts";
import { createTokenizer, type TokenizerConfig } from "../lib/features/tokenizer.ts";
import { defineStage, runStage, type StageContext, type StageResult } from "../scripts/_cli.ts";
import {
  accuracyInterval,
  formatPoints,
  type Interval,
  marginInterval,
  type UnitScores,
  unitScores,
} from "./_intervals.ts";

/** One row of the study: a tokenizer configuration and linear parameters. */
export interface StudyVariant {
  name: string;
  tokenizer: Partial<TokenizerConfig>;
  params: Partial<LinearParams>;
}

/** The previous defaults of the linear model: mean pooling, no weighting, 10 epochs at rate 0.25. */
const BEFORE: Partial<LinearParams> = { pooling: "mean", nbWeighting: 0, epochs: 10, learningRate: 0.25 };

/** The rows of the table: the previous defaults first, then one change at a time, then the defaults. */
export const VARIANTS: readonly StudyVariant[] = [
  { name: "mean pooling, no NB weighting, 10 epochs, rate 0.25 (before)", tokenizer: {}, params: BEFORE },
  { name: "√n pooling only (10 epochs)", tokenizer: {}, params: { nbWeighting: 0, epochs: 10 } },
  {
    name: "NB weighting only (mean pooling, 10 epochs, rate 0.25)",
    tokenizer: {},
    params: { pooling: "mean", epochs: 10, learningRate: 0.25 },
  },
  { name: "NB weighting 1 (NB-SVM's own scaling)", tokenizer: {}, params: { nbWeighting: 1 } },
  { name: "10 epochs", tokenizer: {}, params: { epochs: 10 } },
  { name: "rate 0.025", tokenizer: {}, params: { learningRate: 0.025 } },
  { name: "rate 0.1", tokenizer: {}, params: { learningRate: 0.1 } },
  { name: "no lexicon tokens", tokenizer: { lexicon: false }, params: {} },
  { name: "no negation marking", tokenizer: { negation: false }, params: {} },
  { name: "**the defaults**", tokenizer: {}, params: {} },
];

/** Seeds of the three random splits. */
export const SEEDS: readonly number[] = [1000, 1001, 1002];
const HOLDOUT_FRACTION = 0.2;
const OUT_DIR = ".tmp-bench/features";
/** The peers' interpreter and fastText: Debian's, as the benchmark uses (`make bench-deps`). */
const PYTHON = "/usr/bin/python3";
const FASTTEXT = "/usr/bin/fasttext";

/** The peers of the study, by their `bench_peers.py` name. */
export const STUDY_PEERS: readonly { id: string; name: string }[] = [
  { id: "sklearn-forest", name: "scikit-learn forest (100 trees, binary word 1–2-grams)" },
  { id: "tfidf-lr", name: "TF-IDF (word 1–2-grams) + LR" },
  { id: "tfidf-char-lr", name: "TF-IDF (char 2–5-grams) + LR" },
  { id: "tfidf-wc-lr", name: "TF-IDF (word 1–2 + char 2–5-grams) + LR" },
  { id: "nbsvm", name: "NB-SVM (word 1–2-grams)" },
  { id: "fasttext", name: "fastText (-wordNgrams 2)" },
];

const spec = defineStage({
  name: "feature_study",
  usage: `Usage: deno task feature_study [--data DIR] [--no-peers]

Trains the linear model under several settings on the real reviews of DIR (default ../shared/data/reviews;
the task may read that folder only: for another, run tools/feature_study.ts with -P=feature_study and an
--allow-read list that adds DIR),
and the benchmark's peers on the same splits, and prints accuracy on a random 80/20 split (3 seeds) and
leave-one-source-out (train on all CSV files but one, score that one) with 95% intervals, and the margin of
the default model over the best peer, as Markdown tables.

  --no-peers   measure only the linear model (the peers need ${PYTHON} with scikit-learn and ${FASTTEXT}:
               make bench-deps)`,
  options: { data: { type: "string" }, "no-peers": { type: "boolean" } },
});

type Ctx = StageContext<typeof spec.options>;

/** Sources tokenised with one configuration. */
export interface PreparedSources {
  /** One processed file per CSV, keyed by its position in the list of CSVs. */
  files: TrainingFile[];
  /**
   * The peers' input (`bench_peers.py --study`): `label<TAB>source<TAB>flags<TAB>title and text` for the
   * same reviews in the same order (file order, then row order), flags saying which random split holds
   * each out.
   */
  peersInput: string;
  /** Seconds spent tokenising every review (reading and writing excluded). */
  tokenizeSeconds: number;
}

/**
 * Tokenises every CSV of `dir` with `config` into `<out>/<source>.tsv`, dropping reviews without tokens as
 * the preprocess stages do, and writes the raw title and text of the kept reviews to `<out>/peers.tsv`
 * (the peers read text, not tokens).
 */
export async function prepareSources(
  dir: string,
  csvs: readonly string[],
  config: Partial<TokenizerConfig>,
  out: string,
): Promise<PreparedSources> {
  const tokenizer = createTokenizer(config);
  await Deno.mkdir(out, { recursive: true });
  const files: TrainingFile[] = [];
  let tokenizeSeconds = 0;
  await using peers = await AtomicTextWriter.create(join(out, "peers.tsv"));
  for (const [key, name] of csvs.entries()) {
    using input = await Deno.open(join(dir, name));
    await using output = await AtomicTextWriter.create(join(out, basename(name, ".csv") + ".tsv"));
    let rows = 0;
    for await (const { review } of readReviews(fileStream(input))) {
      const started = performance.now();
      const tokens = tokenizer.tokenizeReview(review);
      tokenizeSeconds += (performance.now() - started) / 1000;
      if (tokens.length === 0) continue;
      const flushed = output.write(formatProcessedLine(review.polarity, tokens));
      if (flushed) await flushed;
      // The peers' text as the benchmark gives it to them: title and text, the dataset's \n escapes (and
      // any tab or line break) as spaces.
      const text = `${review.title} ${review.text}`.replaceAll("\\n", " ").replace(/[\t\r\n]/g, " ");
      const flags = SEEDS.map((seed) => isHoldoutRow(holdoutOf(seed), key, rows) ? "1" : "0").join("");
      const peerFlushed = peers.write(`${review.polarity}\t${key}\t${flags}\t${text}\n`);
      if (peerFlushed) await peerFlushed;
      rows++;
    }
    const { path } = await output.commit();
    files.push({ path, rows, key });
  }
  const { path: peersInput } = await peers.commit();
  return { files, peersInput, tokenizeSeconds };
}

/** The random split of one seed. */
const holdoutOf = (seed: number) => ({ fraction: HOLDOUT_FRACTION, seed });

/** Which predictions of one model were right, in a fixed order of reviews (see {@linkcode StudyResult}). */
export interface StudyPredictions {
  /** Per random split, one flag per held-out review, in file order then row order. */
  random: Uint8Array[];
  /** One flag per review, in file order then row order, each scored by the model trained without its source. */
  loso: Uint8Array;
}

/** Accuracy of one configuration on a random split and leaving each source out. */
export interface StudyResult {
  /** Accuracy over the three random 80/20 splits' test sets together. */
  random: number;
  /** Leave-one-source-out accuracy over all reviews (each source scored by the model trained without it). */
  pooled: number;
  /** Leave-one-source-out accuracy of each source, in the order of the files. */
  perSource: number[];
  /** Which predictions were right, for intervals and paired margins. */
  predictions: StudyPredictions;
  /** Seconds of training summed over the 11 fits (3 splits, 8 sources). */
  trainSeconds: number;
}

/**
 * The reviews the random split `seed` holds out, as indices in file order then row order (the order of
 * {@linkcode StudyPredictions} and of the peers' input).
 */
export function heldOutReviews(files: readonly TrainingFile[], seed: number): number[] {
  const held: number[] = [];
  let i = 0;
  for (const file of files) {
    for (let row = 0; row < file.rows; row++, i++) {
      if (isHoldoutRow(holdoutOf(seed), file.key, row)) held.push(i);
    }
  }
  return held;
}

/** Right (1) or wrong (0) per scored review, in file order. */
async function rightPerReview(
  model: LinearModel,
  files: readonly TrainingFile[],
  options: { holdout?: HoldoutSplit; signal?: AbortSignal },
): Promise<Uint8Array> {
  const right: number[] = [];
  await scoreLinear(model, files, {
    ...options,
    onRow: (label, p) => right.push((p >= 0.5 ? 1 : 0) === label ? 1 : 0),
  });
  return Uint8Array.from(right);
}

const ratio = (flags: ArrayLike<number>) => {
  let sum = 0;
  for (let i = 0; i < flags.length; i++) sum += flags[i]!;
  return flags.length > 0 ? sum / flags.length : NaN;
};

/**
 * Trains and scores the linear model on `files`: three random 80/20 splits, then once per file with that file
 * held out.
 */
export async function measure(
  files: readonly TrainingFile[],
  params: LinearParams,
  signal?: AbortSignal,
): Promise<StudyResult> {
  const random: Uint8Array[] = [];
  let trainSeconds = 0;
  for (const [i, seed] of SEEDS.entries()) {
    const holdout = holdoutOf(seed);
    const trained = await trainLinear({
      files,
      params: { ...params, seed: params.seed + i },
      holdout,
      ...(signal ? { signal } : {}),
    });
    trainSeconds += trained.seconds;
    random.push(await rightPerReview(trained.model, files, { holdout, ...(signal ? { signal } : {}) }));
  }
  const perSource: number[] = [];
  const loso: number[] = [];
  for (const held of files) {
    const trained = await trainLinear({
      files: files.filter((file) => file !== held),
      params,
      ...(signal ? { signal } : {}),
    });
    trainSeconds += trained.seconds;
    const right = await rightPerReview(trained.model, [held], signal ? { signal } : {});
    perSource.push(ratio(right));
    loso.push(...right);
  }
  const allRandom = random.flatMap((flags) => [...flags]);
  return {
    random: ratio(allRandom),
    pooled: ratio(loso),
    perSource,
    predictions: { random, loso: Uint8Array.from(loso) },
    trainSeconds,
  };
}

/** A peer's probabilities on the study's splits, as `bench_peers.py --study` writes them. */
interface PeerOutput {
  random: number[][];
  loso: number[];
  train_seconds: number[];
}

/** Labels of every review (1 = positive), in file order. */
async function labelsOf(files: readonly TrainingFile[], signal?: AbortSignal): Promise<Uint8Array> {
  const labels: number[] = [];
  for (const file of files) {
    for await (const row of readProcessed(file.path, signal ? { signal } : {})) {
      labels.push(row.polarity === 2 ? 1 : 0);
    }
  }
  return Uint8Array.from(labels);
}

/**
 * Runs one peer on the study's splits (`bench_peers.py --study`); its predictions as right/wrong flags, in
 * the order of {@linkcode measure}'s.
 */
async function runPeer(
  peer: string,
  input: string,
  labels: Uint8Array,
  files: readonly TrainingFile[],
  signal?: AbortSignal,
): Promise<{ predictions: StudyPredictions; trainSeconds: number }> {
  const out = join(OUT_DIR, `peer-${peer}.json`);
  const output = await new Deno.Command(PYTHON, {
    args: ["tools/bench_peers.py", "--peer", peer, "--study", input, "--out", out, "--fasttext", FASTTEXT],
    stdout: "piped",
    stderr: "piped",
    ...(signal ? { signal } : {}),
  }).output();
  if (!output.success) {
    const last = new TextDecoder().decode(output.stderr).trim().split("\n").at(-1) ?? "no output";
    throw new PipelineError(`peer ${peer} failed: ${last}`);
  }
  const result = JSON.parse(await Deno.readTextFile(out)) as PeerOutput;
  const right = (p: number, i: number) => ((p >= 0.5 ? 1 : 0) === labels[i] ? 1 : 0);
  const random = SEEDS.map((seed, s) => {
    const indices = heldOutReviews(files, seed);
    const probabilities = result.random[s]!;
    if (probabilities.length !== indices.length) {
      throw new PipelineError(
        `peer ${peer} scored ${probabilities.length} reviews of split ${s}, expected ${indices.length}`,
      );
    }
    return Uint8Array.from(indices, (i, k) => right(probabilities[k]!, i));
  });
  if (result.loso.length !== labels.length) {
    throw new PipelineError(`peer ${peer} scored ${result.loso.length} reviews, expected ${labels.length}`);
  }
  return {
    predictions: { random, loso: Uint8Array.from(result.loso, right) },
    trainSeconds: result.train_seconds.reduce((sum, s) => sum + s, 0),
  };
}

/** One model's accuracies with intervals, and the unit scores they came from. */
export interface ComparedModel {
  name: string;
  predictions: StudyPredictions;
  trainSeconds: number;
}

/** Accuracy intervals of each model and margins of the first over every other, on both protocols. */
export interface Comparison {
  random: { scores: UnitScores; accuracy: Interval[] };
  loso: { scores: UnitScores; accuracy: Interval[] };
}

/**
 * Intervals of every model's accuracy on both protocols, over reviews: a review held out by several random
 * splits is one unit of the random protocol's bootstrap.
 *
 * @param files The study's files (for the random splits' held-out reviews).
 * @param models Ours first, then the peers.
 */
export function compare(files: readonly TrainingFile[], models: readonly ComparedModel[]): Comparison {
  const reviews = files.reduce((sum, file) => sum + file.rows, 0);
  const units = SEEDS.flatMap((seed) => heldOutReviews(files, seed));
  const randomScores = unitScores(
    units,
    reviews,
    models.map((model) => model.predictions.random.flatMap((flags) => [...flags])),
  );
  const losoScores = unitScores(
    [...Array(reviews).keys()],
    reviews,
    models.map((model) => model.predictions.loso),
  );
  return {
    random: { scores: randomScores, accuracy: models.map((_, m) => accuracyInterval(randomScores, m)) },
    loso: { scores: losoScores, accuracy: models.map((_, m) => accuracyInterval(losoScores, m)) },
  };
}

const percent = (value: number) => (100 * value).toFixed(1);
const seconds = (value: number) => `${value.toFixed(1)} s`;

/** The peers table and the margin lines of the defaults over the best peer of each protocol. */
export function peerReport(models: readonly ComparedModel[], comparison: Comparison): {
  text: string;
  margins: Record<string, { peer: string; margin: Interval }>;
} {
  const fasttext = models.find((model) => model.name === STUDY_PEERS.at(-1)!.name);
  const rows = models.map((model, m) =>
    `| ${model.name} | ${formatPoints(comparison.random.accuracy[m]!)} | ${
      formatPoints(comparison.loso.accuracy[m]!)
    } | ${seconds(model.trainSeconds)} | ${
      fasttext ? `${(model.trainSeconds / fasttext.trainSeconds).toFixed(2)}×` : "–"
    } |`
  );
  const margins: Record<string, { peer: string; margin: Interval }> = {};
  const lines: string[] = [];
  for (const protocol of ["random", "loso"] as const) {
    const { accuracy, scores } = comparison[protocol];
    let best = 1;
    for (let m = 2; m < models.length; m++) if (accuracy[m]!.value > accuracy[best]!.value) best = m;
    if (models.length < 2) continue;
    const margin = marginInterval(scores, 0, best);
    margins[protocol] = { peer: models[best]!.name, margin };
    lines.push(
      `- ${protocol === "random" ? "random 80/20" : "leave one source out (pooled)"}: ours ${
        formatPoints(margin, true)
      } points over the best peer, ${models[best]!.name} (paired bootstrap, 95%)`,
    );
  }
  const text = [
    "| model | random 80/20 (95% interval) | leave one source out, pooled (95% interval) | train time, 11 fits | ÷ fastText |",
    "|---|---:|---:|---:|---:|",
    ...rows,
    "",
    ...lines,
  ].join("\n");
  return { text, margins };
}

/** The defaults' figures the model card quotes (`LINEAR_RECIPE_DOMAIN_SHIFT` in `lib/models/model_card.ts`). */
export function domainShiftOf(result: StudyResult, csvs: readonly string[], reviews: number): {
  reviews: number;
  sources: number;
  randomSplitAccuracy: number;
  leaveOneSourceOutAccuracy: number;
  weakestSource: { name: string; accuracy: number };
} {
  let weakest = 0;
  result.perSource.forEach((accuracy, s) => {
    if (accuracy < result.perSource[weakest]!) weakest = s;
  });
  const round = (value: number) => Math.round(1000 * value) / 1000;
  return {
    reviews,
    sources: csvs.length,
    randomSplitAccuracy: round(result.random),
    leaveOneSourceOutAccuracy: round(result.pooled),
    weakestSource: { name: basename(csvs[weakest]!, ".csv"), accuracy: round(result.perSource[weakest]!) },
  };
}

async function peersAvailable(): Promise<string | undefined> {
  for (const path of [PYTHON, FASTTEXT]) {
    try {
      await Deno.stat(path);
    } catch {
      return `${path} not found (make bench-deps)`;
    }
  }
  return undefined;
}

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
  const prepared = new Map<string, PreparedSources>();
  const rows: string[] = [];
  const results = [];
  let defaults: { result: StudyResult; sources: PreparedSources } | undefined;
  for (const variant of VARIANTS) {
    const key = JSON.stringify(variant.tokenizer);
    let sources = prepared.get(key);
    if (!sources) {
      sources = await prepareSources(dir, csvs, variant.tokenizer, join(OUT_DIR, String(prepared.size)));
      prepared.set(key, sources);
    }
    const params = resolveLinearParams(variant.params);
    const result = await measure(sources.files, params, ctx.signal);
    ctx.log.info(variant.name, {
      random: result.random,
      pooled: result.pooled,
      train_s: result.trainSeconds,
    });
    results.push({
      variant: variant.name,
      params,
      random: result.random,
      pooled: result.pooled,
      perSource: result.perSource,
      trainSeconds: result.trainSeconds,
    });
    const mean = result.perSource.reduce((sum, value) => sum + value, 0) / result.perSource.length;
    rows.push(
      `| ${variant.name} | ${params.epochs} | ${percent(result.random)} | ${percent(result.pooled)} | ${
        percent(mean)
      } | ${result.perSource.map(percent).join(" / ")} | ${seconds(result.trainSeconds)} |`,
    );
    if (Object.keys(variant.tokenizer).length === 0 && Object.keys(variant.params).length === 0) {
      defaults = { result, sources };
    }
  }
  const files = [...prepared.values()][0]!.files;
  const reviews = files.reduce((sum, file) => sum + file.rows, 0);
  const text = [
    `${reviews} reviews in ${csvs.length} sources of ${dir}; per source, in order: ${
      csvs.map((name) => basename(name, ".csv")).join(", ")
    }`,
    "",
    "| settings | epochs | random 80/20 | leave one source out: pooled | mean of sources | per source | train time, 11 fits |",
    "|---|---:|---:|---:|---:|---|---:|",
    ...rows,
  ];
  const json: Record<string, unknown> = { sources: csvs, reviews, results };
  if (defaults) {
    const card = domainShiftOf(defaults.result, csvs, reviews);
    json.domainShift = card;
    text.push(
      "",
      `The defaults' domain shift, as the model card records it (LINEAR_RECIPE_DOMAIN_SHIFT): ${
        JSON.stringify(card)
      }`,
    );
  }
  const unavailable = ctx.values["no-peers"] === true ? "--no-peers" : await peersAvailable();
  if (defaults && unavailable === undefined) {
    // Our fits read tokens the study tokenised once; to compare with peers that vectorize raw text inside
    // their training time, ours is charged the tokenizing of the reviews each fit trains on.
    const trainedRows = SEEDS.length * (1 - HOLDOUT_FRACTION) * reviews + (csvs.length - 1) * reviews;
    const ours: ComparedModel = {
      name: "**ours: linear, the defaults** (train time with tokenizing)",
      predictions: defaults.result.predictions,
      trainSeconds: defaults.result.trainSeconds + defaults.sources.tokenizeSeconds * trainedRows / reviews,
    };
    const { files: defaultFiles, peersInput } = defaults.sources;
    const labels = await labelsOf(defaultFiles, ctx.signal);
    const models: ComparedModel[] = [ours];
    for (const peer of STUDY_PEERS) {
      ctx.log.info(`peer ${peer.id}`);
      const measured = await runPeer(peer.id, peersInput, labels, defaultFiles, ctx.signal);
      models.push({ name: peer.name, ...measured });
    }
    const comparison = compare(defaultFiles, models);
    const report = peerReport(models, comparison);
    text.push("", "The defaults beside the peers, on the same splits:", "", report.text);
    json.peers = models.map((model, m) => ({
      model: model.name,
      random: comparison.random.accuracy[m],
      loso: comparison.loso.accuracy[m],
      trainSeconds: model.trainSeconds,
    }));
    json.margins = report.margins;
  } else if (unavailable !== undefined) {
    text.push("", `Peers not run: ${unavailable}.`);
  }
  return { json, text: text.join("\n") };
}

if (import.meta.main) await runStage(spec, Deno.args, main);
