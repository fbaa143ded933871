/**
 * The MLflow-backed {@linkcode ModelLoader} of the HTTP API: resolves a registered model's version spec
 * (`3`, `latest`, `@champion`) on every (re)load, skips the download when that version is already
 * serving, and otherwise downloads the version's files and builds the predictor from them.
 *
 * The download is the one every stage uses (`downloadModelVersion` of `lib/tracking/model_store.ts`: READY
 * versions only, a non-empty download, the registered `model.json`). Building is injected (`build`), so
 * this module knows MLflow and not the artifact format; the serve script passes
 * `(files) => loadModel(files, codecs)` from `lib/models/artifact.ts`.
 *
 * @module
 */
import { PipelineError } from "../core/errors.ts";
import type { MlflowClient } from "../tracking/mlflow_client.ts";
import { parseVersionSpec, resolveModelVersion, validateModelName } from "../tracking/mlflow_registry.ts";
import { downloadModelVersion } from "../tracking/model_store.ts";
import type { LoadedModel, ModelLoader, ReviewPredictor } from "./model_provider.ts";

/** Options of {@linkcode createMlflowModelLoader}. */
export interface MlflowModelLoaderOptions {
  /** The MLflow client. */
  client: MlflowClient;
  /** Registered model name. */
  name: string;
  /** Version spec: a number, `latest`, `@alias` (validated here, so a typo fails before any request). */
  spec: string;
  /** Turns the version's files (paths relative to its download URI) into a predictor. */
  build: (files: Map<string, Uint8Array>) => ReviewPredictor | Promise<ReviewPredictor>;
  /** Largest model accepted, in bytes, so a wrong artifact cannot exhaust memory. @default {MAX_MODEL_BYTES} */
  maxModelBytes?: number;
  /**
   * Served while the alias of `spec` is not set on the model yet, e.g. `latest` behind serve's default
   * `@champion` before any evaluation promoted a version. Re-checked on every reload, so the alias is
   * picked up as soon as it exists.
   */
  fallbackSpec?: string;
}

/**
 * Creates the loader.
 *
 * @param options Client, model name, version spec and the predictor builder.
 * @returns A loader for `ReloadingModelProvider`.
 * @throws {UsageError} at once for an invalid model name or version spec.
 *
 * @example Usage
 * ```ts ignore
 * import { loadModel } from "../models/artifact.ts";
 * const loader = createMlflowModelLoader({
 *   client, name: "amazon-reviews-sentiment", spec: "@champion",
 *   build: (files) => loadModel(files, ENGINE_CODECS),
 * });
 * const provider = new ReloadingModelProvider(loader);
 * ```
 */
export function createMlflowModelLoader(options: MlflowModelLoaderOptions): ModelLoader {
  const { client, build } = options;
  const name = validateModelName(options.name);
  const spec = parseVersionSpec(options.spec, "--model_version");
  const requested = spec.kind === "number" ? undefined : spec.kind === "latest" ? "latest" : `@${spec.alias}`;
  const fallback = options.fallbackSpec === undefined
    ? undefined
    : parseVersionSpec(options.fallbackSpec, "--model_version");

  async function resolve() {
    if (fallback && spec.kind === "alias") {
      const registered = await client.getRegisteredModel(name);
      if (registered && !(spec.alias in registered.aliases)) {
        return await resolveModelVersion(client, name, fallback);
      }
    }
    return await resolveModelVersion(client, name, spec);
  }

  return async (current) => {
    const version = await resolve();
    const versionText = String(version.version);
    // A registered version's files never change, so the same version (and run) needs no download.
    if (
      current && current.name === name && current.version === versionText && current.runId === version.runId
    ) {
      return current;
    }
    const { files, downloadUri } = await downloadModelVersion(client, version, {
      ...(options.maxModelBytes !== undefined ? { maxBytes: options.maxModelBytes } : {}),
    });
    let predictor: ReviewPredictor;
    try {
      predictor = await build(files);
    } catch (error) {
      if (error instanceof PipelineError) {
        throw new PipelineError(`model "${name}" version ${versionText}: ${error.message}`, { cause: error });
      }
      throw error;
    }
    const model: LoadedModel = {
      predictor,
      name,
      version: versionText,
      source: downloadUri,
      loadedAt: new Date(),
    };
    if (version.runId) {
      model.runId = version.runId;
      model.modelCard = modelCardLinks(client.trackingUri, name, versionText, version.runId);
    }
    if (requested) model.requested = requested;
    return model;
  };
}

/**
 * Where a version's model card is, for `/version`: the version's page in the MLflow UI, and
 * `model_card.md` of its run through the tracking server's artifact download.
 *
 * @example Usage
 * ```ts
 * import { modelCardLinks } from "./mlflow_model_loader.ts";
 * modelCardLinks("http://127.0.0.1:5500", "amazon-reviews-sentiment", "3", "abc").page;
 * // "http://127.0.0.1:5500/#/models/amazon-reviews-sentiment/versions/3"
 * ```
 */
export function modelCardLinks(
  trackingUri: string,
  name: string,
  version: string,
  runId: string,
): { page: string; markdown: string } {
  const base = trackingUri.replace(/\/+$/, "");
  return {
    page: `${base}/#/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`,
    markdown: `${base}/get-artifact?path=model_card.md&run_uuid=${encodeURIComponent(runId)}`,
  };
}
