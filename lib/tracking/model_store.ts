/**
 * Loads a registered model version from MLflow: resolves `3`, `latest` or `@champion` to a version,
 * downloads its `model/` folder through the artifact proxy ({@linkcode downloadModelVersion}: the version
 * must be READY, the download non-empty and `model.json` the one train registered), and verifies and loads
 * it. Evaluate, predict, train's warm start and the HTTP API all download models through here.
 *
 * @module
 */
import { ENGINES } from "../models/engines.ts";
import { PipelineError } from "../core/errors.ts";
import type { MlflowClient, ModelVersion } from "./mlflow_client.ts";
import { resolveModelVersion, type VersionSpec } from "./mlflow_registry.ts";
import { type EngineCodec, loadModel, type SentimentModel, sha256Hex } from "../models/artifact.ts";

/**
 * Model version tag holding the SHA-256 of the artifact's `model.json`, set by train when it registers
 * the version. `model.json` holds the checksums of the other files but cannot hold its own, so without
 * this tag a valid-looking edit of it (swapped labels, another positive polarity) would load silently;
 * the registry keeps the tag apart from the artifact store.
 */
export const MODEL_JSON_SHA256_TAG = "model_json_sha256";

/** A model loaded from the registry, with where it came from. */
export interface RegisteredSentimentModel {
  model: SentimentModel;
  version: ModelVersion;
  /** The artifact URI the files were downloaded from. */
  downloadUri: string;
}

/**
 * Checks the downloaded `model.json` against the SHA-256 train recorded on the version
 * ({@linkcode MODEL_JSON_SHA256_TAG}): `model.json` holds the other files' checksums but cannot hold its own.
 * Versions registered before the tag existed have none; their other files are still verified by `loadModel`.
 *
 * @throws {PipelineError} when the manifest was replaced or edited after registration.
 */
export function verifyManifestChecksum(version: ModelVersion, files: Map<string, Uint8Array>): void {
  const expected = version.tags[MODEL_JSON_SHA256_TAG];
  const manifest = files.get("model.json");
  if (expected !== undefined && manifest !== undefined && sha256Hex(manifest) !== expected) {
    throw new PipelineError(
      `model "${version.name}" version ${version.version}: model.json does not match the checksum recorded when ` +
        `version ${version.version} was registered (tampered or replaced); retrain or register the version again`,
    );
  }
}

/** A model artifact is a handful of files; anything far larger is not ours. */
export const MAX_MODEL_BYTES = 2 ** 31 - 1;

/** Most files a model artifact may hold: it is a handful, so more means a wrong URI. */
const MAX_MODEL_FILES = 64;

/** The files of a registered version, as downloaded. */
export interface ModelDownload {
  /** Path relative to the version's download URI → bytes. */
  files: Map<string, Uint8Array>;
  /** The artifact URI the files were downloaded from (a `runs:/` source resolved to the run's artifacts). */
  downloadUri: string;
}

/**
 * Downloads the files of a registered version: only a READY version, never an empty folder, and only when
 * `model.json` is the one recorded at registration ({@linkcode verifyManifestChecksum}).
 *
 * @param client MLflow client.
 * @param version The resolved version.
 * @param options The largest download accepted, in bytes. @default {MAX_MODEL_BYTES}
 * @throws {PipelineError} for a version still registering (or failed), a version without files, or a
 *   replaced `model.json`.
 */
export async function downloadModelVersion(
  client: MlflowClient,
  version: ModelVersion,
  options: { maxBytes?: number } = {},
): Promise<ModelDownload> {
  const { name } = version;
  if (version.status !== "" && version.status !== "READY") {
    throw new PipelineError(
      `model "${name}" version ${version.version} is ${version.status}, not READY; wait for its registration to finish`,
    );
  }
  const downloadUri = await client.resolveArtifactUri(await client.getDownloadUri(name, version.version));
  // The caps stop a wrong URI from filling the memory.
  const files = await client.downloadArtifactDir(downloadUri, "", {
    maxFiles: MAX_MODEL_FILES,
    maxBytes: options.maxBytes ?? MAX_MODEL_BYTES,
  });
  if (files.size === 0) {
    throw new PipelineError(
      `model "${name}" version ${version.version} has no files at ${downloadUri}; register a version that train uploaded`,
    );
  }
  verifyManifestChecksum(version, files);
  return { files, downloadUri };
}

/**
 * Resolves and loads a registered model version.
 *
 * @param client MLflow client.
 * @param name Registered model name.
 * @param spec `"3"`, `"latest"`, `"@champion"` or a parsed spec.
 * @param codecs Engines to accept. @default {ENGINES}
 * @throws {PipelineError} for an unknown version or alias, a version not READY, a missing or corrupt artifact.
 */
export async function loadRegisteredModel(
  client: MlflowClient,
  name: string,
  spec: string | VersionSpec,
  codecs: readonly EngineCodec[] = ENGINES,
): Promise<RegisteredSentimentModel> {
  const version = await resolveModelVersion(client, name, spec);
  const { files, downloadUri } = await downloadModelVersion(client, version);
  return { model: loadModel(files, codecs), version, downloadUri };
}
