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
 * @module
 */
import type { Logger } from "../core/log.ts";
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
  /** Logger for request logs (one line per request), reloads and unexpected errors. */
  log?: Logger;
  /** Write one log line per request. @default {true} */
  accessLog?: boolean;
  /** Monotonic clock in milliseconds, for latencies. @default {performance.now} */
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

interface RouteResult {
  response: Response;
  /** Reviews scored by this request, for the log. */
  items?: number;
  /** The model that scored them (a reload may swap the provider's model meanwhile). */
  model?: LoadedModel;
}

type RouteHandler = (request: Request) => Promise<RouteResult> | RouteResult;

const KNOWN_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);
const REQUEST_ID = /^[\w.:\-]{1,128}$/;

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
  const accessLog = options.accessLog ?? true;
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

  function modelHeader(model: LoadedModel): Record<string, string> {
    return { "x-model-version": `${model.name}/${model.version}` };
  }

  function score(model: LoadedModel, reviews: ReviewInput[]): PredictionLike[] {
    const predictions = reviews.map((review) =>
      model.predictor.predict({ title: review.title, text: review.message })
    );
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

  const routes = new Map<string, Partial<Record<string, RouteHandler>>>([
    ["/", {
      GET: () => ({ response: new Response(page.html, { headers: page.headers }) }),
    }],
    ["/health", {
      GET: () => ({ response: Response.json({ status: "ok" }) }),
    }],
    ["/ready", {
      GET: () => {
        const model = requireModel();
        return { response: Response.json({ status: "ready", model: modelJson(model) }) };
      },
    }],
    ["/ping", {
      // MLflow's scoring server answers a bare newline; tools built for it only look at the status.
      GET: () => {
        requireModel();
        return { response: new Response("\n", { headers: { "content-type": "application/json" } }) };
      },
    }],
    ["/version", {
      GET: () => {
        const model = provider.current();
        return {
          response: Response.json({
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
          }),
        };
      },
    }],
    ["/metrics", {
      GET: () => {
        const model = provider.current();
        return {
          response: new Response(metrics.render(model), {
            headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
          }),
        };
      },
    }],
    ["/predict", {
      POST: async (request) => {
        const model = requireModel();
        const parsed = parsePredictBody(await readJsonBody(request, limits), limits);
        const predictions = score(model, parsed.reviews).map(predictionJson);
        if (parsed.explain || queryExplainParam(request.url)) {
          explain(model, parsed.reviews).forEach((explanation, i) =>
            predictions[i]!.explanation = explanation
          );
        }
        const body = parsed.batch ? { predictions } : predictions[0];
        const response = Response.json(body, { headers: modelHeader(model) });
        return { response, items: predictions.length, model };
      },
    }],
    ["/invocations", {
      POST: async (request) => {
        const model = requireModel();
        const body = await readJsonBody(request, limits);
        const reviews = parseInvocationsBody(body, limits);
        const explanations = invocationsExplainParam(body) || queryExplainParam(request.url)
          ? explain(model, reviews)
          : undefined;
        // The columns of the model's MLflow signature (MLmodel): label, polarity, probability.
        const predictions = score(model, reviews).map((p, i) => ({
          label: p.label,
          polarity: p.polarity,
          probability: p.probability,
          ...(explanations ? { explanation: explanations[i] } : {}),
        }));
        const response = Response.json({ predictions }, { headers: modelHeader(model) });
        return { response, items: reviews.length, model };
      },
    }],
    ["/reload", {
      POST: async (request) => {
        // The body is not used; drop it so the connection can be reused.
        await request.body?.cancel();
        let outcome: ReloadOutcome;
        try {
          outcome = await reload("POST /reload");
        } catch (error) {
          const serving = provider.current();
          const still = serving ? `; still serving ${serving.name} version ${serving.version}` : "";
          throw new ApiError(503, "TEMPORARILY_UNAVAILABLE", `reload failed: ${errorMessage(error)}${still}`);
        }
        return {
          response: Response.json({
            status: outcome.status,
            model: modelJson(outcome.model),
            previous: outcome.previous ? modelJson(outcome.previous) : null,
          }),
        };
      },
    }],
  ]);

  function errorResponse(error: ApiError, requestId: string): Response {
    return Response.json(
      { error_code: error.code, message: error.message },
      { status: error.status, headers: { ...error.headers, "x-request-id": requestId } },
    );
  }

  async function handler(request: Request, info?: RequestInfo): Promise<Response> {
    const started = now();
    metrics.requestStarted();
    const incomingId = request.headers.get("x-request-id");
    const requestId = incomingId !== null && REQUEST_ID.test(incomingId) ? incomingId : crypto.randomUUID();
    const method = KNOWN_METHODS.has(request.method) ? request.method : "OTHER";
    let path = "/";
    try {
      path = new URL(request.url).pathname;
    } catch { /* Deno.serve always passes an absolute URL; keep "/" for a hand-made request */ }
    const route = routes.get(path);
    let response: Response;
    let items = 0;
    let scoredBy: LoadedModel | undefined;
    let failure: ApiError | undefined;
    try {
      if (!route) {
        throw new ApiError(
          404,
          "ENDPOINT_NOT_FOUND",
          `no route ${JSON.stringify(path.slice(0, 100))}; see GET / for the page, POST /predict to score`,
        );
      }
      const allowed = Object.keys(route);
      if (allowed.includes("GET")) allowed.push("HEAD");
      if (method === "OPTIONS") {
        response = new Response(null, {
          status: 204,
          headers: { allow: [...allowed, "OPTIONS"].join(", ") },
        });
      } else {
        const run = route[method === "HEAD" ? "GET" : method];
        if (!run) {
          throw new ApiError(
            405,
            "METHOD_NOT_ALLOWED",
            `${path} does not accept ${method === "OTHER" ? "this method" : method}; use ${
              allowed.join(" or ")
            }`,
            { allow: allowed.join(", ") },
          );
        }
        const result = await run(request);
        response = result.response;
        items = result.items ?? 0;
        scoredBy = result.model;
        response.headers.set("x-request-id", requestId);
      }
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
    const routeLabel = route ? path : "unmatched";
    metrics.observeRequest(routeLabel, method, response.status, elapsedMs / 1000);
    if (accessLog && log) {
      const remote = info?.remoteAddr;
      log.info("request", {
        request_id: requestId,
        method: request.method.slice(0, 16),
        path: path.slice(0, 200),
        status: response.status,
        duration_ms: Math.round(elapsedMs * 1000) / 1000,
        ...(scoredBy ? { items, model_version: scoredBy.version } : {}),
        ...(remote && "hostname" in remote ? { remote: remote.hostname } : {}),
        ...(failure ? { error_code: failure.code, error: failure.message } : {}),
      });
    }
    return response;
  }

  return { handler, reload, metrics };
}
