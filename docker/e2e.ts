/**
 * The container end-to-end test: builds and runs the project's images with a real engine, through the
 * project's own make targets, the way a user would (`make docker-e2e`; docker/e2e_test.ts runs it in
 * `make test` with Podman).
 *
 * ```sh
 * deno run -P=docker_e2e docker/e2e.ts --engine podman|docker [--mlflow-port 5502] [--api-port 18000]
 * ```
 *
 * 1. Engine: Podman with the project's settings (docker/containers.conf), or Docker: Debian's CLI
 *    (/usr/bin/docker, the same release as its daemon, with BuildKit) when installed, else `docker` on the
 *    PATH; `dockerd` is started when none answers, and stopped at the end.
 * 2. Base images: `make docker-base-images` pulls them or builds LOCAL STAND-INS, and says so.
 * 3. Both images with `make docker-model-build` and `make docker-api-build` (with Docker: the model image
 *    with BuildKit, the API image with the classic builder), trusting $SSL_CERT_FILE when set (a proxy
 *    that re-signs TLS).
 * 4. An MLflow on the host, reachable from the containers, and every stage in containers: pipeline-ingest,
 *    preprocess-batch per batch, train, preprocess-test, evaluate, predict; then the registered version in
 *    MLflow, the files in the data folder and their owner (never root).
 * 5. Ctrl-C on a running stage: exit 130 and no half-written file.
 * 6. The API container on that version: /ready, /predict and its HEALTHCHECK status.
 * 7. compose.yaml with Docker Compose v2 or podman-compose: MLflow, a few stages, the API, then down.
 *
 * Progress and timings go to stderr; the last line on stdout names the engine, the image sizes and `ok`.
 * Exit codes: 0 passed, 1 a check failed (the reason on stderr), 2 usage, 130 interrupted (after cleaning up).
 *
 * @module
 */
import { parseArgs } from "node:util";

/** Scratch folder of this run, one per engine so that a Podman and a Docker run can go on side by side. */
let WORK = ".tmp-test/docker-e2e";
const MODEL_IMAGE = "tutoria-mlops-model:e2e";
const API_IMAGE = "tutoria-mlops-api:e2e";
const COMPOSE_VENV = ".cache/compose";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

class CheckFailed extends Error {}

function log(message: string): void {
  Deno.stderr.writeSync(encoder.encode(`docker-e2e: ${message}\n`));
}

function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new CheckFailed(message);
}

function tail(text: string, lines = 25): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

interface RunOptions {
  env?: Record<string, string>;
  /** Return a failed result instead of throwing. */
  allowFail?: boolean;
}

/** Runs a command to completion, capturing its output; throws with its stderr when it fails. */
async function run(command: string, args: string[], options: RunOptions = {}): Promise<Result> {
  const output = await new Deno.Command(command, {
    args,
    env: { MAKEFLAGS: "", MFLAGS: "", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const result = {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
  if (result.code !== 0 && !options.allowFail) {
    throw new CheckFailed(
      `${command} ${args.join(" ")} exited ${result.code}:\n${tail(`${result.stdout}\n${result.stderr}`)}`,
    );
  }
  return result;
}

const cleanups: { name: string; fn: () => Promise<unknown> }[] = [];
let cleaning: Promise<void> | undefined;

/** Runs the registered clean-ups, newest first, once. */
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length > 0) {
      const { name, fn } = cleanups.pop()!;
      try {
        await fn();
      } catch (error) {
        log(`clean-up "${name}" failed: ${error instanceof Error ? error.message.split("\n")[0] : error}`);
      }
    }
  })();
  return cleaning;
}

const timings: [string, number][] = [];

async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  log(`${name} ...`);
  const started = performance.now();
  const value = await fn();
  const seconds = (performance.now() - started) / 1000;
  timings.push([name, seconds]);
  log(`${name}: done in ${seconds.toFixed(1)} s`);
  return value;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function removeTree(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
}

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    yield path;
    if (entry.isDirectory) yield* walk(path);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` every second until it returns a value, or fails after `seconds`. */
async function waitFor<T>(what: string, seconds: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = performance.now() + seconds * 1000;
  let last: unknown;
  while (performance.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await sleep(1000);
  }
  throw new CheckFailed(
    `${what} within ${seconds} s${last instanceof Error ? ` (last: ${last.message})` : ""}`,
  );
}

async function httpJson(url: string, init?: RequestInit): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: response.status, body };
}

// -------------------------------------------------------------------------------------------------------
// The engine

interface Engine {
  kind: "podman" | "docker";
  /** The CLI the make targets get as DOCKER. */
  cli: string;
  /** e.g. "podman 4.3.1" or "docker 20.10.24 (CLI /usr/bin/docker)". */
  description: string;
  /** Environment for every command that talks to the engine. */
  env: Record<string, string>;
}

async function resolveEngine(name: string): Promise<Engine> {
  if (name === "podman" || name.endsWith("/podman")) {
    // The make targets point Podman at the project's settings; the direct calls here must use the same.
    const configured = Deno.env.get("CONTAINERS_CONF");
    const env = { CONTAINERS_CONF: configured || `${Deno.cwd()}/docker/containers.conf` };
    const version = (await run(name, ["version", "--format", "{{.Client.Version}}"], { env })).stdout.trim();
    return { kind: "podman", cli: name, description: `podman ${version}`, env };
  }
  check(name === "docker" || name.endsWith("/docker"), `--engine must be podman or docker, got "${name}"`);
  // `docker` on the PATH may be a newer CLI without the buildx plugin (then only the classic builder); the
  // CLI of the daemon's own package is the deterministic choice, and it has BuildKit.
  const cli = name === "docker" && await exists("/usr/bin/docker") && await exists("/usr/sbin/dockerd")
    ? "/usr/bin/docker"
    : name;
  const env = { DOCKER_CONFIG: `${Deno.cwd()}/${COMPOSE_VENV}` };
  await startDockerd(cli, env);
  const version =
    (await run(cli, ["version", "--format", "{{.Client.Version}}/{{.Server.Version}}"], { env }))
      .stdout.trim();
  const [client, server] = version.split("/");
  return { kind: "docker", cli, description: `docker ${server} (CLI ${cli} ${client})`, env };
}

/** Starts dockerd when no daemon answers, and registers its stop; leaves a running daemon alone. */
async function startDockerd(cli: string, env: Record<string, string>): Promise<void> {
  if ((await run(cli, ["info", "--format", "{{.ServerVersion}}"], { env, allowFail: true })).code === 0) {
    return;
  }
  log(`no Docker daemon answers: starting dockerd (log: ${WORK}/dockerd.log)`);
  const logFile = await Deno.open(`${WORK}/dockerd.log`, { write: true, create: true, truncate: true });
  const daemon = new Deno.Command("setsid", {
    args: ["dockerd"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = logFile.writable.getWriter();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) await writer.write(chunk);
  };
  const pumping = Promise.all([pump(daemon.stdout), pump(daemon.stderr)]).finally(() => writer.close());
  cleanups.push({
    name: "stop dockerd",
    fn: async () => {
      await run("kill", ["-TERM", String(daemon.pid)], { allowFail: true });
      const stopped = await Promise.race([daemon.status.then(() => true), sleep(30_000).then(() => false)]);
      if (!stopped) await run("kill", ["-KILL", String(daemon.pid)], { allowFail: true });
      await pumping.catch(() => {});
      log("stopped the dockerd this test started");
    },
  });
  await waitFor("dockerd answers", 60, async () => {
    const info = await run(cli, ["info", "--format", "{{.ServerVersion}}"], { env, allowFail: true });
    return info.code === 0 ? true : undefined;
  });
}

// -------------------------------------------------------------------------------------------------------
// The test

interface Options {
  engine: string;
  mlflowPort: number;
  apiPort: number;
}

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      engine: { type: "string", default: "podman" },
      "mlflow-port": { type: "string", default: "5502" },
      "api-port": { type: "string", default: "18000" },
    },
  });
  const port = (name: string, value: string) => {
    const number = Number(value);
    if (!Number.isInteger(number) || number < 1 || number > 65534) {
      throw new TypeError(`--${name} expects a port number below 65535, got "${value}"`);
    }
    return number;
  };
  return {
    engine: values.engine!,
    mlflowPort: port("mlflow-port", values["mlflow-port"]!),
    apiPort: port("api-port", values["api-port"]!),
  };
}

interface ImageFacts {
  megabytes: number;
  layers: number;
}

async function imageFacts(engine: Engine, image: string): Promise<ImageFacts> {
  const out = await run(engine.cli, [
    "image",
    "inspect",
    "--format",
    "{{.Size}} {{len .RootFS.Layers}}",
    image,
  ], {
    env: engine.env,
  });
  const [size, layers] = out.stdout.trim().split(" ").map(Number);
  return { megabytes: Math.round(size! / 1e6), layers: layers! };
}

async function standInOf(engine: Engine, image: string): Promise<string> {
  const out = await run(
    engine.cli,
    ["image", "inspect", "--format", '{{ index .Config.Labels "tutoria-mlops.stand-in" }}', image],
    { env: engine.env, allowFail: true },
  );
  const label = out.stdout.trim();
  return out.code === 0 && label !== "<no value>" ? label : "";
}

async function main(options: Options): Promise<string> {
  WORK = `.tmp-test/docker-e2e/${options.engine.includes("podman") ? "podman" : "docker"}`;
  await removeTree(WORK);
  await Deno.mkdir(WORK, { recursive: true });
  const engine = await step("engine", () => resolveEngine(options.engine));
  log(`engine: ${engine.description}`);
  const caCert = Deno.env.get("SSL_CERT_FILE");
  const mlflowUri = `http://127.0.0.1:${options.mlflowPort}`;
  const data = `${WORK}/data`;
  const make = (target: string, vars: Record<string, string> = {}, runOptions: RunOptions = {}) =>
    run("make", [
      "-s",
      target,
      `DOCKER=${engine.cli}`,
      `MODEL_IMAGE=${MODEL_IMAGE}`,
      `API_IMAGE=${API_IMAGE}`,
      `DOCKER_DATA=${Deno.cwd()}/${data}`,
      `MLFLOW_TRACKING_URI=${mlflowUri}`,
      "MLFLOW_EXPERIMENT_NAME=docker-e2e",
      ...(caCert ? [`CA_CERT=${caCert}`] : []),
      ...Object.entries(vars).map(([k, v]) => `${k}=${v}`),
    ], { ...runOptions, env: { ...engine.env, ...runOptions.env } });

  await step("base images (pulled, present, or LOCAL STAND-INS built)", async () => {
    const out = await make("docker-base-images");
    for (const line of (out.stderr + out.stdout).trimEnd().split("\n")) if (line) log(line);
  });
  const standIn = await standInOf(engine, "denoland/deno:debian-2.9.6");
  if (standIn) log(`NOTE: the base image is a LOCAL STAND-IN for ${standIn}, not the upstream image`);

  const builder = (buildkit: boolean): Record<string, string> =>
    engine.kind === "docker" ? { DOCKER_BUILDKIT: buildkit ? "1" : "0" } : {};
  await step(
    `build the model image${engine.kind === "docker" ? " (BuildKit)" : ""}`,
    () => make("docker-model-build", {}, { env: builder(true) }),
  );
  await step(
    `build the API image${engine.kind === "docker" ? " (classic builder)" : ""}`,
    () => make("docker-api-build", {}, { env: builder(false) }),
  );
  const model = await imageFacts(engine, MODEL_IMAGE);
  const api = await imageFacts(engine, API_IMAGE);
  log(
    `sizes: model ${model.megabytes} MB in ${model.layers} layers, API ${api.megabytes} MB in ${api.layers} layers`,
  );
  check(model.megabytes <= 300 && api.megabytes <= 300, "an image is over its 300 MB budget");
  await checkHealthcheckKept(engine);

  // A host MLflow the containers can reach: bound beyond 127.0.0.1, for the few minutes of this test.
  const mlflowData = `${Deno.cwd()}/${WORK}/mlflow`;
  const mlflowVars = { MLFLOW_PORT: String(options.mlflowPort), MLFLOW_DATA: mlflowData };
  cleanups.push({ name: "stop MLflow", fn: () => make("mlflow-stop", mlflowVars, { allowFail: true }) });
  await step(
    "MLflow on the host (listening on 0.0.0.0)",
    () => make("mlflow", mlflowVars, { env: { MLFLOW_HOST: "0.0.0.0" } }),
  );

  // The data folder is left to make: its target creates it and gives it to the stages' user.
  const version = await step("stages in containers", async () => {
    await make("docker-model-pipeline-ingest", {
      INGEST_ARGS: "--source sample --rows 4000 --test-rows 1000",
      SPLIT_ARGS: "--num-batches 2",
    });
    for (const batch of ["0", "1"]) await make("docker-model-preprocess-batch", { batch });
    const train = await make("docker-model-train", { batches: "0 1", ARGS: "--json" });
    const result = JSON.parse(train.stdout.trim().split("\n").at(-1)!) as {
      model_version: string;
      model_name: string;
    };
    check(/^\d+$/.test(String(result.model_version)), `train printed no model_version: ${train.stdout}`);
    await make("docker-model-preprocess-test");
    await make("docker-model-evaluate", { model_version: String(result.model_version) });
    const predict = await make("docker-model-predict", {
      title: "Stopped working after a week",
      message: "The battery died after a week and support never answered. Not worth the money.",
      model_version: String(result.model_version),
    });
    check(/negative|positive/.test(predict.stdout), `predict printed no label: ${predict.stdout}`);
    const registered = await httpJson(
      `${mlflowUri}/api/2.0/mlflow/model-versions/get?name=${
        encodeURIComponent(result.model_name)
      }&version=${result.model_version}`,
    );
    const status = (registered.body as { model_version?: { status?: string } }).model_version?.status;
    check(
      status === "READY",
      `MLflow does not hold ${result.model_name} v${result.model_version} READY: ${
        JSON.stringify(registered.body)
      }`,
    );
    return String(result.model_version);
  });
  await checkOutputs(data);

  await step("what a container says when the data folder or MLflow is out of reach", () => checkErrors(make));
  await step("Ctrl-C on a running stage", () => checkInterrupt(engine));
  await step("the API container", () => checkApi(engine, make, version, options.apiPort));
  await step(
    `compose.yaml with ${engine.kind === "podman" ? "podman-compose" : "docker compose"}`,
    () => checkCompose(engine, options),
  );

  const base = standIn ? `; base images are LOCAL STAND-INS` : "";
  return `docker-e2e: ${engine.description}, model image ${model.megabytes} MB (${model.layers} layers), ` +
    `api image ${api.megabytes} MB (${api.layers} layers)${base}; ok`;
}

/** Podman drops a HEALTHCHECK from OCI-format images; the targets build the Docker format. */
async function checkHealthcheckKept(engine: Engine): Promise<void> {
  const out = await run(engine.cli, [
    "image",
    "inspect",
    "--format",
    "{{json .Config.Healthcheck}}",
    API_IMAGE,
  ], {
    env: engine.env,
  });
  check(/healthcheck\.ts/.test(out.stdout), `the API image lost its HEALTHCHECK: ${out.stdout.trim()}`);
}

/** Every stage output exists, nothing half-written is left, and no file belongs to root. */
async function checkOutputs(data: string): Promise<void> {
  const expected = [
    "raw/train.csv",
    "raw/test.csv",
    "batches/train_batch_0.csv",
    "batches/train_batch_1.csv",
    "processed/train_batch_0.tsv",
    "processed/train_batch_1.tsv",
    "processed/test.tsv",
  ];
  for (const file of expected) check(await exists(`${data}/${file}`), `${data}/${file} is missing`);
  const owners = new Set<number>();
  for await (const path of walk(data)) {
    check(!path.endsWith(".partial"), `${path} was left half-written`);
    const uid = (await Deno.lstat(path)).uid;
    check(uid !== 0, `${path} belongs to root: the stages must not run as root`);
    owners.add(uid!);
  }
  const me = Deno.uid();
  const expectedOwner = me === 0 ? 1993 : me;
  check(
    owners.size === 1 && owners.has(expectedOwner!),
    `the data files belong to uid ${[...owners].join(", ")}, expected ${expectedOwner}`,
  );
  log(`data: ${expected.length} outputs, all owned by uid ${expectedOwner}, none half-written`);
}

type Make = (target: string, vars?: Record<string, string>, options?: RunOptions) => Promise<Result>;

/**
 * A data folder the container's user may not write names the folder and its owner; an MLflow on the host
 * that does not listen where the container looks says how to fix it from there.
 */
async function checkErrors(make: Make): Promise<void> {
  if (Deno.uid() === 0) {
    const data = `${Deno.cwd()}/${WORK}/owned-by-root`;
    await Deno.mkdir(`${data}/raw`, { recursive: true });
    const denied = await make("docker-model-split-batches", { DOCKER_DATA: data }, { allowFail: true });
    check(denied.code !== 0, "split-batches wrote into a folder owned by root");
    check(
      /error: \/app\/data belongs to uid 0 \(gid 0\) and this runs as uid 1993, which may not write it/.test(
        denied.stderr,
      ),
      `no error naming the folder and its owner:\n${tail(denied.stderr)}`,
    );
  } else {
    log("not root: the folder-owner check needs a folder this user does not own; skipped");
  }
  const unreachable = await make("docker-model-predict", {
    MLFLOW_TRACKING_URI: "http://127.0.0.1:9",
    title: "t",
    message: "m",
    model_version: "1",
  }, { allowFail: true });
  check(
    unreachable.code !== 0 &&
      /this runs in a container, and MLflow on the host must listen beyond 127\.0\.0\.1/
        .test(unreachable.stderr),
    `no container-specific hint for an unreachable MLflow:\n${tail(unreachable.stderr)}`,
  );
}

/** Ctrl-C (SIGINT to the foreground process group, as a terminal sends it) while ingest writes. */
async function checkInterrupt(engine: Engine): Promise<void> {
  const data = `${Deno.cwd()}/${WORK}/interrupt`;
  const child = new Deno.Command("setsid", {
    args: [
      "make",
      "-s",
      "docker-model-ingest",
      `DOCKER=${engine.cli}`,
      `MODEL_IMAGE=${MODEL_IMAGE}`,
      `DOCKER_DATA=${data}`,
      "ARGS=--source sample --rows 3000000 --test-rows 1000",
    ],
    env: { MAKEFLAGS: "", MFLAGS: "", ...engine.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  try {
    // Generous: a busy engine (another build holding the image store's lock) can hold a start for minutes.
    // The stage writes train.csv under a temporary name, `train.csv[.<run>].partial`, renamed at the end.
    await waitFor("ingest starts writing data/raw/train.csv.*.partial", 300, async () => {
      for await (const entry of Deno.readDir(`${data}/raw`)) {
        if (!/^train\.csv\.(.+\.)?partial$/.test(entry.name)) continue;
        const info = await Deno.stat(`${data}/raw/${entry.name}`);
        if (info.size > 0) return true;
      }
      return undefined;
    });
  } catch (error) {
    const containers = await run(engine.cli, ["ps", "-a"], { env: engine.env, allowFail: true });
    await run("kill", ["-KILL", "--", `-${child.pid}`], { allowFail: true });
    const done = await output;
    throw new CheckFailed(
      `${(error as Error).message}\n${tail(decoder.decode(done.stderr))}\ncontainers:\n${containers.stdout}`,
    );
  }
  await run("kill", ["-INT", "--", `-${child.pid}`]);
  const done = await output;
  const stderr = decoder.decode(done.stderr);
  check(done.code === 130, `make exited ${done.code} after Ctrl-C, expected 130:\n${tail(stderr)}`);
  check(
    /error: interrupted by SIGINT; no output was left half-written/.test(stderr),
    `the stage did not report a clean interruption:\n${tail(stderr)}`,
  );
  const left: string[] = [];
  for await (const path of walk(data)) if (/\.(partial|csv)$/.test(path)) left.push(path);
  check(left.length === 0, `an interrupted ingest left files behind: ${left.join(", ")}`);
  log("Ctrl-C: the stage exited 130 and left no file behind");
}

/** `make docker-api-run` on the registered version: /ready, /predict, and the HEALTHCHECK's verdict. */
async function checkApi(engine: Engine, make: Make, version: string, port: number): Promise<void> {
  const name = `tutoria-mlops-e2e-api-${port}`;
  const removeContainer = () => run(engine.cli, ["rm", "-f", name], { env: engine.env, allowFail: true });
  await removeContainer();
  cleanups.push({ name: "remove the API container", fn: removeContainer });
  const server = make("docker-api-run", {
    API_CONTAINER: name,
    API_PORT: String(port),
    model_version: version,
  }, {
    allowFail: true,
  });
  const base = `http://127.0.0.1:${port}`;
  const ready = await Promise.race([
    waitFor("the API answers /ready", 240, async () => {
      const answer = await httpJson(`${base}/ready`);
      return answer.status === 200 ? answer.body : undefined;
    }),
    server.then((result) => {
      throw new CheckFailed(`the API container exited ${result.code}:\n${tail(result.stderr)}`);
    }),
  ]);
  check(
    JSON.stringify(ready).includes(`"version":"${version}"`),
    `/ready serves another version: ${JSON.stringify(ready)}`,
  );
  const predicted = await httpJson(`${base}/predict`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ title: "Great value", message: "Works as described, I love it" }),
  });
  check(
    predicted.status === 200 && /"label":"(positive|negative)"/.test(JSON.stringify(predicted.body)),
    `/predict answered ${predicted.status}: ${JSON.stringify(predicted.body)}`,
  );
  const health = await apiHealth(engine, name);
  log(`API: /ready serves version ${version}, /predict answers, health check says ${health}`);
  check(health === "healthy", `the API container's health check says ${health}`);
  await run(engine.cli, ["stop", "-t", "10", name], { env: engine.env });
  const stopped = await server;
  check(
    stopped.code === 0,
    `the API container did not stop cleanly (make exited ${stopped.code}):\n${tail(stopped.stderr)}`,
  );
}

/**
 * The HEALTHCHECK's verdict. Podman schedules health checks through systemd timers, which a machine without
 * systemd lacks, so the check is run once on demand there; Docker runs it by itself every 30 s.
 */
async function apiHealth(engine: Engine, name: string): Promise<string> {
  if (engine.kind === "podman") {
    const probe = await run(engine.cli, ["healthcheck", "run", name], { env: engine.env, allowFail: true });
    if (probe.code !== 0) return `unhealthy (${(probe.stdout + probe.stderr).trim()})`;
  }
  return await waitFor("the health check reports healthy", 75, async () => {
    const out = await run(engine.cli, ["inspect", "--format", "{{.State.Health.Status}}", name], {
      env: engine.env,
      allowFail: true,
    });
    const status = out.stdout.trim();
    return status === "healthy" || status === "unhealthy" ? status : undefined;
  });
}

/** compose.yaml: MLflow and the API as services, stages behind the "stages" profile, then down -v. */
async function checkCompose(engine: Engine, options: Options): Promise<void> {
  const project = `tutoria-mlops-e2e-${options.apiPort}`;
  const mlflowPort = options.mlflowPort + 1;
  const apiPort = options.apiPort + 1;
  const env = {
    ...engine.env,
    MODEL_IMAGE,
    API_IMAGE,
    MLFLOW_PORT: String(mlflowPort),
    API_PORT: String(apiPort),
    MODEL_VERSION: "latest",
  };
  const [command, prefix, stagesProfile] = engine.kind === "podman"
    ? [`${COMPOSE_VENV}/bin/podman-compose`, ["-p", project, "-f", "compose.yaml"], ["--profile", "stages"]]
    : [engine.cli, ["compose", "-p", project, "-f", "compose.yaml"], []];
  const compose = (args: string[], allowFail = false) =>
    run(command, [...prefix, ...args], { env, allowFail });
  cleanups.push({ name: "compose down", fn: () => compose([...stagesProfile, "down", "-v"], true) });
  const version = await compose(["version"]);
  log(`compose: ${version.stdout.trim().split("\n").filter((l) => /version/i.test(l)).join("; ")}`);
  await compose(["up", "-d", "mlflow"]);
  const stage = (args: string[]) => compose([...stagesProfile, "run", "--rm", ...args]);
  await stage(["ingest", "--source", "sample", "--rows", "1500", "--test-rows", "300"]);
  await stage(["split-batches", "--num-batches", "1"]);
  await stage(["preprocess-batch", "0"]);
  await stage(["train", "--batches", "all"]);
  await compose(["up", "-d", "api"]);
  await waitFor("the compose API answers /ready", 180, async () => {
    const answer = await httpJson(`http://127.0.0.1:${apiPort}/ready`);
    return answer.status === 200 ? true : undefined;
  });
  const ids = await run(engine.cli, [
    "ps",
    "-a",
    "-q",
    "--filter",
    `label=com.docker.compose.project=${project}`,
    "--filter",
    "label=com.docker.compose.service=api",
  ], { env: engine.env });
  const id = ids.stdout.trim().split("\n")[0];
  check(id, "no API container carries the compose labels");
  const restarts = Number(
    (await run(engine.cli, ["inspect", "--format", "{{.RestartCount}}", id], { env: engine.env })).stdout
      .trim(),
  );
  log(`compose: MLflow, 4 stages and the API ran; the API restarted ${restarts} times while MLflow started`);
  check(restarts <= 1, `the API restarted ${restarts} times: it spins instead of waiting for MLflow`);
  await compose([...stagesProfile, "down", "-v"]);
}

if (import.meta.main) {
  let options: Options;
  try {
    options = parseOptions(Deno.args);
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    Deno.exit(2);
  }
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    log("interrupted: cleaning up");
    cleanUp().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const started = performance.now();
  try {
    const summary = await main(options);
    await cleanUp();
    const total = (performance.now() - started) / 1000;
    log(
      `timings: ${timings.map(([name, s]) => `${name.split(" (")[0]} ${s.toFixed(0)} s`).join(", ")}; total ${
        total.toFixed(0)
      } s`,
    );
    console.log(summary);
    Deno.exit(0);
  } catch (error) {
    await cleanUp();
    if (interrupted) Deno.exit(130);
    const message = error instanceof CheckFailed ? error.message : (error as Error).stack ?? String(error);
    console.error(`error: docker-e2e failed: ${message}`);
    Deno.exit(1);
  }
}
