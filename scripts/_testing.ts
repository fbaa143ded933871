/**
 * Test support: runs a stage as a separate process exactly as `deno task <stage>` does (same task
 * command, same permission set from deno.json), inside a throw-away project root under `.tmp-test/`
 * that holds a copy of deno.json, deno.lock, scripts/, tools/ and lib/ and its own empty data/ folder.
 * Permission paths in deno.json are relative to the config file, so the copy grants the stage exactly
 * the data folders of that root and nothing of the real `data/`.
 *
 * @module
 */
import { join } from "node:path";
import { MlflowClient } from "../lib/tracking/mlflow_client.ts";
import { copyProject, REPO_ROOT } from "./_project_root.ts";

export { REPO_ROOT };

/** A temporary project root. */
export interface ProjectRoot extends AsyncDisposable {
  /** Absolute path of the root. */
  path: string;
  /** Absolute path of a file or folder inside the root. */
  resolve(...parts: string[]): string;
}

/** Result of a stage process. */
export interface StageRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Creates a temporary project root; removed on dispose unless `KEEP_TEST_ROOTS` is set. */
export async function createProjectRoot(): Promise<ProjectRoot> {
  const base = join(REPO_ROOT, ".tmp-test");
  await Deno.mkdir(base, { recursive: true });
  const path = await Deno.makeTempDir({ dir: base, prefix: "root-" });
  await copyProject(path);
  const keep = Deno.permissions.querySync({ name: "env", variable: "KEEP_TEST_ROOTS" }).state === "granted" &&
    Deno.env.get("KEEP_TEST_ROOTS");
  return {
    path,
    resolve: (...parts: string[]) => join(path, ...parts),
    async [Symbol.asyncDispose]() {
      if (!keep) await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

let denoConfig: { tasks: Record<string, string | { command: string }> } | undefined;

/** The command of a task in deno.json, e.g. `deno run -q -P=ingest $INGEST_ALLOW_NET scripts/ingest.ts`. */
export function taskCommand(task: string): string {
  denoConfig ??= JSON.parse(Deno.readTextFileSync(join(REPO_ROOT, "deno.json")));
  const entry = denoConfig!.tasks[task];
  if (entry === undefined) throw new Error(`deno.json has no task "${task}"`);
  return typeof entry === "string" ? entry : entry.command;
}

/** Options of {@linkcode runTask}. */
export interface RunTaskOptions {
  /** Environment of the process; `$NAME` in the task command expands from it. */
  env?: Record<string, string>;
  /** Bytes written to the process's stdin. */
  stdin?: string;
  /** Kills the process with this signal after `killAfterMs`. */
  kill?: { signal: Deno.Signal; afterMs: number };
  /**
   * Kills the process (SIGKILL) and throws when it has not exited after this many milliseconds, so a hung
   * stage fails its test instead of stalling the whole suite.
   */
  timeoutMs?: number;
  /**
   * A program and its arguments that run the stage's Deno, e.g. `["setpriv", "--bounding-set",
   * "-dac_override", "--"]` to take root's permission override away from it.
   */
  wrap?: string[];
}

/**
 * What a stage process keeps of this process's environment: enough to find the Deno cache and tools,
 * nothing that configures a stage (an inherited MLFLOW_TRACKING_URI or KAGGLE_KEY would make a test depend
 * on the shell it runs in). Everything else a test passes explicitly.
 */
const INHERITED_ENV = ["PATH", "HOME", "DENO_DIR", "TMPDIR"] as const;

function inheritedEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of INHERITED_ENV) {
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") continue;
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** The process of a task: its deno.json command, this Deno binary, `$NAME` expanded from `options.env`. */
function spawnCommand(
  root: ProjectRoot,
  task: string,
  args: string[],
  options: RunTaskOptions,
): Deno.Command {
  const env = options.env ?? {};
  const words = taskCommand(task).split(/\s+/).flatMap((word) => {
    if (!word.startsWith("$")) return [word];
    const value = env[word.slice(1)];
    return value ? value.split(/\s+/) : [];
  });
  if (words[0] !== "deno") throw new Error(`task "${task}" does not start with deno: ${words.join(" ")}`);
  const [program, ...prefix] = [...(options.wrap ?? []), Deno.execPath()];
  return new Deno.Command(program!, {
    args: [...prefix, ...words.slice(1), ...args],
    cwd: root.path,
    env: { ...inheritedEnv(), NO_COLOR: "1", ...env },
    clearEnv: true,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  });
}

/**
 * Runs `deno task <task> ...args` in `root` as a process: the task's command from deno.json with
 * `deno` replaced by this Deno binary and `$NAME` expanded from `options.env`.
 */
export async function runTask(
  root: ProjectRoot,
  task: string,
  args: string[],
  options: RunTaskOptions = {},
): Promise<StageRun> {
  const child = spawnCommand(root, task, args, options).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (options.kill) {
    const { signal, afterMs } = options.kill;
    timer = setTimeout(() => {
      try {
        child.kill(signal);
      } catch { /* already exited */ }
    }, afterMs);
  }
  let hung = false;
  const guard = options.timeoutMs === undefined ? undefined : setTimeout(() => {
    hung = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
  }, options.timeoutMs);
  const output = await child.output();
  clearTimeout(timer);
  clearTimeout(guard);
  if (hung) {
    throw new Error(
      `deno task ${task} ${args.join(" ")} did not exit within ${options.timeoutMs} ms (killed)`,
    );
  }
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/**
 * A stage process started by {@linkcode startTask}, observed while it runs. Disposing it kills the process
 * (SIGKILL) if it still runs, so a failed assertion never leaves a stage behind.
 */
export interface TaskProcess extends AsyncDisposable {
  /** Process id. */
  readonly pid: number;
  /**
   * Resolves with the first match of `pattern` in stderr (what was printed so far, then each new chunk).
   * Rejects when the process exits without printing it, or after `timeoutMs`.
   */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends a signal; a process that already exited is ignored. */
  kill(signal: Deno.Signal): void;
  /** Exit code and everything printed, once the process has exited. */
  readonly result: Promise<StageRun>;
}

/**
 * Starts `deno task <task> ...args` like {@linkcode runTask}, but returns at once, so a test can act at a
 * precise point of the stage's work (send SIGINT once it logs "fit", stop a server once the run exists)
 * instead of after a guessed delay.
 */
export function startTask(
  root: ProjectRoot,
  task: string,
  args: string[],
  options: Omit<RunTaskOptions, "stdin" | "kill" | "timeoutMs"> = {},
): TaskProcess {
  const child = spawnCommand(root, task, args, { ...options, stdin: undefined }).spawn();
  let stderr = "";
  let exited = false;
  const listeners = new Set<() => void>();
  const notify = () => listeners.forEach((listener) => listener());
  const collect = async (stream: ReadableStream<Uint8Array>, onText: (text: string) => void) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) onText(text);
  };
  let stdout = "";
  const result = Promise.all([
    collect(child.stdout, (text) => stdout += text),
    collect(child.stderr, (text) => {
      stderr += text;
      notify();
    }),
    child.status,
  ]).then(([, , status]) => {
    exited = true;
    notify();
    return { code: status.code, stdout, stderr };
  });
  const kill = (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch { /* already exited */ }
  };
  return {
    pid: child.pid,
    result,
    kill,
    async [Symbol.asyncDispose]() {
      if (!exited) kill("SIGKILL");
      await result;
    },
    waitForStderr(pattern, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = stderr.match(pattern);
          if (match) done(() => resolve(match));
          else if (exited) {
            done(() => reject(new Error(`${task} exited before printing ${pattern}:\n${stderr}`)));
          }
        };
        const timer = setTimeout(
          () =>
            done(() =>
              reject(new Error(`${task} did not print ${pattern} within ${timeoutMs} ms:\n${stderr}`))
            ),
          timeoutMs,
        );
        const done = (settle: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          settle();
        };
        listeners.add(check);
        check();
      });
    },
  };
}

/** A throw-away MLflow server of a test, on its own port, with its data under `.tmp-test/`. */
export interface TestMlflowServer extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`. */
  uri: string;
  /** Starts the server and waits until `/health` answers (the first start runs the migrations). */
  start(): Promise<void>;
  /** Stops the server and its workers (the data stays, so `start()` again is a restart). */
  stop(): Promise<void>;
}

/** A loopback port nothing listens on right now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** Options of {@linkcode testMlflowServer}. */
export interface TestMlflowServerOptions {
  /** The `mlflow` executable. @default {".venv/bin/mlflow"} */
  mlflow?: string;
  /** Environment of the server, e.g. `MLFLOW_FLASK_SERVER_SECRET_KEY`. */
  env?: Record<string, string>;
}

/**
 * A dedicated MLflow server for tests that stop, restart or reconfigure it (the shared test server at
 * MLFLOW_TRACKING_URI must stay up for the other tests). It runs through `tools/mlflow_server.sh`, with
 * one worker and its data in `.tmp-test/<name>/`, wiped before the first start; disposing it stops it.
 * It listens on a port free when it is created, so two test runs on one machine never share it.
 */
export function testMlflowServer(name: string, options: TestMlflowServerOptions = {}): TestMlflowServer {
  const uri = `http://127.0.0.1:${freePort()}`;
  const data = join(REPO_ROOT, ".tmp-test", name);
  const script = join(REPO_ROOT, "tools", "mlflow_server.sh");
  const mlflow = options.mlflow ?? join(REPO_ROOT, ".venv", "bin", "mlflow");
  let wiped = false;
  async function run(action: "start" | "stop"): Promise<void> {
    const output = await new Deno.Command(script, {
      args: [action, "--url", uri, "--data", data, "--mlflow", mlflow],
      cwd: REPO_ROOT,
      env: { MLFLOW_WORKERS: "1", ...options.env },
      stdin: "null",
    }).output();
    if (!output.success) {
      const decoder = new TextDecoder();
      throw new Error(
        `mlflow_server.sh ${action} ${uri} failed:\n${decoder.decode(output.stdout)}${
          decoder.decode(output.stderr)
        }`,
      );
    }
  }
  return {
    uri,
    async start() {
      if (!wiped) {
        // A server left behind by an interrupted test run would serve stale data: stop it, start afresh.
        await run("stop");
        await Deno.remove(data, { recursive: true }).catch(() => {});
        wiped = true;
      }
      await run("start");
    },
    stop: () => run("stop"),
    async [Symbol.asyncDispose]() {
      await run("stop");
    },
  };
}

/** Asserts a stage process exited 0, showing its stderr when it did not; returns the run. */
export function ok(run: StageRun, what: string): StageRun {
  if (run.code !== 0) throw new Error(`${what} failed (exit ${run.code}):\n${run.stderr}`);
  return run;
}

/** The `error: ...` lines a stage printed on stderr. */
export function errorLines(run: StageRun): string[] {
  return run.stderr.split("\n").filter((line) => line.startsWith("error: "));
}

/** A client of the MLflow server at `uri`, after checking it answers (the tests need a real one). */
export async function requireServer(uri: string): Promise<MlflowClient> {
  const client = new MlflowClient({ trackingUri: uri, retry: { retries: 2, baseDelayMs: 100 } });
  try {
    await client.health();
  } catch (error) {
    throw new Error(`no MLflow server at ${uri}; start one with "make mlflow-test" (${error})`);
  }
  return client;
}

/** Env of the MLflow stages for a server at `uri`, with an experiment and model name of their own. */
export function mlflowEnv(uri: string, name: string): Record<string, string> {
  return {
    MLFLOW_TRACKING_URI: uri,
    MLFLOW_ALLOW_NET: `--allow-net=${new URL(uri).host}`,
    MLFLOW_EXPERIMENT_NAME: name,
    MLFLOW_MODEL_NAME: name,
  };
}
