/**
 * Keeps the Docker files true without running an engine (docker/e2e_test.ts runs them with one):
 * - the Dockerfiles, `.dockerignore` and `compose.yaml` are parsed and checked against deno.json, the
 *   Makefile and the entry point;
 * - `docker/entrypoint.sh` runs locally, exactly as the images run it;
 * - every `docker-model-*` make target runs for real with a stand-in `docker` that executes the entry point
 *   in a throw-away copy of the image's `/app` (same arguments, same environment, same permissions, same data
 *   layout), so the Makefile and the image cannot drift apart. The MLflow targets need the test server at
 *   MLFLOW_TRACKING_URI (`make test` starts one) and are skipped without it;
 * - every command the Docker docs show is a make target or a compose call this file checks.
 */
import { exists } from "../lib/core/atomic_file.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { type ProjectRoot, REPO_ROOT, type StageRun } from "../scripts/_testing.ts";
import { importedNames, narrowLock } from "./runtime_lock.ts";
import {
  checkStageCommand,
  createImageRoot,
  entrypointStages,
  localDenoDir,
  readDenoConfig,
  runEntrypoint,
  stageTasks,
} from "./_testing.ts";

const MODEL_IMAGE = "tutoria-mlops-model:latest";
const ENTRYPOINT_IN_IMAGE = ["/tini", "--", "/app/docker/entrypoint.sh"];

function readRepoFile(path: string): string {
  return Deno.readTextFileSync(join(REPO_ROOT, path));
}

/** A Dockerfile as `[KEYWORD, arguments]` pairs, continuation lines joined, comments dropped. */
function dockerfile(path: string): [string, string][] {
  const joined = readRepoFile(path).split("\n").filter((line) => !/^\s*#/.test(line)).join("\n")
    .replace(/\\\n/g, " ");
  return joined.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
    const [keyword, ...rest] = line.split(/\s+/);
    return [keyword!.toUpperCase(), rest.join(" ")];
  });
}

function instruction(lines: [string, string][], keyword: string): string[] {
  return lines.filter(([k]) => k === keyword).map(([, args]) => args);
}

function makefileDenoVersion(): string {
  const match = /^DENO_VERSION\s*:?=\s*(\S+)/m.exec(readRepoFile("Makefile"));
  assert.ok(match, "Makefile has no DENO_VERSION");
  return match[1]!;
}

/** Splits a shell command line into words: '...' and "..." quoting and backslash escapes, no expansions. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let current: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const char = line[i]!;
    if (char === "'") {
      const end = line.indexOf("'", i + 1);
      assert.ok(end > i, `unbalanced ' in: ${line}`);
      current = (current ?? "") + line.slice(i + 1, end);
      i = end;
    } else if (char === '"') {
      let value = "";
      for (i++; i < line.length && line[i] !== '"'; i++) value += line[i] === "\\" ? line[++i] : line[i];
      assert.ok(i < line.length, `unbalanced " in: ${line}`);
      current = (current ?? "") + value;
    } else if (char === "\\") {
      current = (current ?? "") + (line[++i] ?? "");
    } else if (/\s/.test(char)) {
      if (current !== undefined) words.push(current);
      current = undefined;
    } else {
      current = (current ?? "") + char;
    }
  }
  if (current !== undefined) words.push(current);
  return words;
}

/**
 * Runs make in `cwd` with only `env` (and a PATH): the host's MLFLOW_TRACKING_URI, credentials or MAKEFLAGS
 * of an outer make must not change what a recipe does here.
 */
async function runMake(cwd: string, args: string[], env: Record<string, string> = {}): Promise<StageRun> {
  const output = await new Deno.Command("make", {
    args,
    cwd,
    clearEnv: true,
    env: { PATH: "/usr/local/bin:/usr/bin:/bin", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/** The words of the first `docker run` command in `make -n` output (continuation lines joined). */
function dockerRunWords(dryRun: string): string[] {
  const command = dryRun.replace(/\\\n\s*/g, " ").split("\n").find((line) => line.startsWith("docker run "));
  assert.ok(command, `no docker run in:\n${dryRun}`);
  return shellWords(command);
}

// ---------------------------------------------------------------------------------------------------------
// Dockerfiles and .dockerignore

Deno.test("model.Dockerfile and api.Dockerfile: FROM the Deno image of the version the Makefile installs", () => {
  const version = makefileDenoVersion();
  assert.equal(version, Deno.version.deno, "the tests run on another Deno than the Makefile pins");
  for (const path of ["docker/model.Dockerfile", "docker/api.Dockerfile"]) {
    assert.deepEqual(instruction(dockerfile(path), "FROM"), [`denoland/deno:debian-${version}`], path);
  }
});

const IMAGES = [
  { dockerfile: "docker/model.Dockerfile", deps: "docker/model_deps.ts" },
  { dockerfile: "docker/api.Dockerfile", deps: "docker/api_deps.ts" },
];

Deno.test("model.Dockerfile and api.Dockerfile: locked dependencies in a layer before the code, run as deno", () => {
  for (const { dockerfile: path, deps } of IMAGES) {
    const lines = dockerfile(path);
    const at = (predicate: (line: [string, string]) => boolean) => lines.findIndex(predicate);
    const copyLock = at(([k, a]) => k === "COPY" && a === "deno.json deno.lock ./");
    const install = at(([k, a]) =>
      k === "RUN" && a.includes(`docker/runtime_lock.ts ${deps}`) &&
      a.endsWith(`deno install --frozen --entrypoint ${deps}`)
    );
    const firstCodeCopy = at(([k, a]) => k === "COPY" && /\b(lib|scripts)\//.test(a));
    assert.ok(
      copyLock >= 0 && copyLock < install && install < firstCodeCopy,
      `${path}: deno.json + deno.lock, the narrowed lockfile's packages, then the code`,
    );
    assert.deepEqual(instruction(lines, "WORKDIR"), ["/app"], path);
    assert.deepEqual(instruction(lines, "USER"), ["deno"], path);
    assert.ok(
      at(([k]) => k === "USER") > lines.findLastIndex(([k]) => k === "RUN"),
      `${path}: USER after every RUN`,
    );
    assert.ok(
      instruction(lines, "COPY").some((a) => /^docker\/entrypoint\.sh .*\.\/docker\/$/.test(a)),
      `${path}: the entry point must be at /app/docker/entrypoint.sh`,
    );
    assert.match(instruction(lines, "RUN").join("\n"), /chmod 0755 docker\/entrypoint\.sh/, path);
  }
});

Deno.test("model.Dockerfile and api.Dockerfile: plain syntax that the classic builder, BuildKit and Buildah all build", () => {
  for (const { dockerfile: path } of IMAGES) {
    const text = readRepoFile(path);
    assert.doesNotMatch(text, /^#\s*syntax=/m, `${path}: no BuildKit frontend`);
    for (const [keyword, args] of dockerfile(path)) {
      assert.doesNotMatch(
        args,
        /--(chmod|chown|link|mount|parents|exclude)\b/,
        `${path}: ${keyword} ${args}`,
      );
      assert.doesNotMatch(args, /<<\s*-?["']?[A-Z]+/, `${path}: no heredoc (${keyword})`);
    }
  }
});

Deno.test("model.Dockerfile and api.Dockerfile: a proxy's CA in docker/certs/ is trusted while packages download", () => {
  for (const { dockerfile: path } of IMAGES) {
    const lines = dockerfile(path);
    const copyCerts = lines.findIndex(([k, a]) => k === "COPY" && a === "docker/certs/ ./docker/certs/");
    const install = lines.findIndex(([k, a]) =>
      k === "RUN" && a.includes("deno install --frozen --entrypoint")
    );
    assert.ok(copyCerts >= 0 && copyCerts < install, path);
    assert.match(lines[install]![1], /DENO_CERT=\/app\/docker\/certs\/extra-ca\.pem/, path);
  }
  assert.match(readRepoFile("docker/entrypoint.sh"), /DENO_CERT=\$\(pwd\)\/docker\/certs\/extra-ca\.pem/);
  assert.match(readRepoFile(".gitignore"), /^\/docker\/certs\/\*$/m, "a local CA is never committed");
});

/** The npm packages (lock keys) that `deno info` finds in the module graph of `entrypoints`. */
async function npmPackagesOf(entrypoints: string[]): Promise<Set<string>> {
  const names = new Set<string>();
  for (const entry of entrypoints) {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", entry],
      cwd: REPO_ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(output.success, new TextDecoder().decode(output.stderr));
    const info = JSON.parse(new TextDecoder().decode(output.stdout)) as {
      modules: { kind?: string; npmPackage?: string }[];
    };
    for (const module of info.modules) if (module.npmPackage) names.add(module.npmPackage);
  }
  return names;
}

Deno.test("model_deps.ts and api_deps.ts: exactly the npm packages the image's entry points import", async () => {
  const config = readDenoConfig() as unknown as { imports: Record<string, string> };
  const lock = JSON.parse(readRepoFile("deno.lock"));
  const stageScripts = [...stageTasks().keys()].map((stage) => `scripts/${stage}.ts`);
  for (
    const { deps, entrypoints } of [
      { deps: "docker/model_deps.ts", entrypoints: stageScripts },
      { deps: "docker/api_deps.ts", entrypoints: ["scripts/serve.ts", "docker/healthcheck.ts"] },
    ]
  ) {
    const listed = importedNames(readRepoFile(deps));
    const narrowed = narrowLock(config.imports, lock, listed);
    const imported = await npmPackagesOf(entrypoints);
    const direct = new Set(
      listed.map((name) => Object.keys(narrowed.lock.npm).find((key) => key.startsWith(`${name}@`))),
    );
    assert.deepEqual(
      [...imported].sort(),
      [...direct].sort(),
      `${deps} must list what the entry points import`,
    );
  }
});

Deno.test("runtime_lock.ts: narrows deno.json and deno.lock to the listed packages and all they depend on", () => {
  const config = readDenoConfig() as unknown as { imports: Record<string, string> };
  const lock = JSON.parse(readRepoFile("deno.lock"));
  const model = narrowLock(config.imports, lock, importedNames(readRepoFile("docker/model_deps.ts")));
  const api = narrowLock(config.imports, lock, importedNames(readRepoFile("docker/api_deps.ts")));
  for (const { lock: narrowed, imports } of [model, api]) {
    for (const name of ["playwright-core", "fast-check", "ml-random-forest", "udsv"]) {
      assert.ok(!(name in imports), name);
      assert.ok(!Object.keys(narrowed.npm).some((key) => key.startsWith(`${name}@`)), `${name} left out`);
    }
    // Closed: every dependency of a kept package is kept, at the locked version.
    for (const [key, entry] of Object.entries(narrowed.npm)) {
      assert.deepEqual(entry, lock.npm[key], key);
      for (const dependency of entry.dependencies ?? []) {
        assert.ok(
          dependency in narrowed.npm || Object.keys(narrowed.npm).some((k) => k.startsWith(`${dependency}@`)),
          `${key} needs ${dependency}`,
        );
      }
    }
    assert.deepEqual(narrowed.workspace.dependencies, Object.keys(narrowed.specifiers).sort());
  }
  assert.ok(Object.keys(model.lock.npm).some((key) => key.startsWith("vega@")), "train draws charts");
  assert.ok(!Object.keys(api.lock.npm).some((key) => key.startsWith("vega@")), "the API draws none");
  assert.throws(
    () => narrowLock(config.imports, lock, ["left-pad"]),
    /"left-pad" is not in deno.json's imports/,
  );
});

Deno.test("model.Dockerfile: the entry point runs any stage, /app/data belongs to the stages' user", () => {
  const lines = dockerfile("docker/model.Dockerfile");
  assert.deepEqual(instruction(lines, "ENTRYPOINT").map((a) => JSON.parse(a)), [ENTRYPOINT_IN_IMAGE]);
  assert.match(instruction(lines, "RUN").join("\n"), /chown deno:deno data/);
  assert.deepEqual(instruction(lines, "VOLUME"), ['["/app/data"]']);
});

Deno.test("api.Dockerfile: serve, GET /health on port 8000 as the HEALTHCHECK, no data volume", () => {
  const lines = dockerfile("docker/api.Dockerfile");
  assert.deepEqual(instruction(lines, "EXPOSE"), ["8000"]);
  assert.deepEqual(instruction(lines, "ENTRYPOINT").map((a) => JSON.parse(a)), [[
    ...ENTRYPOINT_IN_IMAGE,
    "serve",
  ]]);
  const [healthcheck] = instruction(lines, "HEALTHCHECK");
  assert.ok(healthcheck, "no HEALTHCHECK");
  const command = JSON.parse(healthcheck.slice(healthcheck.indexOf("CMD ") + 4)) as string[];
  assert.deepEqual(command.slice(-2), ["docker/healthcheck.ts", "http://127.0.0.1:8000/health"]);
  assert.ok(command.includes("--allow-net=127.0.0.1:8000"), "the check may reach the API and nothing else");
  assert.equal(instruction(lines, "VOLUME").length, 0, "the API writes nothing");
});

Deno.test("deno.json: the serve set the API image runs with grants neither write nor run", () => {
  const serve = readDenoConfig().permissions.serve;
  assert.ok(serve, 'deno.json has no "serve" permission set');
  assert.equal(serve.write, undefined);
  assert.equal(serve.run, undefined);
  assert.equal(serve.all, undefined);
});

/**
 * Whether `.dockerignore` keeps `path` out of the build context, by Docker's rules: the last pattern that
 * matches the path or one of its parent folders wins, `!` re-admits, `*` stays within one folder, `**` spans
 * folders.
 */
function dockerignored(patterns: string[], path: string): boolean {
  let excluded = false;
  for (const raw of patterns) {
    const negate = raw.startsWith("!");
    const glob = (negate ? raw.slice(1) : raw).replace(/\/$/, "");
    const source = glob.split(/(\*\*\/|\*\*|\*|\?)/).map((part) =>
      part === "**/"
        ? "(?:.*/)?"
        : part === "**"
        ? ".*"
        : part === "*"
        ? "[^/]*"
        : part === "?"
        ? "[^/]"
        : part.replace(/[.+^${}()|[\]\\]/g, "\\$&")
    ).join("");
    const pattern = new RegExp(`^${source}$`);
    const parts = path.split("/");
    if (parts.some((_, i) => pattern.test(parts.slice(0, i + 1).join("/")))) excluded = !negate;
  }
  return excluded;
}

Deno.test(".dockerignore: admits every stage, lib/ and what the Dockerfiles copy; keeps data, tooling and tests out", () => {
  const patterns = readRepoFile(".dockerignore").split("\n").map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  // What the stages import: every module under lib/ and scripts/ but tests and test helpers, plus each
  // stage script (preprocess_test.ts ends in _test.ts), plus every file a Dockerfile copies.
  const needed = [...stageTasks().keys()].map((stage) => `scripts/${stage}.ts`);
  const walk = (dir: string) => {
    for (const entry of Deno.readDirSync(join(REPO_ROOT, dir))) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) walk(path);
      else if (/\.ts$/.test(path) && !/_test\.ts$/.test(path) && path !== "scripts/_testing.ts") {
        needed.push(path);
      }
    }
  };
  walk("lib");
  walk("scripts");
  for (const path of ["docker/model.Dockerfile", "docker/api.Dockerfile"]) {
    for (const args of instruction(dockerfile(path), "COPY")) {
      const sources = args.split(/\s+/).filter((a) => !a.startsWith("--")).slice(0, -1);
      // A folder is covered by its files above.
      needed.push(...sources.filter((source) => !source.endsWith("/")));
    }
  }
  for (const path of needed) assert.ok(!dockerignored(patterns, path), `.dockerignore keeps out ${path}`);
  for (
    const path of [
      "data/raw/train.csv",
      ".venv/bin/mlflow",
      "node_modules/.bin/deno",
      "mlflow-data/mlflow.db",
      ".git/HEAD",
      ".tmp-test/x",
      "lib/data/csv_test.ts",
      "scripts/preprocess_test_test.ts",
      "docs/development.md",
    ]
  ) {
    assert.ok(dockerignored(patterns, path), `.dockerignore lets in ${path}`);
  }
});

// ---------------------------------------------------------------------------------------------------------
// The entry point

Deno.test("entrypoint.sh: knows exactly the stage tasks of deno.json and grants net where their task does", async () => {
  const stages = await entrypointStages();
  assert.deepEqual([...stages].sort(), [...stageTasks().keys()].sort());
  const text = readRepoFile("docker/entrypoint.sh");
  const listed = (name: string) => new RegExp(`^${name}="([^"]*)"`, "m").exec(text)?.[1]?.split(" ") ?? [];
  const mlflowTasks = [...stageTasks()].filter(([, command]) => command.includes("$MLFLOW_ALLOW_NET"));
  assert.deepEqual(listed("MLFLOW_STAGES").sort(), mlflowTasks.map(([name]) => name).sort());
});

Deno.test("entrypoint.sh: passes each stage the same --v8-flags as its deno task", async () => {
  for (const [stage, command] of stageTasks()) {
    const run = await runEntrypoint(REPO_ROOT, [stage], { DENO: "echo" });
    assert.equal(run.code, 0, run.stderr);
    const flags = (text: string) => text.split(/\s+/).filter((word) => word.startsWith("--v8-flags="));
    assert.deepEqual(flags(run.stdout), flags(command), stage);
  }
});

Deno.test("entrypoint.sh: refuses an unknown stage with one line listing the stages, exit 2", async () => {
  const run = await runEntrypoint(REPO_ROOT, ["trian", "--batches", "0"]);
  assert.equal(run.code, 2);
  assert.equal(run.stdout, "");
  assert.match(run.stderr, /^error: unknown stage "trian"; expected one of: ingest, .*train.*\n$/);
  const none = await runEntrypoint(REPO_ROOT, []);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /^usage: docker run IMAGE <stage>/);
});

Deno.test("entrypoint.sh: checks exactly the folders each stage may write (its deno.json write grant)", () => {
  const text = readRepoFile("docker/entrypoint.sh");
  const start = text.lastIndexOf("case $stage in", text.indexOf('write_dirs="data/'));
  const block = text.slice(start, text.indexOf("\nesac\n", start));
  const checked = new Map<string, string[]>();
  for (const [, stages, dirs] of block.matchAll(/^([a-z_ |]+)\) write_dirs="([^"]*)" ;;$/gm)) {
    for (const stage of stages!.split("|").map((s) => s.trim())) {
      checked.set(stage, dirs!.split(" ").filter(Boolean));
    }
  }
  for (const stage of stageTasks().keys()) {
    const write = (readDenoConfig().permissions[stage]?.write ?? []) as string[];
    assert.deepEqual(checked.get(stage) ?? [], write, stage);
  }
});

Deno.test("entrypoint.sh: MLFLOW_WAIT_SECONDS waits for MLflow's /health, then runs the stage, or gives up", async () => {
  await using root = await createImageRoot();
  const bad = await runEntrypoint(root.path, ["train", "--help"], { MLFLOW_WAIT_SECONDS: "soon" });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^error: MLFLOW_WAIT_SECONDS must be a number of seconds, got "soon"\n$/);

  let healthy = false;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(healthy ? "OK" : "starting", { status: healthy ? 200 : 503 }),
  );
  const uri = `http://127.0.0.1:${server.addr.port}`;
  try {
    const gaveUp = await runEntrypoint(root.path, ["evaluate"], {
      MLFLOW_TRACKING_URI: uri,
      MLFLOW_WAIT_SECONDS: "1",
    });
    assert.equal(gaveUp.code, 1);
    assert.match(gaveUp.stderr, new RegExp(`error: MLflow at ${uri} did not answer within 1s`));
    setTimeout(() => healthy = true, 1500);
    const asksHelp = await runEntrypoint(root.path, ["evaluate", "--help"], {
      MLFLOW_TRACKING_URI: uri,
      MLFLOW_WAIT_SECONDS: "30",
    });
    assert.equal(asksHelp.code, 0, "--help needs no MLflow");
    assert.equal(asksHelp.stderr, "");
    const waited = await runEntrypoint(root.path, ["evaluate", "--model_version", "bogus!"], {
      MLFLOW_TRACKING_URI: uri,
      MLFLOW_WAIT_SECONDS: "30",
    });
    assert.match(waited.stderr, /^waiting up to 30s for MLflow at .*\nMLflow answers after \d+s\nerror: /);
    assert.equal(waited.code, 2, "then the stage runs, and refuses the bad flag value");
    const quick = await runEntrypoint(root.path, ["split-batches", "--help"], { MLFLOW_WAIT_SECONDS: "30" });
    assert.equal(quick.stderr, "", "stages without MLflow do not wait");
  } finally {
    await server.shutdown();
  }
});

Deno.test("entrypoint.sh: runs deno with the stage's set and, for MLflow stages, MLFLOW_TRACKING_URI's host:port", async () => {
  // DENO=echo prints the command the container would exec.
  const command = async (args: string[], env: Record<string, string> = {}) => {
    const run = await runEntrypoint(REPO_ROOT, args, { DENO: "echo", ...env });
    assert.equal(run.code, 0, run.stderr);
    return run.stdout.trim();
  };
  assert.equal(
    await command(["split-batches", "--num-batches", "4"]),
    "run -q --frozen --cached-only -P=split_batches scripts/split_batches.ts --num-batches 4",
  );
  assert.equal(
    await command(["train", "--batches", "all"], { MLFLOW_TRACKING_URI: "http://host.docker.internal:5500" }),
    "run -q --frozen --cached-only -P=train --allow-net=host.docker.internal:5500 scripts/train.ts --batches all",
  );
  assert.match(
    await command(["evaluate"], { MLFLOW_TRACKING_URI: "https://mlflow.example.com/prefix/" }),
    / -P=evaluate --allow-net=mlflow\.example\.com:443 scripts\/evaluate\.ts$/,
  );
  assert.match(
    await command(["evaluate"]),
    / -P=evaluate scripts\/evaluate\.ts$/,
    "no URI: the set's defaults",
  );
  assert.match(
    await command(["serve"], { MLFLOW_TRACKING_URI: "http://mlflow:5000" }),
    / -P=serve --allow-net=mlflow:5000,0\.0\.0\.0:8000 scripts\/serve\.ts$/,
    "serve listens too",
  );
  assert.match(
    await command(["ingest"], {
      INGEST_ALLOW_NET: "--allow-net=example.com",
      MLFLOW_TRACKING_URI: "http://x:1",
    }),
    / -P=ingest --allow-net=example\.com scripts\/ingest\.ts$/,
  );
  for (const [name, value] of [["MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"], ["MLFLOW_ALLOW_NET", "-A"]]) {
    const run = await runEntrypoint(REPO_ROOT, ["train"], { DENO: "echo", [name!]: value! });
    assert.equal(run.code, 2, `${name}=${value} must be refused`);
    assert.match(run.stderr, new RegExp(`^error: ${name} must .*\n$`));
  }
});

Deno.test("healthcheck.ts: exit 0 when /health answers 2xx, 1 with a reason otherwise", async () => {
  let status = 200;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) =>
      new URL(request.url).pathname === "/health"
        ? new Response("ok", { status })
        : new Response("", { status: 404 }),
  );
  const url = `http://127.0.0.1:${server.addr.port}/health`;
  const check = async () => {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-q",
        `--allow-net=127.0.0.1:${server.addr.port}`,
        join(REPO_ROOT, "docker/healthcheck.ts"),
        url,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
  };
  try {
    assert.deepEqual(await check(), { code: 0, stderr: "" });
    status = 503;
    assert.deepEqual(await check(), { code: 1, stderr: `unhealthy: ${url} answered HTTP 503\n` });
  } finally {
    await server.shutdown();
  }
  const down = await check();
  assert.equal(down.code, 1);
  assert.match(down.stderr, /^unhealthy: .* did not answer: /);
});

// ---------------------------------------------------------------------------------------------------------
// compose.yaml

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  entrypoint?: string[];
  command?: string[];
  environment?: Record<string, string | null>;
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  profiles?: string[];
  ports?: string[];
  restart?: string;
}

function readCompose(): { services: Record<string, ComposeService>; volumes: Record<string, unknown> } {
  return parseYaml(readRepoFile("compose.yaml"), { merge: true });
}

/** Compose's `${NAME:-default}` interpolation, with the defaults. */
function interpolate(value: string): string {
  return value.replace(/\$\{[A-Z_]+:-([^}]*)\}/g, "$1");
}

function serviceEnv(service: ComposeService): Record<string, string> {
  return Object.fromEntries(
    Object.entries(service.environment ?? {}).filter(([, v]) => v !== null).map(([k, v]) => [k, String(v)]),
  );
}

Deno.test("compose.yaml: MLflow is the pinned official image, reachable by the stages under its service name", () => {
  const { services } = readCompose();
  const mlflow = services.mlflow!;
  const pinned = /^mlflow(\[[a-z,]+\])?==(\S+)$/m.exec(readRepoFile("requirements-mlflow.txt"))?.[2];
  assert.equal(mlflow.image, `ghcr.io/mlflow/mlflow:v${pinned}`, "the MLflow the project pins");
  assert.match(readRepoFile("docker/docker.mk"), new RegExp(`^MLFLOW_IMAGE = ${mlflow.image}$`, "m"));
  const flag = (name: string) => mlflow.command?.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
  assert.equal(flag("host"), "0.0.0.0");
  const allowed = flag("allowed-hosts")?.split(",") ?? [];
  assert.ok(
    allowed.includes("mlflow") && allowed.includes("mlflow:*"),
    "MLflow answers 403 to unknown Hosts",
  );
  for (const [name, service] of Object.entries(services)) {
    const uri = service.environment?.MLFLOW_TRACKING_URI;
    if (uri) assert.equal(uri, `http://mlflow:${flag("port")}`, name);
  }
});

Deno.test("compose.yaml: one one-shot service per stage, each a real stage on the shared data volume", async () => {
  const { services, volumes } = readCompose();
  const mlflowStages = readRepoFile("docker/entrypoint.sh").match(/^MLFLOW_STAGES="([^"]*)"/m)![1]!.split(
    " ",
  );
  await using root = await createImageRoot();
  const covered = new Set<string>();
  for (const [name, service] of Object.entries(services)) {
    if (interpolate(service.image ?? "") !== MODEL_IMAGE) continue;
    assert.deepEqual(service.build, { context: ".", dockerfile: "docker/model.Dockerfile" }, name);
    assert.deepEqual(service.profiles, ["stages"], `${name}: not started by docker compose up`);
    assert.deepEqual(service.volumes, ["data:/app/data"], name);
    const entrypoint = service.entrypoint ?? [];
    assert.deepEqual(entrypoint.slice(0, -1), ENTRYPOINT_IN_IMAGE, name);
    const stage = entrypoint.at(-1)!;
    assert.equal(stage, name, "the service is named after its stage");
    covered.add(stage.replaceAll("-", "_"));
    if (mlflowStages.includes(stage)) {
      assert.equal(service.depends_on?.mlflow?.condition, "service_healthy", name);
    }
    const argv = [stage, ...(service.command ?? []).map(interpolate)];
    assert.equal(await checkStageCommand(root, argv, serviceEnv(service)), undefined, `service ${name}`);
  }
  assert.deepEqual([...covered, "serve"].sort(), [...stageTasks().keys()].sort());
  assert.ok("data" in volumes);

  const api = services.api!;
  assert.deepEqual(api.build, { context: ".", dockerfile: "docker/api.Dockerfile" });
  assert.equal(api.volumes, undefined, "the API reads nothing from the data volume");
  assert.equal(api.depends_on?.mlflow?.condition, "service_healthy");
  assert.ok(api.ports?.some((p) => p.endsWith(":8000")));
  // podman-compose ignores service_healthy, and Podman restarts without a growing delay: the entry point waits
  // for MLflow, and the restarts are bounded.
  assert.match(api.restart ?? "", /^on-failure:\d+$/);
  for (const [name, service] of Object.entries(services)) {
    if (service.environment?.MLFLOW_TRACKING_URI) {
      assert.match(String(service.environment.MLFLOW_WAIT_SECONDS), /^\d+$/, `${name} waits for MLflow`);
    }
  }
  const argv = ["serve", ...(api.command ?? []).map(interpolate)];
  assert.equal(await checkStageCommand(root, argv, serviceEnv(api)), undefined, "service api");
});

// ---------------------------------------------------------------------------------------------------------
// The docker-model-* make targets, run for real with a stand-in docker

/**
 * Stand-in for the docker CLI: `docker run [options] IMAGE [args...]` runs the image's entry point in
 * FAKE_DOCKER_APP (the image's /app), with only the environment the options give a container. An option
 * it does not emulate makes it fail, so a recipe cannot depend on something this test ignores.
 */
const FAKE_DOCKER = `#!/usr/bin/env bash
set -euo pipefail
die() { echo "fake docker: $*" >&2; exit 125; }
[[ \${1-} == --version ]] && { echo "Docker version 20.10.24 (a stand-in for tests)"; exit 0; }
printf '%s\\n' "$*" >>"$FAKE_DOCKER_LOG"
[[ \${1-} == run ]] || die "only 'docker run' is emulated, got '\${1-}'"
shift
env_args=() volume="" image="" rm=0 add_host="" user=""
while (($#)); do
  case $1 in
  --rm) rm=1 && shift ;;
  --user) user=$2 && shift 2 ;;
  --add-host=*) add_host=\${1#*=} && shift ;;
  -v) volume=$2 && shift 2 ;;
  -e)
    if [[ $2 == *=* ]]; then env_args+=("$2"); elif [[ -n \${!2+set} ]]; then env_args+=("$2=\${!2}"); fi
    shift 2 ;;
  -*) die "option $1 is not emulated" ;;
  *) image=$1 && shift && break ;;
  esac
done
((rm)) || die "missing --rm"
[[ $add_host == host.docker.internal:host-gateway ]] || die "missing --add-host=host.docker.internal:host-gateway"
[[ $user =~ ^[0-9]+:[0-9]+$ ]] || die "--user must be uid:gid, got '$user'"
[[ $image == "$FAKE_DOCKER_IMAGE" ]] || die "image '$image', expected '$FAKE_DOCKER_IMAGE'"
[[ $volume == "$FAKE_DOCKER_APP/data:/app/data" ]] || die "volume '$volume', expected '$FAKE_DOCKER_APP/data:/app/data'"
cd "$FAKE_DOCKER_APP"
exec env -i PATH=/usr/local/bin:/usr/bin:/bin DENO="$FAKE_DOCKER_DENO" DENO_DIR="$FAKE_DOCKER_DENO_DIR" \\
  NO_COLOR=1 "\${env_args[@]}" ./docker/entrypoint.sh "$@"
`;

interface DockerHost extends AsyncDisposable {
  root: ProjectRoot;
  /** Runs `make <target> [VAR=value...]` in the root with the stand-in docker; returns make's result. */
  make(target: string, vars?: Record<string, string>): Promise<StageRun>;
  /** The `docker ...` command lines run so far. */
  calls(): string[];
}

async function createDockerHost(): Promise<DockerHost> {
  const root = await createImageRoot();
  const fakeDocker = root.resolve(".fake-bin", "docker");
  await Deno.mkdir(root.resolve(".fake-bin"));
  await Deno.writeTextFile(fakeDocker, FAKE_DOCKER, { mode: 0o755 });
  const log = root.resolve(".fake-bin", "calls.log");
  await Deno.writeTextFile(log, "");
  const denoDir = await localDenoDir();
  return {
    root,
    make: (target, vars = {}) =>
      runMake(root.path, [
        "-s",
        target,
        `DOCKER=${fakeDocker}`,
        // The container's data folder is the root's data/ (the default, data/docker/, is checked above).
        `DOCKER_DATA=${root.resolve("data")}`,
        ...Object.entries(vars).map(([k, v]) => `${k}=${v}`),
      ], {
        FAKE_DOCKER_LOG: log,
        FAKE_DOCKER_APP: root.path,
        FAKE_DOCKER_IMAGE: MODEL_IMAGE,
        FAKE_DOCKER_DENO: Deno.execPath(),
        FAKE_DOCKER_DENO_DIR: denoDir,
      }),
    calls: () => Deno.readTextFileSync(log).split("\n").filter(Boolean),
    [Symbol.asyncDispose]: () => root[Symbol.asyncDispose](),
  };
}

function assertOk(run: StageRun, what: string): void {
  assert.equal(run.code, 0, `${what} exited ${run.code}:\n${run.stderr}`);
}

/** Every docker-model-* target a test below runs; the first test fails when docker.mk gains another. */
const TESTED_TARGETS = [
  "docker-model-ingest",
  "docker-model-split-batches",
  "docker-model-preprocess-batch",
  "docker-model-preprocess-test",
  "docker-model-train",
  "docker-model-evaluate",
  "docker-model-predict",
  "docker-model-pipeline-ingest",
  "docker-model-pipeline-train",
];

const MLFLOW_URI =
  Deno.permissions.querySync({ name: "env", variable: "MLFLOW_TRACKING_URI" }).state === "granted"
    ? Deno.env.get("MLFLOW_TRACKING_URI")
    : undefined;

Deno.test("docker.mk: every docker-model-* target that runs a stage has a test here", () => {
  const targets = [...readRepoFile("docker/docker.mk").matchAll(/^(docker-model-[a-z-]+):/gm)].map((m) =>
    m[1]!
  );
  assert.deepEqual(targets.filter((t) => t !== "docker-model-build").sort(), [...TESTED_TARGETS].sort());
});

Deno.test("make -n docker-model-*: data/docker at /app/data, MLflow on the host, secrets never on the command line", async () => {
  const run = await runMake(REPO_ROOT, ["-n", "docker-model-ingest", "ARGS=--source sample"], {
    KAGGLE_KEY: "secret-kaggle-key",
    MLFLOW_TRACKING_PASSWORD: "secret-pw",
  });
  assert.equal(run.code, 0, run.stderr);
  const text = run.stdout;
  const words = dockerRunWords(text);
  assert.ok(words.includes(`${REPO_ROOT}/data/docker:/app/data`), "-v $(CURDIR)/data/docker:/app/data");
  assert.ok(words.includes("MLFLOW_TRACKING_URI=http://host.docker.internal:5500"));
  assert.ok(words.includes("MLFLOW_EXPERIMENT_NAME=amazon-reviews-training"));
  assert.ok(words.includes("--add-host=host.docker.internal:host-gateway"));
  assert.deepEqual(words.slice(words.indexOf(MODEL_IMAGE)), [MODEL_IMAGE, "ingest", "--source", "sample"]);
  assert.ok(!text.includes("secret-"), "-e NAME forwards a secret without printing it");
  const user = words[words.indexOf("--user") + 1]!;
  assert.match(user, /^\d+:\d+$/);
  assert.ok(!user.startsWith("0:"), "the stages never run as root, also when make does");
});

/** A stand-in `podman` for `make -n`: only its --version is asked. */
async function fakePodman(dir: string): Promise<string> {
  const path = join(dir, "podman");
  await Deno.writeTextFile(path, '#!/bin/sh\necho "podman version 4.3.1"\n', { mode: 0o755 });
  return path;
}

Deno.test("make -n with DOCKER=podman: host.containers.internal, no host-gateway, Docker image format", async () => {
  await using root = await createImageRoot();
  const podman = await fakePodman(root.path);
  const run = await runMake(REPO_ROOT, ["-n", "docker-model-train", "batches=0", `DOCKER=${podman}`]);
  assert.equal(run.code, 0, run.stderr);
  const words = dockerRunWords(run.stdout.replaceAll(`${podman} run `, "docker run "));
  assert.ok(words.includes("MLFLOW_TRACKING_URI=http://host.containers.internal:5500"), words.join(" "));
  assert.ok(!words.some((w) => w.startsWith("--add-host")), "Podman 4 rejects host-gateway");
  const build = await runMake(REPO_ROOT, ["-n", "docker-api-build", `DOCKER=${podman}`]);
  assert.match(build.stdout, new RegExp(`^${podman} build --format docker -f docker/api.Dockerfile `, "m"));
  const docker = await runMake(REPO_ROOT, ["-n", "docker-api-build", "DOCKER=docker"]);
  assert.match(docker.stdout, /^docker build -f docker\/api.Dockerfile /m, "docker build has no --format");
});

Deno.test("make -n docker-api-run: serve with flags it accepts, published on 127.0.0.1 only", async () => {
  const run = await runMake(REPO_ROOT, ["-n", "docker-api-run", "model_version=@champion", "API_PORT=8080"]);
  assert.equal(run.code, 0, run.stderr);
  const words = dockerRunWords(run.stdout);
  assert.ok(words.includes("127.0.0.1:8080:8000"), "-p 127.0.0.1:$(API_PORT):8000");
  assert.equal(words[words.indexOf("--name") + 1], "tutoria-mlops-api", "a name for logs, stop and health");
  assert.ok(words.includes("MLFLOW_TRACKING_URI=http://host.docker.internal:5500"));
  assert.ok(!words.some((w) => w.startsWith("-v")), "the API mounts no data");
  const args = words.slice(words.indexOf("tutoria-mlops-api:latest") + 1);
  assert.deepEqual(args, ["--model_version", "@champion"]);
  await using root = await createImageRoot();
  assert.equal(await checkStageCommand(root, ["serve", ...args]), undefined);
});

Deno.test("docker-model-* data targets: ingest, split, preprocess in the container as on the host", async () => {
  await using host = await createDockerHost();
  const data = (path: string) => host.root.resolve("data", path);

  assertOk(
    await host.make("docker-model-ingest", { ARGS: "--source sample --rows 1200 --test-rows 300" }),
    "ingest",
  );
  assert.ok(await exists(data("raw/train.csv")) && await exists(data("raw/test.csv")));
  assertOk(await host.make("docker-model-split-batches", { ARGS: "--batch-size 600" }), "split-batches");
  assert.ok(
    await exists(data("batches/train_batch_0.csv")) && await exists(data("batches/train_batch_1.csv")),
  );
  for (const batch of ["0", "1"]) {
    assertOk(await host.make("docker-model-preprocess-batch", { batch }), `preprocess-batch ${batch}`);
    assert.ok(await exists(data(`processed/train_batch_${batch}.tsv`)));
  }
  assertOk(await host.make("docker-model-preprocess-test"), "preprocess-test");
  assert.ok(await exists(data("processed/test.tsv")));

  const missing = await host.make("docker-model-preprocess-batch");
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^error: set batch=N, e\.g\. make docker-model-preprocess-batch batch=0\n/);

  const calls = host.calls();
  assert.equal(calls.length, 5, "one container per stage run; none for the refused call");
  assert.match(calls[0]!, / -e MLFLOW_TRACKING_URI=http:\/\/host\.docker\.internal:5500 /);
  assert.match(calls[0]!, / -e KAGGLE_API_TOKEN -e KAGGLE_USERNAME -e KAGGLE_KEY -e INGEST_ALLOW_NET /);
  assert.match(calls[2]!, / tutoria-mlops-model:latest preprocess-batch 0$/);
});

Deno.test("docker-model-pipeline-ingest: ingest then split-batches in two containers", async () => {
  await using host = await createDockerHost();
  const run = await host.make("docker-model-pipeline-ingest", {
    INGEST_ARGS: "--source sample --rows 800 --test-rows 200",
    SPLIT_ARGS: "--num-batches 2",
  });
  assertOk(run, "pipeline-ingest");
  assert.deepEqual(host.calls().map((call) => call.split(` ${MODEL_IMAGE} `)[1]), [
    "ingest --source sample --rows 800 --test-rows 200",
    "split-batches --num-batches 2",
  ]);
  assert.ok(await exists(host.root.resolve("data/batches/train_batch_1.csv")));
});

Deno.test({
  name: "docker-model-* MLflow targets: train, evaluate, predict and pipeline-train against MLflow",
  ignore: MLFLOW_URI === undefined,
  async fn() {
    await using host = await createDockerHost();
    const mlflow = { DOCKER_MLFLOW_URI: MLFLOW_URI!, MLFLOW_EXPERIMENT_NAME: "docker-targets-test" };
    const data = { ARGS: "--source sample --rows 1200 --test-rows 300" };
    assertOk(await host.make("docker-model-ingest", data), "ingest");
    assertOk(await host.make("docker-model-split-batches", { ARGS: "--num-batches 2" }), "split-batches");
    assertOk(await host.make("docker-model-preprocess-batch", { batch: "0" }), "preprocess-batch");
    assertOk(await host.make("docker-model-preprocess-test"), "preprocess-test");

    const train = await host.make("docker-model-train", { ...mlflow, batches: "0", ARGS: "--json" });
    assertOk(train, "train");
    const version = String(JSON.parse(train.stdout.trim().split("\n").at(-1)!).model_version);
    assert.match(version, /^\d+$/);

    assertOk(await host.make("docker-model-evaluate", { ...mlflow, model_version: version }), "evaluate");
    const predict = await host.make("docker-model-predict", {
      ...mlflow,
      title: "It's broken",
      message: `Stopped working after a week; "support" never answered.`,
      model_version: version,
    });
    assertOk(predict, "predict");
    assert.match(predict.stdout, /negative|positive/);
    assert.match(
      host.calls().at(-1)!,
      / predict --title It's broken --message Stopped working after a week; "support" never answered\. /,
    );

    const pipeline = await host.make("docker-model-pipeline-train", { ...mlflow, batch: "1" });
    assertOk(pipeline, "pipeline-train");
    assert.match(pipeline.stdout, /"model_version":"\d+"/);
    assert.deepEqual(host.calls().slice(-4).map((call) => call.split(` ${MODEL_IMAGE} `)[1]!.split(" ")[0]), [
      "preprocess-batch",
      "train",
      "preprocess-test",
      "evaluate",
    ]);
  },
});

// ---------------------------------------------------------------------------------------------------------
// The docs

/** The shell commands in ```sh blocks of a Markdown file, continuation lines joined, comments dropped. */
function shownCommands(path: string): string[] {
  const commands: string[] = [];
  for (const [, block] of readRepoFile(path).matchAll(/```(?:sh|shell|bash)\n([\s\S]*?)```/g)) {
    const joined = block!.replace(/\\\n\s*/g, " ");
    for (const line of joined.split("\n")) {
      const command = line.replace(/\s+#.*$/, "").trim();
      if (command && !command.startsWith("#")) commands.push(command);
    }
  }
  return commands;
}

Deno.test("docs: every command the Docker and infra docs show is a make target or a compose call of a real stage", async () => {
  const { services } = readCompose();
  await using root = await createImageRoot();
  const commands = [...shownCommands("docs/model/docker.md"), ...shownCommands("docs/infra/index.md")];
  assert.ok(commands.length > 10, "the docs show how to run things");
  for (const command of commands) {
    const words = shellWords(command);
    if (words[0] === "make") {
      const run = await runMake(REPO_ROOT, ["-n", ...words.slice(1)]);
      assert.equal(run.code, 0, `${command}: ${run.stderr}`);
    } else if (
      (words.find((w) => !/^[A-Z_]+=/.test(w)) === "docker" && words.includes("compose")) ||
      words[0] === "podman-compose"
    ) {
      // podman-compose runs a profiled service only with its profile named; the rest is the same.
      if (words[0] === "podman-compose") {
        words.splice(0, 1, "docker", "compose");
        if (words[2] === "--profile") {
          assert.equal(words[3], "stages", command);
          words.splice(2, 2);
        }
      }
      // Leading NAME=value assignments must be variables compose.yaml interpolates.
      while (/^[A-Z_]+=/.test(words[0]!)) {
        const name = words.shift()!.split("=")[0]!;
        assert.ok(
          readRepoFile("compose.yaml").includes(`\${${name}:-`),
          `${command}: compose.yaml ignores ${name}`,
        );
      }
      assert.equal(words[1], "compose", command);
      const [verb, ...rest] = words.slice(2);
      if (verb === "run") {
        assert.equal(rest[0], "--rm", `${command}: one-shot services are run with --rm`);
        const service = services[rest[1]!];
        assert.ok(service?.entrypoint, `${command}: no stage service ${rest[1]}`);
        const argv = [service.entrypoint.at(-1)!, ...rest.slice(2)];
        assert.equal(await checkStageCommand(root, argv, serviceEnv(service)), undefined, command);
      } else {
        assert.ok(
          ["up", "down", "build", "logs", "ps"].includes(verb!),
          `${command}: not a checked compose call`,
        );
        for (const name of rest.filter((w) => !w.startsWith("-"))) {
          assert.ok(services[name], `${command}: ${name}`);
        }
      }
    } else {
      assert.fail(
        `${command}: the docs may show only make targets and docker compose calls this test checks`,
      );
    }
  }
});
