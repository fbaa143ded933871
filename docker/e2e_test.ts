/**
 * The container end-to-end test in `make test`: runs `make docker-e2e DOCKER=podman` (docker/e2e.ts), which
 * builds both images and runs every stage, the API and compose.yaml with a real Podman, and checks its last
 * line. Its progress shows on stderr while it runs (a few minutes; the first run on a machine also builds the
 * base-image stand-ins when no registry answers).
 *
 * Podman comes from `make test-deps` (CI runs it); `make docker-e2e` installs it too when it runs as root.
 * Without Podman and outside CI the test is skipped, loudly. Its ports: DOCKER_E2E_MLFLOW_PORT (default
 * MLFLOW_TEST_PORT + 1, and the next one for compose) and DOCKER_E2E_API_PORT (default 18000, and the next).
 *
 * @module
 */
import assert from "node:assert/strict";
import { REPO_ROOT } from "../scripts/_testing.ts";

const PODMAN = "/usr/bin/podman";
const inCi = Deno.env.get("CI") === "true";
const present = await Deno.stat(PODMAN).then(() => true, () => false);

if (!present && !inCi) {
  console.error(
    "%c" +
      `\n!! SKIPPED docker/e2e_test.ts: ${PODMAN} is missing, so the images are NOT built and run here` +
      "\n!! install Podman with `make test-deps` (root or sudo), or run `make docker-e2e` as root\n",
    "color: red; font-weight: bold",
  );
}

Deno.test({
  name: "make docker-e2e DOCKER=podman: images built and run for real, stages, API, Ctrl-C and compose",
  ignore: !present && !inCi,
  // The engine's helper processes (conmon, the compose tool) outlive single calls by design.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const output = await new Deno.Command("make", {
      args: ["--no-print-directory", "-s", "docker-e2e", "DOCKER=podman"],
      cwd: REPO_ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    const last = stdout.trimEnd().split("\n").at(-1) ?? "";
    assert.equal(output.code, 0, `make docker-e2e exited ${output.code}:\n${stdout}`);
    assert.match(
      last,
      /^docker-e2e: podman \S+, model image \d+ MB \(\d+ layers\), api image \d+ MB .*; ok$/,
    );
  },
});
