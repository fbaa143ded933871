/**
 * Picking a registered model version from the command line: `--model-version 3`, `latest`,
 * `@champion` (or the bare alias `champion`), with validation of model names and version specs and
 * one-line errors that say what exists.
 *
 * @module
 */
import { PipelineError, UsageError } from "../core/errors.ts";
import { isNotFound, MlflowApiError, type MlflowClient, type ModelVersion } from "./mlflow_client.ts";

/** A parsed version spec. */
export type VersionSpec =
  | { kind: "number"; version: number }
  | { kind: "latest" }
  | { kind: "alias"; alias: string };

const ALIAS = /^[\p{L}\p{N}_-]{1,255}$/u;

/**
 * Parses a version spec: a positive integer (`3`, also `v3`), `latest` (the highest version number),
 * `@alias`, or a bare alias that starts with a letter (`champion`).
 *
 * @param spec The raw value.
 * @param flag Flag name for the message.
 * @returns The parsed spec.
 * @throws {UsageError} for `0`, a negative or fractional number, or anything that is neither a
 *   number nor a valid alias.
 *
 * @example Usage
 * ```ts
 * import { parseVersionSpec } from "./mlflow_registry.ts";
 * parseVersionSpec("3"); // { kind: "number", version: 3 }
 * parseVersionSpec("@champion"); // { kind: "alias", alias: "champion" }
 * ```
 */
export function parseVersionSpec(spec: string, flag = "--model-version"): VersionSpec {
  const value = spec.trim();
  const expected = `${flag} expects a version number (1, 2, ...), "latest" or "@alias"`;
  if (/^[vV]?\d+$/.test(value)) {
    const version = Number(value.replace(/^[vV]/, ""));
    if (!Number.isSafeInteger(version) || version < 1) {
      throw new UsageError(`${expected}; versions start at 1, got ${JSON.stringify(spec)}`);
    }
    return { kind: "number", version };
  }
  if (value.toLowerCase() === "latest") return { kind: "latest" };
  // An alias needs its "@": a bare word is more likely a typo ("lastest", "abc") than an alias, and
  // taking it for one would send a version lookup to the server instead of a usage error.
  if (!value.startsWith("@")) {
    const hint = ALIAS.test(value) && /^[\p{L}_]/u.test(value) ? ` (for an alias, write @${value})` : "";
    throw new UsageError(`${expected}, got ${JSON.stringify(spec)}${hint}`);
  }
  const alias = value.slice(1);
  if (!ALIAS.test(alias)) throw new UsageError(`${expected}, got ${JSON.stringify(spec)}`);
  if (alias.toLowerCase() === "latest") return { kind: "latest" };
  return { kind: "alias", alias };
}

/** How a spec reads in messages: `version 3`, `the latest version`, `alias "champion"`. */
export function describeVersionSpec(spec: VersionSpec): string {
  switch (spec.kind) {
    case "number":
      return `version ${spec.version}`;
    case "latest":
      return "the latest version";
    case "alias":
      return `alias "${spec.alias}"`;
  }
}

/**
 * Checks a registered model name given on the command line. Names end up in artifact paths, filters
 * and file names, so path characters, quotes and control characters are refused.
 *
 * @param name The raw name.
 * @param flag Flag or variable name for the message.
 * @returns The name.
 * @throws {UsageError} for an empty name, `/`, `\`, `:`, `..`, quotes, control characters, or over 256 characters.
 *
 * @example Usage
 * ```ts
 * import { validateModelName } from "./mlflow_registry.ts";
 * validateModelName("amazon-reviews-rf"); // "amazon-reviews-rf"
 * ```
 */
export function validateModelName(name: string, flag = "--model-name"): string {
  const shown = JSON.stringify(name);
  if (name.trim() === "") throw new UsageError(`${flag} must not be empty`);
  if (name !== name.trim()) throw new UsageError(`${flag} ${shown} must not start or end with spaces`);
  if ([...name].length > 256) throw new UsageError(`${flag} must be at most 256 characters`);
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) {
    throw new UsageError(`${flag} ${shown} must not contain control characters`);
  }
  if (/[\/\\:'"`]/.test(name) || name.includes("..")) {
    throw new UsageError(
      `${flag} ${shown} must not contain "/", "\\", ":", quotes or ".."; use letters, digits, "-", "_" and "."`,
    );
  }
  return name;
}

function noVersionsYet(name: string): PipelineError {
  return new PipelineError(`model "${name}" has no versions yet; run train first (make train)`);
}

function isUnknownAlias(error: unknown): boolean {
  // MLflow answers an unknown alias with 400 INVALID_PARAMETER_VALUE "Registered model alias x not found."
  return isNotFound(error) ||
    (error instanceof MlflowApiError && error.errorCode === "INVALID_PARAMETER_VALUE" &&
      /alias .* not found/i.test(error.message));
}

/**
 * Resolves a model name and version spec to a registered version.
 *
 * @param client The MLflow client.
 * @param name Registered model name.
 * @param spec A raw spec (`"3"`, `"latest"`, `"@champion"`) or a parsed one.
 * @returns The model version.
 * @throws {UsageError} for an invalid name or spec.
 * @throws {PipelineError} when the version or alias does not exist, saying what does:
 *   `model "x" has no version 9 (latest is 4)`.
 *
 * @example Usage
 * ```ts ignore
 * const version = await resolveModelVersion(client, "amazon-reviews-rf", "@champion");
 * const uri = await client.getDownloadUri(version.name, version.version);
 * ```
 */
export async function resolveModelVersion(
  client: MlflowClient,
  name: string,
  spec: string | VersionSpec,
): Promise<ModelVersion> {
  validateModelName(name);
  const parsed = typeof spec === "string" ? parseVersionSpec(spec) : spec;
  switch (parsed.kind) {
    case "number": {
      try {
        return await client.getModelVersion(name, parsed.version);
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
      const latest = await client.getLatestVersion(name);
      if (latest === undefined) throw noVersionsYet(name);
      throw new PipelineError(
        `model "${name}" has no version ${parsed.version} (latest is ${latest.version})`,
      );
    }
    case "latest": {
      const latest = await client.getLatestVersion(name);
      if (latest === undefined) throw noVersionsYet(name);
      return latest;
    }
    case "alias": {
      try {
        return await client.getModelVersionByAlias(name, parsed.alias);
      } catch (error) {
        if (!isUnknownAlias(error)) throw error;
      }
      const model = await client.getRegisteredModel(name);
      if (model === undefined) throw noVersionsYet(name);
      const known = Object.entries(model.aliases).map(([alias, version]) => `@${alias}=${version}`);
      throw new PipelineError(
        `model "${name}" has no alias "${parsed.alias}" (${
          known.length ? `aliases: ${known.join(", ")}` : "it has no aliases"
        }); use a version number or "latest"`,
      );
    }
  }
}
