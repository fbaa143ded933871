/**
 * tools/mlflow_server.sh `start` when a server already answers: it reuses it, except when that server was
 * started from the same data folder on another interface than MLFLOW_HOST asks for (`make mlflow
 * MLFLOW_HOST=0.0.0.0` after a plain `make mlflow`), which must fail with one line instead of leaving the
 * server unreachable from containers. A small HTTP server stands in for MLflow's `/health`.
 */
import { strict as assert } from "node:assert";
import { join } from "node:path";
import { scratchDir } from "../lib/_testing.ts";
import { REPO_ROOT } from "../scripts/_testing.ts";

const SCRIPT = join(REPO_ROOT, "tools", "mlflow_server.sh");

async function start(url: string, data: string, env: Record<string, string>) {
  const output = await new Deno.Command(SCRIPT, {
    args: ["start", "--url", url, "--data", data],
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", ...env },
    clearEnv: true,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

Deno.test("mlflow_server.sh start refuses a running server of its data folder that listens on another interface", async () => {
  await using scratch = await scratchDir("mlflow-server-");
  await using health = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("OK"),
  );
  const url = `http://127.0.0.1:${health.addr.port}`;
  // A live process whose command line names mlflow, as the recorded server's would.
  const standIn = new Deno.Command("bash", {
    args: ["-c", "exec -a mlflow-stand-in sleep 60"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await Deno.writeTextFile(join(scratch.path, "server.pid"), `${standIn.pid}\n`);
    await Deno.writeTextFile(join(scratch.path, "server.host"), "127.0.0.1\n");

    const mismatch = await start(url, scratch.path, { MLFLOW_HOST: "0.0.0.0" });
    assert.equal(mismatch.code, 1, mismatch.stderr);
    assert.equal(
      mismatch.stderr.trim(),
      `error: MLflow already answers at ${url} but listens on 127.0.0.1, not 0.0.0.0; stop it (make mlflow-stop) ` +
        "and start it again with MLFLOW_HOST=0.0.0.0",
    );

    const same = await start(url, scratch.path, { MLFLOW_HOST: "127.0.0.1" });
    assert.equal(same.code, 0, same.stderr);
    assert.equal(same.stdout.trim(), `MLflow already answers at ${url} (listening on 127.0.0.1)`);
    const unset = await start(url, scratch.path, {});
    assert.equal(unset.code, 0, unset.stderr);
  } finally {
    standIn.kill("SIGKILL");
    await standIn.status;
  }

  // Not started from this folder (no live recorded process): nothing is known about its interface.
  const foreign = await start(url, scratch.path, { MLFLOW_HOST: "0.0.0.0" });
  assert.equal(foreign.code, 0, foreign.stderr);
  assert.match(foreign.stdout, /^MLflow already answers at /);
});
