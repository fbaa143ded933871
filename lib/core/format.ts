/**
 * Numbers for humans, in the messages and reports of every stage and tool.
 *
 * @module
 */

const BYTE_UNITS = ["B", "kB", "MB", "GB", "TB"] as const;

/**
 * A byte count in decimal units, as `df -H` and download tools print them: one decimal below 10 of a
 * unit, whole numbers from 10; "–" when the count is unknown.
 *
 * @example Usage
 * ```ts
 * import { formatBytes } from "./format.ts";
 * formatBytes(1_234_567); // "1.2 MB"
 * formatBytes(183_400_000); // "183 MB"
 * formatBytes(null); // "–"
 * ```
 */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return "–";
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < BYTE_UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${BYTE_UNITS[unit]}`;
}
