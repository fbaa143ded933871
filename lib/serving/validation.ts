/**
 * Reading and validating request bodies for the HTTP API. Everything a client can get wrong ends in an
 * {@linkcode ApiError} with the HTTP status and a one-line message that says what to send instead; the
 * handler turns it into a JSON error body. Limits are enforced while the body streams in, so a huge or
 * endless body costs at most `maxBodyBytes` of memory, and a slow one at most `bodyTimeoutMs`.
 *
 * Two input formats are accepted:
 * - `POST /predict`: `{"title": "...", "message": "..."}` or a JSON list of such objects.
 * - `POST /invocations`: MLflow's scoring protocol, `{"dataframe_split": {...}}`,
 *   `{"dataframe_records": [...]}`, `{"inputs": ...}` or `{"instances": ...}`, with columns `title` and
 *   `message`, as `mlflow models serve` accepts them.
 *
 * @module
 */
import { Deadlines } from "./deadlines.ts";

/** Error codes of the JSON error body; the names MLflow's scoring server uses where one fits. */
export type ApiErrorCode =
  | "BAD_REQUEST"
  | "UNAUTHENTICATED"
  | "PERMISSION_DENIED"
  | "ENDPOINT_NOT_FOUND"
  | "METHOD_NOT_ALLOWED"
  | "REQUEST_TIMEOUT"
  | "PAYLOAD_TOO_LARGE"
  | "UNSUPPORTED_MEDIA_TYPE"
  | "REQUEST_LIMIT_EXCEEDED"
  | "TEMPORARILY_UNAVAILABLE"
  | "INTERNAL_ERROR";

/** A client error (or an unavailable model) with its HTTP status; the message goes to the client. */
export class ApiError extends Error {
  /** HTTP status, e.g. 400. */
  readonly status: number;
  /** Machine-readable code for the JSON body's `error_code`. */
  readonly code: ApiErrorCode;
  /** Extra response headers, e.g. `Allow` for a 405 or `Retry-After` for a 503. */
  readonly headers: Record<string, string>;

  /**
   * @param status HTTP status.
   * @param code Machine-readable code.
   * @param message One line for the client: what was wrong and what to send instead.
   * @param headers Extra response headers.
   */
  constructor(status: number, code: ApiErrorCode, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

/** Limits on request bodies. */
export interface ApiLimits {
  /** Largest request body accepted, in bytes. @default {1048576} */
  maxBodyBytes: number;
  /** Most reviews in one request. @default {1000} */
  maxBatch: number;
  /** Longest title, in characters (UTF-16 units). @default {1000} */
  maxTitleChars: number;
  /** Longest message, in characters (UTF-16 units). @default {20000} */
  maxMessageChars: number;
  /** Milliseconds a client gets to send the whole body. @default {10000} */
  bodyTimeoutMs: number;
}

/**
 * The default limits. The longest review in the Amazon polarity dataset is about 1,000 characters, so
 * 20,000 leaves room for real reviews while 1 MiB keeps one request's scoring time in milliseconds.
 */
export const DEFAULT_LIMITS: Readonly<ApiLimits> = Object.freeze({
  maxBodyBytes: 1024 * 1024,
  maxBatch: 1000,
  maxTitleChars: 1000,
  maxMessageChars: 20_000,
  bodyTimeoutMs: 10_000,
});

/** One review to score, as the API receives it. */
export interface ReviewInput {
  title: string;
  /** The review text; the dataset calls it `text`, the API `message`. */
  message: string;
}

/** A parsed `/predict` request. */
export interface PredictRequest {
  /** Whether the body was a list (the answer is then a list too). */
  batch: boolean;
  reviews: ReviewInput[];
  /** Whether an item asked for explanations (`"explain": true`). */
  explain: boolean;
}

function plural(n: number, word: string): string {
  return `${n.toLocaleString("en-US")} ${word}${n === 1 ? "" : "s"}`;
}

/**
 * Checks that a request says it carries JSON in UTF-8.
 *
 * @param request The request.
 * @throws {ApiError} 415 when the content type is missing or not `application/json` (`+json` types too),
 *   or declares a charset other than UTF-8.
 */
export function requireJsonContentType(request: Request): void {
  const header = request.headers.get("content-type");
  // What nearly every client sends; the general parse below gives the same answer for it.
  if (header === "application/json") return;
  if (header === null) {
    throw new ApiError(
      415,
      "UNSUPPORTED_MEDIA_TYPE",
      "missing Content-Type; send the body as JSON with Content-Type: application/json",
    );
  }
  const [mime, ...params] = header.split(";").map((part) => part.trim().toLowerCase());
  if (mime !== "application/json" && !/^application\/[\w.+-]+\+json$/.test(mime ?? "")) {
    throw new ApiError(
      415,
      "UNSUPPORTED_MEDIA_TYPE",
      `unsupported Content-Type ${JSON.stringify(header)}; send JSON with Content-Type: application/json`,
    );
  }
  for (const param of params) {
    const [key, value] = param.split("=").map((s) => s.trim().replace(/^"|"$/g, ""));
    if (key === "charset" && value !== "utf-8" && value !== "utf8") {
      throw new ApiError(
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        `unsupported charset ${JSON.stringify(value)}; the API reads UTF-8 only`,
      );
    }
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Lossy = new TextDecoder("utf-8");
const EMPTY = new Uint8Array(0);
let sharedDeadlines: Deadlines | undefined;

function tooLarge(limits: Pick<ApiLimits, "maxBodyBytes">): ApiError {
  return new ApiError(
    413,
    "PAYLOAD_TOO_LARGE",
    `request body is larger than the limit of ${
      plural(limits.maxBodyBytes, "byte")
    }; split the reviews into smaller requests`,
  );
}

function tooSlow(limits: Pick<ApiLimits, "bodyTimeoutMs">): ApiError {
  return new ApiError(
    408,
    "REQUEST_TIMEOUT",
    `request body was not received within ${limits.bodyTimeoutMs / 1000} s; send it in one go`,
  );
}

function unreadable(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  return new ApiError(400, "BAD_REQUEST", "request body could not be read (the client disconnected?)");
}

/** Reads a body of unknown length (chunked) chunk by chunk, stopping as soon as it passes the limit. */
async function readChunks(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  limits: Pick<ApiLimits, "maxBodyBytes">,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limits.maxBodyBytes) throw tooLarge(limits);
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/**
 * Reads a request body as bytes, stopping at `maxBodyBytes` and after `bodyTimeoutMs`.
 *
 * A body with a `Content-Length` within the limit is read whole: the HTTP server delivers exactly that
 * many bytes, so memory stays within the limit without a chunk loop. A chunked body (no length) is read
 * chunk by chunk and refused as soon as it passes the limit, so it never sits in memory.
 *
 * @param request The request.
 * @param limits The limits to enforce.
 * @param deadlines The timer that enforces `bodyTimeoutMs`. @default {one shared by the process}
 * @returns The body (empty when there is none).
 * @throws {ApiError} 413 for a body over the limit (from `Content-Length` before reading, or while
 *   reading a chunked body), 408 when the client is too slow.
 */
export async function readBodyBytes(
  request: Request,
  limits: Pick<ApiLimits, "maxBodyBytes" | "bodyTimeoutMs">,
  deadlines: Deadlines = sharedDeadlines ??= new Deadlines(),
): Promise<Uint8Array> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limits.maxBodyBytes) throw tooLarge(limits);

  if (declared !== null) {
    let bytes: Uint8Array;
    try {
      // Not `request.body`: that getter wraps a body the server already holds in a stream, which costs
      // more than the rest of the read. A stalled body cannot be cancelled once bytes() reads it; the
      // 408 ends the exchange and the server closes the connection when the client goes away.
      bytes = await deadlines.within(request.bytes(), limits.bodyTimeoutMs, () => tooSlow(limits));
    } catch (error) {
      throw unreadable(error);
    }
    // A hand-made Request (tests, in-process callers) can carry more than it declares.
    if (bytes.byteLength > limits.maxBodyBytes) throw tooLarge(limits);
    return bytes;
  }

  if (request.body === null) return EMPTY;
  const reader = request.body.getReader();
  try {
    return await deadlines.within(readChunks(reader, limits), limits.bodyTimeoutMs, () => tooSlow(limits));
  } catch (error) {
    // Stop receiving: the rest of an oversized or stalled body is never buffered.
    reader.cancel().catch(() => {});
    throw unreadable(error);
  }
}

/**
 * Reads and parses a JSON request body within the limits.
 *
 * @param request The request.
 * @param limits The limits to enforce.
 * @param deadlines The timer that enforces `bodyTimeoutMs`. @default {one shared by the process}
 * @returns The parsed JSON value.
 * @throws {ApiError} 415 (content type), 413 (size), 408 (slow client) or 400 (empty, not UTF-8, not JSON).
 */
export async function readJsonBody(
  request: Request,
  limits: ApiLimits,
  deadlines?: Deadlines,
): Promise<unknown> {
  requireJsonContentType(request);
  const bytes = await readBodyBytes(request, limits, deadlines);
  if (bytes.byteLength === 0) {
    throw new ApiError(400, "BAD_REQUEST", "request body is empty; send a JSON object");
  }
  // The replacing decoder is several times faster than the fatal one; it replaces invalid bytes with
  // U+FFFD, so only a body that then holds U+FFFD (invalid, or a U+FFFD the client sent) is checked again.
  let text = utf8Lossy.decode(bytes);
  if (text.includes("\uFFFD")) {
    try {
      text = utf8.decode(bytes);
    } catch {
      throw new ApiError(400, "BAD_REQUEST", "request body is not valid UTF-8");
    }
  }
  try {
    // JSON.parse in V8 is iterative, so deeply nested input cannot overflow the stack; the body limit
    // bounds its memory.
    return JSON.parse(text);
  } catch (error) {
    const detail = error instanceof Error ? error.message.split("\n")[0]!.slice(0, 200) : "";
    throw new ApiError(400, "BAD_REQUEST", `request body is not valid JSON: ${detail}`);
  }
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  return typeof value === "object" ? "an object" : typeof value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function checkBatchSize(count: number, limits: ApiLimits): void {
  if (count === 0) {
    throw new ApiError(400, "BAD_REQUEST", "the list of reviews is empty; send at least one review");
  }
  if (count > limits.maxBatch) {
    throw new ApiError(
      413,
      "PAYLOAD_TOO_LARGE",
      `${plural(count, "review")} in one request is over the limit of ${
        limits.maxBatch.toLocaleString("en-US")
      }; split them into smaller requests`,
    );
  }
}

/**
 * Validates one field value. `null` stands for a missing value (pandas writes a missing title as null),
 * which counts as an empty string.
 */
function fieldValue(value: unknown, field: "title" | "message", where: string, limits: ApiLimits): string {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") {
    throw new ApiError(400, "BAD_REQUEST", `${where}"${field}" must be a string, got ${describe(value)}`);
  }
  const max = field === "title" ? limits.maxTitleChars : limits.maxMessageChars;
  if (value.length > max) {
    throw new ApiError(
      413,
      "PAYLOAD_TOO_LARGE",
      `${where}"${field}" is ${plural(value.length, "character")} long, over the limit of ${
        max.toLocaleString("en-US")
      }`,
    );
  }
  return value;
}

function review(title: unknown, message: unknown, where: string, limits: ApiLimits): ReviewInput {
  const result = {
    title: fieldValue(title, "title", where, limits),
    message: fieldValue(message, "message", where, limits),
  };
  if (result.title.trim() === "" && result.message.trim() === "") {
    throw new ApiError(
      400,
      "BAD_REQUEST",
      `${where}both "title" and "message" are empty; send the review's text in "message"`,
    );
  }
  return result;
}

const PREDICT_FIELDS = new Set(["title", "message", "explain"]);

/** Validates an `explain` flag: absent, or a boolean. */
function explainFlag(value: unknown, where: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== "boolean") {
    throw new ApiError(400, "BAD_REQUEST", `${where}"explain" must be true or false, got ${describe(value)}`);
  }
  return value;
}

function predictItem(value: unknown, where: string, limits: ApiLimits): ReviewInput & { explain: boolean } {
  if (!isPlainObject(value)) {
    throw new ApiError(
      400,
      "BAD_REQUEST",
      `${where}expected an object {"title": "...", "message": "..."}, got ${describe(value)}`,
    );
  }
  for (const key of Object.keys(value)) {
    if (!PREDICT_FIELDS.has(key)) {
      const hint = key === "text" || key === "review" || key === "body"
        ? ` (use "message" for the text)`
        : "";
      throw new ApiError(
        400,
        "BAD_REQUEST",
        `${where}unknown field ${
          JSON.stringify(key.slice(0, 50))
        }${hint}; expected "title" and "message" (and "explain")`,
      );
    }
  }
  if (!("message" in value)) {
    throw new ApiError(400, "BAD_REQUEST", `${where}missing field "message" (the review's text)`);
  }
  return { ...review(value.title, value.message, where, limits), explain: explainFlag(value.explain, where) };
}

/**
 * Validates a `POST /predict` body: one `{"title","message"}` object or a list of them. `title` may be
 * omitted; unknown fields are refused so that a typo such as `"text"` is not silently scored as empty.
 *
 * @param body The parsed JSON body.
 * @param limits The limits to enforce.
 * @returns The reviews and whether the request was a list.
 * @throws {ApiError} 400 for a wrong shape or type, 413 for too many reviews or a too long field.
 *
 * @example Usage
 * ```ts
 * import { DEFAULT_LIMITS, parsePredictBody } from "./validation.ts";
 * parsePredictBody({ title: "Great", message: "Works well" }, DEFAULT_LIMITS);
 * // { batch: false, reviews: [{ title: "Great", message: "Works well" }] }
 * ```
 */
export function parsePredictBody(body: unknown, limits: ApiLimits): PredictRequest {
  if (Array.isArray(body)) {
    checkBatchSize(body.length, limits);
    const items = body.map((item, i) => predictItem(item, `item ${i}: `, limits));
    return {
      batch: true,
      reviews: items.map(({ title, message }) => ({ title, message })),
      explain: items.some((item) => item.explain),
    };
  }
  const { title, message, explain } = predictItem(body, "", limits);
  return { batch: false, reviews: [{ title, message }], explain };
}

/**
 * Whether a `POST /invocations` body asks for explanations, as MLflow passes inference parameters:
 * `"params": {"explain": true}`.
 *
 * @param body The parsed JSON body (already validated by {@linkcode parseInvocationsBody}).
 * @throws {ApiError} 400 when `params` or `params.explain` has the wrong type.
 */
export function invocationsExplainParam(body: unknown): boolean {
  const params = isPlainObject(body) ? body.params : undefined;
  if (params === undefined || params === null) return false;
  if (!isPlainObject(params)) {
    throw new ApiError(400, "BAD_REQUEST", `"params" must be an object, got ${describe(params)}`);
  }
  return explainFlag(params.explain, "params: ");
}

/**
 * Whether a request's query string asks for explanations: `?explain`, `?explain=true` or `?explain=1`.
 *
 * @param url The request URL.
 * @throws {ApiError} 400 for another value, e.g. `?explain=yes`.
 */
export function queryExplainParam(url: string): boolean {
  const query = url.indexOf("?");
  // Most requests have no query string: no URL is parsed for them.
  if (query === -1 || !url.includes("explain", query)) return false;
  const value = new URL(url).searchParams.get("explain");
  if (value === null || value === "false" || value === "0") return false;
  if (value === "" || value === "true" || value === "1") return true;
  throw new ApiError(
    400,
    "BAD_REQUEST",
    `query parameter explain must be true or false, got ${JSON.stringify(value.slice(0, 20))}`,
  );
}

/** The input keys of MLflow's scoring protocol. */
export const INVOCATION_FORMATS = ["dataframe_split", "dataframe_records", "inputs", "instances"] as const;

function fromRecords(records: unknown[], key: string, limits: ApiLimits): ReviewInput[] {
  checkBatchSize(records.length, limits);
  return records.map((record, i) => {
    const where = `${key}[${i}]: `;
    if (!isPlainObject(record)) {
      throw new ApiError(
        400,
        "BAD_REQUEST",
        `${where}expected a record {"title": ..., "message": ...}, got ${describe(record)}`,
      );
    }
    if (!("message" in record)) {
      throw new ApiError(400, "BAD_REQUEST", `${where}missing column "message"`);
    }
    // Extra columns are ignored, as MLflow's schema enforcement does.
    return review(record.title, record.message, where, limits);
  });
}

function fromSplit(split: unknown, limits: ApiLimits): ReviewInput[] {
  const key = "dataframe_split";
  if (!isPlainObject(split)) {
    throw new ApiError(
      400,
      "BAD_REQUEST",
      `"${key}" must be an object {"columns": [...], "data": [[...]]}, got ${describe(split)}`,
    );
  }
  const { columns, data } = split;
  if (!Array.isArray(columns) || !columns.every((c) => typeof c === "string")) {
    throw new ApiError(400, "BAD_REQUEST", `"${key}.columns" must be a list of column names`);
  }
  if (!Array.isArray(data)) {
    throw new ApiError(400, "BAD_REQUEST", `"${key}.data" must be a list of rows, got ${describe(data)}`);
  }
  const messageAt = columns.indexOf("message");
  const titleAt = columns.indexOf("title");
  if (messageAt < 0) {
    throw new ApiError(400, "BAD_REQUEST", `"${key}.columns" has no "message" column`);
  }
  checkBatchSize(data.length, limits);
  return data.map((row, i) => {
    const where = `${key}.data[${i}]: `;
    if (!Array.isArray(row) || row.length !== columns.length) {
      throw new ApiError(
        400,
        "BAD_REQUEST",
        `${where}expected a list of ${plural(columns.length, "value")} (one per column), got ${
          Array.isArray(row) ? plural(row.length, "value") : describe(row)
        }`,
      );
    }
    return review(titleAt < 0 ? "" : row[titleAt], row[messageAt], where, limits);
  });
}

function fromTensorInput(value: unknown, key: string, limits: ApiLimits): ReviewInput[] {
  if (Array.isArray(value)) return fromRecords(value, key, limits);
  if (!isPlainObject(value)) {
    throw new ApiError(
      400,
      "BAD_REQUEST",
      `"${key}" must be a list of records or an object of columns, got ${describe(value)}`,
    );
  }
  const { title, message } = value;
  if (message === undefined) throw new ApiError(400, "BAD_REQUEST", `"${key}" has no "message" column`);
  if (!Array.isArray(message)) return [review(title, message, `${key}: `, limits)];
  if (title !== undefined && title !== null && (!Array.isArray(title) || title.length !== message.length)) {
    throw new ApiError(
      400,
      "BAD_REQUEST",
      `"${key}.title" must be a list as long as "${key}.message" (${plural(message.length, "value")})`,
    );
  }
  checkBatchSize(message.length, limits);
  const titles = Array.isArray(title) ? title : [];
  return message.map((m, i) => review(titles[i], m, `${key}[${i}]: `, limits));
}

/**
 * Validates a `POST /invocations` body in MLflow's scoring protocol: exactly one of
 * `dataframe_split`, `dataframe_records`, `inputs` or `instances` (and optionally `params`, the inference
 * parameters, of which the model reads `explain`: {@linkcode invocationsExplainParam}).
 *
 * @param body The parsed JSON body.
 * @param limits The limits to enforce.
 * @returns The reviews, in request order.
 * @throws {ApiError} 400 for a wrong shape, 413 for too many rows or a too long field.
 *
 * @example Usage
 * ```ts
 * import { DEFAULT_LIMITS, parseInvocationsBody } from "./validation.ts";
 * parseInvocationsBody(
 *   { dataframe_split: { columns: ["title", "message"], data: [["Great", "Works well"]] } },
 *   DEFAULT_LIMITS,
 * ); // [{ title: "Great", message: "Works well" }]
 * ```
 */
export function parseInvocationsBody(body: unknown, limits: ApiLimits): ReviewInput[] {
  const expected = `exactly one of ${INVOCATION_FORMATS.map((f) => `"${f}"`).join(", ")}`;
  if (!isPlainObject(body)) {
    throw new ApiError(
      400,
      "BAD_REQUEST",
      `the body must be a JSON object with ${expected}, got ${describe(body)}`,
    );
  }
  const present = INVOCATION_FORMATS.filter((format) => format in body);
  if (present.length !== 1) {
    const keys = Object.keys(body).slice(0, 10).map((k) => JSON.stringify(k.slice(0, 50))).join(", ");
    throw new ApiError(
      400,
      "BAD_REQUEST",
      `the body must have ${expected}; it has ${keys === "" ? "no fields" : keys}`,
    );
  }
  const format = present[0]!;
  const value = body[format];
  switch (format) {
    case "dataframe_split":
      return fromSplit(value, limits);
    case "dataframe_records":
      if (!Array.isArray(value)) {
        throw new ApiError(
          400,
          "BAD_REQUEST",
          `"dataframe_records" must be a list of records, got ${describe(value)}`,
        );
      }
      return fromRecords(value, format, limits);
    case "inputs":
    case "instances":
      return fromTensorInput(value, format, limits);
  }
}
