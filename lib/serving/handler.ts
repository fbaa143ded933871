/**
 * The HTTP API as a function of a `Request`: routing, validation, scoring, JSON errors, request logs and
 * metrics. `scripts/serve.ts` passes {@linkcode Api.handler} to `Deno.serve`; tests call it in process
 * with `new Request(...)` and no socket.
 *
 * | route | method | answer |
 * |---|---|---|
 * | `/` | GET | the web page |
 * | `/health` | GET | liveness: 200 while the process runs |
 * | `/ready`, `/ping` | GET | 200 once a model is loaded, else 503 (`/ping` as MLflow's scoring server) |
 * | `/version` | GET | model name, version, run id, app version, whether it explains, its model card |
 * | `/predict` | POST | `{"title","message"}` or a list → label, polarity, probability (+ explanation) |
 * | `/invocations` | POST | MLflow's scoring protocol → `{"predictions": [...]}` (+ explanations) |
 * | `/reload` | POST | loads the requested model again (e.g. a moved `@champion`) and swaps it in |
 * | `/metrics` | GET | Prometheus text format |
 *
 * An explanation (the words that pushed the label, exact contributions: `lib/models/explanation.ts`) comes
 * with each prediction when asked: `"explain": true` in a `/predict` item, `"params": {"explain": true}` in
 * an `/invocations` body, or `?explain=true` on either. It is computed only then, so a request that does
 * not ask pays one check of its query string.
 *
 * Every error is a JSON body `{"error_code": "...", "message": "..."}` (the shape MLflow's servers use)
 * with the matching status; an unexpected exception is logged with its stack on the server and answered
 * with a 500 that carries the request id, never the stack.
 *
 * Overload and abuse: beyond {@linkcode ApiOptions.maxInFlight} requests at once, the scoring routes answer
 * 503 with `Retry-After` at once (the probes keep answering); `POST /reload` is accepted from loopback
 * only, or from anywhere with the bearer token of {@linkcode ReloadPolicy.token}, and at most once per
 * {@linkcode ReloadPolicy.minIntervalMs}.
 *
 * Every request pays for what this module does, so the hot path is kept lean (docs/api/index.md,
 * "Performance", has the profile): the path is cut out of the URL without parsing it, responses are
 * built with their headers in one go, metrics touch preallocated slots, and request log lines go to a
 * buffered sink.
 *
 * @module
 */
import type { Logger } from "../core/log.ts";
import { Deadlines } from "./deadlines.ts";
import { ApiMetrics, PROMETHEUS_CONTENT_TYPE } from "./prometheus.ts";
import type { LoadedModel, ModelProvider, PredictionLike, ReloadOutcome } from "./model_provider.ts";
import { renderPage } from "./page.ts";
import {
  ApiError,
  type ApiLimits,
  DEFAULT_LIMITS,
  invocationsExplainParam,
  parseInvocationsBody,
  parsePredictBody,
  queryExplainParam,
  readJsonBody,
  type ReviewInput,
} from "./validation.ts";
import { type ExplanationJson, explanationJson } from "../models/explanation.ts";

/** Default of {@linkcode ApiOptions.maxInFlight}. */
export const DEFAULT_MAX_IN_FLIGHT = 256;

/** Default of {@linkcode ReloadPolicy.minIntervalMs}. */
export const DEFAULT_RELOAD_INTERVAL_MS = 5000;

/** Who may call `POST /reload`, and how often. */
export interface ReloadPolicy {
  /**
   * A secret that allows reloads from any address with `Authorization: Bearer <token>`. Without it, only
   * clients on loopback (and in-process callers, which have no address) may reload.
   */
  token?: string;
  /** Least time between two reloads started over HTTP, in milliseconds. @default {5000} */
  minIntervalMs?: number;
}

/** What {@linkcode createApi} needs. */
export interface ApiOptions {
  /** Where the model comes from. */
  provider: ModelProvider;
  /** The application's version (deno.json "version"), reported by `/version`. */
  appVersion: string;
  /** Overrides of {@linkcode DEFAULT_LIMITS}. */
  limits?: Partial<ApiLimits>;
  /** Metrics to record into. @default {a new ApiMetrics} */
  metrics?: ApiMetrics;
  /** Logger for reloads and unexpected errors (and request lines, unless `requestLog` is given). */
  log?: Logger;
  /** Logger for the one line per request, e.g. one with a buffered sink. @default {log} */
  requestLog?: Logger;
  /** Write one log line per request. @default {true} */
  accessLog?: boolean;
  /** Most requests handled at once before the scoring routes answer 503. @default {256} */
  maxInFlight?: number;
  /** Access control and rate limit of `POST /reload`. */
  reload?: ReloadPolicy;
  /** Monotonic clock in milliseconds, for latencies and the reload rate limit. @default {performance.now} */
  now?: () => number;
}

/** The connection facts `Deno.serve` passes to a handler; only the client address is used. */
export interface RequestInfo {
  remoteAddr?: Deno.Addr;
}

/** A running API. */
export interface Api {
  /** Answers one request; never throws. */
  handler(request: Request, info?: RequestInfo): Promise<Response>;
  /**
   * Reloads the model (for `POST /reload`, SIGHUP and start-up), logging and counting the outcome.
   *
   * @param trigger What asked for it, for the log, e.g. "SIGHUP".
   * @throws Whatever the provider throws; the previous model keeps serving.
   */
  reload(trigger: string): Promise<ReloadOutcome>;
  /** The metrics this API records. */
  metrics: ApiMetrics;
}

/** What a route answers: a JSON body (the usual case) or a ready response. */
type RouteResult =
  | {
    json: unknown;
    /** The model that scored the request (a reload may swap the provider's model meanwhile). */
    model?: LoadedModel;
    /** Reviews scored by this request, for the log. */
    items?: number;
  }
  | { response: Response };

type RouteHandler = (request: Request, info: RequestInfo | undefined) => Promise<RouteResult> | RouteResult;

interface Route {
  /** Handlers by method; HEAD runs GET's. */
  methods: Partial<Record<string, RouteHandler>>;
  /** The `Allow` value: the methods, and HEAD where GET is. */
  allow: string[];
  /** Whether the route is refused (503) while the server is at its in-flight budget. */
  shed: boolean;
}

const KNOWN_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);
const REQUEST_ID = /^[\w.:\-]{1,128}$/;
// Paths that `new URL()` would return unchanged: no dot segments, escapes or odd characters.
const PLAIN_PATH = /^\/[\w\-/]*$/;
const JSON_TYPE = "application/json";

/** JSON body of a prediction on `/predict`. */
interface PredictionJson {
  label: string;
  polarity: number;
  probability: number;
  positive_probability: number;
  explanation?: ExplanationJson;
}

/** Top features an explanation lists (every word is listed, for highlighting). */
const EXPLANATION_TOP_FEATURES = 10;

function predictionJson(prediction: PredictionLike): PredictionJson {
  return {
    label: prediction.label,
    polarity: prediction.polarity,
    probability: prediction.probability,
    positive_probability: prediction.positiveProbability,
  };
}

function modelJson(model: LoadedModel): Record<string, unknown> {
  return {
    name: model.name,
    version: model.version,
    run_id: model.runId ?? null,
    ...(model.requested ? { requested: model.requested } : {}),
    loaded_at: model.loadedAt.toISOString(),
  };
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message.split("\n")[0]! : String(error);
}

/**
 * The path of an absolute request URL, as `new URL(url).pathname` gives it. Cutting it out of the string
 * is several times cheaper than parsing the URL, which only odd paths still need.
 */
function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  let end = url.indexOf("?", start);
  if (end < 0) end = url.length;
  const hash = url.indexOf("#", start);
  if (hash >= 0 && hash < end) end = hash;
  const path = url.slice(start, end);
  if (PLAIN_PATH.test(path)) return path;
  try {
    return new URL(url).pathname;
  } catch {
    // Deno.serve always passes an absolute URL; keep "/" for a hand-made request.
    return "/";
  }
}

/** Whether a client address is this machine's: loopback, or no network peer at all (in process). */
function isLocal(address: Deno.Addr | undefined): boolean {
  if (address === undefined || address.transport === "unix" || address.transport === "unixpacket") {
    return true;
  }
  if (!("hostname" in address)) return false;
  const host = address.hostname;
  return host.startsWith("127.") || host === "::1" || host.startsWith("::ffff:127.");
}

/** Compares two strings in time that depends only on their lengths. */
function sameSecret(given: string, expected: string): boolean {
  if (given.length !== expected.length) return false;
  let difference = 0;
  for (let i = 0; i < given.length; i++) difference |= given.charCodeAt(i) ^ expected.charCodeAt(i);
  return difference === 0;
}

/**
 * Builds the API.
 *
 * @param options The model provider, app version, limits, logger and metrics.
 * @returns The request handler and the reload action.
 *
 * @example Usage
 * ```ts
 * import { createApi } from "./handler.ts";
 * import { staticModelProvider } from "./model_provider.ts";
 * const api = createApi({ provider: staticModelProvider(undefined), appVersion: "0.1.0" });
 * const response = await api.handler(new Request("http://localhost/health"));
 * response.status; // 200
 * ```
 */
export function createApi(options: ApiOptions): Api {
  const { provider, appVersion, log } = options;
  const limits: ApiLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const metrics = options.metrics ?? new ApiMetrics();
  const now = options.now ?? (() => performance.now());
  const requestLog = (options.accessLog ?? true) ? options.requestLog ?? log : undefined;
  const maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  const reloadToken = options.reload?.token;
  const reloadIntervalMs = options.reload?.minIntervalMs ?? DEFAULT_RELOAD_INTERVAL_MS;
  let lastHttpReload = Number.NEGATIVE_INFINITY;
  const deadlines = new Deadlines();
  const page = renderPage({ ...limits, appVersion });

  function requireModel(): LoadedModel {
    const model = provider.current();
    if (!model) {
      throw new ApiError(
        503,
        "TEMPORARILY_UNAVAILABLE",
        "no model is loaded yet; retry when GET /ready answers 200",
        { "retry-after": "5" },
      );
    }
    return model;
  }

  /** Scores reviews in order; a batch goes to the predictor's threads when it has them. */
  async function score(model: LoadedModel, reviews: ReviewInput[]): Promise<PredictionLike[]> {
    const predictor = model.predictor;
    let predictions: PredictionLike[];
    if (reviews.length > 1 && predictor.predictBatch) {
      predictions = await predictor.predictBatch(reviews.map((r) => ({ title: r.title, text: r.message })));
    } else {
      predictions = reviews.map((review) => predictor.predict({ title: review.title, text: review.message }));
    }
    metrics.countPredictions(predictions.length);
    return predictions;
  }

  /** The explanation of each review, or a 400 when the model cannot explain. */
  function explain(model: LoadedModel, reviews: ReviewInput[]): ExplanationJson[] {
    const { predictor } = model;
    if (!predictor.explain || predictor.explainable === false) {
      throw new ApiError(
        400,
        "BAD_REQUEST",
        `${model.name} version ${model.version} cannot explain its predictions (a model saved before explanations); ask without "explain" or retrain it`,
      );
    }
    return reviews.map((review) =>
      explanationJson(
        predictor.explain!({ title: review.title, text: review.message }),
        EXPLANATION_TOP_FEATURES,
      )
    );
  }

  async function reload(trigger: string): Promise<ReloadOutcome> {
    const started = now();
    try {
      const outcome = await provider.reload();
      metrics.countReload(outcome.status);
      log?.info(outcome.status === "loaded" ? "model loaded" : "model unchanged", {
        trigger,
        model_name: outcome.model.name,
        model_version: outcome.model.version,
        run_id: outcome.model.runId ?? null,
        ...(outcome.model.requested ? { requested: outcome.model.requested } : {}),
        ...(outcome.previous ? { previous_version: outcome.previous.version } : {}),
        duration_ms: Math.round(now() - started),
      });
      return outcome;
    } catch (error) {
      metrics.countReload("failed");
      const serving = provider.current();
      log?.error("model reload failed", {
        trigger,
        error: errorMessage(error),
        serving_version: serving ? `${serving.name}/${serving.version}` : null,
      });
      throw error;
    }
  }

  /** Who may reload over HTTP: loopback, or the bearer token when one is configured. */
  function authorizeReload(request: Request, info: RequestInfo | undefined): void {
    if (reloadToken !== undefined) {
      const header = request.headers.get("authorization") ?? "";
      const given = header.startsWith("Bearer ") ? header.slice(7).trim() : "";
      if (!sameSecret(given, reloadToken)) {
        throw new ApiError(
          401,
          "UNAUTHENTICATED",
          "POST /reload needs the server's reload token: send Authorization: Bearer <token>",
          { "www-authenticate": 'Bearer realm="reload"' },
        );
      }
      return;
    }
    if (!isLocal(info?.remoteAddr)) {
      throw new ApiError(
        403,
        "PERMISSION_DENIED",
        "POST /reload is accepted from this machine only; set SERVE_RELOAD_TOKEN on the server to allow it with a bearer token, or send the server SIGHUP",
      );
    }
  }

  /** At most one reload started over HTTP per interval: each one queries MLflow. */
  function limitReloadRate(): void {
    const at = now();
    const wait = lastHttpReload + reloadIntervalMs - at;
    if (wait > 0) {
      const seconds = Math.max(1, Math.ceil(wait / 1000));
      throw new ApiError(
        429,
        "REQUEST_LIMIT_EXCEEDED",
        `a reload was started less than ${reloadIntervalMs / 1000} s ago; retry in ${seconds} s`,
        { "retry-after": String(seconds) },
      );
    }
    lastHttpReload = at;
  }

  const routeTable: [string, Partial<Record<string, RouteHandler>>, { shed?: boolean }?][] = [
    ["/", {
      GET: () => ({ response: new Response(page.html, { headers: page.headers }) }),
    }],
    ["/health", {
      GET: () => ({ json: { status: "ok" } }),
    }],
    ["/ready", {
      GET: () => ({ json: { status: "ready", model: modelJson(requireModel()) } }),
    }],
    ["/ping", {
      // MLflow's scoring server answers a bare newline; tools built for it only look at the status.
      GET: () => {
        requireModel();
        return { response: new Response("\n", { headers: { "content-type": JSON_TYPE } }) };
      },
    }],
    ["/version", {
      GET: () => {
        const model = provider.current();
        return {
          json: {
            model_name: model?.name ?? null,
            model_version: model?.version ?? null,
            run_id: model?.runId ?? null,
            model_requested: model?.requested ?? null,
            model_loaded_at: model?.loadedAt.toISOString() ?? null,
            model_explainable: model
              ? model.predictor.explain !== undefined && model.predictor.explainable !== false
              : null,
            model_card: model?.modelCard ?? null,
            app_version: appVersion,
            deno_version: Deno.version.deno,
          },
        };
      },
    }],
    ["/metrics", {
      GET: () => ({
        response: new Response(metrics.render(provider.current()), {
          headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
        }),
      }),
    }],
    ["/predict", {
      POST: async (request) => {
        const model = requireModel();
        const parsed = parsePredictBody(await readJsonBody(request, limits, deadlines), limits);
        const predictions = (await score(model, parsed.reviews)).map(predictionJson);
        if (parsed.explain || queryExplainParam(request.url)) {
          explain(model, parsed.reviews).forEach((explanation, i) =>
            predictions[i]!.explanation = explanation
          );
        }
        return { json: parsed.batch ? { predictions } : predictions[0], model, items: predictions.length };
      },
    }, { shed: true }],
    ["/invocations", {
      POST: async (request) => {
        const model = requireModel();
        const body = await readJsonBody(request, limits, deadlines);
        const reviews = parseInvocationsBody(body, limits);
        const explanations = invocationsExplainParam(body) || queryExplainParam(request.url)
          ? explain(model, reviews)
          : undefined;
        // The columns of the model's MLflow signature (MLmodel): label, polarity, probability.
        const predictions = (await score(model, reviews)).map((p, i) => ({
          label: p.label,
          polarity: p.polarity,
          probability: p.probability,
          ...(explanations ? { explanation: explanations[i] } : {}),
        }));
        return { json: { predictions }, model, items: reviews.length };
      },
    }, { shed: true }],
    ["/reload", {
      POST: async (request, info) => {
        authorizeReload(request, info);
        // The body is not used; drop it so the connection can be reused.
        await request.body?.cancel();
        limitReloadRate();
        let outcome: ReloadOutcome;
        try {
          outcome = await reload("POST /reload");
        } catch (error) {
          const serving = provider.current();
          const still = serving ? `; still serving ${serving.name} version ${serving.version}` : "";
          throw new ApiError(503, "TEMPORARILY_UNAVAILABLE", `reload failed: ${errorMessage(error)}${still}`);
        }
        return {
          json: {
            status: outcome.status,
            model: modelJson(outcome.model),
            previous: outcome.previous ? modelJson(outcome.previous) : null,
          },
        };
      },
    }],
  ];
  const routes = new Map<string, Route>(routeTable.map(([path, methods, flags]) => {
    const allow = Object.keys(methods);
    if (allow.includes("GET")) allow.push("HEAD");
    return [path, { methods, allow, shed: flags?.shed ?? false }];
  }));

  function errorResponse(error: ApiError, requestId: string): Response {
    return new Response(JSON.stringify({ error_code: error.code, message: error.message }), {
      status: error.status,
      headers: { ...error.headers, "content-type": JSON_TYPE, "x-request-id": requestId },
    });
  }

  /** Runs the route; throws an {@linkcode ApiError} for anything the client should be told. */
  async function answer(
    route: Route | undefined,
    path: string,
    method: string,
    request: Request,
    info: RequestInfo | undefined,
    requestId: string,
  ): Promise<{ response: Response; model?: LoadedModel; items: number }> {
    if (!route) {
      throw new ApiError(
        404,
        "ENDPOINT_NOT_FOUND",
        `no route ${JSON.stringify(path.slice(0, 100))}; see GET / for the page, POST /predict to score`,
      );
    }
    if (method === "OPTIONS") {
      return {
        response: new Response(null, {
          status: 204,
          headers: { allow: [...route.allow, "OPTIONS"].join(", ") },
        }),
        items: 0,
      };
    }
    const run = route.methods[method === "HEAD" ? "GET" : method];
    if (!run) {
      throw new ApiError(
        405,
        "METHOD_NOT_ALLOWED",
        `${path} does not accept ${method === "OTHER" ? "this method" : method}; use ${
          route.allow.join(" or ")
        }`,
        { allow: route.allow.join(", ") },
      );
    }
    if (route.shed && metrics.inFlight > maxInFlight) {
      metrics.countShed();
      throw new ApiError(
        503,
        "TEMPORARILY_UNAVAILABLE",
        `the server is handling its limit of ${maxInFlight} requests; retry in 1 s`,
        { "retry-after": "1" },
      );
    }
    const result = await run(request, info);
    if ("response" in result) {
      result.response.headers.set("x-request-id", requestId);
      return { response: result.response, items: 0 };
    }
    const { json, model } = result;
    const headers: Record<string, string> = { "content-type": JSON_TYPE, "x-request-id": requestId };
    if (model) headers["x-model-version"] = `${model.name}/${model.version}`;
    return { response: new Response(JSON.stringify(json), { headers }), model, items: result.items ?? 0 };
  }

  async function handler(request: Request, info?: RequestInfo): Promise<Response> {
    const started = now();
    metrics.requestStarted();
    const incomingId = request.headers.get("x-request-id");
    const requestId = incomingId !== null && REQUEST_ID.test(incomingId) ? incomingId : crypto.randomUUID();
    const method = KNOWN_METHODS.has(request.method) ? request.method : "OTHER";
    const path = pathOf(request.url);
    const route = routes.get(path);
    let response: Response;
    let items = 0;
    let scoredBy: LoadedModel | undefined;
    let failure: ApiError | undefined;
    try {
      ({ response, model: scoredBy, items } = await answer(route, path, method, request, info, requestId));
    } catch (error) {
      if (error instanceof ApiError) {
        failure = error;
      } else {
        log?.error("unexpected error", {
          request_id: requestId,
          path,
          error: error instanceof Error ? error.stack ?? error.message : String(error),
        });
        failure = new ApiError(
          500,
          "INTERNAL_ERROR",
          `internal error; the server log has the details under request id ${requestId}`,
        );
      }
      response = errorResponse(failure, requestId);
    }
    const elapsedMs = now() - started;
    metrics.observeRequest(route ? path : "unmatched", method, response.status, elapsedMs / 1000);
    if (requestLog) {
      // Built field by field, in a fixed order, so every line has the same shape.
      const fields: Record<string, unknown> = {
        request_id: requestId,
        method: request.method.slice(0, 16),
        path: path.slice(0, 200),
        status: response.status,
        duration_ms: Math.round(elapsedMs * 1000) / 1000,
      };
      if (scoredBy) {
        fields.items = items;
        fields.model_version = scoredBy.version;
      }
      const remote = info?.remoteAddr;
      if (remote && "hostname" in remote) fields.remote = remote.hostname;
      if (failure) {
        fields.error_code = failure.code;
        fields.error = failure.message;
      }
      requestLog.info("request", fields);
    }
    return response;
  }

  return { handler, reload, metrics };
}
