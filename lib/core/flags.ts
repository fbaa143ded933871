/**
 * Validation of command-line values, shared by every stage. Each helper throws a
 * {@linkcode UsageError} naming the flag, so a stage exits 2 with a one-line message.
 *
 * @module
 */
import { UsageError } from "./errors.ts";

/** The range a numeric flag accepts (both ends included). */
export interface FlagRange {
  /** Smallest accepted value. @default {Number.MIN_SAFE_INTEGER} */
  min?: number;
  /** Largest accepted value. @default {Number.MAX_SAFE_INTEGER} */
  max?: number;
}

/**
 * Parses a decimal integer flag value.
 *
 * @param flag Flag name for the message, e.g. `--rows`.
 * @param value The raw value.
 * @returns The integer.
 *
 * @example Usage
 * ```ts
 * import { parseIntegerFlag } from "./flags.ts";
 * parseIntegerFlag("--rows", "1000", { min: 1 }); // 1000
 * ```
 */
export function parseIntegerFlag(flag: string, value: string, options: FlagRange = {}): number {
  const min = options.min ?? Number.MIN_SAFE_INTEGER;
  const max = options.max ?? Number.MAX_SAFE_INTEGER;
  const trimmed = value.trim().replaceAll("_", "");
  if (!/^-?\d+$/.test(trimmed)) {
    throw new UsageError(`${flag} expects an integer, got ${JSON.stringify(value)}`);
  }
  const parsed = Number(trimmed);
  if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`;
    throw new UsageError(`${flag} must be ${range}, got ${value}`);
  }
  return parsed;
}

/**
 * Parses an integer flag that may be absent.
 *
 * @param flag Flag name for the message, e.g. `--epochs`.
 * @param value The raw value, `undefined` when the flag was not given.
 * @param range The accepted range.
 * @returns The integer, or `undefined` when the flag was not given (so `?? DEFAULT` applies the default).
 *
 * @example Usage
 * ```ts
 * import { intFlag } from "./flags.ts";
 * intFlag("--epochs", "3", { min: 1, max: 1000 }) ?? 10; // 3
 * intFlag("--epochs", undefined, { min: 1, max: 1000 }) ?? 10; // 10
 * ```
 */
export function intFlag(flag: string, value: string | undefined, range: FlagRange = {}): number | undefined {
  return value === undefined ? undefined : parseIntegerFlag(flag, value, range);
}

/**
 * Parses a number flag that may be absent; see {@linkcode intFlag}.
 *
 * @param flag Flag name for the message, e.g. `--lr`.
 * @param value The raw value, `undefined` when the flag was not given.
 * @param range The accepted range.
 * @returns The number, or `undefined` when the flag was not given.
 */
export function numberFlag(
  flag: string,
  value: string | undefined,
  range: FlagRange = {},
): number | undefined {
  return value === undefined ? undefined : parseNumberFlag(flag, value, range);
}

/** Parses a finite number flag, e.g. a fraction. */
export function parseNumberFlag(flag: string, value: string, options: FlagRange = {}): number {
  const parsed = Number(value);
  if (value.trim() === "" || !Number.isFinite(parsed)) {
    throw new UsageError(`${flag} expects a number, got ${JSON.stringify(value)}`);
  }
  if (options.min !== undefined && parsed < options.min) {
    throw new UsageError(`${flag} must be >= ${options.min}, got ${value}`);
  }
  if (options.max !== undefined && parsed > options.max) {
    throw new UsageError(`${flag} must be <= ${options.max}, got ${value}`);
  }
  return parsed;
}
