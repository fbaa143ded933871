/**
 * tools/mlflow_server.sh `start`. When a server already answers, it reuses it, except when that server was
 * started from the same data folder on another interface than MLFLOW_HOST asks for (`make mlflow
 * MLFLOW_HOST=0.0.0.0` after a plain `make mlflow`), which must fail with one line instead of leaving the
 * server unreachable from containers; a small HTTP server stands in for MLflow's `/health`. When it starts
 * one, the server inherits no descriptor of its caller; a stand-in `mlflow` lists what it got.
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

Deno.test("mlflow_server.sh start gives the server no descriptor of its caller, such as a held lock", async () => {
  await using scratch = await scratchDir("mlflow-server-");
  const bin = join(scratch.path, "bin");
  await Deno.mkdir(bin);
  const listing = join(scratch.path, "fds.txt");
  // The launcher runs "$(dirname mlflow)/python"; the stand-in mlflow records its descriptors and exits.
  await Deno.writeTextFile(join(bin, "python"), '#!/bin/sh\nexec python3 "$@"\n', { mode: 0o755 });
  await Deno.writeTextFile(join(bin, "mlflow"), `#!/bin/sh\nls /proc/$$/fd > "${listing}"\n`, {
    mode: 0o755,
  });
  const port = 18689; // nothing listens there: start must launch the stand-in
  // Descriptor 9 plays the lock `flock ... make test` holds while make starts the server.
  const output = await new Deno.Command("bash", {
    args: [
      "-c",
      'exec 9>"$1/held.lock"; "$2" start --url "http://127.0.0.1:$3" --data "$1/data" --mlflow "$4"',
      "start",
      scratch.path,
      SCRIPT,
      String(port),
      join(bin, "mlflow"),
    ],
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", MLFLOW_START_TIMEOUT: "20" },
    clearEnv: true,
    stdin: "null",
  }).output();
  // The stand-in exits without serving: start says so and fails, after the stand-in has run.
  assert.equal(output.code, 1);
  assert.match(new TextDecoder().decode(output.stderr), /MLflow exited while starting/);
  const fds = (await Deno.readTextFile(listing)).split(/\s+/).filter((fd) => fd !== "").map(Number).sort();
  assert.ok(!fds.includes(9), `the server inherited descriptor 9: ${fds.join(" ")}`);
});
