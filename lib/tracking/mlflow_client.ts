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
 * import { MlflowClient } from "./mlflow_client.ts";
 * import { withRun } from "./run_lifecycle.ts";
 * const client = new MlflowClient({ trackingUri: "http://127.0.0.1:5500" });
 * const experiment = await client.getOrCreateExperiment("amazon-reviews-training");
 * await withRun(client, { experimentId: experiment.experimentId, runName: "train" }, async (run) => {
 *   await client.logBatch(run.info.runId, { params: { trees: 50 }, metrics: { accuracy: 0.91 } });
 *   await client.uploadArtifact(run.info.artifactUri, "model/forest.json", new TextEncoder().encode("{}"));
 * });
 * ```
 *
 * The client is split by responsibility: this module holds the endpoints (one method per REST call the
 * pipeline makes), `mlflow_transport.ts` the HTTP side (retries, reconciliation, health), `mlflow_limits.ts`
 * the server's limits and the checks that apply them, `mlflow_types.ts` the types and the mappers from
 * MLflow's JSON, `mlflow_errors.ts` the errors. The types and errors are re-exported from here, so callers
 * import one module. Over 600 lines because it is one method per endpoint (experiments, runs, logging,
 * artifacts, registry), each with the validation that keeps MLflow from truncating values silently.
 *
 * @module
 */
import { PipelineError } from "../core/errors.ts";
import { isNotFound, MlflowApiError, MlflowConnectionError, RETRY_STATUSES } from "./mlflow_errors.ts";
import {
  type BatchBody,
  checkLength,
  filterValue,
  MLFLOW_LIMITS,
  packBatches,
  safeArtifactSegments,
  validateAlias,
  validateKey,
} from "./mlflow_limits.ts";
import { MlflowTransport } from "./mlflow_transport.ts";
import {
  type ArtifactBody,
  type CallOptions,
  type DatasetInput,
  decodeDouble,
  encodeDouble,
  type Experiment,
  type FileInfo,
  type Json,
  type KeyValue,
  mapExperiment,
  mapModelVersion,
  mapRegisteredModel,
  mapRun,
  mapRunInfo,
  type Metric,
  type MlflowClientLog,
  type MlflowClientOptions,
  type ModelVersion,
  type ModelVersionsPage,
  num,
  type ParamValue,
  type RegisteredModel,
  type Run,
  type RunInfo,
  type RunsPage,
  type RunStatus,
  str,
  toKeyValues,
} from "./mlflow_types.ts";

export {
  isNotFound,
  MlflowApiError,
  type MlflowApiErrorInit,
  MlflowConnectionError,
  unreachableHint,
} from "./mlflow_errors.ts";
export { MLFLOW_LIMITS, safeArtifactSegments, validateAlias, validateKey } from "./mlflow_limits.ts";
export type {
  ArtifactBody,
  CallOptions,
  DatasetInput,
  Experiment,
  FileInfo,
  KeyValue,
  Metric,
  MlflowClientLog,
  MlflowClientOptions,
  ModelVersion,
  ModelVersionsPage,
  ParamValue,
  RegisteredModel,
  RetryOptions,
  Run,
  RunInfo,
  RunsPage,
  RunStatus,
} from "./mlflow_types.ts";

/**
 * Tag set on every run and model version this client creates: a random id per create call, so that
 * after a lost response the client can find what the server did create instead of creating a duplicate.
 */
export const REQUEST_ID_TAG = "pipeline.request_id";

const API = "/api/2.0/mlflow";
const ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts";
const encoder = new TextEncoder();

/**
 * A typed MLflow REST client. One instance per stage; it is cheap and holds no connection state
 * besides "the server answered once".
 */
export class MlflowClient {
  /** The tracking URI as given (no credentials), for messages. */
  readonly trackingUri: string;
  readonly #http: MlflowTransport;
  readonly #log: MlflowClientLog | undefined;

  /**
   * @param options Tracking URI, credentials, and the knobs tests turn (fetch, retry, timeouts).
   * @throws {PipelineError} when the URI is not http(s) or holds credentials.
   */
  constructor(options: MlflowClientOptions) {
    this.#http = new MlflowTransport(options);
    this.trackingUri = this.#http.trackingUri;
    this.#log = options.log;
  }

  // -------------------------------------------------------------------------------------------------
  // Health and experiments

  /**
   * Checks `GET /health` once, with the short connect timeout and no retries.
   *
   * @throws {MlflowConnectionError} naming the URI and `make mlflow` when nothing answers.
   */
  health(options: CallOptions = {}): Promise<void> {
    return this.#http.health(options);
  }

  /** Returns the experiment with this name (possibly a deleted one), or `undefined`. */
  async getExperimentByName(name: string): Promise<Experiment | undefined> {
    try {
      const body = await this.#http.json("GET", `${API}/experiments/get-by-name`, {
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
      experiment = await this.#http.createReconciled(
        async () => {
          try {
            const body = await this.#http.json("POST", `${API}/experiments/create`, {
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
      await this.#http.json("POST", `${API}/experiments/restore`, {
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
    return await this.#http.createReconciled(
      async () =>
        mapRun((await this.#http.json("POST", `${API}/runs/create`, { json, idempotent: false })).run),
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
    const body = await this.#http.json("GET", `${API}/runs/get`, {
      query: { run_id: runId },
      idempotent: true,
    });
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
      const body = await this.#http.json("GET", `${API}/metrics/get-history`, {
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
    const body = await this.#http.json("POST", `${API}/runs/search`, { json, idempotent: true });
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
    const body = await this.#http.json("POST", `${API}/runs/update`, {
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
    await this.#http.json("POST", `${API}/runs/set-tag`, {
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
        await this.#http.json("POST", `${API}/runs/log-batch`, { json: body, idempotent: true });
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
        await this.#http.json("POST", `${API}/runs/log-batch`, { json: pending, idempotent: false });
        return;
      } catch (error) {
        const ambiguous = error instanceof MlflowConnectionError ||
          (error instanceof MlflowApiError && RETRY_STATUSES.has(error.status));
        if (!ambiguous || attempt >= this.#http.retries) throw error;
        await this.#http.pause(
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
    await this.#http.json("POST", `${API}/runs/log-inputs`, {
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
    if (authority && authority !== this.#http.host) {
      // Sending our credentials to a host named by server data would leak them.
      throw new PipelineError(
        `artifact URI ${JSON.stringify(artifactUri)} points at ${authority}, not at ${this.#http.host}`,
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
    await this.#http.send({
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
    const body = await this.#http.json("GET", ARTIFACTS_API, {
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
    return await this.#http.send({
      method: "GET",
      path: this.#artifactPath(segments),
      idempotent: true,
      read: "stream",
    });
  }

  /** Downloads one artifact into memory. @throws {MlflowApiError} `RESOURCE_DOES_NOT_EXIST` when missing. */
  async downloadArtifact(artifactUri: string, relPath: string): Promise<Uint8Array> {
    const segments = this.#artifactSegments(artifactUri, relPath, false);
    return await this.#http.send({
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
      return await this.#http.createReconciled<{ created: boolean }>(
        async () => {
          await this.#http.json("POST", `${API}/registered-models/create`, { json, idempotent: false });
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
      const body = await this.#http.json("GET", `${API}/registered-models/get`, {
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
    return await this.#http.createReconciled(
      async () =>
        mapModelVersion(
          (await this.#http.json("POST", `${API}/model-versions/create`, { json, idempotent: false }))
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
    const body = await this.#http.json("PATCH", `${API}/model-versions/update`, {
      json: { name, version: String(version), description },
      // Setting the same description twice leaves the same state.
      idempotent: true,
    });
    return mapModelVersion(body.model_version);
  }

  /** Returns one version. @throws {MlflowApiError} `RESOURCE_DOES_NOT_EXIST` when missing. */
  async getModelVersion(name: string, version: number | string): Promise<ModelVersion> {
    const body = await this.#http.json("GET", `${API}/model-versions/get`, {
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
    const body = await this.#http.json("GET", `${API}/model-versions/search`, {
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
    const body = await this.#http.json("GET", `${API}/model-versions/get-download-uri`, {
      query: { name, version: String(version) },
      idempotent: true,
    });
    return str(body.artifact_uri);
  }

  /** Points `alias` (e.g. `champion`) at a version; moving an alias is idempotent. */
  async setAlias(name: string, alias: string, version: number | string): Promise<void> {
    validateAlias(alias);
    await this.#http.json("POST", `${API}/registered-models/alias`, {
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
    const body = await this.#http.json("GET", `${API}/registered-models/alias`, {
      query: { name, alias },
      idempotent: true,
    });
    return mapModelVersion(body.model_version);
  }

  /** Removes an alias. */
  async deleteAlias(name: string, alias: string): Promise<void> {
    // MLflow reads DELETE parameters from a JSON body, not from the query string.
    await this.#http.json("DELETE", `${API}/registered-models/alias`, {
      json: { name, alias },
      idempotent: true,
    });
  }

  /** Sets a tag on a model version (idempotent). */
  async setModelVersionTag(
    name: string,
    version: number | string,
    key: string,
    value: string,
  ): Promise<void> {
    checkLength(`MLflow model version tag "${key}"`, value, MLFLOW_LIMITS.registryTagValueLength);
    await this.#http.json("POST", `${API}/model-versions/set-tag`, {
      json: { name, version: String(version), key, value },
      idempotent: true,
    });
  }
}
