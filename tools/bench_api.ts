/**
 * `deno task bench --api`: how fast the inference API serves, beside a bare `Deno.serve` on the same
 * machine in the same run, so the API's own cost per request is read off as a ratio.
 *
 * It builds two versions of a linear model of `make demo`'s shape (10 × 2,097,152 hashed word and pair
 * features, trained by the project's tokenizer and SGD step on 20,000 generated reviews, as many as the
 * demo), registers them in a fake MLflow on loopback (`lib/tracking/_fake_mlflow.ts`, the same REST answers), and
 * starts `scripts/serve.ts` twice with its real permission set (request log on, and off), plus the bare
 * baseline: a `Deno.serve` that parses the same JSON body and answers a JSON label. wrk then measures each
 * row for `--duration` seconds with `--connections` connections:
 *
 * | row | what |
 * |---|---|
 * | bare `Deno.serve` | `POST` of one review, parsed, answered with a fixed label |
 * | `GET /health` | the API's cheapest route |
 * | `POST /predict` | one review per request, request log on; and off |
 * | `POST /invocations` ×100 | 100 reviews per request (`dataframe_split`) |
 * | `POST /invocations` ×1,000 | one connection, one request at a time: the latency of a 1,000-review batch |
 * | `POST /predict` during reloads | windows in which `POST /reload` swaps in the other version, beside windows without |
 *
 * Server CPU per request comes from the server's own `process_cpu_seconds_total` (`GET /metrics`), read
 * before and after each row: unlike requests/s, it does not depend on how much CPU wrk and other processes
 * took. At the end both servers are stopped with SIGTERM and the request log is checked to hold exactly
 * one line per request the server answered (nothing lost in the log buffer).
 *
 * `--profile` runs the `/predict` and the 100-review `/invocations` rows once more, each against a server
 * started with `--cpu-prof`, and prints where its busy time went: by part of the code
 * (tools/_cpu_profile.ts) and the functions with the most self time.
 *
 * Run: `deno task bench --api [--duration S] [--rounds N] [--profile] [--no-docs]` (or `deno task bench_api`).
 * Needs wrk (`make bench-deps`). Results go to docs/benchmarks.md (between the `bench-api` markers) and to
 * `<out>/report.json`.
 *
 * @module
 */
import { cpus, totalmem } from "node:os";
import process from "node:process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createFakeMlflow, type FakeMlflowState } from "../lib/tracking/_fake_mlflow.ts";
import { PipelineError, UsageError } from "../lib/core/errors.ts";
import { writeFileAtomic } from "../lib/core/atomic_file.ts";
import { intFlag } from "../lib/core/flags.ts";
import { LinearModel } from "../lib/models/linear/model.ts";
import { LINEAR_ENGINE_NAME, serializeLinear } from "../lib/models/linear/model_format.ts";
import { DEFAULT_LINEAR_PARAMS } from "../lib/models/linear/trainer.ts";
import { buildModelFiles } from "../lib/models/artifact.ts";
import { generateReviews } from "../lib/data/sample_data.ts";
import { tokenizeReview } from "../lib/features/tokenizer.ts";
import { defineStage, runStage, type StageContext, type StageResult } from "../scripts/_cli.ts";
import { markdownTable } from "./_bench_report.ts";
import { formatBytes } from "../lib/core/format.ts";
import { probeParallelism, type ProbeResult } from "./_bench_probe.ts";
import { summarizeProfile } from "./_cpu_profile.ts";
import { SAMPLE_REVIEWS } from "./_sample_reviews.ts";
import { runWrk, type WrkResult, wrkResult, wrkScript } from "./_wrk.ts";
import { APP_VERSION } from "../lib/core/version.ts";

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
/** Scratch folder of the run (git-ignored). */
export const DEFAULT_OUT = ".tmp-bench/api";
/** The page the results go to. */
export const DOCS_PATH = "docs/benchmarks.md";
export const DOCS_BEGIN =
  "<!-- bench-api:begin: written by `deno task bench --api`; edits between the markers are overwritten -->";
export const DOCS_END = "<!-- bench-api:end -->";
const MODEL_NAME = "amazon-reviews-sentiment";
/** Reviews the bench models are trained on: as many as `make demo` generates. */
const TRAIN_ROWS = 20_000;

/** The targets of the API's performance issue. */
export const TARGETS = Object.freeze({
  /** `/predict` requests/s at least this share of `/health`'s, same server, same run. */
  predictShareOfHealth: 0.5,
  /** p99 of `/predict` at the default 32 connections, request log on, in milliseconds. */
  predictP99Ms: 5,
  /** Reviews/s of `/invocations` with 100-review batches. */
  invocationsReviewsPerSecond: 200_000,
  /** Median latency of one 1,000-review batch, in milliseconds. */
  batch1000Ms: 20,
  /** p99 during reloads at most this multiple of p99 without. */
  reloadP99Ratio: 2,
});

/** The flags' values when not given. */
const DEFAULTS = {
  duration: 10,
  connections: 32,
  threads: 2,
  rounds: 1,
  reloads: 3,
  scoreWorkers: 0,
} as const;

const USAGE = `Usage: deno task bench --api [options]

Measures the inference API (scripts/serve.ts with a linear model of make demo's shape, loaded from a
fake MLflow on loopback) beside a bare Deno.serve, with wrk, and writes the table to ${DOCS_PATH}.
Needs wrk (make bench-deps). Takes about 2 minutes per round with the defaults.

Options:
  --duration S      seconds per row (default ${DEFAULTS.duration})
  --connections N   concurrent connections (default ${DEFAULTS.connections})
  --threads N       wrk threads (default ${DEFAULTS.threads})
  --rounds N        measure every row N times and report the median row (default ${DEFAULTS.rounds})
  --reloads N       reload windows, and as many windows without a reload (default ${DEFAULTS.reloads})
  --score-workers N the servers' --score-workers (default ${DEFAULTS.scoreWorkers}: batches scored on the server's thread)
  --profile         also profile the /predict and /invocations rows (V8 CPU profile): where the time goes
  --out DIR         scratch folder (default ${DEFAULT_OUT})
  --no-docs         do not update ${DOCS_PATH}
  --json            print the report as JSON on stdout
  -h, --help        show this help
`;

/** The flags of this benchmark that `deno task bench` does not have (it hands them over with `--api`). */
export const API_BENCH_OPTIONS = {
  duration: { type: "string" },
  connections: { type: "string" },
  threads: { type: "string" },
  rounds: { type: "string" },
  reloads: { type: "string" },
  profile: { type: "boolean" },
  "score-workers": { type: "string" },
} as const;

/** Command line of the API benchmark. */
export const spec = defineStage({
  name: "bench_api",
  usage: USAGE,
  options: {
    ...API_BENCH_OPTIONS,
    out: { type: "string" },
    "no-docs": { type: "boolean" },
    api: { type: "boolean" },
    "baseline-server": { type: "boolean" },
  },
});

type Ctx = StageContext<typeof spec.options>;

// --- The model and the fake MLflow ----------------------------------------------------------------------

/** Model files of a linear model of the demo's shape, trained for two epochs on generated reviews. */
export function benchModelFiles(seed: number): Map<string, Uint8Array> {
  const { dim, buckets, ngrams, pooling, learningRate } = DEFAULT_LINEAR_PARAMS;
  const model = LinearModel.create({ dim, buckets, ngrams, pooling }, seed);
  const reviews = [...generateReviews({ rows: TRAIN_ROWS, seed })];
  const tokens = reviews.map((review) => tokenizeReview(review));
  const epochs = 2;
  for (let epoch = 0; epoch < epochs; epoch++) {
    reviews.forEach((review, i) => {
      const rate = learningRate * (1 - (epoch * reviews.length + i) / (epochs * reviews.length));
      model.trainTokens(tokens[i]!, review.polarity === 2 ? 1 : 0, rate);
    });
  }
  return buildModelFiles({
    engineName: LINEAR_ENGINE_NAME,
    engineBytes: serializeLinear(model),
    appVersion: APP_VERSION,
    runId: `bench-run-${seed}`,
  });
}

// --- Child processes -----------------------------------------------------------------------------------

/** A server under test: its base URL, its stderr lines, and how to stop it. */
interface ServerProcess {
  base: string;
  /** Stops it with SIGTERM and returns its exit code and stdout. */
  stop(): Promise<{ code: number; stdout: string }>;
}

/** Writes all of `bytes` to a file (a write may take only part of them). */
async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
}

/** Spawns a process and waits for `announce(line)` to return its base URL from a line on its stderr. */
async function spawnServer(
  args: string[],
  options: { env?: Record<string, string>; logFile?: string; announce: (line: string) => string | undefined },
): Promise<ServerProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const log = options.logFile
    ? await Deno.open(options.logFile, { write: true, create: true, truncate: true })
    : undefined;
  let found: (base: string) => void = () => {};
  const announced = new Promise<string>((resolve) => (found = resolve));
  const tail: string[] = [];
  // Lines are split only until the server says where it listens; after that its output is copied in
  // chunks, so reading a busy server's request log costs this process (and the shared CPU) little. It is
  // drained even without a log file: a closed pipe would fail the server's next write.
  const stderrDone = (async () => {
    const reader = child.stderr.getReader();
    const decoder = new TextDecoder();
    let pending = "";
    let listening = false;
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      if (log) await writeAll(log, value);
      if (listening) continue;
      pending += decoder.decode(value, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        tail.push(line);
        if (tail.length > 20) tail.shift();
        const base = options.announce(line);
        if (base !== undefined) {
          found(base);
          listening = true;
        }
      }
    }
  })();
  const stdoutDone = new Response(child.stdout).text();
  const base = await Promise.race([
    announced,
    child.status.then((status) => {
      throw new PipelineError(
        `a server for the benchmark exited (${status.code}) before listening: ${
          tail.join(" | ").slice(0, 500)
        }`,
      );
    }),
  ]);
  return {
    base,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      const status = await child.status;
      await stderrDone;
      const stdout = await stdoutDone;
      log?.close();
      return { code: status.code, stdout };
    },
  };
}

/** The bare baseline: parses the JSON body of a POST and answers a fixed JSON label. */
function serveBaseline(): Promise<void> {
  let requests = 0;
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: ({ port }) => console.error(JSON.stringify({ port })),
  }, async (request) => {
    const url = request.url;
    if (url.endsWith("/cpu")) return Response.json({ cpu_seconds: cpuSeconds(), requests });
    requests++;
    if (request.method === "GET") return Response.json({ status: "ok" });
    const body = await request.json();
    const positive = typeof body?.message === "string" && body.message.length % 2 === 0;
    return Response.json({
      label: positive ? "positive" : "negative",
      polarity: positive ? 2 : 1,
      probability: 0.9,
    });
  });
  return new Promise((resolve) => {
    const stop = () => server.shutdown().then(resolve);
    Deno.addSignalListener("SIGTERM", stop);
    Deno.addSignalListener("SIGINT", stop);
  });
}

function cpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

// --- Measuring -----------------------------------------------------------------------------------------

/** One measured row of the table. */
export interface Row {
  name: string;
  result: WrkResult;
  /** Reviews per request (for reviews/s). */
  reviewsPerRequest: number;
  /** Server CPU microseconds per request, from the server's own CPU counter. */
  cpuMicrosPerRequest: number | null;
}

async function serverCpuSeconds(base: string, baseline: boolean): Promise<number | null> {
  try {
    const response = await fetch(baseline ? `${base}/cpu` : `${base}/metrics`);
    if (baseline) return ((await response.json()) as { cpu_seconds: number }).cpu_seconds;
    const text = await response.text();
    const value = /^process_cpu_seconds_total (\S+)$/m.exec(text)?.[1];
    return value === undefined ? null : Number(value);
  } catch {
    return null;
  }
}

interface Load {
  url: string;
  script: string;
  connections: number;
  threads: number;
  seconds: number;
}

async function measure(load: Load, signal: AbortSignal): Promise<WrkResult> {
  return wrkResult(
    await runWrk([
      `-t${load.threads}`,
      `-c${load.connections}`,
      `-d${load.seconds}s`,
      "--timeout",
      "5s",
      "-s",
      load.script,
      load.url,
    ], signal),
  );
}

async function measureRow(
  name: string,
  base: string,
  baseline: boolean,
  load: Load,
  reviewsPerRequest: number,
  signal: AbortSignal,
): Promise<Row> {
  const before = await serverCpuSeconds(base, baseline);
  const result = await measure(load, signal);
  const after = await serverCpuSeconds(base, baseline);
  const cpu = before !== null && after !== null && result.requests > 0
    ? Math.round(((after - before) * 1e6) / result.requests * 10) / 10
    : null;
  return { name, result, reviewsPerRequest, cpuMicrosPerRequest: cpu };
}

function median<T>(values: readonly T[], key: (value: T) => number): T {
  const sorted = [...values].sort((a, b) => key(a) - key(b));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

// --- Report --------------------------------------------------------------------------------------------

/** Everything one run measured. */
export interface ApiBenchReport {
  command: string;
  date: string;
  machine: { cpuModel: string; cores: number; memoryBytes: number; denoVersion: string };
  loadAverage: { start: number[]; end: number[] };
  /** The machine's own two-thread speed-up at the start (2 = two free cores): what parallel scoring can get. */
  parallelism: ProbeResult;
  settings: { duration: number; connections: number; threads: number; rounds: number; scoreWorkers: number };
  modelBytes: number;
  rows: Row[];
  reload: {
    windows: number;
    windowSeconds: number;
    reloadMs: number[];
    p99WithoutMs: number;
    p99DuringMs: number;
    worstDuringMs: number;
    errors: number;
  };
  accessLog: { requests: number; lines: number };
  profile?: RouteProfile[];
  targets: { name: string; value: string; target: string; met: boolean }[];
}

/** Where one route's server time went, from a V8 CPU profile of the server's thread. */
export interface RouteProfile {
  /** The row it profiles, e.g. "POST /predict, 1 review". */
  route: string;
  reviewsPerRequest: number;
  /** Busy time by part of the code (tools/_cpu_profile.ts), largest first. */
  parts: { category: string; share: number; microsPerRequest: number }[];
  /** The functions with the most self time, largest first. */
  hottest: { name: string; share: number; microsPerRequest: number }[];
}

/** Functions listed per profiled route. */
const HOTTEST_FUNCTIONS = 12;

function formatNumber(value: number, digits = 0): string {
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function judge(rows: readonly Row[], reload: ApiBenchReport["reload"]): ApiBenchReport["targets"] {
  const row = (name: string) => rows.find((r) => r.name === name)!;
  const health = row("API GET /health").result;
  const predict = row("API POST /predict, 1 review").result;
  const invocations = row("API POST /invocations, 100 reviews").result;
  const batch = row("API POST /invocations, 1,000 reviews, 1 connection").result;
  const share = predict.requestsPerSecond / health.requestsPerSecond;
  const ratio = reload.p99DuringMs / reload.p99WithoutMs;
  return [
    {
      name: "/predict throughput ÷ /health throughput",
      value: `${formatNumber(share * 100)}%`,
      target: `≥ ${TARGETS.predictShareOfHealth * 100}%`,
      met: share >= TARGETS.predictShareOfHealth,
    },
    {
      name: "/predict p99, request log on",
      value: `${predict.latencyMs.p99} ms`,
      target: `< ${TARGETS.predictP99Ms} ms`,
      met: predict.latencyMs.p99 < TARGETS.predictP99Ms,
    },
    {
      name: "/invocations reviews/s, 100 per request",
      value: formatNumber(invocations.requestsPerSecond * 100),
      target: `≥ ${formatNumber(TARGETS.invocationsReviewsPerSecond)}`,
      met: invocations.requestsPerSecond * 100 >= TARGETS.invocationsReviewsPerSecond,
    },
    {
      name: "1,000-review batch, median latency",
      value: `${batch.latencyMs.p50} ms`,
      target: `< ${TARGETS.batch1000Ms} ms`,
      met: batch.latencyMs.p50 < TARGETS.batch1000Ms,
    },
    {
      name: "/predict p99 during reloads ÷ without",
      value: `${formatNumber(ratio, 2)}× (${reload.p99DuringMs} ms vs ${reload.p99WithoutMs} ms)`,
      target: `≤ ${TARGETS.reloadP99Ratio}×`,
      met: ratio <= TARGETS.reloadP99Ratio && reload.errors === 0,
    },
  ];
}

/** The markdown block of a run. */
export function renderReport(report: ApiBenchReport): string {
  const health = report.rows.find((r) => r.name === "API GET /health")!.result.requestsPerSecond;
  const baseline = report.rows.find((r) => r.name.startsWith("bare"))!.result.requestsPerSecond;
  const loaded = (report.loadAverage.start[0] ?? 0) > 2.5;
  const parts = [
    "### Latest run\n",
    ...(loaded
      ? [
        `> **Measured under load**: the 1-minute load average was ${
          report.loadAverage.start[0]?.toFixed(1)
        } on ${report.machine.cores} cores when the run started; other processes took CPU time, so absolute ` +
        "figures are pessimistic. The ratios (same run, same machine) are what to compare.\n",
      ]
      : []),
    markdownTable(["", ""], [
      ["command", `\`${report.command}\``],
      ["date", report.date],
      [
        "machine",
        `${report.machine.cores} cores (${report.machine.cpuModel}), ${
          formatBytes(report.machine.memoryBytes)
        } RAM, Deno ${report.machine.denoVersion}`,
      ],
      [
        "load average (1/5/15 min)",
        `${report.loadAverage.start.join(" ")} at the start, ${report.loadAverage.end.join(" ")} at the end`,
      ],
      [
        "two threads vs one",
        `${report.parallelism.alu.toFixed(2)}× for arithmetic, ${
          report.parallelism.memory.toFixed(2)
        }× for memory reads, at the start (2 = two free cores: what --score-workers can gain)`,
      ],
      [
        "load",
        `wrk, ${report.settings.threads} threads, ${report.settings.connections} connections, ${report.settings.duration} s per row, ${report.settings.rounds} round(s) (median row); serve --score-workers ${report.settings.scoreWorkers}`,
      ],
      ["model", `linear, 10 × 2,097,152 buckets, engine.bin ${formatBytes(report.modelBytes)}, 2 versions`],
    ]),
    "",
    markdownTable(
      [
        "request",
        "requests/s",
        "reviews/s",
        "p50 ms",
        "p99 ms",
        "server CPU µs/request",
        "÷ bare",
        "÷ /health",
        "errors",
      ],
      report.rows.map((row) => [
        row.name,
        formatNumber(row.result.requestsPerSecond),
        formatNumber(row.result.requestsPerSecond * row.reviewsPerRequest),
        String(row.result.latencyMs.p50),
        String(row.result.latencyMs.p99),
        row.cpuMicrosPerRequest === null ? "" : formatNumber(row.cpuMicrosPerRequest, 1),
        `${formatNumber((100 * row.result.requestsPerSecond) / baseline)}%`,
        `${formatNumber((100 * row.result.requestsPerSecond) / health)}%`,
        String(row.result.errors),
      ]),
      ["l", "r", "r", "r", "r", "r", "r", "r", "r"],
    ),
    "",
    `Reloads: ${report.reload.windows} windows of ${report.reload.windowSeconds} s under the /predict load, each with one ` +
    `\`POST /reload\` that swaps in the other version (${
      report.reload.reloadMs.map((ms) => `${formatNumber(ms)} ms`).join(", ")
    }), ` +
    `beside as many windows without: p99 ${report.reload.p99DuringMs} ms during (worst window ${report.reload.worstDuringMs} ms) ` +
    `vs ${report.reload.p99WithoutMs} ms without, ${report.reload.errors} errors. ` +
    `Request log: ${formatNumber(report.accessLog.lines)} lines for ${
      formatNumber(report.accessLog.requests)
    } requests answered.`,
    "",
    "#### Targets\n",
    markdownTable(
      ["target", "measured", "wanted", ""],
      report.targets.map((t) => [t.name, t.value, t.target, t.met ? "met" : "**missed**"]),
    ),
  ];
  for (const route of report.profile ?? []) {
    const batch = route.reviewsPerRequest > 1;
    const cells = (share: number, micros: number) => [
      `${formatNumber(share * 100, 1)}%`,
      formatNumber(micros, 1),
      ...(batch ? [formatNumber(micros / route.reviewsPerRequest, 2)] : []),
    ];
    const columns = ["share of busy time", "µs per request", ...(batch ? ["µs per review"] : [])];
    const align: ("l" | "r")[] = ["l", "r", "r", ...(batch ? ["r" as const] : [])];
    parts.push(
      "",
      `#### Where the server's time goes: \`${route.route}\` (V8 CPU profile, \`--profile\`)\n`,
      markdownTable(
        ["part", ...columns],
        route.parts.map((p) => [p.category, ...cells(p.share, p.microsPerRequest)]),
        align,
      ),
      "",
      `The ${route.hottest.length} functions with the most self time:\n`,
      markdownTable(
        ["function (file:line)", ...columns],
        route.hottest.map((f) => [`\`${f.name}\``, ...cells(f.share, f.microsPerRequest)]),
        align,
      ),
    );
  }
  return parts.join("\n") + "\n";
}

function spliceDocs(existing: string, block: string): string {
  const begin = existing.indexOf(DOCS_BEGIN);
  const end = existing.indexOf(DOCS_END);
  if (begin < 0 || end < begin) {
    throw new PipelineError(
      `${DOCS_PATH} has no ${DOCS_BEGIN.slice(0, 22)}... ${DOCS_END} block; restore the markers`,
    );
  }
  return existing.slice(0, begin + DOCS_BEGIN.length) + "\n" + block.trim() + "\n" + existing.slice(end);
}

// --- Main ----------------------------------------------------------------------------------------------

function loadAverage(): number[] {
  return Deno.loadavg().map((value) => Math.round(value * 100) / 100);
}

/** Runs the benchmark; see the module doc. */
export /**
 * Counts the request lines of the server's log, streamed: a quiet machine writes millions of them, more
 * than one string may hold.
 */
async function countRequestLines(path: string): Promise<number> {
  using file = await Deno.open(path);
  const decoder = new TextDecoder();
  let count = 0;
  let partial = "";
  for await (const chunk of file.readable) {
    const lines = (partial + decoder.decode(chunk, { stream: true })).split("\n");
    partial = lines.pop()!;
    for (const line of lines) if (line.includes('"msg":"request"')) count++;
  }
  if ((partial + decoder.decode()).includes('"msg":"request"')) count++;
  return count;
}

async function main(ctx: Ctx): Promise<StageResult> {
  if (ctx.values["baseline-server"] === true) {
    await serveBaseline();
    return { json: {} };
  }
  const { values } = ctx;
  const duration = intFlag("--duration", values.duration, { min: 1, max: 600 }) ?? DEFAULTS.duration;
  const connections = intFlag("--connections", values.connections, { min: 1, max: 10_000 }) ??
    DEFAULTS.connections;
  const threads = intFlag("--threads", values.threads, { min: 1, max: 64 }) ?? DEFAULTS.threads;
  const rounds = intFlag("--rounds", values.rounds, { min: 1, max: 20 }) ?? DEFAULTS.rounds;
  const reloadWindows = intFlag("--reloads", values.reloads, { min: 1, max: 50 }) ?? DEFAULTS.reloads;
  const scoreWorkers = intFlag("--score-workers", values["score-workers"], { min: 0, max: 64 }) ??
    DEFAULTS.scoreWorkers;
  if (connections < threads) throw new UsageError("--connections must be at least --threads");
  const out = resolve(REPO_ROOT, values.out ?? DEFAULT_OUT);
  if (out === REPO_ROOT) throw new UsageError("--out must be a scratch folder, not the repository");
  await Deno.mkdir(out, { recursive: true });
  const signal = ctx.signal;
  const loadStart = loadAverage();
  ctx.log.info("measuring how much two threads get on this machine now");
  const parallelism = await probeParallelism();

  ctx.log.info(`building two model versions (${formatNumber(TRAIN_ROWS)} generated reviews each)`);
  const versions = [benchModelFiles(1), benchModelFiles(2)];
  const modelBytes = versions[0]!.get("engine.bin")!.length;
  const state: FakeMlflowState = {
    name: MODEL_NAME,
    versions: {
      "1": { runId: "bench-run-1", files: versions[0]! },
      "2": { runId: "bench-run-2", files: versions[1]! },
    },
    aliases: { champion: "1" },
  };
  const fake = createFakeMlflow(state);
  const mlflow = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => fake.fetch(request),
  );
  const mlflowUri = `http://127.0.0.1:${mlflow.addr.port}`;

  const servers: ServerProcess[] = [];
  const scripts: string[] = [];
  const script = async (name: string, text: string) => {
    const path = join(out, `${name}.lua`);
    await Deno.writeTextFile(path, text);
    scripts.push(path);
    return path;
  };
  try {
    const announceUrl = (line: string) => {
      if (!line.startsWith("{")) return undefined;
      const entry = JSON.parse(line) as { msg?: string; url?: string; port?: number };
      if (entry.msg === "listening" && entry.url) return entry.url.replace(/\/$/, "");
      if (entry.port !== undefined) return `http://127.0.0.1:${entry.port}`;
      return undefined;
    };
    const startServe = (extra: string[], logFile?: string) =>
      spawnServer([
        "run",
        "-q",
        "-P=serve",
        "--allow-net=127.0.0.1",
        ...extra.filter((arg) => arg.startsWith("--cpu-prof")),
        "scripts/serve.ts",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--model_version",
        "@champion",
        "--reload-interval",
        "1",
        "--score-workers",
        String(scoreWorkers),
        "--json",
        ...extra.filter((arg) => !arg.startsWith("--cpu-prof")),
      ], { env: { MLFLOW_TRACKING_URI: mlflowUri }, logFile, announce: announceUrl });
    const waitReady = async (base: string) => {
      for (let i = 0; i < 600; i++) {
        signal.throwIfAborted();
        const response = await fetch(`${base}/ready`).catch(() => undefined);
        await response?.body?.cancel();
        if (response?.ok) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new PipelineError(`the server at ${base} did not load its model within 60 s`);
    };

    const logFile = join(out, "serve-requests.log");
    const withLog = await startServe([], logFile);
    servers.push(withLog);
    const withoutLog = await startServe(["--no-access-log"]);
    servers.push(withoutLog);
    const baseline = await spawnServer(
      ["run", "-q", "--allow-net=127.0.0.1", "tools/bench_api.ts", "--baseline-server"],
      { announce: announceUrl },
    );
    servers.push(baseline);
    await Promise.all([waitReady(withLog.base), waitReady(withoutLog.base)]);

    const predictBodies = SAMPLE_REVIEWS.map((review) => JSON.stringify(review));
    const batch = (size: number) =>
      JSON.stringify({
        dataframe_split: {
          columns: ["title", "message"],
          data: Array.from({ length: size }, (_, i) => {
            const review = SAMPLE_REVIEWS[i % SAMPLE_REVIEWS.length]!;
            return [review.title, review.message];
          }),
        },
      });
    const predictScript = await script("predict", wrkScript({ path: "/predict", bodies: predictBodies }));
    const healthScript = await script("health", wrkScript({ method: "GET", path: "/health" }));
    const batch100Script = await script(
      "invocations-100",
      wrkScript({ path: "/invocations", bodies: [batch(100)] }),
    );
    const batch1000Script = await script(
      "invocations-1000",
      wrkScript({ path: "/invocations", bodies: [batch(1000)] }),
    );
    const load = (base: string, path: string, scriptPath: string, c = connections, t = threads): Load => ({
      url: base + path,
      script: scriptPath,
      connections: c,
      threads: t,
      seconds: duration,
    });

    ctx.log.info("warming up the servers (2 s each)");
    for (
      const [base, path, s] of [
        [baseline.base, "/predict", predictScript],
        [withLog.base, "/predict", predictScript],
        [withoutLog.base, "/predict", predictScript],
        [withLog.base, "/invocations", batch100Script],
      ] as const
    ) {
      await measure({ ...load(base, path, s), seconds: 2 }, signal);
    }

    const plan: { name: string; base: string; baseline: boolean; load: Load; reviews: number }[] = [
      {
        name: "bare Deno.serve, POST one review → JSON label",
        base: baseline.base,
        baseline: true,
        load: load(baseline.base, "/predict", predictScript),
        reviews: 1,
      },
      {
        name: "API GET /health",
        base: withLog.base,
        baseline: false,
        load: load(withLog.base, "/health", healthScript),
        reviews: 0,
      },
      {
        name: "API POST /predict, 1 review",
        base: withLog.base,
        baseline: false,
        load: load(withLog.base, "/predict", predictScript),
        reviews: 1,
      },
      {
        name: "API POST /predict, 1 review, request log off",
        base: withoutLog.base,
        baseline: false,
        load: load(withoutLog.base, "/predict", predictScript),
        reviews: 1,
      },
      {
        name: "API POST /invocations, 100 reviews",
        base: withLog.base,
        baseline: false,
        load: load(withLog.base, "/invocations", batch100Script),
        reviews: 100,
      },
      {
        name: "API POST /invocations, 1,000 reviews, 1 connection",
        base: withLog.base,
        baseline: false,
        load: load(withLog.base, "/invocations", batch1000Script, 1, 1),
        reviews: 1000,
      },
    ];
    const measured = new Map<string, Row[]>();
    for (let round = 1; round <= rounds; round++) {
      for (const step of plan) {
        ctx.log.info(`round ${round}/${rounds}: ${step.name}`);
        const row = await measureRow(step.name, step.base, step.baseline, step.load, step.reviews, signal);
        measured.set(step.name, [...(measured.get(step.name) ?? []), row]);
      }
    }
    const rows = plan.map((step) => median(measured.get(step.name)!, (row) => row.result.requestsPerSecond));

    // Reloads: windows of /predict load, each with one reload that swaps the version, beside windows without.
    const windowSeconds = Math.max(3, Math.min(duration, 5));
    const windowLoad = { ...load(withLog.base, "/predict", predictScript), seconds: windowSeconds };
    const reloadMs: number[] = [];
    const during: WrkResult[] = [];
    const without: WrkResult[] = [];
    let reloadErrors = 0;
    for (let i = 0; i < reloadWindows; i++) {
      ctx.log.info(`reload window ${i + 1}/${reloadWindows}`);
      without.push(await measure(windowLoad, signal));
      const running = measure(windowLoad, signal);
      await new Promise((r) => setTimeout(r, 500));
      state.aliases.champion = state.aliases.champion === "1" ? "2" : "1";
      const started = performance.now();
      const response = await fetch(`${withLog.base}/reload`, { method: "POST" });
      const body = await response.json() as { status?: string };
      reloadMs.push(Math.round(performance.now() - started));
      if (response.status !== 200 || body.status !== "loaded") reloadErrors++;
      during.push(await running);
    }
    const reload = {
      windows: reloadWindows,
      windowSeconds,
      reloadMs,
      p99WithoutMs: median(without, (r) => r.latencyMs.p99).latencyMs.p99,
      p99DuringMs: median(during, (r) => r.latencyMs.p99).latencyMs.p99,
      worstDuringMs: Math.max(...during.map((r) => r.latencyMs.p99)),
      errors: reloadErrors + during.reduce((sum, r) => sum + r.errors, 0),
    };

    let profile: ApiBenchReport["profile"];
    if (ctx.values.profile === true) {
      // Each route on a server of its own, started with --cpu-prof; the profile is written when it stops.
      const profileRoute = async (
        route: string,
        path: string,
        scriptPath: string,
        reviewsPerRequest: number,
      ): Promise<RouteProfile> => {
        ctx.log.info(`profiling ${route} (V8 CPU profile)`);
        const profileDir = join(out, "profile");
        await Deno.remove(profileDir, { recursive: true }).catch(() => {});
        const profiled = await startServe([
          "--cpu-prof",
          `--cpu-prof-dir=${profileDir}`,
          "--cpu-prof-interval=100",
        ]);
        servers.push(profiled);
        await waitReady(profiled.base);
        await measure({ ...load(profiled.base, path, scriptPath), seconds: 2 }, signal);
        const result = await measure(load(profiled.base, path, scriptPath), signal);
        await profiled.stop();
        servers.splice(servers.indexOf(profiled), 1);
        // One profile per thread; the model loader's and scorers' are named `*.worker-N.cpuprofile`.
        const file = [...Deno.readDirSync(profileDir)].find((entry) =>
          entry.name.endsWith(".cpuprofile") && !/\.worker-\d+\.cpuprofile$/.test(entry.name)
        );
        if (!file) throw new PipelineError(`no CPU profile was written to ${profileDir}`);
        const summary = summarizeProfile(JSON.parse(await Deno.readTextFile(join(profileDir, file.name))));
        // Warm-up requests ran too; spread the busy time over every request the profiled server answered.
        const requests = result.requests * (1 + 2 / duration);
        const share = ([name, micros]: [string, number]) => ({
          name,
          share: micros / summary.busyMicros,
          microsPerRequest: micros / requests,
        });
        const largest = (map: Map<string, number>) => [...map].sort((a, b) => b[1] - a[1]).map(share);
        return {
          route,
          reviewsPerRequest,
          parts: largest(summary.byCategory).map(({ name, ...rest }) => ({ category: name, ...rest })),
          hottest: largest(summary.byFunction).slice(0, HOTTEST_FUNCTIONS),
        };
      };
      profile = [
        await profileRoute("POST /predict, 1 review", "/predict", predictScript, 1),
        await profileRoute("POST /invocations, 100 reviews", "/invocations", batch100Script, 100),
      ];
    }

    // Stop the servers; the request log must hold one line per request the server answered.
    const stopped = await withLog.stop();
    servers.splice(servers.indexOf(withLog), 1);
    const answered =
      (JSON.parse(stopped.stdout.trim().split("\n").pop() ?? "{}") as { requests?: number }).requests ?? -1;
    const lines = await countRequestLines(logFile);
    // A quiet machine writes about a gigabyte of request lines; keep them only when some are missing.
    if (lines === answered) await Deno.remove(logFile);
    else ctx.log.warn(`the request log has ${lines} lines for ${answered} requests; kept at ${logFile}`);

    const report: ApiBenchReport = {
      command: "deno task bench --api" +
        (Deno.args.filter((a) => a !== "--api").length
          ? " " + Deno.args.filter((a) => a !== "--api").join(" ")
          : ""),
      date: new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC",
      machine: {
        cpuModel: cpus()[0]?.model.trim() || "unknown CPU",
        cores: navigator.hardwareConcurrency,
        memoryBytes: totalmem(),
        denoVersion: Deno.version.deno,
      },
      loadAverage: { start: loadStart, end: loadAverage() },
      parallelism,
      settings: { duration, connections, threads, rounds, scoreWorkers },
      modelBytes,
      rows,
      reload,
      accessLog: { requests: answered, lines },
      ...(profile ? { profile } : {}),
      targets: judge(rows, reload),
    };
    const markdown = renderReport(report);
    await Deno.writeTextFile(join(out, "report.json"), JSON.stringify(report, null, 2) + "\n");
    if (ctx.values["no-docs"] !== true) {
      // Staged in the scratch folder: the permission set grants the page, not temporary names beside it.
      const docs = join(REPO_ROOT, DOCS_PATH);
      await writeFileAtomic(docs, spliceDocs(await Deno.readTextFile(docs), markdown), { stagingDir: out });
    }
    return { json: report as unknown as Record<string, unknown>, text: markdown };
  } finally {
    for (const server of servers) await server.stop().catch(() => {});
    for (const path of scripts) await Deno.remove(path).catch(() => {});
    await mlflow.shutdown();
  }
}

if (import.meta.main) await runStage(spec, Deno.args, main);
