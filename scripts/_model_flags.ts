/**
 * `--model_version` (the product's spelling) and `--model-version` (the CLI convention) are the same
 * flag; this resolves the pair.
 *
 * @module
 */
import { UsageError } from "../lib/core/errors.ts";

/** Returns the model version flag's value, or throws a UsageError when it is missing or given twice. */
export function modelVersionFlag(
  values: { model_version?: string; "model-version"?: string },
  fallback?: string,
): string {
  const snake = values.model_version;
  const kebab = values["model-version"];
  if (snake !== undefined && kebab !== undefined && snake !== kebab) {
    throw new UsageError("--model_version and --model-version disagree; give one");
  }
  const value = snake ?? kebab ?? fallback;
  if (value === undefined) throw new UsageError("--model_version is required (a number, latest or @alias)");
  return value;
}
