/**
 * Test support for the `serve` stage as a process: a fake MLflow on a loopback port, the stage started with
 * its real permission set (optionally under a shell that lowers its limits first), and small HTTP helpers.
 *
 * @module
 */
import { createFakeMlflow, type FakeMlflowState } from "../lib/tracking/_fake_mlflow.ts";
import { type ProjectRoot, taskCommand } from "./_testing.ts";

/** A fake MLflow on a loopback port, serving `state`. */
export function serveFakeMlflow(
  state: FakeMlflowState,
): { server: Deno.HttpServer<Deno.NetAddr>; uri: string; calls: string[] } {
  const fake = createFakeMlflow(state);
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => fake.fetch(request),
  );
  return { server, uri: `http://127.0.0.1:${server.addr.port}`, calls: fake.calls };
}

/** The env that points the stage at the fake and grants it loopback (MLflow and any listen port). */
export function envFor(mlflowUri: string): Record<string, string> {
  return { MLFLOW_TRACKING_URI: mlflowUri, MLFLOW_ALLOW_NET: "--allow-net=127.0.0.1" };
}

/** A running `deno task serve`, with its stderr collected line by line. */
export interface ServeProcess extends AsyncDisposable {
  child: Deno.ChildProcess;
  lines: string[];
  base(): Promise<string>;
  stdout: Promise<string>;
}

/** Options of {@linkcode spawnServe}. */
export interface SpawnServeOptions {
  /**
   * A shell command run before the stage, in the same process (e.g. `ulimit -n 1024`), so the stage
   * inherits what it sets.
   */
  shellPrefix?: string;
}

/** Starts the serve task as `runTask` would, but keeps the process to talk to. */
export function spawnServe(
  root: ProjectRoot,
  args: string[],
  env: Record<string, string>,
  options: SpawnServeOptions = {},
): ServeProcess {
  const words = taskCommand("serve").split(/\s+/).flatMap((word) =>
    word.startsWith("$") ? (env[word.slice(1)] ?? "").split(/\s+/).filter(Boolean) : [word]
  );
  const command = [Deno.execPath(), ...words.slice(1), ...args];
  const child = new Deno.Command(options.shellPrefix ? "sh" : command[0]!, {
    args: options.shellPrefix
      ? ["-c", `${options.shellPrefix} && exec "$@"`, "sh", ...command]
      : command.slice(1),
    cwd: root.path,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  let announce: (base: string) => void = () => {};
  const listening = new Promise<string>((resolve) => (announce = resolve));
  const stderrDone = (async () => {
    let pending = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      const parts = pending.split("\n");
      pending = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        const entry = line.startsWith("{") ? JSON.parse(line) : undefined;
        if (entry?.msg === "listening") announce(entry.url.replace(/\/$/, ""));
      }
    }
    if (pending) lines.push(pending);
  })();
  const stdout = new Response(child.stdout).text();
  return {
    child,
    lines,
    stdout,
    base: () =>
      Promise.race([
        listening,
        child.status.then((s) => Promise.reject(new Error(`serve exited (${s.code}):\n${lines.join("\n")}`))),
      ]),
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch { /* already exited */ }
      await child.status;
      await stderrDone;
      await stdout;
    },
  };
}

/** Polls `check` every 50 ms until it is true; throws after `timeoutMs`. */
export async function waitFor(
  check: () => Promise<boolean>,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** GET a URL and parse its JSON body. */
export async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.json() };
}

/** POST a JSON body to `/predict`. */
export function predict(base: string, body: unknown): Promise<Response> {
  return fetch(`${base}/predict`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** Waits until `GET /ready` answers 200. */
export async function waitReady(base: string): Promise<void> {
  await waitFor(
    async () => (await fetch(`${base}/ready`).then((r) => r.body?.cancel().then(() => r.ok))) ?? false,
    "ready",
  );
}
