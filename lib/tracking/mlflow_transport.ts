/**
 * The HTTP transport of the MLflow client: base URL and credentials, per-attempt timeouts, retries with
 * exponential backoff and jitter for idempotent calls (and for any call whose connection was refused after
 * first contact), reconciliation of creates after a lost response, one-line errors without credentials,
 * and the first-contact `GET /health` check. It knows no endpoint but `/health`.
 *
 * @module
 */
import { PipelineError } from "../core/errors.ts";
import {
  isTransient,
  MlflowApiError,
  MlflowConnectionError,
  RETRY_STATUSES,
  unreachableHint,
} from "./mlflow_errors.ts";
import {
  type ArtifactBody,
  asObject,
  type CallOptions,
  type Json,
  type MlflowClientLog,
  type MlflowClientOptions,
  str,
} from "./mlflow_types.ts";

/** HTTP method of a request. */
export type Method = "GET" | "POST" | "PUT" | "DELETE" | "PATCH";
/** Query parameters; `undefined` ones are left out, arrays repeat the key. */
export type Query = Record<string, string | number | string[] | undefined>;

/** One request to the server. */
export interface RequestSpec {
  method: Method;
  path: string;
  query?: Query;
  json?: unknown;
  body?: ArtifactBody;
  /** Safe to send again after a lost response or a 5xx. */
  idempotent: boolean;
  /** Overrides the client's signal. */
  signal?: AbortSignal;
  /** Overrides the per-attempt timeout. */
  timeoutMs?: number;
  /** Skip the first-contact health check (the health check itself). */
  skipContact?: boolean;
  read: "json" | "bytes" | "stream";
}

/** What {@linkcode MlflowTransport.send} returns for each way of reading the answer. */
export type ReadResult<R extends RequestSpec["read"]> = R extends "json" ? Json
  : R extends "bytes" ? Uint8Array
  : ReadableStream<Uint8Array>;

const encoder = new TextEncoder();

function basicAuth(username: string, password: string): string {
  const bytes = encoder.encode(`${username}:${password}`);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return `Basic ${btoa(binary)}`;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The short reason of a network failure, e.g. "Connection refused", without the URL Deno adds. */
function networkReason(error: unknown, timedOutAfterMs: number | undefined): string {
  if (timedOutAfterMs !== undefined) return `no answer within ${timedOutAfterMs / 1000}s`;
  // Deno 2.9 throws TypeError("fetch failed") whose cause holds the detail: "error sending request
  // for url (...): client error (Connect): tcp connect error: Connection refused (os error 111)".
  let inner: unknown = error;
  while (inner instanceof Error && inner.cause instanceof Error) inner = inner.cause;
  const message = inner instanceof Error ? inner.message : String(inner);
  const last = (message.split(": ").at(-1) ?? message).replace(/\s*\(os error \d+\)\s*$/, "").trim();
  if (/dns error/i.test(message)) return `DNS lookup failed: ${last}`;
  return last || "connection failed";
}

/**
 * Whether a fetch failed before the request reached the server: the TCP connection was refused or the
 * name did not resolve. (A reset or a timeout may come after the server acted on the request.)
 */
function neverSent(error: unknown): boolean {
  for (let inner: unknown = error; inner instanceof Error; inner = inner.cause) {
    if (/tcp connect error|connection refused|dns error/i.test(inner.message)) return true;
  }
  return false;
}

function retryAfterMs(response: Response): number | undefined {
  const header = response.headers.get("retry-after");
  if (header === null) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/**
 * The HTTP side of {@linkcode MlflowClient}: one request with credentials, a timeout, retries with backoff
 * for what is safe to repeat, reconciliation for what is not, and the first-contact health check.
 */
export class MlflowTransport {
  /** The tracking URI as given (no credentials), for messages. */
  readonly trackingUri: string;
  readonly #base: string;
  /** `host:port` of the tracking server: artifact URIs naming another host are refused. */
  readonly host: string;
  readonly #auth: string | undefined;
  readonly #secrets: string[];
  readonly #fetch: typeof fetch;
  /** Retries after the first attempt of a call that is safe to repeat. */
  readonly retries: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #timeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #signal: AbortSignal | undefined;
  readonly #log: MlflowClientLog | undefined;
  #contact: Promise<void> | undefined;

  /**
   * @param options Tracking URI, credentials, and the knobs tests turn (fetch, retry, timeouts).
   * @throws {PipelineError} when the URI is not http(s) or holds credentials.
   */
  constructor(options: MlflowClientOptions) {
    let url: URL;
    try {
      url = new URL(options.trackingUri);
    } catch {
      throw new PipelineError(
        `MLflow tracking URI ${JSON.stringify(options.trackingUri)} is not a URL; use http://host:port`,
      );
    }
    if (url.username !== "" || url.password !== "") {
      throw new PipelineError(
        `MLflow tracking URI ${url.protocol}//***@${url.host}${url.pathname} must not hold credentials; ` +
          "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead",
      );
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new PipelineError(
        `MLflow tracking URI ${JSON.stringify(options.trackingUri)} must be http:// or https://`,
      );
    }
    this.#base = `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
    this.trackingUri = this.#base;
    this.host = url.host;
    const { username, password, token } = options;
    // MLflow's own precedence (rest_utils.http_request): Basic from username+password, else Bearer.
    const basic = username !== undefined && username !== "" && password !== undefined;
    this.#auth = basic ? basicAuth(username!, password!) : token ? `Bearer ${token}` : undefined;
    // Anything secret that could be echoed back in a server message or an exception.
    this.#secrets = [password, token, this.#auth?.split(" ")[1]]
      .filter((s): s is string => typeof s === "string" && s.length >= 3);
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.retries = Math.max(0, options.retry?.retries ?? 8);
    this.#baseDelayMs = Math.max(0, options.retry?.baseDelayMs ?? 500);
    this.#maxDelayMs = Math.max(this.#baseDelayMs, options.retry?.maxDelayMs ?? 30_000);
    this.#timeoutMs = options.timeoutMs ?? 120_000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
    this.#signal = options.signal;
    this.#log = options.log;
  }

  #redact(text: string): string {
    let out = text;
    for (const secret of this.#secrets) out = out.replaceAll(secret, "***");
    return out;
  }

  #unreachable(endpoint: string, reason: string, cause: unknown): MlflowConnectionError {
    return new MlflowConnectionError(
      this.#redact(
        `cannot reach MLflow at ${this.trackingUri} (${endpoint}: ${reason}); ${unreachableHint(this.host)}`,
      ),
      { cause },
    );
  }

  #backoffMs(attempt: number, retryAfter?: number): number {
    const exponential = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** attempt);
    // "Equal jitter": half fixed, half random, so concurrent stages don't retry in lockstep.
    const delay = exponential / 2 + Math.random() * (exponential / 2);
    return retryAfter === undefined ? delay : Math.min(this.#maxDelayMs, Math.max(delay, retryAfter));
  }

  /** Logs a retry and waits its backoff (at least `retryAfter` ms when the server asked for it). */
  async pause(endpoint: string, attempt: number, reason: string, signal?: AbortSignal, retryAfter?: number) {
    const delayMs = Math.round(this.#backoffMs(attempt, retryAfter));
    this.#log?.warn(`MLflow ${endpoint}: ${reason}; retrying`, {
      attempt: attempt + 2,
      of: this.retries + 1,
      delayMs,
    });
    await sleep(delayMs, signal);
  }

  async #ensureContact(signal: AbortSignal | undefined): Promise<void> {
    this.#contact ??= this.health({ signal }).catch((error) => {
      this.#contact = undefined; // let a later call try again
      throw error;
    });
    await this.#contact;
  }

  #url(path: string, query?: Query): string {
    let url = this.#base + path;
    if (query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(query)) {
        if (value === undefined) continue;
        if (Array.isArray(value)) { for (const v of value) params.append(key, v); }
        else params.append(key, String(value));
      }
      const text = params.toString();
      if (text) url += "?" + text;
    }
    return url;
  }

  async #errorFrom(response: Response, endpoint: string): Promise<MlflowApiError> {
    const text = await response.text().catch(() => "");
    const status = response.status;
    let body: Json | undefined;
    try {
      const parsed = JSON.parse(text);
      if (parsed !== null && typeof parsed === "object") body = parsed as Json;
    } catch { /* not JSON: a proxy, the host check, basic auth or an unknown route */ }
    const serverMessage = str(body?.message ?? body?.detail ?? text).split("\n")[0]!.trim().slice(0, 300);
    const at = `MLflow at ${this.trackingUri}`;
    let errorCode = typeof body?.error_code === "string" ? body.error_code : "";
    let message: string;
    if (status === 401) {
      errorCode ||= "UNAUTHENTICATED";
      message = this.#auth
        ? `${at} rejected the credentials (401 on ${endpoint}); check MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN`
        : `${at} requires authentication (401 on ${endpoint}); set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)`;
    } else if (status === 403 && /invalid host header/i.test(text)) {
      errorCode ||= "PERMISSION_DENIED";
      message = `${at} refused the Host header "${this.host}" (403); ` +
        `start the server with --allowed-hosts including ${this.host} (make mlflow does)`;
    } else if (status === 404 && !errorCode && body?.detail === undefined) {
      errorCode = "ENDPOINT_NOT_FOUND";
      message = `${at} has no endpoint ${endpoint} (404); is it an MLflow 3 tracking server?`;
    } else if (status === 503 && !errorCode && endpoint.includes("mlflow-artifacts")) {
      errorCode = "TEMPORARILY_UNAVAILABLE";
      message = `${at} does not serve artifacts (503 on ${endpoint}); run the server with --serve-artifacts`;
    } else if (status >= 500 && endpoint.startsWith("PUT ") && endpoint.includes("mlflow-artifacts")) {
      // MLflow answers a failed artifact write (its disk full, its folder read-only) with a bare 500.
      errorCode ||= `HTTP_${status}`;
      message = `${at} could not store an artifact: ${endpoint} failed (${status} ${errorCode})${
        serverMessage ? `: ${serverMessage}` : ""
      }; the server's log says why, most often its artifact store (--artifacts-destination) is full or read-only`;
    } else {
      errorCode ||= `HTTP_${status}`;
      message = `${at}: ${endpoint} failed (${status} ${errorCode})${
        serverMessage ? `: ${serverMessage}` : ""
      }`;
    }
    return new MlflowApiError({ status, errorCode, message: this.#redact(message), endpoint });
  }

  /** Sends one request and reads its answer; see {@linkcode RequestSpec}. */
  async send<R extends RequestSpec["read"]>(spec: RequestSpec & { read: R }): Promise<ReadResult<R>> {
    const signal = spec.signal ?? this.#signal;
    if (!spec.skipContact) await this.#ensureContact(signal);
    const endpoint = `${spec.method} ${spec.path}`;
    const url = this.#url(spec.path, spec.query);
    const headers = new Headers({ Accept: "application/json" });
    if (this.#auth) headers.set("Authorization", this.#auth);
    // A bare stream can be sent once only; everything else can be replayed.
    const replayable = !(spec.body instanceof ReadableStream);
    if (spec.json !== undefined) headers.set("Content-Type", "application/json");
    else if (spec.body !== undefined) headers.set("Content-Type", "application/octet-stream");
    const retries = spec.idempotent && replayable ? this.retries : 0;
    // A request whose connection was refused never reached the server, so even a create can be sent
    // again: this is what carries a stage through an MLflow restart. Only after first contact, though:
    // before it, a refused connection means a wrong URI or a server that is not running, which must
    // fail in seconds (the health check).
    const unsentRetries = replayable && !spec.skipContact ? this.retries : 0;
    const timeoutMs = spec.timeoutMs ?? this.#timeoutMs;

    for (let attempt = 0;; attempt++) {
      const timeout = new AbortController();
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        timeout.abort(new DOMException("timed out", "TimeoutError"));
      }, timeoutMs);
      const signals = signal ? [timeout.signal, signal] : [timeout.signal];
      let response: Response;
      try {
        let body: BodyInit | undefined;
        if (spec.json !== undefined) body = JSON.stringify(spec.json);
        else if (typeof spec.body === "function") body = await spec.body();
        else body = spec.body as BodyInit | undefined;
        response = await this.#fetch(url, {
          method: spec.method,
          headers,
          body,
          signal: AbortSignal.any(signals),
        });
        if (response.ok) {
          if (spec.read === "stream") {
            // The caller reads the body at its own pace; only the wait for headers is limited.
            clearTimeout(timer);
            if (response.body === null) return new Blob([]).stream() as ReadResult<R>;
            return response.body as ReadResult<R>;
          }
          if (spec.read === "bytes") {
            const bytes = new Uint8Array(await response.arrayBuffer());
            clearTimeout(timer);
            return bytes as ReadResult<R>;
          }
          const text = await response.text();
          clearTimeout(timer);
          if (text.trim() === "") return {} as ReadResult<R>;
          try {
            return asObject(JSON.parse(text)) as ReadResult<R>;
          } catch {
            throw new MlflowApiError({
              status: response.status,
              errorCode: "INVALID_RESPONSE",
              message: `MLflow at ${this.trackingUri} answered ${endpoint} with invalid JSON`,
              endpoint,
            });
          }
        }
      } catch (error) {
        clearTimeout(timer);
        if (error instanceof MlflowApiError) throw error;
        if (signal?.aborted) throw signal.reason;
        // A missing --allow-net grant is a configuration error, not a network blip: never retry it.
        if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
          throw error;
        }
        const reason = networkReason(error, timedOut ? timeoutMs : undefined);
        if (attempt < retries || (!timedOut && attempt < unsentRetries && neverSent(error))) {
          await this.pause(endpoint, attempt, reason, signal);
          continue;
        }
        throw this.#unreachable(endpoint, reason, error);
      }
      if (RETRY_STATUSES.has(response.status) && attempt < retries) {
        clearTimeout(timer);
        await response.body?.cancel().catch(() => {});
        await this.pause(endpoint, attempt, `HTTP ${response.status}`, signal, retryAfterMs(response));
        continue;
      }
      // The timer still runs while the error body is read, so a stalled body cannot hang the stage.
      const failure = await this.#errorFrom(response, endpoint);
      clearTimeout(timer);
      throw failure;
    }
  }

  /** Sends one request and reads its JSON answer. */
  json(method: Method, path: string, options: Omit<RequestSpec, "method" | "path" | "read">): Promise<Json> {
    return this.send({ method, path, read: "json", ...options });
  }

  /**
   * Runs a create call that must not be repeated blindly: after a transient failure it first asks
   * `reconcile` whether the server did create the thing, and only re-sends when it did not.
   */
  async createReconciled<T>(
    create: () => Promise<T>,
    reconcile: () => Promise<T | undefined>,
    endpoint: string,
    signal?: AbortSignal,
  ): Promise<T> {
    for (let attempt = 0;; attempt++) {
      try {
        return await create();
      } catch (error) {
        if (!isTransient(error) || attempt >= this.retries) throw error;
        await this.pause(endpoint, attempt, (error as Error).message, signal ?? this.#signal);
        const existing = await reconcile();
        if (existing !== undefined) return existing;
      }
    }
  }

  /**
   * Checks `GET /health` once, with the short connect timeout and no retries.
   *
   * @throws {MlflowConnectionError} naming the URI and `make mlflow` when nothing answers.
   */
  async health(options: CallOptions = {}): Promise<void> {
    try {
      await this.send({
        method: "GET",
        path: "/health",
        read: "bytes",
        idempotent: false,
        skipContact: true,
        timeoutMs: this.#connectTimeoutMs,
        signal: options.signal ?? this.#signal,
      });
    } catch (error) {
      if (error instanceof MlflowApiError && error.status !== 401 && error.status !== 403) {
        throw new MlflowConnectionError(
          `MLflow at ${this.trackingUri} answered GET /health with ${error.status}; ` +
            "is MLFLOW_TRACKING_URI an MLflow tracking server? (start one with `make mlflow`)",
          { cause: error },
        );
      }
      throw error;
    }
  }
}
