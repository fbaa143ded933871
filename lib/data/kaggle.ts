/**
 * Kaggle's REST API without the Python client: credentials, the API base, a dataset file's URL, and the
 * download of one file with Kaggle's answers turned into advice.
 *
 * `GET {base}/api/v1/datasets/download/{owner}/{slug}/{file}` with `Authorization: Basic base64(user:key)`
 * (legacy `KAGGLE_USERNAME` + `KAGGLE_KEY`) or `Bearer <KAGGLE_API_TOKEN>` answers `302` to a signed URL on
 * another host (`storage.googleapis.com`) holding `<file>.zip`; `download.ts` follows it without the
 * credentials and resumes an interrupted download.
 *
 * @module
 */
import { PipelineError, UsageError } from "../core/errors.ts";
import { downloadFile, type DownloadOptions, type DownloadResult, HttpStatusError } from "./download.ts";

/** The dataset this project trains on. */
export const KAGGLE_DATASET = "kritanjalijain/amazon-reviews";

/** Default base URL of Kaggle's legacy REST API. */
export const DEFAULT_KAGGLE_API_BASE = "https://www.kaggle.com";

/** Hosts a real Kaggle download needs beyond the API host: where the signed URLs point. */
export const KAGGLE_STORAGE_HOSTS: readonly string[] = ["storage.googleapis.com"];

/** Credentials for Kaggle's API. The secret is never logged nor put in an error message. */
export type KaggleCredentials =
  | { kind: "token"; token: string }
  | { kind: "basic"; username: string; key: string };

/** The environment variables {@linkcode resolveKaggleCredentials} looks at. */
export interface KaggleEnv {
  KAGGLE_API_TOKEN?: string;
  KAGGLE_USERNAME?: string;
  KAGGLE_KEY?: string;
}

/**
 * Picks credentials in the order of Kaggle's own SDK: `KAGGLE_API_TOKEN` (Bearer), then
 * `KAGGLE_USERNAME` + `KAGGLE_KEY` (Basic). `~/.kaggle/*` files are not read: that would need `HOME` and
 * read access to the home folder for every run of the stage.
 *
 * @param env The variables, as read by the stage script.
 * @returns The credentials, or `undefined` when none are set.
 * @throws {PipelineError} When only one of `KAGGLE_USERNAME` / `KAGGLE_KEY` is set, or the token looks like
 * a file path (the SDK accepts one; this stage keeps to the value itself).
 *
 * @example Usage
 * ```ts
 * import { resolveKaggleCredentials } from "./kaggle.ts";
 * resolveKaggleCredentials({ KAGGLE_USERNAME: "alice", KAGGLE_KEY: "0123" }); // { kind: "basic", ... }
 * resolveKaggleCredentials({}); // undefined
 * ```
 */
export function resolveKaggleCredentials(env: KaggleEnv): KaggleCredentials | undefined {
  const token = env.KAGGLE_API_TOKEN?.trim();
  if (token) {
    // A token is opaque but never starts like a path; the SDK's "path to a token file" form does.
    if (/^(~|\.{0,2})\//.test(token)) {
      throw new PipelineError(
        "KAGGLE_API_TOKEN looks like a file path; set it to the token itself, e.g. KAGGLE_API_TOKEN=$(cat <file>)",
      );
    }
    return { kind: "token", token };
  }
  const username = env.KAGGLE_USERNAME?.trim();
  const key = env.KAGGLE_KEY?.trim();
  if (username && key) return { kind: "basic", username, key };
  if (username || key) {
    const [set, missing] = username ? ["KAGGLE_USERNAME", "KAGGLE_KEY"] : ["KAGGLE_KEY", "KAGGLE_USERNAME"];
    throw new PipelineError(`${set} is set but ${missing} is not; set both, or KAGGLE_API_TOKEN instead`);
  }
  return undefined;
}

/** Names the variables the credentials came from (never their values), for logs and errors. */
export function describeCredentials(credentials: KaggleCredentials): string {
  return credentials.kind === "token" ? "KAGGLE_API_TOKEN" : "KAGGLE_USERNAME and KAGGLE_KEY";
}

/**
 * The `Authorization` header value for Kaggle's API.
 *
 * @example Usage
 * ```ts
 * import { authorizationHeader } from "./kaggle.ts";
 * authorizationHeader({ kind: "basic", username: "alice", key: "k" }); // "Basic YWxpY2U6aw=="
 * ```
 */
export function authorizationHeader(credentials: KaggleCredentials): string {
  if (credentials.kind === "token") return `Bearer ${credentials.token}`;
  const bytes = new TextEncoder().encode(`${credentials.username}:${credentials.key}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

/**
 * Validates an API base URL (`--kaggle-api-base` / `KAGGLE_API_BASE_URL`).
 *
 * @param value The raw value.
 * @param origin Names the flag or variable in the error.
 * @throws {UsageError} When it is not an http(s) URL.
 */
export function parseApiBase(value: string, origin: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(
      `${origin} expects an http(s) URL such as ${DEFAULT_KAGGLE_API_BASE}, got "${value}"`,
    );
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new UsageError(
      `${origin} expects an http(s) URL such as ${DEFAULT_KAGGLE_API_BASE}, got "${value}"`,
    );
  }
  return url;
}

/**
 * The legacy download endpoint of one file of a dataset.
 *
 * @example Usage
 * ```ts
 * import { kaggleDownloadUrl } from "./kaggle.ts";
 * kaggleDownloadUrl(new URL("https://www.kaggle.com"), "kritanjalijain/amazon-reviews", "train.csv").href;
 * // "https://www.kaggle.com/api/v1/datasets/download/kritanjalijain/amazon-reviews/train.csv"
 * ```
 */
export function kaggleDownloadUrl(apiBase: URL, dataset: string, file: string): URL {
  const base = apiBase.href.endsWith("/") ? apiBase.href : apiBase.href + "/";
  const path = ["api", "v1", "datasets", "download", ...dataset.split("/"), file].map(encodeURIComponent);
  return new URL(path.join("/"), base);
}

/** Options of {@linkcode downloadKaggleFile}. */
export interface KaggleDownloadOptions
  extends Omit<DownloadOptions, "url" | "key" | "authorization" | "hintHosts"> {
  /** API base URL. */
  apiBase: URL;
  /** `owner/slug`. */
  dataset: string;
  /** File of the dataset, e.g. `train.csv`. */
  file: string;
  /** Credentials. */
  credentials: KaggleCredentials;
}

/**
 * Downloads one file of a Kaggle dataset (a zip holding it, as Kaggle serves it) and turns Kaggle's
 * answers into advice: 401/403 about credentials, 404 about the dataset or file name.
 *
 * @example Usage
 * ```ts ignore
 * import { downloadKaggleFile, KAGGLE_DATASET, resolveKaggleCredentials } from "./kaggle.ts";
 * await downloadKaggleFile({
 *   apiBase: new URL("https://www.kaggle.com"),
 *   dataset: KAGGLE_DATASET,
 *   file: "test.csv",
 *   credentials: resolveKaggleCredentials({ KAGGLE_API_TOKEN: "KGAT_..." })!,
 *   dest: "data/downloads/test.csv.zip",
 * });
 * ```
 */
export async function downloadKaggleFile(options: KaggleDownloadOptions): Promise<DownloadResult> {
  const { apiBase, dataset, file, credentials, ...rest } = options;
  const url = kaggleDownloadUrl(apiBase, dataset, file);
  try {
    return await downloadFile({
      ...rest,
      url,
      key: `kaggle:${apiBase.origin}/${dataset}/${file}`,
      authorization: authorizationHeader(credentials),
      hintHosts: KAGGLE_STORAGE_HOSTS,
    });
  } catch (error) {
    if (!(error instanceof HttpStatusError)) throw error;
    const what = `${dataset}/${file}`;
    const status = `HTTP ${error.status} from ${error.url.host}`;
    if (error.authenticated && (error.status === 401 || error.status === 403)) {
      throw new PipelineError(
        `Kaggle refused the credentials in ${describeCredentials(credentials)} for ${what} (${status}); ` +
          "create a new API token at kaggle.com > Settings > API, and accept the dataset's rules on its page",
        { cause: error },
      );
    }
    if (error.authenticated && error.status === 404) {
      throw new PipelineError(
        `Kaggle has no dataset file ${what} (${status}); check the dataset name and KAGGLE_API_BASE_URL`,
        { cause: error },
      );
    }
    if (error.status === 429) {
      throw new PipelineError(
        `Kaggle is rate-limiting downloads (${status}); wait a few minutes and run again`,
        {
          cause: error,
        },
      );
    }
    if (!error.authenticated && (error.status === 400 || error.status === 403)) {
      throw new PipelineError(
        `the signed download URL for ${what} was refused (${status}); it may have expired, run again for a new one`,
        { cause: error },
      );
    }
    throw new PipelineError(`downloading ${what} failed (${status}); try again later`, { cause: error });
  }
}
