/**
 * Pure helpers of the pipeline benchmark (`tools/bench.ts`): the figures it collects, how they are
 * formatted into Markdown tables, how the targets of the benchmark issue are judged, how GNU `time`'s
 * report (CPU time, peak RSS) is read, and how the generated block is spliced into `docs/benchmarks.md`
 * without touching the sections other people write there. No I/O, so `bench_test.ts` covers it quickly.
 * Over 600 lines because it is the whole report page; its tables read best side by side.
 *
 * @module
 */
import { UsageError } from "../lib/core/errors.ts";
import { parseIntegerFlag } from "../lib/core/flags.ts";
import { formatBytes } from "../lib/core/format.ts";
import { formatPoints, type Interval } from "./_intervals.ts";

/** How a measured step ended. */
export type StepStatus = "ok" | "failed" | "timeout" | "skipped";

/** One pipeline stage measured on one data set. */
export interface StageFigure {
  /** Stage name as the table shows it, e.g. `split_batches`. */
  stage: string;
  /** Reviews the stage handled (read or written). */
  reviews: number;
  /** Bytes the stage streamed (its CSV input or output), for MB/s; omitted where MB/s means nothing. */
  bytes?: number;
  /** Wall time of the stage's process(es), seconds. */
  seconds: number;
  /**
   * Seconds of the work itself when the process measured it (e.g. training without process start-up);
   * rates use it when present.
   */
  workSeconds?: number;
  /** Peak resident set size of the process (the largest of its processes), bytes; null when unknown. */
  peakRssBytes: number | null;
  /** CPU seconds (user + system, all threads) of the process(es); with the wall time, the cores it kept busy. */
  cpuSeconds?: number | null;
  status: StepStatus;
  /** Shown in the notes column: why it failed or what the figure covers. */
  note?: string;
}

/** Scores and cost of one model (ours or a peer) on one data set. */
export interface ModelFigure {
  /** Model name, e.g. `ours: sparse forest` or `scikit-learn RandomForestClassifier`. */
  model: string;
  /** Whether this is the project's model (the base of the ratios). */
  ours: boolean;
  status: StepStatus;
  trainRows?: number;
  testRows?: number;
  accuracy?: number;
  f1?: number;
  rocAuc?: number;
  /** Vectorize + fit, seconds (what the training-time targets compare). */
  trainSeconds?: number;
  peakRssBytes?: number | null;
  note?: string;
}

/** The default model's accuracy minus one peer's, review by review on the same test set. */
export interface MarginFigure {
  /** The peer's model name, as in {@linkcode ModelFigure.model}. */
  peer: string;
  /** Ours minus the peer, with its paired 95% bootstrap interval over test reviews. */
  margin: Interval;
}

/** The 1-vs-N-workers training comparison. */
export interface WorkersFigure {
  /** Training reviews. */
  rows: number;
  /** Fit seconds with one worker. */
  oneWorkerFitSeconds: number;
  /** Fit seconds with `workers` workers. */
  fitSeconds: number;
  workers: number;
  /** Whether the serialized forests are identical byte for byte. */
  identical: boolean;
  /** Cores the train process kept busy (CPU ÷ wall), with one worker and with `workers`; null if unknown. */
  oneWorkerCores?: number | null;
  cores?: number | null;
}

/** Latency of one `predict` call in process, after the model is loaded. */
export interface PredictFigure {
  calls: number;
  medianMs: number;
  p99Ms: number;
  meanMs: number;
  /** Seconds to read and verify the model files and build the vectorizer and forest. */
  loadSeconds: number;
}

/** Everything measured on one data set. */
export interface DatasetReport {
  /** e.g. `real reviews` or `generated 100,000`. */
  label: string;
  kind: "real" | "generated";
  trainRows: number;
  testRows: number;
  stages: StageFigure[];
  models: ModelFigure[];
  workers?: WorkersFigure;
  predict?: PredictFigure;
  /** Evaluate throughput, reviews per second (scoring only, model already loaded). */
  evaluateRate?: number;
  /** The default (linear) model's margin over each peer that ran. */
  margins?: MarginFigure[];
}

/** The machine and the run. */
export interface RunInfo {
  command: string;
  date: string;
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  denoVersion: string;
  pythonVersions?: string;
  /** 1-minute load average when the run started and ended. */
  loadStart: number;
  loadEnd: number;
  /** How peak RSS was measured. */
  rssMethod: string;
  /**
   * The machine's own two-thread speed-up (`_bench_probe.ts`) before the first step and after the last:
   * the ceiling of any two-worker figure, and a sign of other load when it is far below 2.
   */
  parallelism?: { alu: number; memory: number };
  parallelismEnd?: { alu: number; memory: number };
  trees: number;
  workers: number;
  peersMax: number;
  fastPeersMax: number;
}

/** Loads above this (on 2 cores) make the figures unreliable; the report says so. */
export const LOADED_THRESHOLD = 2.5;

/** Default `--sizes`. */
export const DEFAULT_SIZES: readonly number[] = Object.freeze([10_000, 100_000, 1_000_000]);
/** The full training set of the Kaggle dataset, added by `--full`. */
export const FULL_SIZE = 3_600_000;

/**
 * Parses `--sizes 10000,100000,1e6` style lists: comma-separated positive integers (`_` and `k`/`m`
 * suffixes allowed), de-duplicated and sorted ascending.
 *
 * @param value The flag value.
 * @returns The sizes.
 * @throws {UsageError} naming the bad entry.
 *
 * @example Usage
 * ```ts
 * import { parseSizes } from "./_bench_report.ts";
 * parseSizes("100k,10000"); // [10000, 100000]
 * ```
 */
export function parseSizes(value: string): number[] {
  const words = value.split(",").map((word) => word.trim()).filter((word) => word !== "");
  if (words.length === 0) {
    throw new UsageError(`--sizes expects comma-separated review counts, got "${value}"`);
  }
  const sizes = words.map((word) => {
    const match = /^([\d_]+)([km]?)$/i.exec(word);
    if (!match) throw new UsageError(`--sizes expects integers like 10000 or 100k, got "${word}"`);
    const base = parseIntegerFlag("--sizes", match[1]!, { min: 1 });
    const scale = match[2]!.toLowerCase() === "k" ? 1_000 : match[2]!.toLowerCase() === "m" ? 1_000_000 : 1;
    const size = base * scale;
    // Below 100 reviews min_df=2 leaves almost no vocabulary and every rate is start-up time.
    if (size < 100) throw new UsageError(`--sizes entries must be at least 100, got "${word}"`);
    return size;
  });
  return [...new Set(sizes)].sort((a, b) => a - b);
}

/**
 * Test reviews generated for a training size: the real dataset's ratio (400k test for 3.6M train),
 * at least 1,000 so the metrics mean something, at most 400k.
 */
export function testRowsFor(trainRows: number): number {
  return Math.min(400_000, Math.max(1_000, Math.round(trainRows / 9)));
}

/** What GNU `time -f "%e %U %S %M"` reports about a process. */
export interface TimeReport {
  /** Elapsed wall seconds. */
  seconds: number;
  /** CPU seconds, user plus system, of every thread of the process. */
  cpuSeconds: number;
  /** Peak resident set size. */
  maxRssBytes: number;
}

/** The format string GNU `time` is given; {@linkcode parseTimeOutput} reads it. */
export const TIME_FORMAT = "%e %U %S %M";

/**
 * Reads the output of GNU `time -f "%e %U %S %M"`: elapsed, user and system seconds and peak RSS in KiB on
 * the last line (after a `Command exited with non-zero status N` line when the command failed).
 *
 * @param text The file `time -o` wrote.
 * @returns The figures, or null when the text holds no such line.
 *
 * @example Usage
 * ```ts
 * import { parseTimeOutput } from "./_bench_report.ts";
 * parseTimeOutput("12.34 20.10 0.50 204800\n"); // { seconds: 12.34, cpuSeconds: 20.6, maxRssBytes: 209715200 }
 * ```
 */
export function parseTimeOutput(text: string): TimeReport | null {
  const last = text.trim().split("\n").at(-1)?.trim() ?? "";
  const match = /^(\d+(?:\.\d+)?) (\d+(?:\.\d+)?) (\d+(?:\.\d+)?) (\d+)$/.exec(last);
  if (!match) return null;
  return {
    seconds: Number(match[1]),
    // Rounded to the centisecond GNU time reports, so 20.1 + 0.5 does not print as 20.599999.
    cpuSeconds: Math.round((Number(match[2]) + Number(match[3])) * 100) / 100,
    maxRssBytes: Number(match[4]) * 1024,
  };
}

/**
 * The q-quantile of a sorted sample (nearest rank, as latency reports usually do).
 *
 * @param sorted Values in ascending order.
 * @param q A quantile in [0, 1].
 * @returns The value, or NaN for an empty sample.
 */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

/** Thousands separators, e.g. 1,234,567. */
export function formatCount(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

/** Seconds with a precision that suits their size: 0.42 s, 12.3 s, 1,234 s (20.6 min). */
export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return "–";
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 100) return `${seconds.toFixed(1)} s`;
  const text = `${formatCount(seconds)} s`;
  return seconds >= 600 ? `${text} (${(seconds / 60).toFixed(1)} min)` : text;
}

/** A rate with thousands separators and no decimals above 100, e.g. `41,250`; "–" when not finite. */
export function formatRate(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return "–";
  return value >= 100 ? formatCount(value) : value.toFixed(1);
}

/** CPU seconds over wall seconds, e.g. `1.93`: how many cores a process kept busy; "–" when unknown. */
export function formatCores(cpuSeconds: number | null | undefined, seconds: number): string {
  if (cpuSeconds === null || cpuSeconds === undefined || !(seconds > 0)) return "–";
  return (cpuSeconds / seconds).toFixed(2);
}

/** A score as 0.9123; "–" when absent. */
export function formatScore(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value) ? "–" : value.toFixed(4);
}

/**
 * Half-width of the 95% confidence interval of an accuracy measured on `n` reviews (normal
 * approximation), so a reader can tell a real difference between two models from test-set noise.
 */
export function accuracyMargin(accuracy: number, n: number): number {
  return n > 0 ? 1.96 * Math.sqrt((accuracy * (1 - accuracy)) / n) : NaN;
}

/** A ratio peer / ours as `1.03×`; "–" when either side is missing. */
export function formatRatio(peer: number | undefined, ours: number | undefined): string {
  if (
    peer === undefined || ours === undefined || !Number.isFinite(peer) || !Number.isFinite(ours) || ours === 0
  ) {
    return "–";
  }
  const ratio = peer / ours;
  return `${ratio >= 10 ? ratio.toFixed(1) : ratio.toFixed(2)}×`;
}

/** Escapes a cell for a Markdown table (pipes and line breaks). */
function cell(text: string): string {
  return text.replaceAll("|", "\\|").replace(/\r?\n/g, " ");
}

/**
 * Formats a Markdown table.
 *
 * @param headers Column titles.
 * @param rows Cells, one array per row (missing cells are empty).
 * @param align Per column: "l" (default) or "r".
 * @returns The table, one line per row, ending with a newline.
 *
 * @example Usage
 * ```ts
 * import { markdownTable } from "./_bench_report.ts";
 * markdownTable(["stage", "s"], [["split", "1.2"]], ["l", "r"]);
 * // "| stage | s |\n|---|---:|\n| split | 1.2 |\n"
 * ```
 */
export function markdownTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  align: readonly ("l" | "r")[] = [],
): string {
  const line = (cells: readonly string[]) => `| ${headers.map((_, i) => cell(cells[i] ?? "")).join(" | ")} |`;
  const rule = `|${headers.map((_, i) => (align[i] === "r" ? "---:" : "---")).join("|")}|`;
  return [line(headers), rule, ...rows.map(line)].join("\n") + "\n";
}

/** Reviews per second of a stage (work seconds when the process measured them). */
export function stageRate(stage: StageFigure): number {
  const seconds = stage.workSeconds ?? stage.seconds;
  return seconds > 0 ? stage.reviews / seconds : NaN;
}

/** MB per second of a stage, or undefined where bytes do not apply. */
export function stageMegabytesPerSecond(stage: StageFigure): number | undefined {
  if (stage.bytes === undefined) return undefined;
  const seconds = stage.workSeconds ?? stage.seconds;
  return seconds > 0 ? stage.bytes / 1e6 / seconds : NaN;
}

function statusNote(status: StepStatus, note: string | undefined): string {
  if (status === "ok") return note ?? "";
  const word = status === "timeout" ? "timed out" : status;
  return note ? `${word}: ${note}` : word;
}

/** The per-stage table of one data set: reviews/s, MB/s, wall time, peak RSS. */
export function stageTable(stages: readonly StageFigure[]): string {
  return markdownTable(
    ["stage", "reviews", "reviews/s", "MB/s", "wall time", "cores busy", "peak RSS", "notes"],
    stages.map((stage) => {
      const ok = stage.status === "ok";
      return [
        stage.stage,
        formatCount(stage.reviews),
        ok ? formatRate(stageRate(stage)) : "–",
        ok ? formatRate(stageMegabytesPerSecond(stage)) : "–",
        ok || stage.status === "timeout" ? formatSeconds(stage.seconds) : "–",
        ok ? formatCores(stage.cpuSeconds, stage.seconds) : "–",
        formatBytes(stage.peakRssBytes),
        statusNote(stage.status, stage.note),
      ];
    }),
    ["l", "r", "r", "r", "r", "r", "r", "l"],
  );
}

/**
 * The model comparison of one data set: scores, training time, memory, and each peer's ratio to ours
 * (peer ÷ ours, so a time ratio of 10× means the peer took ten times as long).
 */
export function modelTable(models: readonly ModelFigure[]): string {
  const ours = models.find((model) => model.ours && model.status === "ok");
  return markdownTable(
    [
      "model",
      "train / test reviews",
      "accuracy (± 95% CI)",
      "F1",
      "ROC AUC",
      "train time (vectorize + fit)",
      "peak RSS",
      "÷ ours: accuracy / F1 / AUC / time",
      "notes",
    ],
    models.map((model) => {
      const ok = model.status === "ok";
      const ratios = !ok || model.ours || !ours ? "–" : [
        formatRatio(model.accuracy, ours.accuracy),
        formatRatio(model.f1, ours.f1),
        formatRatio(model.rocAuc, ours.rocAuc),
        formatRatio(model.trainSeconds, ours.trainSeconds),
      ].join(" / ");
      return [
        model.model,
        model.trainRows !== undefined && model.testRows !== undefined
          ? `${formatCount(model.trainRows)} / ${formatCount(model.testRows)}`
          : "–",
        ok && model.accuracy !== undefined && model.testRows !== undefined
          ? `${formatScore(model.accuracy)} ± ${formatScore(accuracyMargin(model.accuracy, model.testRows))}`
          : "–",
        ok ? formatScore(model.f1) : "–",
        ok ? formatScore(model.rocAuc) : "–",
        ok && model.trainSeconds !== undefined ? formatSeconds(model.trainSeconds) : "–",
        formatBytes(model.peakRssBytes),
        ratios,
        statusNote(model.status, model.note),
      ];
    }),
    ["l", "r", "r", "r", "r", "r", "r", "r", "l"],
  );
}

/** Verdict of one target. */
export interface TargetVerdict {
  target: string;
  measured: string;
  verdict: "met" | "missed" | "not measured";
}

function verdict(ok: boolean | undefined): TargetVerdict["verdict"] {
  return ok === undefined ? "not measured" : ok ? "met" : "missed";
}

function findStage(report: DatasetReport, name: string): StageFigure | undefined {
  return report.stages.find((stage) => stage.stage === name && stage.status === "ok");
}

function findModel(report: DatasetReport, ours: boolean, name?: string): ModelFigure | undefined {
  return report.models.find((model) =>
    model.status === "ok" && model.ours === ours && (name === undefined || model.model === name)
  );
}

/** Stage names of the phases timed inside the train process are this prefix plus the phase. */
export const TRAIN_PHASE_PREFIX = "↳ train: ";

/** The preprocess row of the real reviews repeated to a realistic size; the preprocessing target reads it. */
export const REAL_TEXT_STAGE = "preprocess_test (real text, repeated)";

/** Name of scikit-learn's forest in the model tables; the targets compare against it. */
export const SKLEARN_FOREST = "scikit-learn RandomForestClassifier";
/** Name of the default model (the linear family) in the model tables; the margins are its. */
export const LINEAR_MODEL = "ours: linear, the default (train --model linear)";
/** Name of fastText in the model tables; the accuracy target bounds our training time by its. */
export const FASTTEXT_PEER = "fastText supervised (-wordNgrams 2)";

/** The margin target: at least this many accuracy points over the best peer. */
export const MARGIN_TARGET = 0.01;

/**
 * The margins of the default model over the peers as a Markdown table, best peer first, with the peer's
 * training time as a ratio to ours.
 */
export function marginTable(report: DatasetReport): string {
  const ours = findModel(report, true, LINEAR_MODEL);
  const margins = [...(report.margins ?? [])].sort((a, b) => a.margin.value - b.margin.value);
  return markdownTable(
    ["peer", "ours (linear) − peer, accuracy points (paired 95% interval)", "peer's train time ÷ ours"],
    margins.map((m) => [
      m.peer,
      formatPoints(m.margin, true),
      formatRatio(findModel(report, false, m.peer)?.trainSeconds, ours?.trainSeconds),
    ]),
    ["l", "r", "r"],
  );
}

/** Milliseconds with two decimals below 10. */
function formatMs(ms: number): string {
  return ms < 10 ? `${ms.toFixed(3)} ms` : `${ms.toFixed(1)} ms`;
}

/**
 * Judges the targets of the benchmark issue against the reports. A target whose figure was not measured
 * (e.g. `--full` not given) says so rather than passing.
 *
 * @param reports Every data set of the run.
 * @returns One verdict per target, in the issue's order.
 */
export function judgeTargets(reports: readonly DatasetReport[]): TargetVerdict[] {
  const verdicts: TargetVerdict[] = [];
  const generated = reports.filter((report) => report.kind === "generated");

  // The default model's margin over the best peer on real reviews, and its training time against fastText's.
  const real = reports.find((report) => report.kind === "real" && (report.margins?.length ?? 0) > 0);
  if (!real) {
    verdicts.push({
      target: "default model ≥ 1 accuracy point over the best peer on real reviews, 95% interval above 0, " +
        "training in no more time than fastText",
      measured: "the peers did not run on real reviews",
      verdict: "not measured",
    });
  } else {
    const best = real.margins!.reduce((a, b) => (a.margin.value <= b.margin.value ? a : b));
    const ours = findModel(real, true, LINEAR_MODEL);
    const fasttext = findModel(real, false, FASTTEXT_PEER);
    const timeRatio = ours?.trainSeconds !== undefined && fasttext?.trainSeconds !== undefined
      ? ours.trainSeconds / fasttext.trainSeconds
      : undefined;
    verdicts.push({
      target: "default model ≥ 1 accuracy point over the best peer on real reviews, 95% interval above 0, " +
        "training in no more time than fastText",
      measured: `${formatPoints(best.margin, true)} points over ${best.peer}; train time ${
        timeRatio === undefined
          ? "not compared (fastText did not run)"
          : `${timeRatio.toFixed(2)}× fastText's`
      } (the feature study adds three more splits and leave-one-source-out)`,
      verdict: verdict(
        best.margin.value >= MARGIN_TARGET && best.margin.low > 0 && timeRatio !== undefined &&
          timeRatio <= 1,
      ),
    });
  }

  // Accuracy against scikit-learn's forest on the same features, wherever both ran.
  const accuracyPairs = reports.flatMap((report) => {
    const ours = findModel(report, true);
    const peer = findModel(report, false, SKLEARN_FOREST);
    return ours?.accuracy !== undefined && peer?.accuracy !== undefined
      ? [{ label: report.label, ours: ours.accuracy, peer: peer.accuracy, n: report.testRows }]
      : [];
  });
  const describe = (p: (typeof accuracyPairs)[number]) => {
    const margin = accuracyMargin(p.ours, p.n);
    const noise = Math.abs(p.ours - p.peer) < margin ? `, within test noise (±${formatScore(margin)})` : "";
    return `${p.label}: ${formatScore(p.ours)} vs ${formatScore(p.peer)}${noise}`;
  };
  verdicts.push({
    target: "forest accuracy ≥ scikit-learn's random forest on the same data",
    measured: accuracyPairs.length === 0
      ? "scikit-learn's forest did not run"
      : accuracyPairs.map(describe).join("; "),
    verdict: verdict(accuracyPairs.length === 0 ? undefined : accuracyPairs.every((p) => p.ours >= p.peer)),
  });

  // Training time against scikit-learn's forest: ≤ 0.2× around 15k reviews, ≤ 0.1× from 100k up.
  const timePairs = reports.flatMap((report) => {
    const ours = findModel(report, true);
    const peer = findModel(report, false, SKLEARN_FOREST);
    if (ours?.trainSeconds === undefined || peer?.trainSeconds === undefined) return [];
    const limit = report.trainRows >= 100_000 ? 0.1 : report.trainRows >= 15_000 ? 0.2 : undefined;
    // scikit-learn is handed our terms, so it never selects a vocabulary; the like-for-like ratio leaves our
    // vocabulary pass out too. The verdict uses the strict one.
    const vocabulary = report.stages.find((stage) => stage.stage === TRAIN_PHASE_PREFIX + "vocabulary");
    return limit === undefined ? [] : [{
      label: report.label,
      ratio: ours.trainSeconds / peer.trainSeconds,
      withoutVocabulary: vocabulary
        ? (ours.trainSeconds - vocabulary.seconds) / peer.trainSeconds
        : undefined,
      limit,
    }];
  });
  verdicts.push({
    target: "training time (vectorize + fit) ≤ 0.2× scikit-learn's at 15k reviews, ≤ 0.1× at 100k and above",
    measured: timePairs.length === 0
      ? "scikit-learn's forest did not run at 15k or more reviews"
      : timePairs.map((p) =>
        `${p.label}: ${p.ratio.toFixed(3)}× (limit ${p.limit}×` + (p.withoutVocabulary === undefined
          ? ")"
          : `; ${p.withoutVocabulary.toFixed(3)}× without our vocabulary pass, which scikit-learn skips)`)
      ).join("; "),
    verdict: verdict(timePairs.length === 0 ? undefined : timePairs.every((p) => p.ratio <= p.limit)),
  });

  const workers = reports.find((report) => report.workers)?.workers;
  const speedup = workers ? workers.oneWorkerFitSeconds / workers.fitSeconds : undefined;
  verdicts.push({
    target: "two workers ≥ 1.7× faster than one, forest identical bit for bit",
    measured: workers && speedup !== undefined
      ? `${formatCount(workers.rows)} reviews: fit ${formatSeconds(workers.oneWorkerFitSeconds)} → ${
        formatSeconds(workers.fitSeconds)
      } = ${speedup.toFixed(2)}×; ${workers.identical ? "identical bytes" : "DIFFERENT bytes"}`
      : "not run",
    verdict: verdict(
      workers && speedup !== undefined
        ? workers.workers >= 2 && speedup >= 1.7 && workers.identical
        : undefined,
    ),
  });

  const trainAt = (rows: number) => {
    const report = generated.find((r) => r.trainRows === rows);
    return report ? findStage(report, "train") : undefined;
  };
  const train1m = trainAt(1_000_000);
  verdicts.push({
    target: "100-tree forest on 1M reviews in under 5 minutes",
    measured: train1m
      ? `${formatSeconds(train1m.seconds)}, peak RSS ${formatBytes(train1m.peakRssBytes)}`
      : "not run",
    verdict: verdict(train1m ? train1m.seconds < 300 : undefined),
  });
  const trainFull = trainAt(FULL_SIZE);
  verdicts.push({
    target: "full 3.6M in under 20 minutes with peak RSS under 8 GB",
    measured: trainFull
      ? `${formatSeconds(trainFull.seconds)}, peak RSS ${formatBytes(trainFull.peakRssBytes)}`
      : "not run (add --full)",
    verdict: verdict(
      trainFull ? trainFull.seconds < 1200 && (trainFull.peakRssBytes ?? Infinity) < 8e9 : undefined,
    ),
  });

  // Throughput targets are judged at the largest generated size (start-up dominates small ones);
  // memory targets at every size ("at any input size").
  const largest = generated.at(-1);
  const streaming = (
    stage: string,
    rateOk: (s: StageFigure) => boolean,
    rateText: (s: StageFigure) => string,
  ) => {
    const all = generated.map((report) => findStage(report, stage)).filter((s) => s !== undefined);
    const top = largest ? findStage(largest, stage) : undefined;
    const peak = Math.max(...all.map((s) => s.peakRssBytes ?? Infinity));
    return {
      measured: top
        ? `${rateText(top)} at ${formatCount(top.reviews)} reviews; peak RSS ${
          all.map((s) => formatBytes(s.peakRssBytes)).join(", ")
        } at ${generated.map((r) => formatCount(r.trainRows)).join(", ")}`
        : "not run",
      ok: top ? rateOk(top) && peak < 300e6 : undefined,
    };
  };
  const split = streaming(
    "split_batches",
    (s) => (stageMegabytesPerSecond(s) ?? 0) >= 150,
    (s) => `${formatRate(stageMegabytesPerSecond(s))} MB/s`,
  );
  verdicts.push({
    target: "split_batches ≥ 150 MB/s, peak RSS under 300 MB at any input size",
    measured: split.measured,
    verdict: verdict(split.ok),
  });
  const preprocess = streaming(
    "preprocess_batch",
    (s) => stageRate(s) >= 40_000,
    (s) => `${formatRate(stageRate(s))} reviews/s`,
  );
  // Generated reviews are about 2.5× shorter than real ones, so real text at scale is judged too.
  const realText = reports.filter((r) => r.kind === "real").map((r) => findStage(r, REAL_TEXT_STAGE)).find((
    s,
  ) => s !== undefined);
  verdicts.push({
    target: "preprocessing ≥ 40,000 reviews/s on both cores, peak RSS under 300 MB at any input size",
    measured: preprocess.measured +
      (realText
        ? `; real text: ${formatRate(stageRate(realText))} reviews/s, peak RSS ${
          formatBytes(realText.peakRssBytes)
        } at ${formatCount(realText.reviews)} reviews`
        : ""),
    verdict: verdict(
      preprocess.ok === undefined ? undefined : preprocess.ok &&
        (!realText || (stageRate(realText) >= 40_000 && (realText.peakRssBytes ?? Infinity) < 300e6)),
    ),
  });

  // The largest model is the slowest to walk, so predict latency is judged there.
  const predictReport = [...reports].reverse().find((report) => report.predict);
  const predict = predictReport?.predict;
  verdicts.push({
    target: "predict of one review under 1 ms in process once the model is loaded (p99)",
    measured: predict
      ? `${predictReport!.label}: median ${formatMs(predict.medianMs)}, p99 ${formatMs(predict.p99Ms)} over ${
        formatCount(predict.calls)
      } calls`
      : "not run",
    verdict: verdict(predict ? predict.p99Ms < 1 : undefined),
  });

  const evaluateReport = [...generated].reverse().find((report) => report.evaluateRate !== undefined);
  const rate = evaluateReport?.evaluateRate;
  const evalSeconds = rate ? 400_000 / rate : undefined;
  verdicts.push({
    target: "evaluate of 400k reviews under 60 s",
    measured: evaluateReport && rate && evalSeconds !== undefined
      ? `${formatRate(rate)} reviews/s with the ${evaluateReport.label} model: ${
        formatSeconds(evalSeconds)
      } ` +
        (evaluateReport.testRows >= 400_000 ? "for 400k" : "for 400k (extrapolated)")
      : "not run",
    verdict: verdict(evalSeconds !== undefined ? evalSeconds < 60 : undefined),
  });
  return verdicts;
}

/** The targets as a Markdown table. */
export function targetTable(verdicts: readonly TargetVerdict[]): string {
  const mark = { met: "✅ met", missed: "❌ missed", "not measured": "– not measured" } as const;
  return markdownTable(
    ["target", "measured", "verdict"],
    verdicts.map((v) => [v.target, v.measured, mark[v.verdict]]),
  );
}

/** Marks the start of the block `deno task bench` rewrites in docs/benchmarks.md. */
export const DOCS_BEGIN =
  "<!-- bench:begin: written by `deno task bench`; edits between the markers are overwritten -->";
/** Marks the end of that block. */
export const DOCS_END = "<!-- bench:end -->";

/**
 * Replaces the generated block of docs/benchmarks.md, keeping everything outside the markers (the
 * hand-written method and analysis, and other people's sections such as the HTTP load test).
 *
 * @param existing The current file, or undefined when it does not exist.
 * @param block The new generated Markdown (without markers).
 * @param skeleton The file to start from when there is none, holding both markers.
 * @returns The new file.
 * @throws {Error} When the file has only one marker or they are out of order: a hand edit broke them and
 *   guessing could delete someone's text.
 */
export function spliceDocs(existing: string | undefined, block: string, skeleton: string): string {
  const source = existing ?? skeleton;
  const begin = source.indexOf(DOCS_BEGIN);
  const end = source.indexOf(DOCS_END);
  if (begin < 0 && end < 0) {
    // A file without our block (e.g. only the load-test section so far): append ours.
    return source.trimEnd() + "\n\n" + DOCS_BEGIN + "\n" + block.trim() + "\n" + DOCS_END + "\n";
  }
  if (begin < 0 || end < 0 || end < begin) {
    throw new Error("the <!-- bench:begin --> / <!-- bench:end --> markers are missing one or out of order");
  }
  return source.slice(0, begin + DOCS_BEGIN.length) + "\n" + block.trim() + "\n" + source.slice(end);
}

function formatProbe(probe: { alu: number; memory: number }): string {
  return `${probe.alu.toFixed(2)}× for arithmetic, ${probe.memory.toFixed(2)}× for random memory reads`;
}

/** The generated block: command, machine, and every table of the run. */
export function renderRun(info: RunInfo, reports: readonly DatasetReport[]): string {
  // Only the start counts: by the end the load average includes the bench's own two busy cores.
  const loaded = info.loadStart > LOADED_THRESHOLD;
  const parts: string[] = [];
  parts.push("### Latest run\n");
  if (loaded) {
    parts.push(
      `> **Measured under load**: the 1-minute load average was ${
        info.loadStart.toFixed(1)
      } on ${info.cores} ` +
        "cores when the run started, so other processes took CPU time and every time below is pessimistic. " +
        "Rerun the command below on an idle machine for reference figures.\n",
    );
  }
  parts.push(
    markdownTable(["", ""], [
      ["command", `\`${info.command}\``],
      ["date", info.date],
      ["machine", `${info.cores} cores (${info.cpuModel}), ${formatBytes(info.memoryBytes)} RAM`],
      ["Deno", info.denoVersion],
      ...(info.pythonVersions ? [["peers", info.pythonVersions]] : []),
      [
        "load average (1 min)",
        `${info.loadStart.toFixed(2)} at the start, ${
          info.loadEnd.toFixed(2)
        } at the end (the bench's own load included)`,
      ],
      [
        "settings",
        `${info.trees} trees, ${info.workers} workers; scikit-learn's forest up to ${
          formatCount(info.peersMax)
        } training reviews, TF-IDF + LR and fastText up to ${formatCount(info.fastPeersMax)}`,
      ],
      ["peak RSS", info.rssMethod],
      ...(info.parallelism
        ? [[
          "two threads vs one",
          `${formatProbe(info.parallelism)} at the start${
            info.parallelismEnd ? `, ${formatProbe(info.parallelismEnd)} at the end` : ""
          } (the machine's own ceiling for two workers; 2.00 = two full cores)`,
        ]]
        : []),
    ]),
  );
  parts.push("#### Targets\n");
  parts.push(targetTable(judgeTargets(reports)));
  for (const report of reports) {
    parts.push(
      `#### ${report.label}: ${formatCount(report.trainRows)} training, ${
        formatCount(report.testRows)
      } test reviews\n`,
    );
    parts.push(stageTable(report.stages));
    if (report.models.length > 0) parts.push("\n" + modelTable(report.models));
    if ((report.margins?.length ?? 0) > 0) parts.push("\n" + marginTable(report));
    const extras: string[] = [];
    if (report.workers) {
      const w = report.workers;
      // What the train processes got from the machine: a speed-up cannot exceed the cores a run kept busy.
      const cores = w.cores && w.oneWorkerCores
        ? ` The train process kept ${w.oneWorkerCores.toFixed(2)} and ${w.cores.toFixed(2)} cores busy.`
        : "";
      extras.push(
        `- Workers: fit with 1 worker ${formatSeconds(w.oneWorkerFitSeconds)}, with ${w.workers} ${
          formatSeconds(w.fitSeconds)
        } (${(w.oneWorkerFitSeconds / w.fitSeconds).toFixed(2)}× faster); the two forests are ${
          w.identical ? "identical byte for byte" : "**different**"
        }.${cores}`,
      );
    }
    if (report.predict) {
      const p = report.predict;
      extras.push(
        `- Predict, one review in process after loading (${formatSeconds(p.loadSeconds)} to load): median ${
          formatMs(p.medianMs)
        }, p99 ${formatMs(p.p99Ms)}, mean ${formatMs(p.meanMs)} over ${formatCount(p.calls)} calls.`,
      );
    }
    if (extras.length > 0) parts.push("\n" + extras.join("\n") + "\n");
  }
  return parts.join("\n");
}

/**
 * Shuffles lines deterministically (Fisher–Yates driven by the project's seeded generator) and holds out
 * the last `testShare` of them as the test set.
 *
 * @param lines The lines, e.g. every review of the real data set.
 * @param seed The shuffle's seed; the same seed gives the same split.
 * @param testShare Share of lines held out, in (0, 1).
 * @param random A generator factory, `createRandom` from lib/data/sample_data.ts.
 * @returns The training and test lines.
 *
 * @example Usage
 * ```ts
 * import { createRandom } from "../lib/data/sample_data.ts";
 * import { shuffleSplit } from "./_bench_report.ts";
 * const { train, test } = shuffleSplit(["a", "b", "c", "d", "e"], 42, 0.2, createRandom);
 * console.assert(train.length === 4 && test.length === 1);
 * ```
 */
export function shuffleSplit(
  lines: readonly string[],
  seed: number,
  testShare: number,
  random: (seed: number) => () => number,
): { train: string[]; test: string[] } {
  if (!(testShare > 0 && testShare < 1)) {
    throw new RangeError(`testShare must be in (0, 1), got ${testShare}`);
  }
  const shuffled = [...lines];
  const next = random(seed);
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
  }
  const testCount = Math.round(shuffled.length * testShare);
  return {
    train: shuffled.slice(0, shuffled.length - testCount),
    test: shuffled.slice(shuffled.length - testCount),
  };
}
