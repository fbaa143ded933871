/**
 * Test support: runs a stage as a separate process exactly as `deno task <stage>` does (same task
 * command, same permission set from deno.json), inside a throw-away project root under `.tmp-test/`
 * that holds a copy of deno.json, deno.lock, scripts/ and lib/ and its own empty data/ folder.
 * Permission paths in deno.json are relative to the config file, so the copy grants the stage exactly
 * the data folders of that root and nothing of the real `data/`.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const REPO_ROOT: string = join(dirname(fileURLToPath(import.meta.url)), "..");

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

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (entry.isDirectory) await copyTree(source, target);
    // Test files are copied too: `scripts/preprocess_test.ts` is a stage whose name only looks like one.
    else if (entry.isFile) await Deno.copyFile(source, target);
  }
}

/** Creates a temporary project root; removed on dispose unless `KEEP_TEST_ROOTS` is set. */
export async function createProjectRoot(): Promise<ProjectRoot> {
  const base = join(REPO_ROOT, ".tmp-test");
  await Deno.mkdir(base, { recursive: true });
  const path = await Deno.makeTempDir({ dir: base, prefix: "root-" });
  await Deno.copyFile(join(REPO_ROOT, "deno.json"), join(path, "deno.json"));
  await Deno.copyFile(join(REPO_ROOT, "deno.lock"), join(path, "deno.lock"));
  await copyTree(join(REPO_ROOT, "scripts"), join(path, "scripts"));
  await copyTree(join(REPO_ROOT, "lib"), join(path, "lib"));
  await Deno.mkdir(join(path, "data"), { recursive: true });
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
  const env = options.env ?? {};
  const words = taskCommand(task).split(/\s+/).flatMap((word) => {
    if (!word.startsWith("$")) return [word];
    const value = env[word.slice(1)];
    return value ? value.split(/\s+/) : [];
  });
  if (words[0] !== "deno") throw new Error(`task "${task}" does not start with deno: ${words.join(" ")}`);
  const command = new Deno.Command(Deno.execPath(), {
    args: [...words.slice(1), ...args],
    cwd: root.path,
    env: { NO_COLOR: "1", ...env },
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  });
  const child = command.spawn();
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
  const output = await child.output();
  clearTimeout(timer);
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}
