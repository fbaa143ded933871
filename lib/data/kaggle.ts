/**
 * Kaggle's REST API without the Python client, and the resumable HTTP download behind it (also used for a
 * plain `--source https://...` zip).
 *
 * `GET {base}/api/v1/datasets/download/{owner}/{slug}/{file}` with `Authorization: Basic base64(user:key)`
 * (legacy `KAGGLE_USERNAME` + `KAGGLE_KEY`) or `Bearer <KAGGLE_API_TOKEN>` answers `302` to a signed URL on
 * another host (`storage.googleapis.com`) holding `<file>.zip`. Redirects are followed by hand
 * (`redirect: "manual"`) so that every hop can be checked against the `--allow-net` grant first (for an
 * error that says what to grant), and so the `Authorization` header never leaves the API's origin: a signed
 * URL must not receive it (Deno 2.0 forwarded it and broke such downloads, denoland/deno#25082).
 *
 * A download streams to `<dest>.partial` and is renamed to `<dest>` only when complete (length and, when
 * the server sends `x-goog-hash`, MD5 checked). When the server advertised `Accept-Ranges: bytes` and a
 * strong validator (`ETag` or `Last-Modified`), a sidecar `<dest>.partial.json` records it, and the next
 * run resumes with `Range` + `If-Range`; otherwise the next run restarts cleanly.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { basename } from "node:path";
import { PipelineError, UsageError } from "../core/errors.ts";
import { fileSize } from "../core/atomic_file.ts";
import { describeFsError } from "../core/os_error.ts";
import { formatBytes } from "../core/format.ts";

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

/**
 * A URL safe to log: no user info, and the query (a signed URL's signature) replaced by `?…`.
 *
 * @example Usage
 * ```ts
 * import { redactUrl } from "./kaggle.ts";
 * redactUrl(new URL("https://u:p@h.com/a.zip?X-Goog-Signature=s")); // "https://h.com/a.zip?…"
 * ```
 */
export function redactUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}${url.search ? "?…" : ""}`;
}

/** An HTTP answer that is neither a success nor a redirect. */
export class HttpStatusError extends PipelineError {
  /** The status code. */
  readonly status: number;
  /** The URL that answered (log it with {@linkcode redactUrl}). */
  readonly url: URL;
  /** Whether the request carried the `Authorization` header (i.e. it went to the API, not to storage). */
  readonly authenticated: boolean;

  /** Builds the error; the message reads `<url> answered HTTP <status>`. */
  constructor(status: number, statusText: string, url: URL, authenticated: boolean) {
    super(`${redactUrl(url)} answered HTTP ${status}${statusText ? " " + statusText : ""}; check the URL`);
    this.name = "HttpStatusError";
    this.status = status;
    this.url = url;
    this.authenticated = authenticated;
  }
}

/** Checks that a URL's host may be contacted; throws a {@linkcode PipelineError} saying what to grant. */
export type NetCheck = (
  url: URL,
  context: { visited: readonly URL[]; hintHosts: readonly string[] },
) => Promise<void>;

function unique(values: Iterable<string>): string[] {
  return [...new Set(values)];
}

/**
 * The default {@linkcode NetCheck}: asks `Deno.permissions` before the request, so a missing grant becomes
 * one actionable line instead of a `NotCapable` stack trace. A command-line `--allow-net` replaces the
 * permission set's whole net list, hence the hint lists every host the download needs.
 */
export const checkNetPermission: NetCheck = async (url, { visited, hintHosts }) => {
  const status = await Deno.permissions.query({ name: "net", host: url.host });
  if (status.state === "granted") return;
  const hosts = unique([...visited.map((hop) => hop.host), url.host, ...hintHosts]).join(",");
  const grant =
    `set INGEST_ALLOW_NET=--allow-net=${hosts} for deno task/make (or pass --allow-net=${hosts} to deno run)`;
  if (visited.length === 0) throw new PipelineError(`net access to ${url.host} is not granted; ${grant}`);
  throw new PipelineError(
    `${redactUrl(visited[0]!)} redirects to ${url.host}, which is not granted; ${grant}`,
  );
};

/** Progress of a download, reported after every chunk. */
export interface DownloadProgress {
  /** Bytes in the file so far, including resumed ones. */
  bytes: number;
  /** Total size, when the server sent it. */
  total: number | undefined;
  /** Bytes already on disk when this run started (0 unless resumed). */
  resumedFrom: number;
}

/** Options of {@linkcode downloadFile}. */
export interface DownloadOptions {
  /** What to download. */
  url: URL;
  /** Final path; the bytes go to `<dest>.partial` first. */
  dest: string;
  /**
   * Identity of the resource (e.g. `kaggle:https://www.kaggle.com/owner/slug/train.csv`), stored beside the
   * file so that a partial or complete file is never reused for a different resource.
   */
  key: string;
  /** `Authorization` header value, sent only to the origin of `url`. */
  authorization?: string;
  /** Extra hosts named in a missing-grant hint (e.g. the storage host a Kaggle API call will redirect to). */
  hintHosts?: readonly string[];
  /** Aborts the download; the partial file stays for a later resume. */
  signal?: AbortSignal;
  /** Called after every chunk. */
  onProgress?: (progress: DownloadProgress) => void;
  /** Called with one human-readable line when something notable happens (resume, restart, reuse). */
  onNotice?: (message: string) => void;
  /** @default {globalThis.fetch} */
  fetch?: typeof fetch;
  /** @default {checkNetPermission} */
  checkNet?: NetCheck;
  /** @default {5} */
  maxRedirects?: number;
}

/** Result of {@linkcode downloadFile}. */
export interface DownloadResult {
  /** The complete file. */
  path: string;
  /** Its size. */
  bytes: number;
  /** Bytes that were already on disk from an interrupted run. */
  resumedFrom: number;
  /** Bytes transferred by this run. */
  transferred: number;
  /** Whether a complete earlier download of the same `key` was reused without any request. */
  reused: boolean;
  /** Whether the file was checked against the server's MD5 (`x-goog-hash`). */
  md5Verified: boolean;
  /** The last URL of the redirect chain. */
  finalUrl: URL;
}

interface PartialState {
  key: string;
  validator: string;
  total?: number;
}

interface CompleteState {
  key: string;
  bytes: number;
}

const PARTIAL = ".partial";
const STATE = ".json";

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path)) as T;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof SyntaxError) return undefined;
    throw error;
  }
}

async function removeIfExists(path: string): Promise<void> {
  await Deno.remove(path).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
}

/** Removes a download and its sidecar files (after a successful extraction, or a corrupt archive). */
export async function removeDownload(dest: string): Promise<void> {
  for (const path of [dest, dest + STATE, dest + PARTIAL, dest + PARTIAL + STATE]) await removeIfExists(path);
}

/** The useful part of a fetch failure: Deno says "fetch failed" and puts the reason in `cause`. */
function networkReason(error: unknown): string {
  const cause = error instanceof Error && error.cause !== undefined ? error.cause : error;
  return firstLine(cause).replace(/^error sending request for url \([^)]*\): /, "");
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n")[0]!.trim();
}

/** `md5` of an `x-goog-hash: crc32c=...,md5=...` header, base64-encoded, if present. */
export function googMd5(header: string | null): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(",")) {
    const [name, ...value] = part.trim().split("=");
    if (name === "md5") return value.join("=");
  }
  return undefined;
}

async function md5Base64(path: string): Promise<string> {
  const hash = createHash("md5");
  using file = await Deno.open(path, { read: true });
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("base64");
}

/** `bytes 100-999/1000` → `{ start: 100, total: 1000 }`. */
export function parseContentRange(
  header: string | null,
): { start: number; total: number | undefined } | undefined {
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header?.trim() ?? "");
  if (!match) return undefined;
  return { start: Number(match[1]), total: match[3] === "*" ? undefined : Number(match[3]) };
}

/** A strong validator for `If-Range`, or undefined (weak ETags may not be used there, RFC 9110 §13.1.5). */
function strongValidator(headers: Headers): string | undefined {
  const etag = headers.get("etag");
  if (etag && !etag.startsWith("W/")) return etag;
  return headers.get("last-modified") ?? undefined;
}

interface OpenedResponse {
  response: Response;
  url: URL;
  authenticated: boolean;
}

async function requestFollowingRedirects(
  options: DownloadOptions,
  range: { from: number; validator: string } | undefined,
): Promise<OpenedResponse> {
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const checkNet = options.checkNet ?? checkNetPermission;
  const maxRedirects = options.maxRedirects ?? 5;
  const visited: URL[] = [];
  let url = options.url;
  for (let hop = 0; hop <= maxRedirects; hop++) {
    await checkNet(url, { visited, hintHosts: options.hintHosts ?? [] });
    // Identity encoding keeps byte counts, Content-Length and Range offsets about the same bytes.
    const headers = new Headers({ "accept-encoding": "identity" });
    const authenticated = options.authorization !== undefined && url.origin === options.url.origin;
    if (authenticated) headers.set("authorization", options.authorization!);
    if (range) {
      headers.set("range", `bytes=${range.from}-`);
      headers.set("if-range", range.validator);
    }
    let response: Response;
    try {
      response = await fetchImpl(url, { headers, redirect: "manual", signal: options.signal });
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason ?? error;
      if (error instanceof Deno.errors.NotCapable || error instanceof PipelineError) throw error;
      throw new PipelineError(
        `cannot reach ${url.host} (${networkReason(error)}); check the network connection and proxy settings`,
        { cause: error },
      );
    }
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      visited.push(url);
      url = new URL(location, url);
      continue;
    }
    return { response, url, authenticated };
  }
  throw new PipelineError(
    `${redactUrl(options.url)} redirected more than ${maxRedirects} times; check the URL`,
  );
}

/**
 * Downloads a URL to `dest`, resuming an interrupted earlier run when the server allows it.
 *
 * @returns What was downloaded; `reused` when `dest` already held a complete download of the same `key`.
 * @throws {HttpStatusError} On a non-2xx answer (the caller turns Kaggle's 401/403/404 into advice).
 * @throws {PipelineError} On a missing net grant, a network failure, a body cut short (the partial file is
 * kept; the message says whether the next run resumes or restarts) or an MD5 mismatch (the file is removed).
 *
 * @example Usage
 * ```ts ignore
 * import { downloadFile } from "./kaggle.ts";
 * const result = await downloadFile({
 *   url: new URL("https://example.com/data.zip"),
 *   dest: "data/downloads/data.zip",
 *   key: "url:https://example.com/data.zip",
 * });
 * ```
 */
export async function downloadFile(options: DownloadOptions): Promise<DownloadResult> {
  const { dest, key } = options;
  const partialPath = dest + PARTIAL;
  const partialStatePath = partialPath + STATE;

  const complete = await readJson<CompleteState>(dest + STATE);
  if (complete?.key === key && (await fileSize(dest)) === complete.bytes) {
    options.onNotice?.(`reusing ${dest} (${formatBytes(complete.bytes)}, downloaded by an earlier run)`);
    return {
      path: dest,
      bytes: complete.bytes,
      resumedFrom: complete.bytes,
      transferred: 0,
      reused: true,
      md5Verified: false,
      finalUrl: options.url,
    };
  }

  const state = await readJson<PartialState>(partialStatePath);
  const onDisk = (await fileSize(partialPath)) ?? 0;
  let range = state?.key === key && onDisk > 0 && (state.total === undefined || onDisk < state.total)
    ? { from: onDisk, validator: state.validator }
    : undefined;
  if (!range && onDisk > 0) options.onNotice?.(`discarding ${partialPath}: the server cannot resume it`);

  let opened = await requestFollowingRedirects(options, range);
  if (range && opened.response.status === 416) {
    // The partial no longer fits the resource (it changed, or the partial is bogus): start over.
    await opened.response.body?.cancel();
    options.onNotice?.(`the server refused to resume ${basename(dest)}; restarting`);
    range = undefined;
    opened = await requestFollowingRedirects(options, range);
  }
  const { response, url, authenticated } = opened;
  if (response.status !== 200 && response.status !== 206) {
    await response.body?.cancel();
    throw new HttpStatusError(response.status, response.statusText, url, authenticated);
  }
  if (!response.body) throw new PipelineError(`${redactUrl(url)} answered with an empty body; check the URL`);

  let resumedFrom = 0;
  let total: number | undefined;
  const encoded = (response.headers.get("content-encoding") ?? "identity") !== "identity";
  const length = encoded ? undefined : Number(response.headers.get("content-length") ?? NaN);
  if (response.status === 206 && range) {
    const contentRange = parseContentRange(response.headers.get("content-range"));
    if (!contentRange || contentRange.start !== range.from) {
      await response.body.cancel();
      await removeDownload(dest);
      throw new PipelineError(
        `${url.host} answered a resume of ${
          basename(dest)
        } with the wrong range; the partial file was removed, run again`,
      );
    }
    resumedFrom = range.from;
    total = contentRange.total;
    options.onNotice?.(`resuming ${basename(dest)} at ${formatBytes(resumedFrom)}`);
  } else {
    if (range) options.onNotice?.(`the server sent ${basename(dest)} from the start; restarting`);
    total = length !== undefined && Number.isFinite(length) ? length : undefined;
  }

  // Record resumability before the first byte, so a run killed mid-download can be resumed.
  const validator = strongValidator(response.headers);
  const resumable = response.headers.get("accept-ranges")?.toLowerCase() === "bytes" &&
    validator !== undefined &&
    !encoded;
  if (resumable) {
    const next: PartialState = { key, validator: validator!, ...(total === undefined ? {} : { total }) };
    await Deno.writeTextFile(partialStatePath, JSON.stringify(next));
  } else {
    await removeIfExists(partialStatePath);
  }

  let bytes = resumedFrom;
  const file = await Deno.open(
    partialPath,
    resumedFrom > 0 ? { append: true } : {
      write: true,
      create: true,
      truncate: true,
    },
  );
  try {
    for await (const chunk of response.body) {
      let offset = 0;
      while (offset < chunk.length) offset += await file.write(chunk.subarray(offset));
      bytes += chunk.length;
      options.onProgress?.({ bytes, total, resumedFrom });
    }
    if (total !== undefined && bytes !== total) throw new Error("the connection closed early");
  } catch (error) {
    if (options.signal?.aborted) throw options.signal.reason ?? error;
    // A full disk or a read-only folder is not a broken connection: say what it is and what to do.
    const fsError = await describeFsError(error, { path: dest, neededBytes: total });
    if (fsError !== undefined) {
      if (!resumable) await Deno.remove(partialPath).catch(() => {});
      throw new PipelineError(
        resumable && bytes > 0
          ? `${fsError.message} (the ${formatBytes(bytes)} downloaded so far are kept and resumed)`
          : fsError.message,
        { cause: error },
      );
    }
    const of = total === undefined ? "" : ` of ${formatBytes(total)}`;
    const next = resumable ? "run again to resume" : "run again to restart it";
    throw new PipelineError(
      `download of ${basename(dest)} from ${url.host} broke off at ${formatBytes(bytes)}${of} (${
        firstLine(error)
      }); ${next}`,
      { cause: error },
    );
  } finally {
    file.close();
  }

  const expectedMd5 = googMd5(response.headers.get("x-goog-hash"));
  if (expectedMd5 !== undefined && (await md5Base64(partialPath)) !== expectedMd5) {
    await removeDownload(dest);
    throw new PipelineError(
      `${basename(dest)} from ${url.host} does not match its MD5 checksum; it was removed, run again`,
    );
  }
  await Deno.rename(partialPath, dest);
  await Deno.writeTextFile(dest + STATE, JSON.stringify({ key, bytes } satisfies CompleteState));
  await removeIfExists(partialStatePath);
  return {
    path: dest,
    bytes,
    resumedFrom,
    transferred: bytes - resumedFrom,
    reused: false,
    md5Verified: expectedMd5 !== undefined,
    finalUrl: url,
  };
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
