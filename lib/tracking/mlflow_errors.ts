/**
 * The errors of the MLflow client: what the server answered ({@linkcode MlflowApiError}) and a server that
 * could not be reached ({@linkcode MlflowConnectionError}), and which of them are worth a retry.
 *
 * @module
 */
import { PipelineError } from "../core/errors.ts";

/** HTTP statuses worth retrying (MLflow's Python client retries the same set). */
export const RETRY_STATUSES = new Set([408, 429, 500, 502, 503, 504]);

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

/** Whether an error may pass on its own: a connection failure or a retryable HTTP status. */
export function isTransient(error: unknown): boolean {
  return error instanceof MlflowConnectionError ||
    (error instanceof MlflowApiError && RETRY_STATUSES.has(error.status));
}

/**
 * What to do when nothing answers at `host` (host[:port] of the tracking URI). A container reaches a server on
 * its host as `host.docker.internal` (Docker) or `host.containers.internal` (Podman), where a server bound to
 * 127.0.0.1 is out of reach; `mlflow` is the compose service.
 */
export function unreachableHint(host: string): string {
  const name = host.replace(/:\d+$/, "");
  if (name === "host.docker.internal" || name === "host.containers.internal") {
    return "this runs in a container, and MLflow on the host must listen beyond 127.0.0.1: start it with " +
      "`make mlflow MLFLOW_HOST=0.0.0.0` (or the container bridge's address), or set MLFLOW_TRACKING_URI to a " +
      "server the container can reach";
  }
  if (name === "mlflow") return "start the compose service first: `docker compose up -d mlflow`";
  return "start a local server with `make mlflow` or set MLFLOW_TRACKING_URI to a running one";
}
