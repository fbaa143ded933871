/**
 * Numbers for humans, in the messages and reports of every stage and tool.
 *
 * @module
 */

/**
 * A byte count in decimal units, as download tools and `ls -h --si` show them: one decimal below 10 MB,
 * whole megabytes up to a gigabyte, two decimals above; "–" when the count is unknown.
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
  if (bytes < 1e3) return `${bytes} B`;
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} kB`;
  if (bytes < 1e7) return `${(bytes / 1e6).toFixed(1)} MB`;
  if (bytes < 1e9) return `${Math.round(bytes / 1e6)} MB`;
  return `${(bytes / 1e9).toFixed(2)} GB`;
}
