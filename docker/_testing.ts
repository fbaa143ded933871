/**
 * Test support for the Docker and orchestration files: runs `docker/entrypoint.sh` (the images' entry point)
 * locally, the way a container would, in a throw-away copy of the image's `/app` made by
 * `createProjectRoot()` (deno.json, deno.lock, scripts/, tools/, lib/, data/), with this machine's Deno standing in
 * for the image's and an environment as bare as a container's.
 *
 * @module
 */
import { join } from "node:path";
import { createProjectRoot, type ProjectRoot, REPO_ROOT, type StageRun } from "../scripts/_testing.ts";

/** The entry point script in this repository. */
export const ENTRYPOINT: string = join(REPO_ROOT, "docker", "entrypoint.sh");

/** A container's PATH; the entry point needs only `sh`, `tr` and `sed` from it. */
const CONTAINER_PATH = "/usr/local/bin:/usr/bin:/bin";

let denoDir: Promise<string> | undefined;

/**
 * The Deno cache this machine's Deno uses, which `make setup` filled from deno.lock: the stand-in for the
 * image's `/deno-dir` that `deno ci` fills. Stages run with `--cached-only`, as in the image.
 */
export function localDenoDir(): Promise<string> {
  denoDir ??= (async () => {
    const output = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stderr: "null" })
      .output();
    if (!output.success) throw new Error("deno info --json failed");
    return (JSON.parse(new TextDecoder().decode(output.stdout)) as { denoDir: string }).denoDir;
  })();
  return denoDir;
}

/**
 * Runs `docker/entrypoint.sh <args>` in `cwd` (the stand-in for WORKDIR /app) with only `env` besides
 * PATH, DENO (this Deno) and DENO_DIR, as `docker run -e ...` would give it.
 *
 * @param cwd The project root standing in for `/app`.
 * @param args What follows the image name in `docker run IMAGE ...`.
 * @param env The container's environment (`-e` variables).
 * @returns Exit code and output.
 */
export async function runEntrypoint(
  cwd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<StageRun> {
  const output = await new Deno.Command(ENTRYPOINT, {
    args,
    cwd,
    clearEnv: true,
    env: {
      PATH: CONTAINER_PATH,
      DENO: Deno.execPath(),
      DENO_DIR: await localDenoDir(),
      NO_COLOR: "1",
      ...env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/**
 * Checks that `argv` (`<stage> [args...]` as a manifest gives it to the image) names a real stage with flags
 * it accepts: `--help` is appended, and a stage parses its whole command line before it honours `--help`,
 * so exit 0 means the stage exists, every flag is known and every value-taking flag has a value, and no work
 * is done.
 *
 * @param root The project root standing in for `/app`.
 * @param argv The container's arguments.
 * @param env The container's environment.
 * @returns `undefined` when valid, else a one-line reason with the entry point's stderr.
 */
export async function checkStageCommand(
  root: ProjectRoot,
  argv: string[],
  env: Record<string, string> = {},
): Promise<string | undefined> {
  const run = await runEntrypoint(root.path, [...argv, "--help"], env);
  if (run.code === 0) return undefined;
  const reason = run.stderr.trim().split("\n")[0] ?? "";
  return `${JSON.stringify(argv)} exits ${run.code}: ${reason}`;
}

/** The stages the entry point knows, from its `--help`. */
export async function entrypointStages(): Promise<string[]> {
  const run = await runEntrypoint(REPO_ROOT, ["--help"]);
  const line = run.stdout.split("\n").find((l) => l.startsWith("stages: "));
  if (run.code !== 0 || line === undefined) throw new Error(`entrypoint.sh --help: ${run.stderr}`);
  return line.slice("stages: ".length).split(", ");
}

/** A project root that mirrors the image's `/app`, plus the Makefile so make targets can run in it. */
export async function createImageRoot(): Promise<ProjectRoot> {
  const root = await createProjectRoot();
  await Deno.mkdir(root.resolve("docker"), { recursive: true });
  for (const file of ["Makefile", "docker/docker.mk", "docker/entrypoint.sh", "docker/healthcheck.ts"]) {
    await Deno.copyFile(join(REPO_ROOT, file), root.resolve(file));
  }
  // createProjectRoot() leaves out every *_test.ts, which includes the stage script preprocess_test.ts.
  for (const stage of stageTasks().keys()) {
    const script = join("scripts", `${stage}.ts`);
    if (!await Deno.stat(root.resolve(script)).then(() => true, () => false)) {
      await Deno.copyFile(join(REPO_ROOT, script), root.resolve(script));
    }
  }
  return root;
}

let denoConfig: DenoConfig | undefined;

/** The parts of deno.json these tests read. */
export interface DenoConfig {
  tasks: Record<string, string | { command: string }>;
  permissions: Record<string, Record<string, unknown>>;
}

/** deno.json, parsed once. */
export function readDenoConfig(): DenoConfig {
  denoConfig ??= JSON.parse(Deno.readTextFileSync(join(REPO_ROOT, "deno.json"))) as DenoConfig;
  return denoConfig;
}

/** The stage tasks of deno.json: those that run `scripts/<name>.ts` with `-P=<name>`, with their commands. */
export function stageTasks(): Map<string, string> {
  const stages = new Map<string, string>();
  for (const [name, task] of Object.entries(readDenoConfig().tasks)) {
    const command = typeof task === "string" ? task : task.command;
    // Tools such as bench and docs are tasks too, but they run tools/, not a stage of the image.
    if (command.includes(`-P=${name} `) && command.includes(`scripts/${name}.ts`)) stages.set(name, command);
  }
  return stages;
}

/** Replaces Argo (`{{...}}`) and Kubernetes (`$(VAR)`) placeholders with a sample value, e.g. a batch number. */
export function fillPlaceholders(arg: string, sample = "0"): string {
  return arg.replace(/\{\{[^}]*\}\}/g, sample).replace(/\$\([A-Z_][A-Z0-9_]*\)/g, sample);
}
