/**
 * A resumable HTTP download to a file, the one behind Kaggle's API (`kaggle.ts`) and a plain
 * `--source https://...` zip.
 *
 * Redirects are followed by hand (`redirect: "manual"`) so that every hop can be checked against the
 * `--allow-net` grant first (for an error that says what to grant), and so an `Authorization` header never
 * leaves the origin it was meant for: a signed storage URL must not receive it (Deno 2.0 forwarded it and
 * broke such downloads, denoland/deno#25082).
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
import { fileSize } from "../core/atomic_file.ts";
import { PipelineError } from "../core/errors.ts";
import { describeFsError } from "../core/os_error.ts";
import { formatBytes } from "../core/format.ts";

/**
 * A URL safe to log: no user info, and the query (a signed URL's signature) replaced by `?…`.
 *
 * @example Usage
 * ```ts
 * import { redactUrl } from "./download.ts";
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
 * import { downloadFile } from "./download.ts";
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
