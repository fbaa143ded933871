/**
 * Where MLflow is and how to authenticate: resolved once per stage from flags and environment
 * variables (flag > env > default), using MLflow's own variable names so a setup that works for the
 * Python client works here too.
 *
 * The stage script reads the environment with `readEnv(MLFLOW_ENV_NAMES)` and passes it in; this
 * module never touches `Deno.env`.
 *
 * @module
 */
import { PipelineError, UsageError } from "../core/errors.ts";

/** The local server `make mlflow` starts. */
export const DEFAULT_TRACKING_URI = "http://127.0.0.1:5500";

/** Experiment used when neither a flag nor `MLFLOW_EXPERIMENT_NAME` names one. */
export const DEFAULT_EXPERIMENT_NAME = "amazon-reviews-training";

/** Environment variables this module reads (all in the train/evaluate/predict env grants). */
export const MLFLOW_ENV_NAMES = [
  "MLFLOW_TRACKING_URI",
  "MLFLOW_EXPERIMENT_NAME",
  "MLFLOW_TRACKING_USERNAME",
  "MLFLOW_TRACKING_PASSWORD",
  "MLFLOW_TRACKING_TOKEN",
  "MLFLOW_RUN_TAGS",
] as const;

/** Values of {@linkcode MLFLOW_ENV_NAMES}, as returned by `readEnv`. */
export type MlflowEnv = Partial<Record<typeof MLFLOW_ENV_NAMES[number], string>>;

/** Flags a stage may offer. */
export interface MlflowFlags {
  /** `--tracking-uri`. */
  trackingUri?: string;
  /** `--experiment`. */
  experiment?: string;
}

/** Resolved MLflow settings; the connection fields fit `new MlflowClient(config)`. */
export interface MlflowConfig {
  /** `http(s)://host:port[/prefix]`, no trailing slash, no credentials. */
  readonly trackingUri: string;
  /** Where the URI came from, for messages: `--tracking-uri`, `MLFLOW_TRACKING_URI` or `default`. */
  readonly trackingUriSource: "--tracking-uri" | "MLFLOW_TRACKING_URI" | "default";
  readonly experimentName: string;
  readonly username?: string;
  readonly password?: string;
  readonly token?: string;
  /**
   * Tags an orchestrator asks every run (and the model version train registers) to carry, from
   * `MLFLOW_RUN_TAGS`; e.g. the Airflow DAG's `airflow.dag_run_id`, which links a run back to its task.
   */
  readonly runTags?: Readonly<Record<string, string>>;
}

/**
 * Resolves the tracking URI, experiment and credentials.
 *
 * @param flags Flag values (`undefined` when not given).
 * @param env Environment values from `readEnv(MLFLOW_ENV_NAMES)`.
 * @returns A frozen config.
 * @throws {UsageError} for a URI that is not http(s), holds credentials, a query or a fragment; a
 *   username without a password (or the reverse); an empty experiment name.
 *
 * @example Usage
 * ```ts
 * import { resolveMlflowConfig } from "./mlflow_config.ts";
 * const config = resolveMlflowConfig({}, { MLFLOW_TRACKING_URI: "http://mlflow:5000/" });
 * config.trackingUri; // "http://mlflow:5000"
 * config.experimentName; // "amazon-reviews-training"
 * ```
 */
export function resolveMlflowConfig(flags: MlflowFlags, env: MlflowEnv): MlflowConfig {
  const [raw, source] = flags.trackingUri !== undefined
    ? [flags.trackingUri, "--tracking-uri" as const]
    : env.MLFLOW_TRACKING_URI !== undefined
    ? [env.MLFLOW_TRACKING_URI, "MLFLOW_TRACKING_URI" as const]
    : [DEFAULT_TRACKING_URI, "default" as const];
  const trackingUri = validateTrackingUri(raw, source === "default" ? "tracking URI" : source);

  const experimentName = (flags.experiment ?? env.MLFLOW_EXPERIMENT_NAME ?? DEFAULT_EXPERIMENT_NAME).trim();
  if (experimentName === "") {
    throw new UsageError(
      `${flags.experiment !== undefined ? "--experiment" : "MLFLOW_EXPERIMENT_NAME"} must not be empty`,
    );
  }
  if ([...experimentName].length > 500) {
    throw new UsageError("MLflow experiment names are at most 500 characters");
  }

  const { MLFLOW_TRACKING_USERNAME: username, MLFLOW_TRACKING_PASSWORD: password } = env;
  if ((username === undefined) !== (password === undefined)) {
    const [set, missing] = username === undefined
      ? ["MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_USERNAME"]
      : ["MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"];
    throw new UsageError(`${set} is set but ${missing} is not; set both for basic auth`);
  }
  const config: {
    trackingUri: string;
    trackingUriSource: MlflowConfig["trackingUriSource"];
    experimentName: string;
    username?: string;
    password?: string;
    token?: string;
    runTags?: Readonly<Record<string, string>>;
  } = { trackingUri, trackingUriSource: source, experimentName };
  if (username !== undefined && password !== undefined) {
    config.username = username;
    config.password = password;
  }
  if (env.MLFLOW_TRACKING_TOKEN !== undefined) config.token = env.MLFLOW_TRACKING_TOKEN;
  if (env.MLFLOW_RUN_TAGS !== undefined) config.runTags = parseRunTags(env.MLFLOW_RUN_TAGS);
  return Object.freeze(config);
}

/** MLflow's limits on a tag key and value (characters). */
const TAG_KEY_MAX = 250;
const TAG_VALUE_MAX = 8000;

/**
 * Parses `MLFLOW_RUN_TAGS`: a JSON object of string values, e.g.
 * `{"airflow.dag_id": "amazon_reviews_pipeline", "airflow.task_id": "train"}`.
 *
 * @param raw The variable's value.
 * @returns The tags, frozen.
 * @throws {UsageError} when it is not such an object, a key or value exceeds MLflow's limits, or a key is
 *   one of MLflow's own (`mlflow.*`), which the stages set themselves.
 *
 * @example Usage
 * ```ts
 * import { parseRunTags } from "./mlflow_config.ts";
 * parseRunTags('{"airflow.task_id": "train"}'); // { "airflow.task_id": "train" }
 * ```
 */
export function parseRunTags(raw: string): Readonly<Record<string, string>> {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new UsageError(`MLFLOW_RUN_TAGS is not JSON; expected an object such as {"team": "reviews"}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError(`MLFLOW_RUN_TAGS must be a JSON object of strings, such as {"team": "reviews"}`);
  }
  const tags: Record<string, string> = {};
  for (const [key, tag] of Object.entries(value)) {
    if (typeof tag !== "string") {
      throw new UsageError(`MLFLOW_RUN_TAGS: the value of ${JSON.stringify(key)} must be a string`);
    }
    if (key.trim() === "" || key.length > TAG_KEY_MAX) {
      throw new UsageError(`MLFLOW_RUN_TAGS: tag keys must be 1 to ${TAG_KEY_MAX} characters`);
    }
    if (key.startsWith("mlflow.")) {
      throw new UsageError(`MLFLOW_RUN_TAGS: ${JSON.stringify(key)} is one of MLflow's own tags`);
    }
    if (tag.length > TAG_VALUE_MAX) {
      throw new UsageError(
        `MLFLOW_RUN_TAGS: the value of ${JSON.stringify(key)} exceeds ${TAG_VALUE_MAX} characters`,
      );
    }
    tags[key] = tag;
  }
  return Object.freeze(tags);
}

/**
 * Checks a tracking URI and returns it without a trailing slash.
 *
 * @param raw The URI as given.
 * @param label What to call it in the message, e.g. `MLFLOW_TRACKING_URI`.
 * @throws {UsageError} naming `label` when it is not a plain http(s) URL.
 */
export function validateTrackingUri(raw: string, label = "MLFLOW_TRACKING_URI"): string {
  // "localhost:5500" parses as a URL with scheme "localhost:", "127.0.0.1:5500" not at all: both
  // most likely lack "http://".
  const guess = /^[\w.-]+:\d+(\/.*)?$/.test(raw.trim()) ? ` (did you mean http://${raw.trim()}?)` : "";
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new UsageError(
      `${label} ${JSON.stringify(raw)} is not a URL; use http://host:port${
        guess || `, e.g. ${DEFAULT_TRACKING_URI}`
      }`,
    );
  }
  if (url.username !== "" || url.password !== "") {
    // Never echo the credentials back: messages end up in CI logs.
    throw new UsageError(
      `${label} ${url.protocol}//***@${url.host}${url.pathname} must not hold credentials; ` +
        "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead",
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    const hint = url.protocol === "file:" || url.protocol === "sqlite:"
      ? "; stages talk to a tracking server (start one with make mlflow)"
      : "";
    throw new UsageError(`${label} ${JSON.stringify(raw)} must be http:// or https://${hint || guess}`);
  }
  if (url.search !== "" || url.hash !== "") {
    throw new UsageError(`${label} ${JSON.stringify(raw)} must not have a query or fragment`);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

/**
 * The `host:port` that `--allow-net` must name for a URI (the port defaults to 80/443).
 *
 * @example Usage
 * ```ts
 * import { netGrantHost } from "./mlflow_config.ts";
 * netGrantHost("https://mlflow.example.com/prefix"); // "mlflow.example.com:443"
 * ```
 */
export function netGrantHost(uri: string): string {
  const url = new URL(uri);
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  return `${url.hostname}:${port}`;
}

/**
 * Checks that this process may connect to the tracking server, so a missing grant fails before any
 * work with a message that says how to grant it (Deno's own error would only say "Requires net access").
 *
 * @param uri The tracking URI.
 * @param label How the user set it: `MLFLOW_TRACKING_URI`, `--tracking-uri` or `default`
 *   (a config's `trackingUriSource`).
 * @throws {PipelineError} when the host:port is not granted.
 */
export async function checkMlflowNetGrant(uri: string, label = "MLFLOW_TRACKING_URI"): Promise<void> {
  const host = netGrantHost(uri);
  const status = await Deno.permissions.query({ name: "net", host });
  if (status.state === "granted") return;
  const shown = label === "--tracking-uri"
    ? `--tracking-uri ${uri}`
    : `${label === "default" ? "MLFLOW_TRACKING_URI" : label}=${uri}`;
  throw new PipelineError(
    `${shown} is not in this stage's network grant; with deno task set MLFLOW_ALLOW_NET=--allow-net=${host} ` +
      "(make does this for you)",
  );
}
