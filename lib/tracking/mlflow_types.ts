/**
 * The types of the MLflow client (what it returns and accepts) and the mappers from MLflow's REST JSON
 * to them. MLflow omits unset fields and empty arrays, so every mapper defaults them.
 *
 * @module
 */

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
// Response mapping (MLflow omits unset fields and empty arrays: default them here)

/** A JSON object as MLflow sends it. */
export type Json = Record<string, unknown>;

/** The value as an object, or `{}` when it is none. */
export function asObject(value: unknown): Json {
  return value !== null && typeof value === "object" ? value as Json : {};
}

/** The value as a string; `fallback` when it is missing. */
export function str(value: unknown, fallback = ""): string {
  return typeof value === "string" ? value : value === undefined || value === null ? fallback : String(value);
}

/** The value as a number (MLflow sends 64-bit integers as strings); 0 when missing. */
export function num(value: unknown): number {
  return typeof value === "number" ? value : Number(value ?? 0);
}

/** An experiment from its REST JSON. */
export function mapExperiment(raw: unknown): Experiment {
  const e = asObject(raw);
  return {
    experimentId: str(e.experiment_id),
    name: str(e.name),
    artifactLocation: str(e.artifact_location),
    lifecycleStage: e.lifecycle_stage === "deleted" ? "deleted" : "active",
    tags: toRecord(e.tags),
  };
}

/** A run's metadata from its REST JSON. */
export function mapRunInfo(raw: unknown): RunInfo {
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

/** A run from its REST JSON. */
export function mapRun(raw: unknown): Run {
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

/** A model version from its REST JSON. */
export function mapModelVersion(raw: unknown): ModelVersion {
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

/** A registered model from its REST JSON. */
export function mapRegisteredModel(raw: unknown): RegisteredModel {
  const m = asObject(raw);
  const aliases: Record<string, number> = {};
  if (Array.isArray(m.aliases)) {
    for (const a of m.aliases as Json[]) aliases[str(a.alias)] = Number(a.version);
  }
  return { name: str(m.name), description: str(m.description), tags: toRecord(m.tags), aliases };
}

/** MLflow's `[{key, value}]` list as a record. */
export function toRecord(entries: unknown): Record<string, string> {
  const record: Record<string, string> = {};
  if (Array.isArray(entries)) {
    for (const entry of entries as { key?: string; value?: string }[]) {
      if (typeof entry?.key === "string") record[entry.key] = String(entry.value ?? "");
    }
  }
  return record;
}

/** Params or tags, as a record or a list, as MLflow's `[{key, value}]` list of strings. */
export function toKeyValues(entries: Record<string, ParamValue> | KeyValue[] | undefined): KeyValue[] {
  if (entries === undefined) return [];
  if (Array.isArray(entries)) return entries.map(({ key, value }) => ({ key, value: String(value) }));
  return Object.entries(entries).map(([key, value]) => ({ key, value: String(value) }));
}

/** Proto-JSON doubles: NaN and infinities travel as strings, since `JSON.stringify(NaN)` is `null`. */
export function encodeDouble(value: number): number | string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "Infinity";
  if (value === -Infinity) return "-Infinity";
  return value;
}

/** A proto-JSON double back to a number (`"NaN"`, `"Infinity"`, `"-Infinity"` included). */
export function decodeDouble(value: unknown): number {
  if (typeof value === "number") return value;
  if (value === "NaN") return NaN;
  if (value === "Infinity") return Infinity;
  if (value === "-Infinity") return -Infinity;
  return Number(value);
}
