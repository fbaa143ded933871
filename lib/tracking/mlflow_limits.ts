/**
 * MLflow's server-side limits and the checks that apply them before a request is sent: key syntax, value
 * lengths (refused loudly instead of being silently truncated), safe artifact paths, alias names, and the
 * packing of `runs/log-batch` bodies within the count and size caps.
 *
 * @module
 */
import { PipelineError } from "../core/errors.ts";
import type { KeyValue } from "./mlflow_types.ts";

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

/** Length in Unicode code points, as MLflow (Python's `len()`) counts it. */
export function codePoints(text: string): number {
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

/** Refuses a value longer than MLflow keeps, naming it (`what`) and what to do instead (`hint`). */
export function checkLength(what: string, value: string, limit: number, hint = ""): void {
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
export function filterValue(value: string): string {
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

// ---------------------------------------------------------------------------------------------------
// log-batch packing

/** UTF-8 byte length of a string, without encoding it. */
export function utf8Length(text: string): number {
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

/** The body of one `runs/log-batch` request. */
export interface BatchBody {
  run_id: string;
  metrics: { key: string; value: number | string; timestamp: number; step: number }[];
  params: KeyValue[];
  tags: KeyValue[];
}

/**
 * Packs entities greedily into request bodies within MLflow's count limits and the 1 MB body cap.
 * Sizes are exact UTF-8 byte counts of the compact JSON that is sent.
 */
export function packBatches(
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
