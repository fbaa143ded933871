/**
 * The application's version, recorded with every model and shown by the HTTP API's `/version`.
 * Kept equal to `version` in deno.json by `version_test.ts`.
 *
 * @module
 */

/** Semantic version of this build. */
export const APP_VERSION = "0.1.0";
