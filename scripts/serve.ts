/**
 * Stage `serve`: the inference HTTP API. Loads a registered model version (or alias) from MLflow, then
 * answers `POST /predict`, MLflow's scoring protocol (`GET /ping`, `POST /invocations`), health,
 * readiness, version and Prometheus metrics, and serves a small web page at `/`. Routes, formats and
 * errors are in `lib/serving/handler.ts` and `docs/api/index.md`.
 *
 * It listens before the model is loaded, so `GET /health` answers at once and `GET /ready` turns 200
 * when the model is in; if that first load fails the server stops with a one-line error (exit 1).
 * `POST /reload` or SIGHUP loads the requested spec again (an alias such as `@champion` may have moved)
 * and swaps the model in without dropping a request; a failed reload keeps the old model serving.
 * `POST /reload` is accepted from loopback only, or with the bearer token in `SERVE_RELOAD_TOKEN`, and at
 * most once per `--reload-interval`. Beyond `--max-in-flight` requests at once the scoring routes answer
 * 503 with `Retry-After`; if the process runs out of file descriptors, the server closes its connections
 * and listens again instead of dying (lib/serving/supervised_server.ts).
 * SIGINT or SIGTERM stops accepting connections, lets requests in flight finish, and exits 0.
 * Logs are JSON lines on stderr: one per request (buffered, written off the server's thread at least
 * every 200 ms and on exit), plus start-up, reloads and errors (written at once).
 *
 * Run: `deno task serve [--model_version V] [--model-name NAME] [--port N] [--host H]`
 * (`deno run -q -P=serve $MLFLOW_ALLOW_NET scripts/serve.ts`: listens on 0.0.0.0:8000 or
 * 127.0.0.1:8000, talks to the MLflow server, reads PORT, HOST, SERVE_RELOAD_TOKEN and the MLflow
 * variables; no file access).
 *
 * @example Usage
 * ```sh
 * deno task serve --model_version @champion
 * curl -s localhost:8000/predict -H 'content-type: application/json' \
 *   -d '{"title": "Great value", "message": "Works as described"}'
 * kill -HUP <pid>   # pick up a moved @champion
 * ```
 *
 * @module
 */
import { defineStage, readEnv, runStage, type StageContext, type StageResult } from "./_cli.ts";
import { connectMlflow, DEFAULT_MODEL_NAME, MLFLOW_ENV_USAGE } from "./_mlflow.ts";
import { modelVersionFlag } from "./_model_flags.ts";
import { PipelineError, UsageError } from "../lib/core/errors.ts";
import { intFlag } from "../lib/core/flags.ts";
import { createLogger } from "../lib/core/log.ts";
import { MLFLOW_ENV_NAMES, netGrantHost, resolveMlflowConfig } from "../lib/tracking/mlflow_config.ts";
import { parseVersionSpec } from "../lib/tracking/mlflow_registry.ts";
import { BackgroundModelLoader } from "../lib/serving/background_load.ts";
import { createApi, DEFAULT_MAX_IN_FLIGHT, DEFAULT_RELOAD_INTERVAL_MS } from "../lib/serving/handler.ts";
import { LineBuffer, writeStderr, writeStderrAsync } from "../lib/serving/line_buffer.ts";
import { createMlflowModelLoader } from "../lib/serving/mlflow_model_loader.ts";
import { ReloadingModelProvider } from "../lib/serving/model_provider.ts";
import { ScoringPool } from "../lib/serving/scoring_pool.ts";
import { SupervisedServer } from "../lib/serving/supervised_server.ts";
import { DEFAULT_LIMITS } from "../lib/serving/validation.ts";
import { APP_VERSION } from "../lib/core/version.ts";

/** Version spec served when `--model_version` is not given. */
export const DEFAULT_MODEL_VERSION = "@champion";
/** Served instead of the default while no version holds the champion alias yet. */
export const DEFAULT_FALLBACK_VERSION = "latest";
/** Port when neither `--port` nor `PORT` is given. */
export const DEFAULT_PORT = 8000;
/** Listen address when neither `--host` nor `HOST` is given (all interfaces, as in a container). */
export const DEFAULT_HOST = "0.0.0.0";

/** Scoring threads besides the server's own: none unless measured worth it (deno task bench --api). */
const DEFAULT_SCORE_WORKERS = 0;

/** Shortest `--reload-interval` accepted: a reload queries MLflow, so it must never run unbounded. */
const MIN_RELOAD_INTERVAL_S = 1;

const USAGE = `Usage: deno task serve [--model_version V] [--model-name NAME] [--port N] [--host H]
                       [--max-batch N] [--max-body-bytes N] [--max-in-flight N] [--reload-interval S]
                       [--score-workers N] [--no-access-log] [--json] [--help]

Serves a registered model over HTTP: POST /predict, POST /invocations (MLflow scoring protocol),
GET /ping, /health, /ready, /version, /metrics, POST /reload, and a web page at /.
POST /reload or SIGHUP loads --model_version again (e.g. a moved @champion) without dropping requests.

Options:
  --model_version V    Version to serve: a number, "latest" or "@alias" such as @champion
                       (default ${DEFAULT_MODEL_VERSION}, or ${DEFAULT_FALLBACK_VERSION} while no
                       version is champion yet; --model-version works too)
  --model-name NAME    Registered model (default MLFLOW_MODEL_NAME or ${DEFAULT_MODEL_NAME})
  --port N             Port (default PORT or ${DEFAULT_PORT}; the permission set allows ${DEFAULT_PORT})
  --host H             Listen address (default HOST or ${DEFAULT_HOST}; 127.0.0.1 for this machine only)
  --max-batch N        Most reviews per request (default ${DEFAULT_LIMITS.maxBatch})
  --max-body-bytes N   Largest request body (default ${DEFAULT_LIMITS.maxBodyBytes})
  --max-in-flight N    Requests handled at once before /predict and /invocations answer 503 with
                       Retry-After (default ${DEFAULT_MAX_IN_FLIGHT})
  --reload-interval S  Least seconds between two POST /reload (default ${
  DEFAULT_RELOAD_INTERVAL_MS / 1000
}; SIGHUP is not limited)
  --score-workers N    Threads that score batches of 32+ reviews besides the server's own (default ${DEFAULT_SCORE_WORKERS};
                       worth it only with idle cores: measure with deno task bench --api)
  --no-access-log      Do not log one line per request
  --json               On exit, print {requests, model} as JSON on stdout
  -h, --help           Show this help

${MLFLOW_ENV_USAGE}
  PORT, HOST                 listen port and address (--port and --host win)
  SERVE_RELOAD_TOKEN         allows POST /reload from any address with Authorization: Bearer <token>;
                             without it, only clients on this machine (loopback) may reload
  With MLFLOW_ALLOW_NET, name the listen address too, e.g.
  MLFLOW_ALLOW_NET=--allow-net=mlflow:5000,0.0.0.0:8000 (it replaces the task's whole network grant).
`;

/** Command line of the stage. */
export const spec = defineStage({
  name: "serve",
  usage: USAGE,
  options: {
    model_version: { type: "string" },
    "model-version": { type: "string" },
    "model-name": { type: "string" },
    port: { type: "string" },
    host: { type: "string" },
    "max-batch": { type: "string" },
    "max-body-bytes": { type: "string" },
    "max-in-flight": { type: "string" },
    "reload-interval": { type: "string" },
    "score-workers": { type: "string" },
    "no-access-log": { type: "boolean" },
  },
});

/**
 * Checks a listen address before binding, so a typo or a missing grant fails with a clear line. A
 * `MLFLOW_ALLOW_NET=--allow-net=...` replaces the set's whole net list, so it must name both addresses.
 */
function checkListenAddress(host: string, port: number, mlflowHost: string): void {
  if (host.trim() === "" || /[\s/]/.test(host)) {
    throw new UsageError(
      `--host expects an address such as 0.0.0.0 or 127.0.0.1, got ${JSON.stringify(host)}`,
    );
  }
  // Deno checks a listen on port 0 (any free port) as "host:0", granted by "host:0" or by the bare host.
  const address = `${host}:${port}`;
  if (Deno.permissions.querySync({ name: "net", host: address }).state !== "granted") {
    const grant = `MLFLOW_ALLOW_NET=--allow-net=${address},${mlflowHost}`;
    // The default address is in the permission set, so only an MLFLOW_ALLOW_NET can have taken it away.
    throw new PipelineError(
      port === 0
        ? `stage "serve" may not listen on a free port of ${host}: --port 0 needs ${address} granted; set ${grant}`
        : port === DEFAULT_PORT && (host === DEFAULT_HOST || host === "127.0.0.1")
        ? `stage "serve" may not listen on ${address}: MLFLOW_ALLOW_NET replaces the task's network grant; set ${grant}`
        : `stage "serve" may not listen on ${address}; use --port ${DEFAULT_PORT} with --host 0.0.0.0 or 127.0.0.1, or grant it with ${grant}`,
    );
  }
}

/** Serves until SIGINT/SIGTERM; see the module doc. */
export async function main(ctx: StageContext<typeof spec.options>): Promise<StageResult> {
  const env = readEnv(["PORT", "HOST", "SERVE_RELOAD_TOKEN"]);
  const versionSpec = modelVersionFlag(ctx.values, DEFAULT_MODEL_VERSION);
  // Parsed here too (the loader parses it again), so a bad spec is a usage error before any network call.
  parseVersionSpec(versionSpec, "--model_version");
  const { values } = ctx;
  const portFlag = values.port;
  const portSource = portFlag === undefined && env.PORT !== undefined ? "PORT" : "--port";
  const port = intFlag(portSource, portFlag ?? env.PORT, { min: 0, max: 65_535 }) ?? DEFAULT_PORT;
  const host = values.host ?? env.HOST ?? DEFAULT_HOST;
  const limits = {
    maxBatch: intFlag("--max-batch", values["max-batch"], { min: 1, max: 100_000 }) ??
      DEFAULT_LIMITS.maxBatch,
    maxBodyBytes:
      intFlag("--max-body-bytes", values["max-body-bytes"], { min: 1024, max: 256 * 1024 * 1024 }) ??
        DEFAULT_LIMITS.maxBodyBytes,
  };
  const maxInFlight = intFlag("--max-in-flight", values["max-in-flight"], { min: 1, max: 1_000_000 }) ??
    DEFAULT_MAX_IN_FLIGHT;
  const reloadIntervalS = intFlag("--reload-interval", values["reload-interval"], {
    min: MIN_RELOAD_INTERVAL_S,
    max: 86_400,
  }) ?? DEFAULT_RELOAD_INTERVAL_MS / 1000;
  const scoreWorkers = intFlag("--score-workers", values["score-workers"], { min: 0, max: 64 }) ??
    DEFAULT_SCORE_WORKERS;
  // The listen address is checked before MLflow is contacted: it is the cheaper mistake to report.
  const trackingUri = resolveMlflowConfig({}, readEnv(MLFLOW_ENV_NAMES)).trackingUri;
  checkListenAddress(host, port, netGrantHost(trackingUri));

  // Everything on stderr is a JSON line from here on, so a log collector can parse it. Request lines are
  // buffered (one write per 64 KiB or 200 ms instead of one per request) and written off the server's
  // thread, so a slow log reader stalls no request; every other line is written at once, after what is
  // buffered, so the order is kept. The buffer is written out on every way out.
  const out = new LineBuffer(writeStderr, { writeAsync: writeStderrAsync });
  globalThis.addEventListener("unload", out.flush);
  const log = createLogger({ json: true, name: "serve", sink: out.writeNow });
  const requestLog = createLogger({ json: true, name: "serve", sink: out.write });
  const mlflow = await connectMlflow({ modelName: values["model-name"] }, log, ctx.signal);
  // Checksums and decoding run on a worker thread, so a reload does not stall the requests being served;
  // batches are scored on every core.
  using loader = new BackgroundModelLoader();
  using pool = new ScoringPool({ workers: scoreWorkers });
  const provider = new ReloadingModelProvider(createMlflowModelLoader({
    client: mlflow.client,
    name: mlflow.modelName,
    spec: versionSpec,
    ...(versionSpec === DEFAULT_MODEL_VERSION && ctx.values.model_version === undefined &&
        ctx.values["model-version"] === undefined
      ? { fallbackSpec: DEFAULT_FALLBACK_VERSION }
      : {}),
    build: async (files) => {
      const model = await loader.load(files);
      return pool.size > 0 ? await pool.prepare(files, model) : model;
    },
  }));
  const api = createApi({
    provider,
    appVersion: APP_VERSION,
    limits,
    log,
    requestLog,
    accessLog: ctx.values["no-access-log"] !== true,
    maxInFlight,
    reload: {
      ...(env.SERVE_RELOAD_TOKEN !== undefined ? { token: env.SERVE_RELOAD_TOKEN } : {}),
      minIntervalMs: reloadIntervalS * 1000,
    },
  });

  const server = new SupervisedServer({
    hostname: host,
    port,
    handler: api.handler,
    log,
    metrics: api.metrics,
    onListen: ({ hostname, port }, restarted) => {
      if (restarted) return; // the supervisor logs the incident and the recovery
      const shown = hostname === "0.0.0.0"
        ? "127.0.0.1"
        : hostname.includes(":")
        ? `[${hostname}]`
        : hostname;
      log.info("listening", { address: `${hostname}:${port}`, url: `http://${shown}:${port}/` });
    },
  });
  try {
    server.start();
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      throw new PipelineError(`${host}:${port} is already in use; stop the other server or pass --port`);
    }
    if (error instanceof Deno.errors.AddrNotAvailable) {
      throw new PipelineError(`${host} is not an address of this machine; use --host 0.0.0.0 or 127.0.0.1`);
    }
    throw error;
  }

  const stopped = new Promise<void>((resolve) => {
    if (ctx.signal.aborted) resolve();
    ctx.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  log.info("loading model", {
    model_name: mlflow.modelName,
    requested: versionSpec,
    tracking_uri: mlflow.config.trackingUri,
  });
  const firstLoad = api.reload("startup");
  // Handled below through the race; this keeps a load that fails after a stop from going unhandled.
  firstLoad.catch(() => {});
  try {
    // Racing the stop signal lets Ctrl-C end a slow first download at once.
    await Promise.race([firstLoad, stopped]);
  } catch (error) {
    await server.shutdown();
    throw error;
  }

  const onHangup = () => {
    // The outcome is logged and counted by api.reload; the old model keeps serving on failure.
    api.reload("SIGHUP").catch(() => {});
  };
  Deno.addSignalListener("SIGHUP", onHangup);
  await stopped;
  Deno.removeSignalListener("SIGHUP", onHangup);
  log.info("shutting down; finishing requests in flight", {
    reason: String(ctx.signal.reason?.message ?? ""),
  });
  await server.shutdown();
  const model = provider.current();
  const requests = api.metrics.requestCount();
  log.info("stopped", { requests, listener_restarts: server.restarts });
  // The exit that follows does not wait for a chunk still being written.
  await out.drain();
  globalThis.removeEventListener("unload", out.flush);
  return {
    json: {
      requests,
      model: model ? { name: model.name, version: model.version, run_id: model.runId ?? null } : null,
    },
    text: `served ${requests.toLocaleString("en-US")} requests`,
  };
}

if (import.meta.main) await runStage(spec, Deno.args, main);
