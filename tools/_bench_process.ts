/**
 * Child processes of the pipeline benchmark: each stage runs as its own process (exactly the command of
 * its `deno task`, with its permission set), bounded in time, with its wall time and peak memory measured.
 *
 * A stage runs as `timeout -k 10 <budget> time -f "%e %U %S %M" -o <file> <command>`:
 * - GNU `time` reports the child's CPU time and peak resident set size (`getrusage` `ru_maxrss`, taken by
 *   the kernel over the whole process, so every Web Worker thread is included, and exact rather than
 *   sampled). CPU ÷ wall time says how many cores a stage kept busy.
 *   Deno itself cannot measure it: reading `/proc/<pid>/status` needs every permission at once, which no task here is given.
 * - GNU `timeout` runs the command in a process group of its own and signals the whole group, so a stage
 *   over its budget, or one we stop on Ctrl-C (by signalling `timeout`), is ended with `time` and every
 *   process under it, SIGTERM first and SIGKILL 10 s later.
 *
 * @module
 */
import { join } from "node:path";
import { parseTimeOutput, TIME_FORMAT } from "./_bench_report.ts";

/** GNU coreutils' `timeout`, the one program the bench starts directly. */
export const TIMEOUT = "/usr/bin/timeout";
/** GNU `time` (Debian package `time`); without it peak RSS is not measured. */
export const GNU_TIME = "/usr/bin/time";

/** What a measured process did. */
export interface MeasuredRun {
  /** Exit code; null when killed by a signal. */
  code: number | null;
  /** Whether the process was killed for exceeding its time budget. */
  timedOut: boolean;
  /** Everything it printed on stdout (stages print one JSON object with `--json`). */
  stdout: string;
  /** Its last lines on stderr, for error messages. */
  stderrTail: string;
  /** Wall time from spawn to exit. */
  seconds: number;
  /** Peak RSS reported by GNU time; null without it or when the process was killed. */
  peakRssBytes: number | null;
  /** User + system CPU seconds reported by GNU time; null without it or when the process was killed. */
  cpuSeconds: number | null;
}

/** Options of {@linkcode runMeasured}. */
export interface RunMeasuredOptions {
  /** Executable path. */
  command: string;
  args: readonly string[];
  cwd: string;
  /** Killed (SIGTERM, then SIGKILL 10 s later) after this many seconds. */
  timeoutSeconds: number;
  /** Whether to measure peak RSS with GNU time (see {@linkcode GNU_TIME}). */
  measureRss: boolean;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Aborting stops the process the same way as a timeout. */
  signal?: AbortSignal;
  /** Called every `heartbeatSeconds` while the process runs, so a long stage shows it is alive. */
  onHeartbeat?: (seconds: number) => void;
  /** @default {30} */
  heartbeatSeconds?: number;
  /** Copy the child's stderr (its logs and progress lines) to ours as it comes. @default {false} */
  echoStderr?: boolean;
}

const STDERR_TAIL_LINES = 30;
/** `timeout`'s exit status when the budget ran out (124), or when its SIGKILL was needed (137). */
const TIMED_OUT_CODES = new Set([124, 137]);
let runCounter = 0;

/**
 * Runs a process to completion with a time budget, measuring wall time and peak RSS.
 *
 * @param options Command, arguments, working directory, budget.
 * @returns Exit code, output, time and memory. Never throws for a failing or killed process; the caller
 *   decides what a failure means.
 */
export async function runMeasured(options: RunMeasuredOptions): Promise<MeasuredRun> {
  const timeFile = join(options.cwd, `.bench-time-${Deno.pid}-${++runCounter}.txt`);
  const measured = options.measureRss ? [GNU_TIME, "-f", TIME_FORMAT, "-o", timeFile] : [];
  const started = performance.now();
  const child = new Deno.Command(TIMEOUT, {
    args: [
      "-k",
      "10",
      String(Math.ceil(options.timeoutSeconds)),
      ...measured,
      options.command,
      ...options.args,
    ],
    cwd: options.cwd,
    env: { NO_COLOR: "1", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  const heartbeatMs = (options.heartbeatSeconds ?? 30) * 1000;
  const heartbeat = options.onHeartbeat
    ? setInterval(() => options.onHeartbeat!((performance.now() - started) / 1000), heartbeatMs)
    : undefined;
  const stop = () => {
    try {
      child.kill("SIGTERM"); // timeout passes it on to the whole group
    } catch { /* already exited */ }
  };
  options.signal?.addEventListener("abort", stop, { once: true });

  const stdoutText = new Response(child.stdout).text();
  const tail: string[] = [];
  const stderrDone = (async () => {
    const decoder = new TextDecoder();
    const encoder = new TextEncoder();
    let carry = "";
    for await (const chunk of child.stderr) {
      const lines = (carry + decoder.decode(chunk, { stream: true })).split("\n");
      carry = lines.pop()!;
      for (const line of lines) {
        if (options.echoStderr) Deno.stderr.writeSync(encoder.encode(`    | ${line}\n`));
        tail.push(line);
        if (tail.length > STDERR_TAIL_LINES) tail.shift();
      }
    }
    if (carry !== "") tail.push(carry);
  })();

  const status = await child.status;
  const seconds = (performance.now() - started) / 1000;
  clearInterval(heartbeat);
  options.signal?.removeEventListener("abort", stop);
  const [stdout] = await Promise.all([stdoutText, stderrDone]);
  let report = null;
  if (options.measureRss) {
    try {
      report = parseTimeOutput(await Deno.readTextFile(timeFile));
    } catch { /* killed before GNU time could write it */ }
    await Deno.remove(timeFile).catch(() => {});
  }
  return {
    code: status.signal === null ? status.code : null,
    timedOut: status.code !== null && TIMED_OUT_CODES.has(status.code) &&
      seconds >= options.timeoutSeconds - 1 && !options.signal?.aborted,
    stdout,
    stderrTail: tail.join("\n"),
    seconds,
    peakRssBytes: report?.maxRssBytes ?? null,
    cpuSeconds: report?.cpuSeconds ?? null,
  };
}

/**
 * The one-line reason a run failed, for the report: the child's last `error: ...` line, or its last
 * non-empty stderr line, or its exit status.
 */
export function failureReason(run: MeasuredRun, timeoutSeconds: number): string {
  if (run.timedOut) return `over its ${Math.round(timeoutSeconds)} s budget`;
  const lines = run.stderrTail.split("\n").map((line) => line.trim()).filter((line) => line !== "");
  const error = [...lines].reverse().find((line) => /^(error|Traceback|\w+Error)\b/.test(line)) ??
    lines.at(-1);
  const status = run.code === null ? "killed by a signal" : `exit code ${run.code}`;
  return error ? `${error.slice(0, 200)} (${status})` : status;
}

/**
 * The `deno run ...` arguments of a task in deno.json, with `$VARIABLES` (optional extra grants such as
 * `$MLFLOW_ALLOW_NET`) dropped and the leading `deno` removed.
 *
 * @param tasks The `tasks` object of deno.json.
 * @param task The task name.
 * @returns The arguments after `deno`.
 * @throws {Error} When the task is missing or does not start with `deno`.
 *
 * @example Usage
 * ```ts
 * import { taskArgs } from "./_bench_process.ts";
 * taskArgs({ a: { command: "deno run -q -P=a $X scripts/a.ts" } }, "a"); // ["run", "-q", "-P=a", "scripts/a.ts"]
 * ```
 */
export function taskArgs(tasks: Record<string, string | { command: string }>, task: string): string[] {
  const entry = tasks[task];
  if (entry === undefined) throw new Error(`deno.json has no task "${task}"`);
  const words = (typeof entry === "string" ? entry : entry.command).split(/\s+/).filter((word) =>
    word !== "" && !word.startsWith("$")
  );
  if (words[0] !== "deno") throw new Error(`task "${task}" does not start with deno`);
  return words.slice(1);
}
