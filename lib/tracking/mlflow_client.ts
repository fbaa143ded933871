/**
 * A small typed client for the MLflow 3.x REST API over `fetch`: experiments, runs, batched logging,
 * proxied artifacts (`mlflow-artifacts:/…`) and the model registry.
 *
 * Why our own client: the npm `mlflow` package is MLflow 1.x era and unmaintained, and the official
 * TypeScript SDK covers tracing only. The REST surface the pipeline needs is small, and the parts
 * that matter (batch limits, value-length checks instead of silent truncation, retries that never
 * duplicate a run or a model version) need handling anyway.
 *
 * Behaviour worth knowing:
 * - The first request checks `GET /health` with a short timeout, so an unreachable server fails in
 *   seconds with one {@linkcode PipelineError} naming the URI and `make mlflow`.
 * - Idempotent calls (reads, `runs/update`, tags, aliases, artifact PUT/GET, log-batch without
 *   metrics) are retried on 408/429/5xx and connection errors with exponential backoff and jitter.
 *   Any call, creates included, is re-sent when its connection was refused after first contact: the
 *   request never reached the server (it is restarting), so a stage outlives an MLflow restart.
 *   Otherwise creates are never retried blindly: each is reconciled first (get-by-name, or a search
 *   for the client-generated tag {@linkcode REQUEST_ID_TAG}).
 * - Failures throw {@linkcode MlflowApiError} (a `PipelineError`) with MLflow's `error_code`;
 *   messages are one line and never contain credentials.
 * - Artifact paths from callers or from the server are never trusted as local paths: `..`,
 *   absolute paths and empty segments are refused.
 *
 * @example Usage
 * ```ts ignore
 * import { MlflowClient, withRun } from "./mlflow_client.ts";
 * const client = new MlflowClient({ trackingUri: "http://127.0.0.1:5500" });
 * const experiment = await client.getOrCreateExperiment("amazon-reviews-training");
 * await withRun(client, { experimentId: experiment.experimentId, runName: "train" }, async (run) => {
 *   await client.logBatch(run.info.runId, { params: { trees: 50 }, metrics: { accuracy: 0.91 } });
 *   await client.uploadArtifact(run.info.artifactUri, "model/forest.json", new TextEncoder().encode("{}"));
 * });
 * ```
 *
 * @module
 */
import { DEFAULT_HEARTBEAT_MS, HEARTBEAT_TAG, startHeartbeat } from "./run_heartbeat.ts";
import { PipelineError } from "../core/errors.ts";

// ---------------------------------------------------------------------------------------------------
// Limits and constants

/**
 * Limits the MLflow server applies (`mlflow/utils/validation.py`, 3.x). Lengths count Unicode code
 * points, as Python's `len()` does.
 */
export const MLFLOW_LIMITS: Readonly<{
  metricsPerBatch: number;
  paramsPerBatch: number;
  tagsPerBatch: number;
  entitiesPerBatch: number;
  batchBytes: number;
  keyLength: number;
  paramValueLength: number;
  tagValueLength: number;
  registryTagValueLength: number;
  experimentNameLength: number;
  datasetsPerCall: number;
  datasetNameLength: number;
  datasetDigestLength: number;
  datasetSourceLength: number;
  datasetSchemaLength: number;
  datasetProfileLength: number;
  inputTagKeyLength: number;
  inputTagValueLength: number;
  aliasLength: number;
}> = Object.freeze({
  metricsPerBatch: 1000,
  paramsPerBatch: 100,
  tagsPerBatch: 100,
  entitiesPerBatch: 1000,
  batchBytes: 1_000_000,
  keyLength: 250,
  paramValueLength: 6000,
  tagValueLength: 8000,
  registryTagValueLength: 100_000,
  experimentNameLength: 500,
  datasetsPerCall: 1000,
  datasetNameLength: 500,
  datasetDigestLength: 36,
  datasetSourceLength: 65_535,
  datasetSchemaLength: 1_048_575,
  datasetProfileLength: 16_777_215,
  inputTagKeyLength: 255,
  inputTagValueLength: 500,
  aliasLength: 255,
});

/**
 * Tag set on every run and model version this client creates: a random id per create call, so that
 * after a lost response the client can find what the server did create instead of creating a duplicate.
 */
export const REQUEST_ID_TAG = "pipeline.request_id";

/** HTTP statuses worth retrying (MLflow's Python client retries the same set). */
const RETRY_STATUSES = new Set([408, 429, 500, 502, 503, 504]);

const API = "/api/2.0/mlflow";
const ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts";

// ---------------------------------------------------------------------------------------------------
// Public types

/** Lifecycle status of a run. */
export type RunStatus = "RUNNING" | "SCHEDULED" | "FINISHED" | "FAILED" | "KILLED";

/** A key/value pair as MLflow sends it (params, tags). */
export interface KeyValue {
  key: string;
  value: string;
}

/** One metric point. */
export interface Metric {
  key: string;
  /** A double; NaN and ±Infinity are allowed. */
  value: number;
  /** Milliseconds since the epoch. @default {the time of the logBatch call} */
  timestamp?: number;
  /** Training step. @default {0} */
  step?: number;
}

/** A value accepted for a param or tag; numbers and booleans are sent as their string form. */
export type ParamValue = string | number | boolean;

/** An experiment. */
export interface Experiment {
  experimentId: string;
  name: string;
  artifactLocation: string;
  lifecycleStage: "active" | "deleted";
  tags: Record<string, string>;
}

/** Metadata of a run. */
export interface RunInfo {
  runId: string;
  runName: string;
  experimentId: string;
  status: RunStatus;
  startTime: number;
  endTime?: number;
  /** Root of the run's artifacts, e.g. `mlflow-artifacts:/1/<run_id>/artifacts`. */
  artifactUri: string;
  lifecycleStage: "active" | "deleted";
}

/** A run with its latest metric values, params and tags. */
export interface Run {
  info: RunInfo;
  data: {
    metrics: Record<string, number>;
    params: Record<string, string>;
    tags: Record<string, string>;
  };
}

/** One page of {@linkcode MlflowClient.searchRuns}. */
export interface RunsPage {
  runs: Run[];
  nextPageToken?: string;
}

/** An entry of an artifact listing. */
export interface FileInfo {
  /** Path relative to the artifact URI that was listed, `/`-separated. */
  path: string;
  isDir: boolean;
  fileSize?: number;
}

/** A registered model. */
export interface RegisteredModel {
  name: string;
  description: string;
  tags: Record<string, string>;
  /** Alias → version number. */
  aliases: Record<string, number>;
}

/** A model version of the registry. */
export interface ModelVersion {
  name: string;
  version: number;
  source: string;
  runId?: string;
  status: string;
  description: string;
  tags: Record<string, string>;
  aliases: string[];
  creationTimestamp: number;
  lastUpdatedTimestamp: number;
}

/** One page of {@linkcode MlflowClient.searchModelVersions}. */
export interface ModelVersionsPage {
  modelVersions: ModelVersion[];
  nextPageToken?: string;
}

/** A dataset logged as a run input (`runs/log-inputs`). */
export interface DatasetInput {
  /** ≤500 characters. */
  name: string;
  /** ≤36 characters, e.g. the first 36 hex digits of a SHA-256. */
  digest: string;
  /** E.g. `"local"`, `"http"`. */
  sourceType: string;
  /** Where the data came from; an object is sent as JSON. ≤65535 characters. */
  source: string | Record<string, unknown>;
  /** Optional schema; an object is sent as JSON. */
  schema?: string | Record<string, unknown>;
  /** Optional profile (row counts...); an object is sent as JSON. */
  profile?: string | Record<string, unknown>;
  /** Value of the `mlflow.data.context` input tag, e.g. `"training"`, `"evaluation"`. */
  context?: string;
  /** More input tags (key ≤255, value ≤500). */
  tags?: Record<string, string>;
}

/** Body of an artifact upload: bytes and factories can be re-sent on a retry, a bare stream cannot. */
export type ArtifactBody =
  | Uint8Array
  | string
  | ReadableStream<Uint8Array>
  | (() => ReadableStream<Uint8Array> | Promise<ReadableStream<Uint8Array>>);

/** Backoff settings for retried calls. */
export interface RetryOptions {
  /**
   * Retries after the first attempt. @default {8}: with the default delays that is at least 45 s of
   * waiting (at most 92 s), longer than a restart of the MLflow server (up to 25 s measured for MLflow
   * 3.17 with SQLite on 2 busy cores), so a stage survives one.
   */
  retries?: number;
  /** Delay before the first retry; it doubles each time, with jitter. @default {500} */
  baseDelayMs?: number;
  /** Longest delay between two attempts (also caps `Retry-After`). @default {30000} */
  maxDelayMs?: number;
}

/** Where the client reports retries; a stage passes its logger. */
export interface MlflowClientLog {
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/** Options of {@linkcode MlflowClient}. */
export interface MlflowClientOptions {
  /** `http(s)://host:port[/prefix]` of the tracking server, without credentials. */
  trackingUri: string;
  /** Basic auth user (with `password`); wins over `token`. */
  username?: string;
  /** Basic auth password. */
  password?: string;
  /** Bearer token, used when no username/password is given. */
  token?: string;
  /** The `fetch` to use; tests inject a fake. @default {globalThis.fetch} */
  fetch?: typeof fetch;
  /** Retry policy for idempotent calls. */
  retry?: RetryOptions;
  /** Limit per attempt, until the response body is read (until the headers for streamed downloads). @default {120000} */
  timeoutMs?: number;
  /** Limit of the first-contact `/health` check. @default {5000} */
  connectTimeoutMs?: number;
  /** Cancels every request (a stage passes its Ctrl-C signal). */
  signal?: AbortSignal;
  /** Receives one warning per retry. */
  log?: MlflowClientLog;
}

/** Options of one call that can outlive the client's signal. */
export interface CallOptions {
  /** Replaces the client's signal for this call (so a run can be marked KILLED after Ctrl-C). */
  signal?: AbortSignal;
}

// ---------------------------------------------------------------------------------------------------
// Errors

/** Fields of an {@linkcode MlflowApiError}. */
export interface MlflowApiErrorInit {
  /** HTTP status. */
  status: number;
  /** MLflow `error_code` (e.g. `RESOURCE_DOES_NOT_EXIST`), or one derived from the status for non-JSON bodies. */
  errorCode: string;
  /** The one-line message. */
  message: string;
  /** `METHOD /path` of the call, without host, query or credentials. */
  endpoint: string;
}

/**
 * MLflow answered with an error. Branch on `errorCode`, not on `status`: MLflow answers
 * `RESOURCE_ALREADY_EXISTS` with HTTP 400, for example.
 */
export class MlflowApiError extends PipelineError {
  /** HTTP status. */
  readonly status: number;
  /** MLflow `error_code`, e.g. `RESOURCE_DOES_NOT_EXIST`. */
  readonly errorCode: string;
  /** `METHOD /path` of the call. */
  readonly endpoint: string;

  /** @param init Status, error code, message and endpoint. */
  constructor(init: MlflowApiErrorInit) {
    super(init.message);
    this.name = "MlflowApiError";
    this.status = init.status;
    this.errorCode = init.errorCode;
    this.endpoint = init.endpoint;
  }
}

/** The server could not be reached (refused, DNS, timeout, reset). */
export class MlflowConnectionError extends PipelineError {
  /** @param message One line naming the URI and the remedy. @param options The underlying error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MlflowConnectionError";
  }
}

/** Whether an error is MLflow's "not found" (a missing experiment, run, model version or artifact). */
export function isNotFound(error: unknown): error is MlflowApiError {
  return error instanceof MlflowApiError &&
    (error.errorCode === "RESOURCE_DOES_NOT_EXIST" || error.errorCode === "NOT_FOUND");
}

function isTransient(error: unknown): boolean {
  return error instanceof MlflowConnectionError ||
    (error instanceof MlflowApiError && RETRY_STATUSES.has(error.status));
}

// ---------------------------------------------------------------------------------------------------
// Validation helpers

function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

// Python's `\w` on str is Unicode-aware: letters, digits and "_" (validate_param_and_metric_name).
const KEY_PATTERN = /^[\/\p{L}\p{N}_.\- :]*$/u;

/**
 * Checks a metric, param or tag key as the server does (`^[/\w.\- :]*$`, ≤250 characters, a
 * normalised path: no empty, `.` or `..` segment, no leading or trailing `/`).
 *
 * @param kind "metric", "param" or "tag", for the message.
 * @param key The key.
 * @throws {PipelineError} naming the key and the rule.
 */
export function validateKey(kind: string, key: string): void {
  if (typeof key !== "string" || key === "") throw new PipelineError(`MLflow ${kind} key must not be empty`);
  const shown = JSON.stringify(key.length > 60 ? key.slice(0, 60) + "…" : key);
  if (codePoints(key) > MLFLOW_LIMITS.keyLength) {
    throw new PipelineError(
      `MLflow ${kind} key ${shown} is ${codePoints(key)} characters; the limit is ${MLFLOW_LIMITS.keyLength}`,
    );
  }
  if (!KEY_PATTERN.test(key)) {
    throw new PipelineError(
      `MLflow ${kind} key ${shown} may only contain letters, digits, "_", "-", ".", " ", ":" and "/"`,
    );
  }
  const segments = key.split("/");
  if (segments.some((s) => s === "" || s === "." || s === "..")) {
    throw new PipelineError(
      `MLflow ${kind} key ${shown} must be a normalised path (no leading, trailing or double "/", no "." or "..")`,
    );
  }
}

function checkLength(what: string, value: string, limit: number, hint = ""): void {
  const length = codePoints(value);
  if (length > limit) {
    // MLflow would silently truncate it (MLFLOW_TRUNCATE_LONG_VALUES): refuse instead, loudly.
    throw new PipelineError(`${what} is ${length} characters; MLflow keeps at most ${limit}${hint}`);
  }
}

/**
 * Splits a relative artifact path into safe segments.
 *
 * @param path A `/`-separated relative path, e.g. `model/forest.json`; `""` for the root when `allowEmpty`.
 * @param allowEmpty Whether the empty path (the root itself) is allowed.
 * @returns The segments.
 * @throws {PipelineError} on `..`, `.`, an absolute path, a backslash, an empty segment or a control character.
 */
export function safeArtifactSegments(path: string, allowEmpty = false): string[] {
  if (path === "") {
    if (allowEmpty) return [];
    throw new PipelineError("artifact path must not be empty");
  }
  const shown = JSON.stringify(path);
  if (path.startsWith("/") || /^[a-zA-Z]:/.test(path)) {
    throw new PipelineError(`artifact path ${shown} must be relative`);
  }
  // deno-lint-ignore no-control-regex
  if (path.includes("\\") || /[\u0000-\u001f\u007f]/.test(path)) {
    throw new PipelineError(`artifact path ${shown} must not contain backslashes or control characters`);
  }
  const segments = path.split("/");
  if (segments.some((s) => s === "" || s === "." || s === "..")) {
    throw new PipelineError(`artifact path ${shown} must not contain empty, "." or ".." segments`);
  }
  return segments;
}

/**
 * Quotes a value for an MLflow search filter. MLflow's filter grammar has no escape character, so a
 * value holding both quote kinds cannot be expressed.
 */
function filterValue(value: string): string {
  if (!value.includes("'")) return `'${value}'`;
  if (!value.includes('"')) return `"${value}"`;
  throw new PipelineError(`${JSON.stringify(value)} cannot be used in an MLflow search filter`);
}

/** Checks an alias name as the server does (`^[\w-]+$`, ≤255, not `latest`, not `v<digits>`). */
export function validateAlias(alias: string): void {
  if (!/^[\p{L}\p{N}_\-]+$/u.test(alias) || codePoints(alias) > MLFLOW_LIMITS.aliasLength) {
    throw new PipelineError(
      `model alias ${JSON.stringify(alias)} must be 1-255 letters, digits, "_" or "-"`,
    );
  }
  if (alias.toLowerCase() === "latest" || /^[vV]\d+$/.test(alias)) {
    throw new PipelineError(`model alias ${JSON.stringify(alias)} is reserved by MLflow`);
  }
}

function toRecord(entries: unknown): Record<string, string> {
  const record: Record<string, string> = {};
  if (Array.isArray(entries)) {
    for (const entry of entries as { key?: string; value?: string }[]) {
      if (typeof entry?.key === "string") record[entry.key] = String(entry.value ?? "");
    }
  }
  return record;
}

function toKeyValues(entries: Record<string, ParamValue> | KeyValue[] | undefined): KeyValue[] {
  if (entries === undefined) return [];
  if (Array.isArray(entries)) return entries.map(({ key, value }) => ({ key, value: String(value) }));
  return Object.entries(entries).map(([key, value]) => ({ key, value: String(value) }));
}

/** Proto-JSON doubles: NaN and infinities travel as strings, since `JSON.stringify(NaN)` is `null`. */
function encodeDouble(value: number): number | string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "Infinity";
  if (value === -Infinity) return "-Infinity";
  return value;
}

function decodeDouble(value: unknown): number {
  if (typeof value === "number") return value;
  if (value === "NaN") return NaN;
  if (value === "Infinity") return Infinity;
  if (value === "-Infinity") return -Infinity;
  return Number(value);
}

// ---------------------------------------------------------------------------------------------------
// Response mapping (MLflow omits unset fields and empty arrays: default them here)

type Json = Record<string, unknown>;

function asObject(value: unknown): Json {
  return value !== null && typeof value === "object" ? value as Json : {};
}

function str(value: unknown, fallback = ""): string {
  return typeof value === "string" ? value : value === undefined || value === null ? fallback : String(value);
}

function num(value: unknown): number {
  return typeof value === "number" ? value : Number(value ?? 0);
}

function mapExperiment(raw: unknown): Experiment {
  const e = asObject(raw);
  return {
    experimentId: str(e.experiment_id),
    name: str(e.name),
    artifactLocation: str(e.artifact_location),
    lifecycleStage: e.lifecycle_stage === "deleted" ? "deleted" : "active",
    tags: toRecord(e.tags),
  };
}

function mapRunInfo(raw: unknown): RunInfo {
  const i = asObject(raw);
  const info: RunInfo = {
    runId: str(i.run_id ?? i.run_uuid),
    runName: str(i.run_name),
    experimentId: str(i.experiment_id),
    status: str(i.status, "RUNNING") as RunStatus,
    startTime: num(i.start_time),
    artifactUri: str(i.artifact_uri),
    lifecycleStage: i.lifecycle_stage === "deleted" ? "deleted" : "active",
  };
  if (i.end_time !== undefined) info.endTime = num(i.end_time);
  return info;
}

function mapRun(raw: unknown): Run {
  const r = asObject(raw);
  const data = asObject(r.data);
  const metrics: Record<string, number> = {};
  if (Array.isArray(data.metrics)) {
    for (const m of data.metrics as Json[]) metrics[str(m.key)] = decodeDouble(m.value);
  }
  return {
    info: mapRunInfo(r.info),
    data: { metrics, params: toRecord(data.params), tags: toRecord(data.tags) },
  };
}

function mapModelVersion(raw: unknown): ModelVersion {
  const v = asObject(raw);
  const version: ModelVersion = {
    name: str(v.name),
    version: Number(v.version),
    source: str(v.source),
    status: str(v.status, "READY"),
    description: str(v.description),
    tags: toRecord(v.tags),
    aliases: Array.isArray(v.aliases) ? (v.aliases as unknown[]).map((a) => str(a)) : [],
    creationTimestamp: num(v.creation_timestamp),
    lastUpdatedTimestamp: num(v.last_updated_timestamp),
  };
  if (typeof v.run_id === "string" && v.run_id !== "") version.runId = v.run_id;
  return version;
}

function mapRegisteredModel(raw: unknown): RegisteredModel {
  const m = asObject(raw);
  const aliases: Record<string, number> = {};
  if (Array.isArray(m.aliases)) {
    for (const a of m.aliases as Json[]) aliases[str(a.alias)] = Number(a.version);
  }
  return { name: str(m.name), description: str(m.description), tags: toRecord(m.tags), aliases };
}

// ---------------------------------------------------------------------------------------------------
// The client

type Method = "GET" | "POST" | "PUT" | "DELETE" | "PATCH";
type Query = Record<string, string | number | string[] | undefined>;

interface RequestSpec {
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

type ReadResult<R extends RequestSpec["read"]> = R extends "json" ? Json
  : R extends "bytes" ? Uint8Array
  : ReadableStream<Uint8Array>;

const encoder = new TextEncoder();

function utf8Length(text: string): number {
  // Cheaper than encoding: count UTF-8 bytes per UTF-16 unit (surrogate pairs make 4 bytes in total).
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

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
 * A typed MLflow REST client. One instance per stage; it is cheap and holds no connection state
 * besides "the server answered once".
 */
export class MlflowClient {
  /** The tracking URI as given (no credentials), for messages. */
  readonly trackingUri: string;
  readonly #base: string;
  readonly #host: string;
  readonly #auth: string | undefined;
  readonly #secrets: string[];
  readonly #fetch: typeof fetch;
  readonly #retries: number;
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
    this.#host = url.host;
    const { username, password, token } = options;
    // MLflow's own precedence (rest_utils.http_request): Basic from username+password, else Bearer.
    const basic = username !== undefined && username !== "" && password !== undefined;
    this.#auth = basic ? basicAuth(username!, password!) : token ? `Bearer ${token}` : undefined;
    // Anything secret that could be echoed back in a server message or an exception.
    this.#secrets = [password, token, this.#auth?.split(" ")[1]]
      .filter((s): s is string => typeof s === "string" && s.length >= 3);
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#retries = Math.max(0, options.retry?.retries ?? 8);
    this.#baseDelayMs = Math.max(0, options.retry?.baseDelayMs ?? 500);
    this.#maxDelayMs = Math.max(this.#baseDelayMs, options.retry?.maxDelayMs ?? 30_000);
    this.#timeoutMs = options.timeoutMs ?? 120_000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
    this.#signal = options.signal;
    this.#log = options.log;
  }

  // -------------------------------------------------------------------------------------------------
  // Transport

  #redact(text: string): string {
    let out = text;
    for (const secret of this.#secrets) out = out.replaceAll(secret, "***");
    return out;
  }

  #unreachable(endpoint: string, reason: string, cause: unknown): MlflowConnectionError {
    return new MlflowConnectionError(
      this.#redact(
        `cannot reach MLflow at ${this.trackingUri} (${endpoint}: ${reason}); ` +
          "start a local server with `make mlflow` or set MLFLOW_TRACKING_URI to a running one",
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

  async #pause(endpoint: string, attempt: number, reason: string, signal?: AbortSignal, retryAfter?: number) {
    const delayMs = Math.round(this.#backoffMs(attempt, retryAfter));
    this.#log?.warn(`MLflow ${endpoint}: ${reason}; retrying`, {
      attempt: attempt + 2,
      of: this.#retries + 1,
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
      message = `${at} refused the Host header "${this.#host}" (403); ` +
        `start the server with --allowed-hosts including ${this.#host} (make mlflow does)`;
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

  async #send<R extends RequestSpec["read"]>(spec: RequestSpec & { read: R }): Promise<ReadResult<R>> {
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
    const retries = spec.idempotent && replayable ? this.#retries : 0;
    // A request whose connection was refused never reached the server, so even a create can be sent
    // again: this is what carries a stage through an MLflow restart. Only after first contact, though:
    // before it, a refused connection means a wrong URI or a server that is not running, which must
    // fail in seconds (the health check).
    const unsentRetries = replayable && !spec.skipContact ? this.#retries : 0;
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
          await this.#pause(endpoint, attempt, reason, signal);
          continue;
        }
        throw this.#unreachable(endpoint, reason, error);
      }
      if (RETRY_STATUSES.has(response.status) && attempt < retries) {
        clearTimeout(timer);
        await response.body?.cancel().catch(() => {});
        await this.#pause(endpoint, attempt, `HTTP ${response.status}`, signal, retryAfterMs(response));
        continue;
      }
      // The timer still runs while the error body is read, so a stalled body cannot hang the stage.
      const failure = await this.#errorFrom(response, endpoint);
      clearTimeout(timer);
      throw failure;
    }
  }

  #json(method: Method, path: string, options: Omit<RequestSpec, "method" | "path" | "read">): Promise<Json> {
    return this.#send({ method, path, read: "json", ...options });
  }

  /**
   * Runs a create call that must not be repeated blindly: after a transient failure it first asks
   * `reconcile` whether the server did create the thing, and only re-sends when it did not.
   */
  async #createReconciled<T>(
    create: () => Promise<T>,
    reconcile: () => Promise<T | undefined>,
    endpoint: string,
    signal?: AbortSignal,
  ): Promise<T> {
    for (let attempt = 0;; attempt++) {
      try {
        return await create();
      } catch (error) {
        if (!isTransient(error) || attempt >= this.#retries) throw error;
        await this.#pause(endpoint, attempt, (error as Error).message, signal ?? this.#signal);
        const existing = await reconcile();
        if (existing !== undefined) return existing;
      }
    }
  }

  // -------------------------------------------------------------------------------------------------
  // Health and experiments

  /**
   * Checks `GET /health` once, with the short connect timeout and no retries.
   *
   * @throws {MlflowConnectionError} naming the URI and `make mlflow` when nothing answers.
   */
  async health(options: CallOptions = {}): Promise<void> {
    try {
      await this.#send({
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

  /** Returns the experiment with this name (possibly a deleted one), or `undefined`. */
  async getExperimentByName(name: string): Promise<Experiment | undefined> {
    try {
      const body = await this.#json("GET", `${API}/experiments/get-by-name`, {
        query: { experiment_name: name },
        idempotent: true,
      });
      return mapExperiment(body.experiment);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /**
   * Returns the active experiment named `name`, creating it, or restoring it when it was deleted.
   *
   * @param name Experiment name (≤500 characters).
   * @param options Tags for a newly created experiment.
   */
  async getOrCreateExperiment(
    name: string,
    options: { tags?: Record<string, string> } = {},
  ): Promise<Experiment> {
    if (name.trim() === "") throw new PipelineError("MLflow experiment name must not be empty");
    checkLength(
      `MLflow experiment name ${JSON.stringify(name.slice(0, 40))}`,
      name,
      MLFLOW_LIMITS.experimentNameLength,
    );
    let experiment = await this.getExperimentByName(name);
    if (experiment === undefined) {
      const tags = toKeyValues(options.tags);
      experiment = await this.#createReconciled(
        async () => {
          try {
            const body = await this.#json("POST", `${API}/experiments/create`, {
              json: { name, tags },
              idempotent: false,
            });
            return {
              experimentId: str(body.experiment_id),
              name,
              artifactLocation: "",
              lifecycleStage: "active" as const,
              tags: options.tags ?? {},
            };
          } catch (error) {
            // Another stage created it between our get and create: use theirs.
            if (error instanceof MlflowApiError && error.errorCode === "RESOURCE_ALREADY_EXISTS") {
              const existing = await this.getExperimentByName(name);
              if (existing) return existing;
            }
            throw error;
          }
        },
        () => this.getExperimentByName(name),
        `POST ${API}/experiments/create`,
      );
    }
    if (experiment.lifecycleStage === "deleted") {
      // get-by-name returns a deleted experiment (its name stays taken), and runs cannot be created
      // in it: restoring is the only way to reuse the name.
      await this.#json("POST", `${API}/experiments/restore`, {
        json: { experiment_id: experiment.experimentId },
        idempotent: true,
      });
      this.#log?.warn(`restored deleted MLflow experiment "${name}"`, {
        experimentId: experiment.experimentId,
      });
      experiment = { ...experiment, lifecycleStage: "active" };
    }
    if (experiment.artifactLocation === "") {
      experiment = (await this.getExperimentByName(name)) ?? experiment;
    }
    return experiment;
  }

  // -------------------------------------------------------------------------------------------------
  // Runs

  /**
   * Creates a run (status RUNNING). Never creates two: after a lost response it searches for the
   * {@linkcode REQUEST_ID_TAG} it sent before trying again.
   *
   * @param options Experiment, optional run name, tags (e.g. `mlflow.source.name`, `mlflow.user`) and start time.
   * @returns The new run.
   */
  async createRun(options: {
    experimentId: string;
    runName?: string;
    tags?: Record<string, string> | KeyValue[];
    startTime?: number;
  }): Promise<Run> {
    const requestId = crypto.randomUUID();
    const tags = [...toKeyValues(options.tags), { key: REQUEST_ID_TAG, value: requestId }];
    for (const tag of tags) {
      validateKey("tag", tag.key);
      checkLength(`MLflow tag "${tag.key}"`, tag.value, MLFLOW_LIMITS.tagValueLength);
    }
    const json: Json = {
      experiment_id: options.experimentId,
      start_time: options.startTime ?? Date.now(),
      tags,
    };
    if (options.runName !== undefined) json.run_name = options.runName;
    const endpoint = `POST ${API}/runs/create`;
    return await this.#createReconciled(
      async () => mapRun((await this.#json("POST", `${API}/runs/create`, { json, idempotent: false })).run),
      async () => {
        const page = await this.searchRuns({
          experimentIds: [options.experimentId],
          filter: `tags.\`${REQUEST_ID_TAG}\` = '${requestId}'`,
          runViewType: "ALL",
          maxResults: 1,
        });
        return page.runs[0];
      },
      endpoint,
    );
  }

  /** Returns a run with its latest metrics, params and tags. @throws {MlflowApiError} `RESOURCE_DOES_NOT_EXIST`. */
  async getRun(runId: string): Promise<Run> {
    const body = await this.#json("GET", `${API}/runs/get`, { query: { run_id: runId }, idempotent: true });
    return mapRun(body.run);
  }

  /**
   * Returns every point of one metric of a run, following pages.
   *
   * @param runId The run.
   * @param key The metric key.
   * @returns Points in the order MLflow returns them (by step, then timestamp).
   */
  async getMetricHistory(runId: string, key: string): Promise<Required<Metric>[]> {
    const points: Required<Metric>[] = [];
    let pageToken: string | undefined;
    do {
      const body = await this.#json("GET", `${API}/metrics/get-history`, {
        query: { run_id: runId, metric_key: key, max_results: 25_000, page_token: pageToken },
        idempotent: true,
      });
      for (const m of Array.isArray(body.metrics) ? body.metrics as Json[] : []) {
        points.push({
          key: str(m.key),
          value: decodeDouble(m.value),
          timestamp: num(m.timestamp),
          step: num(m.step),
        });
      }
      pageToken = typeof body.next_page_token === "string" && body.next_page_token
        ? body.next_page_token
        : undefined;
    } while (pageToken !== undefined);
    return points;
  }

  /**
   * Searches runs (one page).
   *
   * @param options Experiments, a filter such as ``tags.`pipeline.stage` = 'train'``, ordering, page.
   */
  async searchRuns(options: {
    experimentIds: string[];
    filter?: string;
    orderBy?: string[];
    maxResults?: number;
    runViewType?: "ACTIVE_ONLY" | "DELETED_ONLY" | "ALL";
    pageToken?: string;
  }): Promise<RunsPage> {
    const json: Json = {
      experiment_ids: options.experimentIds,
      filter: options.filter ?? "",
      run_view_type: options.runViewType ?? "ACTIVE_ONLY",
      max_results: options.maxResults ?? 100,
      order_by: options.orderBy ?? [],
    };
    if (options.pageToken) json.page_token = options.pageToken;
    // A search is a read, so retrying its POST is safe.
    const body = await this.#json("POST", `${API}/runs/search`, { json, idempotent: true });
    const page: RunsPage = { runs: Array.isArray(body.runs) ? body.runs.map(mapRun) : [] };
    if (typeof body.next_page_token === "string" && body.next_page_token) {
      page.nextPageToken = body.next_page_token;
    }
    return page;
  }

  /**
   * Ends or renames a run.
   *
   * @param runId The run.
   * @param status New status, e.g. `"FINISHED"`.
   * @param options End time (default now for a terminal status), new run name, signal override.
   */
  async updateRun(
    runId: string,
    status: RunStatus,
    options: CallOptions & { endTime?: number; runName?: string } = {},
  ): Promise<RunInfo> {
    const json: Json = { run_id: runId, status };
    if (status !== "RUNNING" && status !== "SCHEDULED") json.end_time = options.endTime ?? Date.now();
    if (options.runName !== undefined) json.run_name = options.runName;
    const body = await this.#json("POST", `${API}/runs/update`, {
      json,
      idempotent: true,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return mapRunInfo(body.run_info);
  }

  /** Sets one run tag (last write wins, so it is retried). */
  async setTag(runId: string, key: string, value: string): Promise<void> {
    validateKey("tag", key);
    checkLength(`MLflow tag "${key}"`, value, MLFLOW_LIMITS.tagValueLength);
    await this.#json("POST", `${API}/runs/set-tag`, {
      json: { run_id: runId, key, value },
      idempotent: true,
    });
  }

  /**
   * Logs metrics, params and tags, split into as many `runs/log-batch` calls as MLflow's limits need
   * (≤1000 metrics, ≤100 params, ≤100 tags, ≤1 MB per request). Everything is validated before the
   * first request, so a bad key or an over-long value writes nothing.
   *
   * Params and tags go first, in requests without metrics: those are idempotent and retried. Metrics
   * append, so a metric request is never re-sent blindly: after a 5xx or a lost response the client reads
   * back which of its points the server stored and re-sends only the others (see `#logMetricsOnce`).
   *
   * @param runId The run.
   * @param batch Metrics (`{name: value}` or points with step/timestamp), params and tags.
   * @returns The number of requests sent.
   * @throws {PipelineError} for an invalid key, a param value over 6000 or a tag value over 8000
   *   characters (MLflow would silently truncate them), a duplicate param key, or a non-integer step.
   */
  async logBatch(
    runId: string,
    batch: {
      metrics?: Record<string, number> | Metric[];
      params?: Record<string, ParamValue> | KeyValue[];
      tags?: Record<string, ParamValue> | KeyValue[];
    },
  ): Promise<{ requests: number }> {
    const now = Date.now();
    const params = toKeyValues(batch.params);
    const seen = new Set<string>();
    for (const p of params) {
      validateKey("param", p.key);
      if (seen.has(p.key)) {
        throw new PipelineError(`MLflow param "${p.key}" is given twice; params are write-once`);
      }
      seen.add(p.key);
      checkLength(
        `MLflow param "${p.key}"`,
        p.value,
        MLFLOW_LIMITS.paramValueLength,
        "; log it as a tag or an artifact",
      );
    }
    // Tags: last write wins on the server, so keep only the last value of a repeated key.
    const tagMap = new Map<string, string>();
    for (const t of toKeyValues(batch.tags)) tagMap.set(t.key, t.value);
    const tags = [...tagMap].map(([key, value]) => ({ key, value }));
    for (const t of tags) {
      validateKey("tag", t.key);
      checkLength(`MLflow tag "${t.key}"`, t.value, MLFLOW_LIMITS.tagValueLength, "; log it as an artifact");
    }
    const rawMetrics: Metric[] = batch.metrics === undefined
      ? []
      : Array.isArray(batch.metrics)
      ? batch.metrics
      : Object.entries(batch.metrics).map(([key, value]) => ({ key, value }));
    const metrics = rawMetrics.map((m) => {
      validateKey("metric", m.key);
      if (typeof m.value !== "number") {
        throw new PipelineError(`MLflow metric "${m.key}" must be a number, got ${JSON.stringify(m.value)}`);
      }
      const timestamp = m.timestamp ?? now;
      const step = m.step ?? 0;
      if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
        throw new PipelineError(`MLflow metric "${m.key}" timestamp must be a non-negative integer (ms)`);
      }
      if (!Number.isSafeInteger(step)) {
        throw new PipelineError(`MLflow metric "${m.key}" step must be an integer`);
      }
      return { key: m.key, value: encodeDouble(m.value), timestamp, step };
    });

    const requests = [
      ...packBatches(runId, [], params, tags),
      ...packBatches(runId, metrics, [], []),
    ];
    for (const body of requests) {
      if (body.metrics.length === 0) {
        await this.#json("POST", `${API}/runs/log-batch`, { json: body, idempotent: true });
      } else {
        await this.#logMetricsOnce(runId, body);
      }
    }
    return { requests: requests.length };
  }

  /**
   * Sends a metric `log-batch` so that every point is stored exactly once. Metrics append, so a blind
   * re-send after a 5xx or a lost response could store them twice when the server had saved them before
   * failing. Instead, after such a failure the client reads the history of the batch's keys and re-sends
   * only the points not stored yet; a point is identified by MLflow's own key for it (key, value, timestamp,
   * step), which every point here carries explicitly.
   */
  async #logMetricsOnce(runId: string, body: BatchBody): Promise<void> {
    const endpoint = `POST ${API}/runs/log-batch`;
    let pending = body;
    for (let attempt = 0;; attempt++) {
      try {
        await this.#json("POST", `${API}/runs/log-batch`, { json: pending, idempotent: false });
        return;
      } catch (error) {
        const ambiguous = error instanceof MlflowConnectionError ||
          (error instanceof MlflowApiError && RETRY_STATUSES.has(error.status));
        if (!ambiguous || attempt >= this.#retries) throw error;
        await this.#pause(
          endpoint,
          attempt,
          `${(error as Error).message}; checking which metrics were stored`,
        );
      }
      const stored = new Map<string, number[]>();
      for (const key of new Set(pending.metrics.map((m) => m.key))) {
        for (const point of await this.getMetricHistory(runId, key)) {
          const id = `${point.key}\u0000${point.timestamp}\u0000${point.step}`;
          stored.set(id, [...(stored.get(id) ?? []), point.value]);
        }
      }
      const missing = pending.metrics.filter((m) => {
        const values = stored.get(`${m.key}\u0000${m.timestamp}\u0000${m.step}`) ?? [];
        const value = decodeDouble(m.value);
        return !values.some((candidate) => Object.is(candidate, value));
      });
      if (missing.length === 0) return;
      pending = { ...pending, metrics: missing };
    }
  }

  /**
   * Logs datasets as run inputs (`runs/log-inputs`), checking MLflow's size limits first.
   *
   * @param runId The run.
   * @param datasets The datasets (digest ≤36 characters).
   */
  async logInputs(runId: string, datasets: DatasetInput[]): Promise<void> {
    if (datasets.length === 0) return;
    if (datasets.length > MLFLOW_LIMITS.datasetsPerCall) {
      throw new PipelineError(`at most ${MLFLOW_LIMITS.datasetsPerCall} datasets per logInputs call`);
    }
    const asText = (v: string | Record<string, unknown>) => typeof v === "string" ? v : JSON.stringify(v);
    const body = datasets.map((d) => {
      const what = `MLflow dataset "${d.name.slice(0, 40)}"`;
      checkLength(`${what} name`, d.name, MLFLOW_LIMITS.datasetNameLength);
      checkLength(`${what} digest`, d.digest, MLFLOW_LIMITS.datasetDigestLength);
      const dataset: Json = {
        name: d.name,
        digest: d.digest,
        source_type: d.sourceType,
        source: asText(d.source),
      };
      checkLength(`${what} source`, dataset.source as string, MLFLOW_LIMITS.datasetSourceLength);
      if (d.schema !== undefined) {
        dataset.schema = asText(d.schema);
        checkLength(`${what} schema`, dataset.schema as string, MLFLOW_LIMITS.datasetSchemaLength);
      }
      if (d.profile !== undefined) {
        dataset.profile = asText(d.profile);
        checkLength(`${what} profile`, dataset.profile as string, MLFLOW_LIMITS.datasetProfileLength);
      }
      const tags = toKeyValues({ ...(d.context ? { "mlflow.data.context": d.context } : {}), ...d.tags });
      for (const t of tags) {
        checkLength(`${what} input tag key "${t.key.slice(0, 40)}"`, t.key, MLFLOW_LIMITS.inputTagKeyLength);
        checkLength(`${what} input tag "${t.key}"`, t.value, MLFLOW_LIMITS.inputTagValueLength);
      }
      return { tags, dataset };
    });
    await this.#json("POST", `${API}/runs/log-inputs`, {
      json: { run_id: runId, datasets: body },
      idempotent: false,
    });
  }

  // -------------------------------------------------------------------------------------------------
  // Artifacts (proxied through the tracking server: `--serve-artifacts`)

  /**
   * Maps an artifact URI plus a relative path to the server's artifact-proxy path.
   * `mlflow-artifacts:/P` → `/api/2.0/mlflow-artifacts/artifacts/P`. A `runs:/<id>/p` URI must be
   * resolved first with {@linkcode MlflowClient.resolveArtifactUri}.
   */
  #artifactSegments(artifactUri: string, relPath: string, allowEmpty: boolean): string[] {
    const match = /^mlflow-artifacts:(?:\/\/([^/]*))?(\/.*)?$/.exec(artifactUri);
    if (!match) {
      const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(artifactUri)?.[0] ?? "a path";
      throw new PipelineError(
        `artifact URI ${
          JSON.stringify(artifactUri)
        } uses ${scheme}; this client reads mlflow-artifacts:/ URIs ` +
          "(run the MLflow server with --serve-artifacts)",
      );
    }
    const [, authority, rootPath = ""] = match;
    if (authority && authority !== this.#host) {
      // Sending our credentials to a host named by server data would leak them.
      throw new PipelineError(
        `artifact URI ${JSON.stringify(artifactUri)} points at ${authority}, not at ${this.#host}`,
      );
    }
    const root = rootPath.replace(/^\/+|\/+$/g, "");
    return [...safeArtifactSegments(root, true), ...safeArtifactSegments(relPath, allowEmpty)];
  }

  #artifactPath(segments: string[]): string {
    return `${ARTIFACTS_API}/${segments.map(encodeURIComponent).join("/")}`;
  }

  /**
   * Turns a `runs:/<run_id>/<path>` URI into the run's `mlflow-artifacts:/…` URI; other URIs are
   * returned unchanged. (A model version registered with a `runs:/` source keeps that source.)
   */
  async resolveArtifactUri(uri: string): Promise<string> {
    const match = /^runs:\/([^/]+)(?:\/(.*))?$/.exec(uri);
    if (!match) return uri;
    const [, runId, rest = ""] = match;
    const run = await this.getRun(runId!);
    const tail = safeArtifactSegments(rest.replace(/\/+$/, ""), true);
    return [run.info.artifactUri.replace(/\/+$/, ""), ...tail].join("/");
  }

  /**
   * Uploads one file (`PUT`, raw bytes). Bytes, strings and stream factories are retried on
   * transient errors (a PUT of the same bytes overwrites); a bare stream is sent once.
   *
   * @param artifactUri Usually the run's `artifactUri`.
   * @param relPath Path under it, e.g. `model/forest.json`.
   * @param body The content.
   */
  async uploadArtifact(artifactUri: string, relPath: string, body: ArtifactBody): Promise<void> {
    const segments = this.#artifactSegments(artifactUri, relPath, false);
    await this.#send({
      method: "PUT",
      path: this.#artifactPath(segments),
      body: typeof body === "string" ? encoder.encode(body) : body,
      idempotent: true,
      read: "json",
    });
  }

  /**
   * Lists one directory level.
   *
   * @param artifactUri The root, e.g. a run's `artifactUri` or a model version's download URI.
   * @param relPath A directory under it; `""` for the root.
   * @returns Entries whose `path` is relative to `artifactUri`.
   * @throws {PipelineError} when the server lists a name that is not a single safe path segment.
   */
  async listArtifacts(artifactUri: string, relPath = ""): Promise<FileInfo[]> {
    const segments = this.#artifactSegments(artifactUri, relPath, true);
    const body = await this.#json("GET", ARTIFACTS_API, {
      query: { path: segments.join("/") },
      idempotent: true,
    });
    const prefix = relPath === "" ? "" : `${relPath}/`;
    const files = Array.isArray(body.files) ? body.files as Json[] : [];
    return files.map((f) => {
      const name = str(f.path);
      // The proxy lists base names; anything else would let a server steer where we write.
      if (name.includes("/") || name.includes("\\")) {
        throw new PipelineError(
          `MLflow listed an unsafe artifact name ${JSON.stringify(name)} under "${relPath}"`,
        );
      }
      try {
        safeArtifactSegments(name);
      } catch {
        throw new PipelineError(
          `MLflow listed an unsafe artifact name ${JSON.stringify(name)} under "${relPath}"`,
        );
      }
      const info: FileInfo = { path: prefix + name, isDir: f.is_dir === true };
      if (f.file_size !== undefined) info.fileSize = num(f.file_size);
      return info;
    });
  }

  /**
   * Opens one artifact as a stream (for large files). The request is retried until the headers
   * arrive; the body is read at the caller's pace.
   */
  async openArtifact(artifactUri: string, relPath: string): Promise<ReadableStream<Uint8Array>> {
    const segments = this.#artifactSegments(artifactUri, relPath, false);
    return await this.#send({
      method: "GET",
      path: this.#artifactPath(segments),
      idempotent: true,
      read: "stream",
    });
  }

  /** Downloads one artifact into memory. @throws {MlflowApiError} `RESOURCE_DOES_NOT_EXIST` when missing. */
  async downloadArtifact(artifactUri: string, relPath: string): Promise<Uint8Array> {
    const segments = this.#artifactSegments(artifactUri, relPath, false);
    return await this.#send({
      method: "GET",
      path: this.#artifactPath(segments),
      idempotent: true,
      read: "bytes",
    });
  }

  /**
   * Downloads a directory tree into memory.
   *
   * @param artifactUri The root, e.g. a model version's download URI.
   * @param relPath A directory under it; `""` for the root.
   * @param options Caps that protect memory from a surprising tree.
   * @returns Map from path relative to `relPath` (`/`-separated, validated) to bytes.
   */
  async downloadArtifactDir(
    artifactUri: string,
    relPath = "",
    options: { maxFiles?: number; maxBytes?: number; maxDepth?: number } = {},
  ): Promise<Map<string, Uint8Array>> {
    const maxFiles = options.maxFiles ?? 10_000;
    const maxBytes = options.maxBytes ?? 2 ** 31;
    const maxDepth = options.maxDepth ?? 32;
    const files = new Map<string, Uint8Array>();
    let total = 0;
    const strip = relPath === "" ? 0 : relPath.length + 1;
    const walk = async (dir: string, depth: number): Promise<void> => {
      if (depth > maxDepth) {
        throw new PipelineError(`artifact tree under "${relPath}" is deeper than ${maxDepth}`);
      }
      for (const entry of await this.listArtifacts(artifactUri, dir)) {
        if (entry.isDir) {
          await walk(entry.path, depth + 1);
          continue;
        }
        if (files.size >= maxFiles) {
          throw new PipelineError(`artifact tree under "${relPath}" has over ${maxFiles} files`);
        }
        const bytes = await this.downloadArtifact(artifactUri, entry.path);
        total += bytes.length;
        if (total > maxBytes) {
          throw new PipelineError(`artifact tree under "${relPath}" is over ${maxBytes} bytes`);
        }
        files.set(entry.path.slice(strip), bytes);
      }
    };
    await walk(relPath, 0);
    return files;
  }

  // -------------------------------------------------------------------------------------------------
  // Model registry

  /**
   * Creates a registered model; one that exists already is fine.
   *
   * @returns Whether it was created now.
   */
  async createRegisteredModel(
    name: string,
    options: { tags?: Record<string, string>; description?: string } = {},
  ): Promise<{ created: boolean }> {
    const json: Json = { name, tags: toKeyValues(options.tags) };
    if (options.description !== undefined) json.description = options.description;
    try {
      return await this.#createReconciled<{ created: boolean }>(
        async () => {
          await this.#json("POST", `${API}/registered-models/create`, { json, idempotent: false });
          return { created: true };
        },
        async () => (await this.getRegisteredModel(name)) ? { created: false } : undefined,
        `POST ${API}/registered-models/create`,
      );
    } catch (error) {
      if (error instanceof MlflowApiError && error.errorCode === "RESOURCE_ALREADY_EXISTS") {
        return { created: false };
      }
      throw error;
    }
  }

  /** Returns a registered model with its aliases, or `undefined` when there is none by that name. */
  async getRegisteredModel(name: string): Promise<RegisteredModel | undefined> {
    try {
      const body = await this.#json("GET", `${API}/registered-models/get`, {
        query: { name },
        idempotent: true,
      });
      return mapRegisteredModel(body.registered_model);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /**
   * Registers a new version. Never registers two: after a lost response it searches for the
   * {@linkcode REQUEST_ID_TAG} it sent before trying again.
   *
   * @param options Model name, `source` (e.g. `${run.info.artifactUri}/model`), run id, tags.
   */
  async createModelVersion(options: {
    name: string;
    source: string;
    runId?: string;
    tags?: Record<string, string>;
    description?: string;
  }): Promise<ModelVersion> {
    const requestId = crypto.randomUUID();
    const tags = [...toKeyValues(options.tags), { key: REQUEST_ID_TAG, value: requestId }];
    for (const t of tags) {
      checkLength(`MLflow model version tag "${t.key}"`, t.value, MLFLOW_LIMITS.registryTagValueLength);
    }
    const json: Json = { name: options.name, source: options.source, tags };
    if (options.runId !== undefined) json.run_id = options.runId;
    if (options.description !== undefined) json.description = options.description;
    return await this.#createReconciled(
      async () =>
        mapModelVersion(
          (await this.#json("POST", `${API}/model-versions/create`, { json, idempotent: false }))
            .model_version,
        ),
      async () => {
        const page = await this.searchModelVersions({
          filter: `name=${filterValue(options.name)} and tags.\`${REQUEST_ID_TAG}\` = '${requestId}'`,
          maxResults: 1,
        });
        return page.modelVersions[0];
      },
      `POST ${API}/model-versions/create`,
    );
  }

  /**
   * Replaces a version's description (Markdown; MLflow's UI shows it on the version's page).
   *
   * @throws {MlflowApiError} `RESOURCE_DOES_NOT_EXIST` when the version is missing.
   */
  async updateModelVersion(
    name: string,
    version: number | string,
    description: string,
  ): Promise<ModelVersion> {
    const body = await this.#json("PATCH", `${API}/model-versions/update`, {
      json: { name, version: String(version), description },
      // Setting the same description twice leaves the same state.
      idempotent: true,
    });
    return mapModelVersion(body.model_version);
  }

  /** Returns one version. @throws {MlflowApiError} `RESOURCE_DOES_NOT_EXIST` when missing. */
  async getModelVersion(name: string, version: number | string): Promise<ModelVersion> {
    const body = await this.#json("GET", `${API}/model-versions/get`, {
      query: { name, version: String(version) },
      idempotent: true,
    });
    return mapModelVersion(body.model_version);
  }

  /**
   * Searches model versions (one page).
   *
   * @param options A filter such as `name='m' and run_id='…'`, ordering (e.g. `version_number DESC`), page.
   */
  async searchModelVersions(options: {
    filter?: string;
    maxResults?: number;
    orderBy?: string[];
    pageToken?: string;
  } = {}): Promise<ModelVersionsPage> {
    const body = await this.#json("GET", `${API}/model-versions/search`, {
      query: {
        filter: options.filter,
        max_results: options.maxResults,
        order_by: options.orderBy,
        page_token: options.pageToken,
      },
      idempotent: true,
    });
    const page: ModelVersionsPage = {
      modelVersions: Array.isArray(body.model_versions) ? body.model_versions.map(mapModelVersion) : [],
    };
    if (typeof body.next_page_token === "string" && body.next_page_token) {
      page.nextPageToken = body.next_page_token;
    }
    return page;
  }

  /** Returns the version with the highest number, or `undefined` when the model has none. */
  async getLatestVersion(name: string): Promise<ModelVersion | undefined> {
    const page = await this.searchModelVersions({
      filter: `name=${filterValue(name)}`,
      orderBy: ["version_number DESC"],
      maxResults: 1,
    });
    return page.modelVersions[0];
  }

  /** Returns where a version's files are (`mlflow-artifacts:/…`, or a `runs:/` source as registered). */
  async getDownloadUri(name: string, version: number | string): Promise<string> {
    const body = await this.#json("GET", `${API}/model-versions/get-download-uri`, {
      query: { name, version: String(version) },
      idempotent: true,
    });
    return str(body.artifact_uri);
  }

  /** Points `alias` (e.g. `champion`) at a version; moving an alias is idempotent. */
  async setAlias(name: string, alias: string, version: number | string): Promise<void> {
    validateAlias(alias);
    await this.#json("POST", `${API}/registered-models/alias`, {
      json: { name, alias, version: String(version) },
      idempotent: true,
    });
  }

  /**
   * Returns the version an alias points at.
   *
   * @throws {MlflowApiError} for an unknown alias (MLflow answers `INVALID_PARAMETER_VALUE`, 400).
   */
  async getModelVersionByAlias(name: string, alias: string): Promise<ModelVersion> {
    const body = await this.#json("GET", `${API}/registered-models/alias`, {
      query: { name, alias },
      idempotent: true,
    });
    return mapModelVersion(body.model_version);
  }

  /** Removes an alias. */
  async deleteAlias(name: string, alias: string): Promise<void> {
    // MLflow reads DELETE parameters from a JSON body, not from the query string.
    await this.#json("DELETE", `${API}/registered-models/alias`, { json: { name, alias }, idempotent: true });
  }

  /** Sets a tag on a model version (idempotent). */
  async setModelVersionTag(
    name: string,
    version: number | string,
    key: string,
    value: string,
  ): Promise<void> {
    checkLength(`MLflow model version tag "${key}"`, value, MLFLOW_LIMITS.registryTagValueLength);
    await this.#json("POST", `${API}/model-versions/set-tag`, {
      json: { name, version: String(version), key, value },
      idempotent: true,
    });
  }
}

// ---------------------------------------------------------------------------------------------------
// log-batch packing

interface BatchBody {
  run_id: string;
  metrics: { key: string; value: number | string; timestamp: number; step: number }[];
  params: KeyValue[];
  tags: KeyValue[];
}

/**
 * Packs entities greedily into request bodies within MLflow's count limits and the 1 MB body cap.
 * Sizes are exact UTF-8 byte counts of the compact JSON that is sent.
 */
function packBatches(
  runId: string,
  metrics: BatchBody["metrics"],
  params: KeyValue[],
  tags: KeyValue[],
): BatchBody[] {
  const limits = MLFLOW_LIMITS;
  const overhead = utf8Length(JSON.stringify({ run_id: runId, metrics: [], params: [], tags: [] }));
  const bodies: BatchBody[] = [];
  let current: BatchBody | undefined;
  let bytes = 0;
  const fresh = (): BatchBody => {
    current = { run_id: runId, metrics: [], params: [], tags: [] };
    bodies.push(current);
    bytes = overhead;
    return current;
  };
  const add = (
    kind: "metrics" | "params" | "tags",
    entity: BatchBody[typeof kind][number],
    limit: number,
  ) => {
    // +1 for the comma that separates it from the previous entity of its array.
    const size = utf8Length(JSON.stringify(entity)) + 1;
    let body = current ?? fresh();
    const count = body.metrics.length + body.params.length + body.tags.length;
    if (body[kind].length >= limit || count >= limits.entitiesPerBatch || bytes + size > limits.batchBytes) {
      body = fresh();
    }
    (body[kind] as unknown[]).push(entity);
    bytes += size;
  };
  for (const p of params) add("params", p, limits.paramsPerBatch);
  for (const t of tags) add("tags", t, limits.tagsPerBatch);
  for (const m of metrics) add("metrics", m, limits.metricsPerBatch);
  return bodies;
}

// ---------------------------------------------------------------------------------------------------
// Run helper

/** Options of {@linkcode withRun}. */
export interface WithRunOptions {
  experimentId: string;
  runName?: string;
  tags?: Record<string, string>;
  /** The stage's Ctrl-C signal: when it fired, the run ends `KILLED` rather than `FAILED`. */
  signal?: AbortSignal;
  /** Receives a warning when the final status could not be set after a failure. */
  log?: MlflowClientLog;
  /**
   * Limit for the final `runs/update` after a failure; long enough to outlast a restart of the server,
   * since a run whose end is never recorded stays `RUNNING`. @default {60000}
   */
  endTimeoutMs?: number;
  /**
   * How often the run's heartbeat tag is refreshed while `fn` works, so that a run left `RUNNING` by a
   * killed process can be told from a live one (`lib/tracking/run_heartbeat.ts`). @default {DEFAULT_HEARTBEAT_MS}
   */
  heartbeatMs?: number;
}

/**
 * Creates a run, calls `fn`, and always ends the run: `FINISHED` when `fn` resolves, `FAILED` when
 * it throws, `KILLED` when `options.signal` fired. The original error is rethrown; a run is never
 * left `RUNNING` unless the process itself is killed.
 *
 * @param client The client.
 * @param options Experiment, run name, tags, signal.
 * @param fn The work, given the new run.
 * @returns What `fn` returns.
 *
 * @example Usage
 * ```ts ignore
 * const result = await withRun(client, { experimentId, runName: "train", signal: ctx.signal }, async (run) => {
 *   await client.logBatch(run.info.runId, { metrics: { f1: 0.9 } });
 *   return run.info.runId;
 * });
 * ```
 */
export async function withRun<T>(
  client: MlflowClient,
  options: WithRunOptions,
  fn: (run: Run) => Promise<T>,
): Promise<T> {
  const run = await client.createRun({
    experimentId: options.experimentId,
    ...(options.runName !== undefined ? { runName: options.runName } : {}),
    tags: { ...options.tags, [HEARTBEAT_TAG]: new Date().toISOString() },
  });
  const heartbeat = startHeartbeat(client, run.info.runId, {
    intervalMs: options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
    ...(options.log ? { log: options.log } : {}),
  });
  let result: T;
  try {
    result = await fn(run);
  } catch (error) {
    await heartbeat.stop();
    const status: RunStatus = options.signal?.aborted ? "KILLED" : "FAILED";
    try {
      // A fresh signal: the stage's own one may be the reason we are here (Ctrl-C).
      await client.updateRun(run.info.runId, status, {
        signal: AbortSignal.timeout(options.endTimeoutMs ?? 60_000),
      });
    } catch (endError) {
      options.log?.warn(`could not mark MLflow run ${run.info.runId} ${status}`, {
        reason: endError instanceof Error ? endError.message : String(endError),
      });
    }
    throw error;
  }
  await heartbeat.stop();
  await client.updateRun(run.info.runId, "FINISHED");
  return result;
}
