/**
 * `deno task bench`: profiles the whole pipeline and compares the model with its peers.
 *
 * For each data set (the real reviews of `../shared/data/reviews/` when that folder exists, then generated
 * reviews at each `--sizes`, plus 3.6M with `--full`), it builds a scratch project root under `--out`,
 * runs every stage there as its own process with its own permission set (ingest, split_batches,
 * preprocess_batch, preprocess_test; then train, evaluate and predict through `tools/_bench_model.ts`,
 * the same library calls without MLflow), and records per stage the reviews/s, MB/s, wall time and peak
 * RSS. It then trains and scores the peers on the same reviews and split (`tools/bench_peers.py`:
 * scikit-learn's random forest on our features, TF-IDF + logistic regression, fastText), judges the
 * targets of the benchmark issue, prints the tables and writes them to `docs/benchmarks.md` (only the
 * block between the `bench:begin`/`bench:end` markers) and to `<out>/report.md` and `report.json`.
 *
 * Run: `deno task bench [--sizes N,N] [--full] [--no-peers] ...` (`deno run -q -P=bench tools/bench.ts`),
 * or `make bench ARGS="..."`. Not part of `make test`: a default run takes about 8 minutes on 2 idle cores.
 *
 * Over 600 lines because it is the benchmark's driver, one function per measured step in run order; what
 * can be tested without running anything (figures, tables, targets, parsing) is in `_bench_report.ts`,
 * process handling in `_bench_process.ts`.
 *
 * @example Usage
 * ```sh
 * deno task bench --sizes 2000,10000 --no-docs   # a quick smoke run
 * deno task bench                                # 10k, 100k, 1M + real reviews, peers; updates the docs
 * ```
 *
 * @module
 */
import { cpus } from "node:os";
import { join, resolve } from "node:path";
import { exists, writeFileAtomic } from "../lib/core/atomic_file.ts";
import { PipelineError, UsageError } from "../lib/core/errors.ts";
import { lockOutputs } from "../lib/core/lock.ts";
import { intFlag } from "../lib/core/flags.ts";
import { DEFAULT_FOREST_PARAMS } from "../lib/models/forest/forest.ts";
import type { Logger } from "../lib/core/log.ts";
import { createRandom } from "../lib/data/sample_data.ts";
import {
  failureReason,
  GNU_TIME,
  type MeasuredRun,
  runMeasured,
  taskArgs,
  TIMEOUT,
} from "./_bench_process.ts";
import {
  type DatasetReport,
  DEFAULT_SIZES,
  DOCS_BEGIN,
  DOCS_END,
  FASTTEXT_PEER,
  formatCount,
  formatRate,
  formatScore,
  formatSeconds,
  FULL_SIZE,
  judgeTargets,
  LINEAR_MODEL,
  LOADED_THRESHOLD,
  type MarginFigure,
  type ModelFigure,
  parseSizes,
  REAL_TEXT_STAGE,
  renderRun,
  type RunInfo,
  shuffleSplit,
  SKLEARN_FOREST,
  spliceDocs,
  type StageFigure,
  stageMegabytesPerSecond,
  stageRate,
  testRowsFor,
  TRAIN_PHASE_PREFIX,
} from "./_bench_report.ts";
import { probeParallelism } from "./_bench_probe.ts";
import { API_BENCH_OPTIONS, type ApiBenchReport, renderReport } from "./bench_api.ts";
import { defineStage, runStage, type StageContext, type StageResult } from "../scripts/_cli.ts";
import { formatBytes } from "../lib/core/format.ts";
import { copyProject, REPO_ROOT } from "../scripts/_project_root.ts";
import { formatPoints, marginInterval, unitScores } from "./_intervals.ts";
import { readProcessed } from "../lib/data/processed_data.ts";
import { PROCESSED_TEST_PATH } from "../lib/data/layout.ts";

/** The real development reviews, relative to the repository. */
export const REAL_DIR = "../shared/data/reviews";
/** Training reviews above which scikit-learn's forest is skipped. */
const DEFAULT_PEERS_MAX = 200_000;
/** Training reviews above which TF-IDF + LR and fastText are skipped. */
const DEFAULT_FAST_PEERS_MAX = 1_000_000;
/** Scratch folder (git-ignored). */
export const DEFAULT_OUT = ".tmp-bench";
/** The page the results go to. */
export const DOCS_PATH = "docs/benchmarks.md";
/** The peers' interpreter: Debian's, which has python3-sklearn (`make bench-deps`), not a pyenv shim. */
export const PYTHON = "/usr/bin/python3";
/** The fastText CLI from Debian's `fasttext` package. */
export const FASTTEXT = "/usr/bin/fasttext";
const SEED = 42;
/** The machine-readable report of the last run, in `--out`. */
const REPORT_JSON = "report.json";
const REAL_TEST_SHARE = 0.2;

const USAGE = `Usage: deno task bench [options]

Runs every pipeline stage on generated reviews at several sizes (and on the real reviews of
${REAL_DIR} when that folder exists), measures reviews/s, MB/s, wall time and peak RSS per stage,
trains and scores the peers (scikit-learn, fastText) on the same split, and writes the tables to
${DOCS_PATH}. Takes about 8 minutes with the defaults on 2 idle cores.

Options:
  --sizes N,N,...     training reviews of the generated data sets (default ${DEFAULT_SIZES.join(",")};
                      100k and 1m are accepted)
  --full              add the dataset's full size, ${formatCount(FULL_SIZE)} (adds 15 to 20 minutes)
  --trees N           trees of every forest (default ${DEFAULT_FOREST_PARAMS.trees})
  --workers N         training workers and peer threads (default: number of cores)
  --no-peers          skip scikit-learn and fastText
  --peers-max N       skip scikit-learn's forest and TF-IDF on characters (alone and beside words)
                      above N training reviews (default ${DEFAULT_PEERS_MAX})
  --fast-peers-max N  skip TF-IDF + LR on words, NB-SVM and fastText above N training reviews
                      (default ${DEFAULT_FAST_PEERS_MAX})
  --real DIR          folder of real reviews, every CSV of it (default ${REAL_DIR}; it needs read
                      access, which the task grants for the default only: run tools/bench.ts with
                      -P=bench and an --allow-read list that adds DIR)
  --no-real           skip the real reviews
  --out DIR           scratch folder, emptied per data set (default ${DEFAULT_OUT})
  --keep              keep each data set's scratch files
  --no-docs           do not update ${DOCS_PATH} (the report still goes to <out>/report.md)
  --from-report       run nothing: print and write the tables of the last run again, from
                      <out>/report.json (after a change to the page's layout)
  --verbose           show the stages' own logs and progress
  --json              print {info, reports, targets} as JSON on stdout
  -h, --help          show this help

  --api               benchmark the inference API instead (tools/bench_api.ts, under its own
                      permission set), with its options --duration S, --connections N, --threads N,
                      --rounds N, --reloads N, --profile, and --out, --no-docs, --json as above;
                      \`deno task bench_api --help\` explains them

Peers need ${PYTHON} with scikit-learn and ${FASTTEXT} (Debian: make bench-deps).
`;

/** Command line of the benchmark. */
export const spec = defineStage({
  name: "bench",
  usage: USAGE,
  options: {
    sizes: { type: "string" },
    full: { type: "boolean" },
    trees: { type: "string" },
    workers: { type: "string" },
    "no-peers": { type: "boolean" },
    "peers-max": { type: "string" },
    "fast-peers-max": { type: "string" },
    "no-real": { type: "boolean" },
    real: { type: "string" },
    out: { type: "string" },
    keep: { type: "boolean" },
    "no-docs": { type: "boolean" },
    "from-report": { type: "boolean" },
    verbose: { type: "boolean" },
    api: { type: "boolean" },
    ...API_BENCH_OPTIONS,
  },
});

type Ctx = StageContext<typeof spec.options>;

/**
 * `--api`: runs the API benchmark as its own process with its own permission set (it starts servers and
 * wrk; this one starts only `timeout`), and returns its report.
 */
async function runApiBench(ctx: Ctx): Promise<StageResult> {
  const args = Deno.args.filter((arg) => arg !== "--api" && arg !== "--json");
  const child = new Deno.Command(TIMEOUT, {
    args: [
      "-k",
      "10",
      "3600",
      Deno.execPath(),
      "run",
      "-q",
      "-P=bench_api",
      "tools/bench_api.ts",
      ...args,
      "--json",
    ],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
    signal: ctx.signal,
  });
  const output = await child.output();
  if (!output.success) throw new PipelineError(`the API benchmark failed (exit ${output.code}); see above`);
  const report = JSON.parse(new TextDecoder().decode(output.stdout)) as ApiBenchReport;
  return { json: report as unknown as Record<string, unknown>, text: renderReport(report) };
}

/** The run's settings, resolved once. */
interface BenchConfig {
  sizes: number[];
  trees: number;
  workers: number;
  peers: boolean;
  peersMax: number;
  fastPeersMax: number;
  real: boolean;
  /** Folder of the real reviews (absolute). */
  realDir: string;
  out: string;
  keep: boolean;
  docs: boolean;
  fromReport: boolean;
  verbose: boolean;
  /** Whether GNU time is there to measure peak RSS. */
  measureRss: boolean;
}

/**
 * Time budget of a step: a constant for start-up plus seconds per million reviews, about 3× what the
 * targets allow, so only a hung or pathological step is killed.
 */
const BUDGETS = {
  ingest: [60, 300],
  split_batches: [60, 100],
  preprocess: [60, 300],
  train: [120, 900],
  evaluate: [60, 600],
  predict: [180, 0],
  "sklearn-forest": [120, 6000],
  "tfidf-lr": [120, 900],
  "tfidf-char-lr": [120, 6000],
  "tfidf-wc-lr": [120, 6000],
  nbsvm: [120, 900],
  fasttext: [120, 600],
} as const satisfies Record<string, readonly [number, number]>;

function budget(step: keyof typeof BUDGETS, reviews: number): number {
  const [base, perMillion] = BUDGETS[step];
  return Math.min(7200, base + (perMillion * reviews) / 1e6);
}

function resolveConfig(ctx: Ctx): BenchConfig {
  const sizes = parseSizes(ctx.values.sizes ?? DEFAULT_SIZES.join(","));
  if (ctx.values.full === true && !sizes.includes(FULL_SIZE)) sizes.push(FULL_SIZE);
  const out = ctx.values.out ?? DEFAULT_OUT;
  if (resolve(REPO_ROOT, out) === REPO_ROOT) {
    throw new UsageError("--out must be a scratch folder, not the repository");
  }
  return {
    sizes,
    trees: intFlag("--trees", ctx.values.trees, { min: 1, max: 32767 }) ?? DEFAULT_FOREST_PARAMS.trees,
    workers: intFlag("--workers", ctx.values.workers, { min: 1, max: 64 }) ?? navigator.hardwareConcurrency,
    peers: ctx.values["no-peers"] !== true,
    peersMax: intFlag("--peers-max", ctx.values["peers-max"], { min: 0 }) ?? DEFAULT_PEERS_MAX,
    fastPeersMax: intFlag("--fast-peers-max", ctx.values["fast-peers-max"], { min: 0 }) ??
      DEFAULT_FAST_PEERS_MAX,
    real: ctx.values["no-real"] !== true,
    realDir: resolve(REPO_ROOT, ctx.values.real ?? REAL_DIR),
    out: resolve(REPO_ROOT, out),
    keep: ctx.values.keep === true,
    docs: ctx.values["no-docs"] !== true,
    fromReport: ctx.values["from-report"] === true,
    verbose: ctx.values.verbose === true,
    measureRss: false,
  };
}

/** The 1-minute load average. */
function loadAverage(): number {
  return Deno.loadavg()[0] ?? NaN;
}

async function fileSize(path: string): Promise<number> {
  return (await Deno.stat(path)).size;
}

/** Runs steps of one data set in its scratch root and turns their outcomes into figures. */
class DatasetRunner {
  readonly report: DatasetReport;
  readonly #root: string;
  readonly #config: BenchConfig;
  readonly #log: Logger;
  readonly #signal: AbortSignal;
  readonly #tasks: Record<string, string | { command: string }>;

  constructor(
    report: DatasetReport,
    root: string,
    config: BenchConfig,
    context: { log: Logger; signal: AbortSignal; tasks: Record<string, string | { command: string }> },
  ) {
    this.report = report;
    this.#root = root;
    this.#config = config;
    this.#log = context.log;
    this.#signal = context.signal;
    this.#tasks = context.tasks;
  }

  /** Runs a process in the scratch root; a failure is returned, not thrown, so the run goes on. */
  async run(
    label: string,
    command: string,
    args: readonly string[],
    timeoutSeconds: number,
  ): Promise<{ run: MeasuredRun; json?: Record<string, unknown>; error?: string }> {
    this.#signal.throwIfAborted();
    const run = await runMeasured({
      command,
      args,
      cwd: this.#root,
      timeoutSeconds,
      signal: this.#signal,
      measureRss: this.#config.measureRss,
      echoStderr: this.#config.verbose,
      onHeartbeat: (seconds) => this.#log.info(`  ${label}: still running after ${Math.round(seconds)} s`),
    });
    this.#signal.throwIfAborted();
    if (run.code !== 0) {
      const error = failureReason(run, timeoutSeconds);
      this.#log.warn(`  ${label} failed: ${error}`);
      return { run, error };
    }
    try {
      return { run, json: JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "") };
    } catch {
      return { run, error: `printed no JSON result (${run.stdout.slice(0, 80).trim() || "empty stdout"})` };
    }
  }

  /** Runs a `deno task` of the scratch root, as the task's command does. */
  task(label: string, task: string, args: readonly string[], timeoutSeconds: number) {
    return this.run(
      label,
      Deno.execPath(),
      [...taskArgs(this.#tasks, task), ...args, "--json"],
      timeoutSeconds,
    );
  }

  /** Runs the in-process helper (train, evaluate, predict) with the bench_model permission set. */
  helper(label: string, args: readonly string[], timeoutSeconds: number) {
    return this.run(
      label,
      Deno.execPath(),
      ["run", "-q", "-P=bench_model", "tools/_bench_model.ts", ...args, "--json"],
      timeoutSeconds,
    );
  }

  /** Records a stage and logs it on one line. */
  stage(figure: StageFigure): StageFigure {
    this.report.stages.push(figure);
    if (figure.status === "ok") {
      const mbps = stageMegabytesPerSecond(figure);
      this.#log.info(
        `  ${figure.stage}: ${formatSeconds(figure.seconds)}, ${formatRate(stageRate(figure))} reviews/s` +
          (mbps !== undefined ? `, ${formatRate(mbps)} MB/s` : "") +
          `, peak RSS ${formatBytes(figure.peakRssBytes)}`,
      );
    }
    return figure;
  }

  /** A failed step as a stage figure. */
  failed(stage: string, reviews: number, outcome: { run: MeasuredRun; error?: string }): StageFigure {
    return this.stage({
      stage,
      reviews,
      seconds: outcome.run.seconds,
      peakRssBytes: outcome.run.peakRssBytes,
      cpuSeconds: outcome.run.cpuSeconds,
      status: outcome.run.timedOut ? "timeout" : "failed",
      note: outcome.error ?? "failed",
    });
  }

  /** Logs a line about this data set. */
  log(message: string): void {
    this.#log.info(message);
  }

  path(...parts: string[]): string {
    return join(this.#root, ...parts);
  }
}

/** The real reviews: every CSV of the folder, shuffled with a fixed seed, 20% held out. */
async function prepareReal(realDir: string, target: string): Promise<{ train: number; test: number }> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(realDir)) {
    if (entry.isFile && entry.name.endsWith(".csv")) names.push(entry.name);
  }
  if (names.length === 0) throw new PipelineError(`${realDir} holds no .csv files; pass --no-real`);
  // Sorted, so the concatenation (and therefore the shuffle) does not depend on directory order.
  const lines: string[] = [];
  for (const name of names.sort()) {
    // A few MB of development data; the shuffle needs it all in memory anyway.
    const text = await Deno.readTextFile(join(realDir, name));
    for (const line of text.split("\n")) if (line.trim() !== "") lines.push(line.replace(/\r$/, ""));
  }
  const { train, test } = shuffleSplit(lines, SEED, REAL_TEST_SHARE, createRandom);
  await Deno.mkdir(target, { recursive: true });
  await writeFileAtomic(join(target, "train.csv"), train.join("\n") + "\n");
  await writeFileAtomic(join(target, "test.csv"), test.join("\n") + "\n");
  return { train: train.length, test: test.length };
}

/** Runs the pipeline and the peers on one data set. */
async function runDataset(
  runner: DatasetRunner,
  config: BenchConfig,
  options: { real: boolean; compareWorkers: boolean; peers: boolean },
): Promise<void> {
  const { report } = runner;
  const reviews = report.trainRows + report.testRows;

  // 1. ingest: generate (or copy and validate the real CSVs), writing data/raw/{train,test}.csv.
  const ingestArgs = options.real
    ? ["--source", "data/external/real"]
    : ["--source", "sample", "--rows", String(report.trainRows), "--test-rows", String(report.testRows)];
  const ingest = await runner.task("ingest", "ingest", ingestArgs, budget("ingest", reviews));
  if (!ingest.json) return void runner.failed("ingest", reviews, ingest);
  const files = ingest.json.files as Record<string, { accepted: number; bytes: number }>;
  report.trainRows = files.train?.accepted ?? report.trainRows;
  report.testRows = files.test?.accepted ?? report.testRows;
  runner.stage({
    stage: options.real ? "ingest (validate and copy CSV)" : "ingest (generate CSV)",
    reviews: report.trainRows + report.testRows,
    bytes: (files.train?.bytes ?? 0) + (files.test?.bytes ?? 0),
    seconds: ingest.run.seconds,
    peakRssBytes: ingest.run.peakRssBytes,
    cpuSeconds: ingest.run.cpuSeconds,
    status: "ok",
  });

  // 2. split_batches: one batch holding every review, so preprocess below streams the whole input in one
  // process and its peak RSS shows whether memory stays flat as the input grows. --batch-size rather than
  // --num-batches 1, which would first count the lines in a second pass over the input.
  const trainCsv = runner.path("data/raw/train.csv");
  const split = await runner.task(
    "split_batches",
    "split_batches",
    ["--batch-size", String(report.trainRows)],
    budget("split_batches", report.trainRows),
  );
  if (!split.json) return void runner.failed("split_batches", report.trainRows, split);
  runner.stage({
    stage: "split_batches",
    reviews: Number(split.json.rows),
    bytes: await fileSize(trainCsv),
    seconds: split.run.seconds,
    peakRssBytes: split.run.peakRssBytes,
    cpuSeconds: split.run.cpuSeconds,
    status: "ok",
  });

  // 3. preprocess_batch for every batch, preprocess_test.
  const batches = Number(split.json.batches);
  let batchSeconds = 0;
  let batchBytes = 0;
  let batchRows = 0;
  let batchPeak = 0;
  let batchCpu: number | null = 0;
  for (let batch = 0; batch < batches; batch++) {
    const path = runner.path(`data/batches/train_batch_${batch}.csv`);
    const outcome = await runner.task(
      `preprocess_batch ${batch}`,
      "preprocess_batch",
      [String(batch)],
      budget("preprocess", report.trainRows),
    );
    if (!outcome.json) return void runner.failed("preprocess_batch", report.trainRows, outcome);
    batchSeconds += outcome.run.seconds;
    batchBytes += await fileSize(path);
    batchRows += Number(outcome.json.read);
    batchPeak = Math.max(batchPeak, outcome.run.peakRssBytes ?? 0);
    batchCpu = batchCpu === null || outcome.run.cpuSeconds === null
      ? null
      : batchCpu + outcome.run.cpuSeconds;
  }
  runner.stage({
    stage: "preprocess_batch",
    reviews: batchRows,
    bytes: batchBytes,
    seconds: batchSeconds,
    peakRssBytes: batchPeak || null,
    cpuSeconds: batchCpu,
    status: "ok",
    note: batches > 1 ? `${batches} batches, one process each` : undefined,
  });
  const testCsv = runner.path("data/raw/test.csv");
  const preprocessTest = await runner.task(
    "preprocess_test",
    "preprocess_test",
    [],
    budget("preprocess", report.testRows),
  );
  if (!preprocessTest.json) return void runner.failed("preprocess_test", report.testRows, preprocessTest);
  runner.stage({
    stage: "preprocess_test",
    reviews: Number(preprocessTest.json.read),
    bytes: await fileSize(testCsv),
    seconds: preprocessTest.run.seconds,
    peakRssBytes: preprocessTest.run.peakRssBytes,
    cpuSeconds: preprocessTest.run.cpuSeconds,
    status: "ok",
  });

  // 4. train (vocabulary, vectorize, fit), as lib/models/fit.ts does for the train stage.
  const common = ["--trees", String(config.trees)];
  const train = await runner.helper(
    "train",
    ["train", ...common, "--workers", String(config.workers)],
    budget("train", report.trainRows),
  );
  if (!train.json) return void runner.failed("train", report.trainRows, train);
  const seconds = train.json.seconds as { vocabulary: number; vectorize: number; fit: number };
  const trainRows = Number(train.json.rows);
  runner.stage({
    stage: "train",
    reviews: trainRows,
    seconds: train.run.seconds,
    peakRssBytes: train.run.peakRssBytes,
    cpuSeconds: train.run.cpuSeconds,
    status: "ok",
    note: `whole process: read, vocabulary, vectorize, fit, save; ${config.trees} trees, ${config.workers} ` +
      `workers, ${formatCount(Number(train.json.nodes))} nodes, ${
        formatCount(Number(train.json.vocabulary))
      } terms`,
  });
  // The phases, timed inside the process (their memory is the train process's).
  for (const phase of ["vocabulary", "vectorize", "fit"] as const) {
    runner.stage({
      stage: TRAIN_PHASE_PREFIX + phase,
      reviews: trainRows,
      seconds: seconds[phase],
      peakRssBytes: null,
      status: "ok",
      note: phase === "vocabulary"
        ? "streams the processed files, counts unigrams and bigrams"
        : phase === "vectorize"
        ? "streams them again into the sparse binary matrix"
        : "grows the trees in the workers",
    });
  }
  const ours: ModelFigure = {
    model: "ours: sparse random forest",
    ours: true,
    status: "ok",
    trainRows,
    trainSeconds: Number(train.json.train_seconds),
    peakRssBytes: train.run.peakRssBytes,
  };
  report.models.push(ours);

  if (options.compareWorkers && config.workers > 1) {
    const single = await runner.helper(
      "train (1 worker)",
      ["train", ...common, "--workers", "1", "--model", "model-1-worker"],
      budget("train", report.trainRows) * 2,
    );
    if (!single.json) runner.failed("train (1 worker)", trainRows, single);
    else {
      const singleSeconds = single.json.seconds as { fit: number };
      runner.stage({
        stage: "train (1 worker)",
        reviews: trainRows,
        seconds: single.run.seconds,
        peakRssBytes: single.run.peakRssBytes,
        cpuSeconds: single.run.cpuSeconds,
        status: "ok",
        note: `fit ${formatSeconds(singleSeconds.fit)}`,
      });
      report.workers = {
        rows: trainRows,
        workers: config.workers,
        oneWorkerFitSeconds: singleSeconds.fit,
        fitSeconds: seconds.fit,
        identical: single.json.engine_sha256 === train.json.engine_sha256,
        oneWorkerCores: single.run.cpuSeconds === null ? null : single.run.cpuSeconds / single.run.seconds,
        cores: train.run.cpuSeconds === null ? null : train.run.cpuSeconds / train.run.seconds,
      };
    }
  }

  // 5. evaluate and predict with the model just written.
  const evaluate = await runner.helper("evaluate", ["evaluate"], budget("evaluate", report.testRows));
  if (!evaluate.json) {
    runner.failed("evaluate", report.testRows, evaluate);
    ours.status = "failed";
    ours.note = "evaluate failed";
  } else {
    const metrics = evaluate.json.metrics as Record<string, number>;
    const rows = Number(evaluate.json.rows);
    report.evaluateRate = rows / Number(evaluate.json.seconds);
    Object.assign(ours, {
      testRows: rows,
      accuracy: metrics.accuracy,
      f1: metrics.f1,
      rocAuc: metrics.roc_auc,
    });
    runner.stage({
      stage: "evaluate",
      reviews: rows,
      seconds: evaluate.run.seconds,
      peakRssBytes: evaluate.run.peakRssBytes,
      cpuSeconds: evaluate.run.cpuSeconds,
      status: "ok",
      note: `whole process; model load ${formatSeconds(Number(evaluate.json.load_seconds))}`,
    });
    runner.stage({
      stage: "↳ evaluate: scoring",
      reviews: rows,
      seconds: Number(evaluate.json.seconds),
      peakRssBytes: null,
      status: "ok",
      note: "tokens → ids → forest, metrics",
    });
  }
  const predict = await runner.helper("predict", ["predict", "--calls", "10000"], budget("predict", 0));
  if (!predict.json) runner.failed("predict", 10_000, predict);
  else {
    report.predict = {
      calls: Number(predict.json.calls),
      medianMs: Number(predict.json.median_ms),
      p99Ms: Number(predict.json.p99_ms),
      meanMs: Number(predict.json.mean_ms),
      loadSeconds: Number(predict.json.load_seconds),
    };
    runner.stage({
      stage: "predict (single reviews, in process)",
      reviews: report.predict.calls,
      seconds: predict.run.seconds,
      peakRssBytes: predict.run.peakRssBytes,
      cpuSeconds: predict.run.cpuSeconds,
      status: "ok",
      note: `median ${report.predict.medianMs.toFixed(3)} ms, p99 ${
        report.predict.p99Ms.toFixed(3)
      } ms per review`,
    });
  }

  await runExplain(runner, "model", "forest", report.predict?.medianMs);

  // 6. The linear family (train --model linear, its defaults) on the same batches and test set.
  await runLinear(runner, report);

  // 7. Peers on the same reviews, and the default model's margin over each, review by review.
  if (options.peers) {
    await runPeers(runner, config, trainRows);
    report.margins = await peerMargins(runner);
  }

  // 8. Real text at a realistic size, for preprocessing: generated reviews are about 2.5× shorter than real
  // ones, and the real set alone is too small to time. It overwrites the test CSV, so it comes last.
  if (options.real) await preprocessRealAtScale(runner, report);
}

/** How many times the real reviews are repeated for the preprocessing measurement. */
const REAL_TEXT_COPIES = 20;

async function preprocessRealAtScale(runner: DatasetRunner, report: DatasetReport): Promise<void> {
  const csv = runner.path("data/raw/test.csv");
  // The real set is a few MB; its lines are written REAL_TEXT_COPIES times from one buffer.
  const lines = [runner.path("data/raw/train.csv"), csv].map((path) => Deno.readTextFileSync(path)).join("");
  const bytes = new TextEncoder().encode(lines);
  {
    using file = await Deno.open(csv, { write: true, truncate: true });
    for (let copy = 0; copy < REAL_TEXT_COPIES; copy++) {
      let offset = 0;
      while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
    }
  }
  const reviews = (report.trainRows + report.testRows) * REAL_TEXT_COPIES;
  const outcome = await runner.task(
    REAL_TEXT_STAGE,
    "preprocess_test",
    ["--force"],
    budget("preprocess", reviews),
  );
  if (!outcome.json) return void runner.failed(REAL_TEXT_STAGE, reviews, outcome);
  runner.stage({
    stage: REAL_TEXT_STAGE,
    reviews: Number(outcome.json.read),
    bytes: bytes.length * REAL_TEXT_COPIES,
    seconds: outcome.run.seconds,
    cpuSeconds: outcome.run.cpuSeconds,
    peakRssBytes: outcome.run.peakRssBytes,
    status: "ok",
    note:
      `all ${formatCount(report.trainRows + report.testRows)} reviews ${REAL_TEXT_COPIES} times; repeats ` +
      "make the tokenizer's word cache hit more often than new text would, so the rate is an upper bound",
  });
}

/**
 * Times explanations of single reviews (`SentimentModel.explain`: tokens traced to the words typed, the
 * engine's exact decomposition), beside the predict figures, so that their cost on the API is known.
 */
async function runExplain(
  runner: DatasetRunner,
  model: string,
  family: string,
  predictMedianMs: number | undefined,
): Promise<void> {
  const calls = 2_000;
  const explain = await runner.helper(
    `explain (${family})`,
    ["predict", "--model", model, "--calls", String(calls), "--explain"],
    budget("predict", 0),
  );
  if (!explain.json) return void runner.failed(`explain (${family})`, calls, explain);
  const median = Number(explain.json.median_ms);
  runner.stage({
    stage: `explain (${family}, single reviews, in process)`,
    reviews: calls,
    seconds: explain.run.seconds,
    peakRssBytes: explain.run.peakRssBytes,
    cpuSeconds: explain.run.cpuSeconds,
    status: "ok",
    note: `median ${median.toFixed(3)} ms, p99 ${Number(explain.json.p99_ms).toFixed(3)} ms per review` +
      (predictMedianMs ? ` (${(median / predictMedianMs).toFixed(1)}× predict)` : ""),
  });
}

/** Trains and scores the fastText-style linear family as `train --model linear` does, without MLflow. */
async function runLinear(runner: DatasetRunner, report: DatasetReport): Promise<void> {
  const train = await runner.helper(
    "train (linear)",
    ["train", "--family", "linear", "--model", "linear"],
    budget("train", report.trainRows),
  );
  if (!train.json) return void runner.failed("train (linear)", report.trainRows, train);
  const rows = Number(train.json.rows);
  runner.stage({
    stage: "train (linear)",
    reviews: rows,
    seconds: train.run.seconds,
    peakRssBytes: train.run.peakRssBytes,
    cpuSeconds: train.run.cpuSeconds,
    status: "ok",
    note: `whole process; SGD ${train.json.epochs} epochs, dim ${train.json.dim}, one thread`,
  });
  const linear: ModelFigure = {
    model: LINEAR_MODEL,
    ours: true,
    status: "ok",
    trainRows: rows,
    trainSeconds: Number(train.json.train_seconds),
    peakRssBytes: train.run.peakRssBytes,
  };
  report.models.push(linear);
  // The predictions feed the paired margins over the peers (runPeers).
  await Deno.mkdir(runner.path(PREDICTIONS_DIR), { recursive: true });
  const evaluate = await runner.helper(
    "evaluate (linear)",
    ["evaluate", "--model", "linear", "--predictions", OURS_PREDICTIONS],
    budget("evaluate", report.testRows),
  );
  if (!evaluate.json) {
    runner.failed("evaluate (linear)", report.testRows, evaluate);
    linear.status = "failed";
    linear.note = "evaluate failed";
    return;
  }
  const metrics = evaluate.json.metrics as Record<string, number>;
  Object.assign(linear, {
    testRows: Number(evaluate.json.rows),
    accuracy: metrics.accuracy,
    f1: metrics.f1,
    rocAuc: metrics.roc_auc,
  });
  runner.stage({
    stage: "evaluate (linear)",
    reviews: Number(evaluate.json.rows),
    seconds: evaluate.run.seconds,
    peakRssBytes: evaluate.run.peakRssBytes,
    cpuSeconds: evaluate.run.cpuSeconds,
    status: "ok",
    note: `whole process; model load ${formatSeconds(Number(evaluate.json.load_seconds))}`,
  });
  await runExplain(runner, "linear", "linear", undefined);
}

const PEERS = [
  { id: "sklearn-forest", name: SKLEARN_FOREST, limit: (c: BenchConfig) => c.peersMax },
  {
    id: "tfidf-lr",
    name: "scikit-learn TF-IDF (1–2-grams) + LogisticRegression",
    limit: (c: BenchConfig) => c.fastPeersMax,
  },
  {
    id: "tfidf-char-lr",
    name: "scikit-learn TF-IDF (char 2–5-grams) + LogisticRegression",
    // Character n-grams multiply the features: about 10× the vectorizing time and memory of words alone.
    limit: (c: BenchConfig) => c.peersMax,
  },
  {
    id: "tfidf-wc-lr",
    name: "scikit-learn TF-IDF (word 1–2 + char 2–5-grams) + LogisticRegression",
    // Character n-grams multiply the features: about 10× the vectorizing time and memory of words alone.
    limit: (c: BenchConfig) => c.peersMax,
  },
  {
    id: "nbsvm",
    name: "NB-SVM (word 1–2-grams, Wang & Manning 2012; scikit-learn)",
    limit: (c: BenchConfig) => c.fastPeersMax,
  },
  { id: "fasttext", name: FASTTEXT_PEER, limit: (c: BenchConfig) => c.fastPeersMax },
] as const;

/** Where the linear model's and each peer's test predictions go, relative to the scratch root. */
const PREDICTIONS_DIR = "data/bench/predictions";
const OURS_PREDICTIONS = `${PREDICTIONS_DIR}/ours-linear.txt`;

async function runPeers(runner: DatasetRunner, config: BenchConfig, trainRows: number): Promise<void> {
  await Deno.mkdir(runner.path(PREDICTIONS_DIR), { recursive: true });
  for (const peer of PEERS) {
    if (trainRows > peer.limit(config)) {
      runner.report.models.push({
        model: peer.name,
        ours: false,
        status: "skipped",
        note: `over budget: ${formatCount(trainRows)} > ${formatCount(peer.limit(config))} training reviews`,
      });
      continue;
    }
    const timeout = Math.min(3600, budget(peer.id, trainRows));
    const outcome = await runner.run(peer.id, PYTHON, [
      "tools/bench_peers.py",
      "--peer",
      peer.id,
      "--root",
      runner.path(),
      "--model-dir",
      runner.path("data/bench/model"),
      "--trees",
      String(config.trees),
      "--jobs",
      String(config.workers),
      "--fasttext",
      FASTTEXT,
      "--timeout",
      String(Math.round(timeout)),
      "--predictions",
      runner.path(`${PREDICTIONS_DIR}/${peer.id}.txt`),
    ], timeout);
    if (!outcome.json) {
      runner.report.models.push({
        model: peer.name,
        ours: false,
        status: outcome.run.timedOut ? "timeout" : "failed",
        note: outcome.error,
        peakRssBytes: outcome.run.peakRssBytes,
      });
      continue;
    }
    const r = outcome.json;
    const figure: ModelFigure = {
      model: peer.name,
      ours: false,
      status: "ok",
      trainRows: Number(r.train_rows),
      testRows: Number(r.test_rows),
      accuracy: Number(r.accuracy),
      f1: Number(r.f1),
      rocAuc: Number(r.roc_auc),
      trainSeconds: Number(r.train_seconds),
      // The script's own getrusage figure is exact; our polling covers only the Python process.
      // GNU time's figure, as for our stages; the script's own getrusage figure when time is missing.
      peakRssBytes: outcome.run.peakRssBytes ??
        (typeof r.peak_rss_bytes === "number" ? r.peak_rss_bytes : null),
      note: r.vectorize_seconds !== undefined
        ? `vectorize ${formatSeconds(Number(r.vectorize_seconds))}, fit ${
          formatSeconds(Number(r.fit_seconds))
        }`
        : undefined,
    };
    runner.report.models.push(figure);
    runner.log(
      `  ${peer.id}: accuracy ${formatScore(figure.accuracy)}, train ${
        formatSeconds(figure.trainSeconds!)
      }, ` +
        `peak RSS ${formatBytes(figure.peakRssBytes)}`,
    );
  }
}

/** Right (1) or wrong (0) per line of a predictions file, against the test set's labels. */
async function rightPerReview(path: string, labels: readonly number[]): Promise<Uint8Array | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  const probabilities = text.trimEnd().split("\n").map(Number);
  if (probabilities.length !== labels.length || probabilities.some((p) => !(p >= 0 && p <= 1))) {
    throw new PipelineError(`${path} does not hold one probability per test review (${labels.length})`);
  }
  return Uint8Array.from(probabilities, (p, i) => ((p >= 0.5 ? 1 : 0) === labels[i] ? 1 : 0));
}

/** The default model's margin over each peer that ran, paired on the test reviews. */
async function peerMargins(runner: DatasetRunner): Promise<MarginFigure[]> {
  const labels: number[] = [];
  for await (const row of readProcessed(runner.path(PROCESSED_TEST_PATH))) {
    labels.push(row.polarity === 2 ? 1 : 0);
  }
  const ours = await rightPerReview(runner.path(OURS_PREDICTIONS), labels);
  if (!ours) return [];
  const reviews = [...labels.keys()];
  const margins: MarginFigure[] = [];
  for (const peer of PEERS) {
    const ran = runner.report.models.some((model) => model.model === peer.name && model.status === "ok");
    const right = ran
      ? await rightPerReview(runner.path(`${PREDICTIONS_DIR}/${peer.id}.txt`), labels)
      : undefined;
    if (!right) continue;
    const margin = marginInterval(unitScores(reviews, labels.length, [ours, right]), 0, 1);
    margins.push({ peer: peer.name, margin });
    runner.log(`  ours (linear) − ${peer.id}: ${formatPoints(margin, true)} points`);
  }
  return margins;
}

/** Checks that the peers can run; returns their versions, or why not. */
async function checkPeers(log: Logger): Promise<string | undefined> {
  if (!(await exists(PYTHON))) {
    log.warn(
      `peers skipped: ${PYTHON} not found; install python3-sklearn and fasttext with "make bench-deps"`,
    );
    return undefined;
  }
  const outcome = await runMeasured({
    command: PYTHON,
    args: [join(REPO_ROOT, "tools/bench_peers.py"), "--peer", "versions", "--fasttext", FASTTEXT],
    cwd: REPO_ROOT,
    timeoutSeconds: 60,
    measureRss: false,
  });
  if (outcome.code !== 0) {
    log.warn(`peers skipped: ${failureReason(outcome, 60)}`);
    return undefined;
  }
  if (!(await exists(FASTTEXT))) log.warn(`fastText peer will fail: ${FASTTEXT} not found (make bench-deps)`);
  return (JSON.parse(outcome.stdout) as { versions: string }).versions;
}

function commandLine(args: readonly string[]): string {
  const quoted = args.map((arg) => (/^[\w.,=/:-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`));
  return ["deno task bench", ...quoted].join(" ");
}

const DOCS_SKELETON = `# Benchmarks\n\n## Pipeline benchmark\n\n${DOCS_BEGIN}\n${DOCS_END}\n`;

/** Runs the benchmark; see the module doc. */
export async function main(ctx: Ctx): Promise<StageResult> {
  if (ctx.values.api === true) return await runApiBench(ctx);
  const given = (Object.keys(API_BENCH_OPTIONS) as (keyof typeof API_BENCH_OPTIONS)[])
    .find((name) => ctx.values[name] !== undefined);
  if (given) throw new UsageError(`--${given} is an option of --api (the API benchmark); add --api`);
  const config = resolveConfig(ctx);
  const { log, signal } = ctx;
  // One bench per output folder: two would share its scratch roots and report, and skew each other's times.
  await using _lock = await lockOutputs(config.out, { stage: "bench", log, signal });
  if (config.fromReport) return await republish(config, log);
  const tasks = (JSON.parse(await Deno.readTextFile(join(REPO_ROOT, "deno.json"))) as {
    tasks: Record<string, string | { command: string }>;
  }).tasks;

  if (!(await exists(TIMEOUT))) {
    throw new PipelineError(
      `${TIMEOUT} not found; the bench needs GNU coreutils (apt-get install coreutils)`,
    );
  }
  config.measureRss = await exists(GNU_TIME);
  if (!config.measureRss) {
    log.warn(`${GNU_TIME} not found: peak RSS is not measured (make bench-deps installs it)`);
  }
  const loadStart = loadAverage();
  if (loadStart > LOADED_THRESHOLD) {
    log.warn(`the 1-minute load average is ${loadStart.toFixed(1)}: figures will be pessimistic`);
  }
  log.info("probing how well this machine runs two threads at once");
  const parallelism = await probeParallelism();
  log.info(
    `two threads vs one: ${parallelism.alu.toFixed(2)}× (arithmetic), ${
      parallelism.memory.toFixed(2)
    }× (memory)`,
  );
  const versions = config.peers ? await checkPeers(log) : undefined;
  const peers = config.peers && versions !== undefined;

  const realDir = config.realDir;
  const datasets: { label: string; slug: string; real: boolean; train: number; test: number }[] = [];
  if (config.real && await exists(realDir)) {
    datasets.push({ label: "real reviews", slug: "real", real: true, train: 0, test: 0 });
  } else if (config.real && ctx.values.real !== undefined) {
    throw new PipelineError(`--real ${ctx.values.real}: no such folder`);
  } else if (config.real) {
    log.info(`no ${realDir}: generated data only`);
  }
  for (const size of config.sizes) {
    datasets.push({
      label: `generated ${formatCount(size)}`,
      slug: `generated-${size}`,
      real: false,
      train: size,
      test: testRowsFor(size),
    });
  }
  // The 1-vs-N-workers comparison runs once, at 100k or the nearest size (long enough to time, short enough
  // to repeat).
  const compareAt = config.sizes.reduce((best, size) =>
    Math.abs(Math.log(size / 100_000)) < Math.abs(Math.log(best / 100_000)) ? size : best
  );

  await Deno.mkdir(config.out, { recursive: true });
  const reports: DatasetReport[] = [];
  const started = performance.now();
  for (const dataset of datasets) {
    const root = join(config.out, dataset.slug);
    await Deno.remove(root, { recursive: true }).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
    await copyProject(root, REPO_ROOT);
    if (dataset.real) {
      const counts = await prepareReal(realDir, join(root, "data/external/real"));
      dataset.train = counts.train;
      dataset.test = counts.test;
    }
    log.info(
      `${dataset.label}: ${formatCount(dataset.train)} training + ${formatCount(dataset.test)} test reviews`,
    );
    const report: DatasetReport = {
      label: dataset.label,
      kind: dataset.real ? "real" : "generated",
      trainRows: dataset.train,
      testRows: dataset.test,
      stages: [],
      models: [],
    };
    const runner = new DatasetRunner(report, root, config, { log, signal, tasks });
    try {
      await runDataset(runner, config, {
        real: dataset.real,
        compareWorkers: !dataset.real && dataset.train === compareAt,
        peers,
      });
    } finally {
      if (!config.keep) await Deno.remove(root, { recursive: true }).catch(() => {});
    }
    reports.push(runner.report);
  }

  // Read before the closing probe, which keeps both cores busy for a few seconds.
  const loadEnd = loadAverage();
  const parallelismEnd = await probeParallelism();
  if (Math.min(parallelismEnd.alu, parallelism.alu) < 1.7) {
    log.warn(
      `two threads ran only ${
        Math.min(parallelismEnd.alu, parallelism.alu).toFixed(2)
      }× as fast as one at the ` +
        "start or end: other processes were using the cores, so the times are pessimistic",
    );
  }
  const info: RunInfo = {
    command: commandLine(Deno.args.filter((arg) => arg !== "--json")),
    date: new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC",
    cpuModel: cpus()[0]?.model.trim() || "unknown CPU",
    cores: navigator.hardwareConcurrency,
    memoryBytes: Deno.systemMemoryInfo().total,
    denoVersion: Deno.version.deno,
    ...(versions ? { pythonVersions: versions } : {}),
    loadStart,
    loadEnd,
    rssMethod: config.measureRss
      ? "GNU time's %M: the kernel's peak resident set of each process (getrusage ru_maxrss), all threads " +
        "and workers included; for fastText, of the CLI process"
      : `not measured (${GNU_TIME} missing)`,
    parallelism,
    parallelismEnd,
    trees: config.trees,
    workers: config.workers,
    peersMax: config.peersMax,
    fastPeersMax: config.fastPeersMax,
  };
  const result = await publish(config, info, reports, log);
  log.info(
    `done in ${formatSeconds((performance.now() - started) / 1000)}; report in ${
      join(config.out, "report.md")
    }`,
  );
  return result;
}

/** A saved run: what `<out>/report.json` holds. */
interface SavedRun {
  info: RunInfo;
  reports: DatasetReport[];
}

/**
 * Writes the report of a run: `<out>/report.md` and `report.json`, and the generated block of
 * docs/benchmarks.md unless `--no-docs`.
 */
async function publish(
  config: BenchConfig,
  info: RunInfo,
  reports: DatasetReport[],
  log: Logger,
): Promise<StageResult> {
  const markdown = renderRun(info, reports);
  const targets = judgeTargets(reports);
  await writeFileAtomic(join(config.out, "report.md"), markdown + "\n");
  await writeFileAtomic(
    join(config.out, REPORT_JSON),
    JSON.stringify({ info, reports, targets }, null, 2) + "\n",
  );
  if (config.docs) {
    const docsPath = join(REPO_ROOT, DOCS_PATH);
    const existing = await exists(docsPath) ? await Deno.readTextFile(docsPath) : undefined;
    let updated: string;
    try {
      updated = spliceDocs(existing, markdown, DOCS_SKELETON);
    } catch (error) {
      throw new PipelineError(
        `${DOCS_PATH}: ${(error as Error).message}; restore them or rerun with --no-docs`,
      );
    }
    // Staged in the scratch folder: the permission set grants the page, not temporary names beside it.
    await writeFileAtomic(docsPath, updated, { stagingDir: config.out });
    log.info(`updated ${DOCS_PATH}`);
  }
  return {
    json: { info, reports, targets },
    text: markdown + (config.docs ? "" : `\n(not written to ${DOCS_PATH}: --no-docs)`),
  };
}

/** `--from-report`: the tables of the last run again, from `<out>/report.json`, without running anything. */
async function republish(config: BenchConfig, log: Logger): Promise<StageResult> {
  const path = join(config.out, REPORT_JSON);
  let saved: SavedRun;
  try {
    saved = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new PipelineError(`${path} not found; run "deno task bench" first (with the same --out)`);
    }
    if (error instanceof SyntaxError) {
      throw new PipelineError(`${path} is not valid JSON; run the bench again`);
    }
    throw error;
  }
  if (!saved.info || !Array.isArray(saved.reports)) {
    throw new PipelineError(`${path} is not a bench report; run the bench again`);
  }
  return publish(config, saved.info, saved.reports, log);
}

if (import.meta.main) await runStage(spec, Deno.args, main);
