/**
 * The application's version, recorded with every model and shown by the HTTP API's `/version`. It is
 * `version` of deno.json, read here and nowhere else.
 *
 * @module
 */
import denoConfig from "../../deno.json" with { type: "json" };

/** Semantic version of this build. */
export const APP_VERSION: string = denoConfig.version;
