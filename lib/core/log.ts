/**
 * A small logger that writes to stderr, so that stdout stays free for a stage's `--json` result.
 *
 * @module
 */

/** Log levels, from the most verbose. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const LEVEL_ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** A destination for log lines; stderr by default, swappable in tests. */
export type LogSink = (line: string) => void;

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Lowest level written. @default {"info"} */
  level?: LogLevel;
  /** Write JSON lines (`{"ts","level","msg",...fields}`) instead of text. @default {false} */
  json?: boolean;
  /** Prefix of text lines, usually the stage name. */
  name?: string;
  /** Where lines go. @default {writes to stderr} */
  sink?: LogSink;
}

/** A logger bound to one stage. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const encoder = new TextEncoder();

let stampMs = Number.NaN;
let stamp = "";

/** `new Date().toISOString()`, formatted once per millisecond: a busy server logs many lines in one. */
function isoNow(): string {
  const now = Date.now();
  if (now !== stampMs) {
    stampMs = now;
    stamp = new Date(now).toISOString();
  }
  return stamp;
}

/** Writes one line to stderr synchronously, so lines never interleave with a progress line. */
export function stderrSink(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

/**
 * Creates a logger.
 *
 * @example Usage
 * ```ts
 * import { createLogger } from "./log.ts";
 * const log = createLogger({ name: "split_batches" });
 * log.info("wrote batch", { batch: 0, rows: 1000 });
 * ```
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const minimum = LEVEL_ORDER[options.level ?? "info"];
  const sink = options.sink ?? stderrSink;
  function write(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    if (LEVEL_ORDER[level] < minimum) return;
    if (options.json) {
      sink(JSON.stringify({ ts: isoNow(), level, name: options.name, msg, ...fields }));
      return;
    }
    const prefix = options.name ? `[${options.name}] ` : "";
    const tail = fields && Object.keys(fields).length > 0
      ? " " + Object.entries(fields).map(([k, v]) => `${k}=${formatField(v)}`).join(" ")
      : "";
    sink(`${prefix}${level === "info" ? "" : level + ": "}${msg}${tail}`);
  }
  return {
    debug: (msg, fields) => write("debug", msg, fields),
    info: (msg, fields) => write("info", msg, fields),
    warn: (msg, fields) => write("warn", msg, fields),
    error: (msg, fields) => write("error", msg, fields),
  };
}

function formatField(value: unknown): string {
  if (typeof value === "string") return /\s/.test(value) ? JSON.stringify(value) : value;
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(4);
  return JSON.stringify(value);
}
