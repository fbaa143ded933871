/**
 * Loads a registered model version from MLflow: resolves `3`, `latest` or `@champion` to a version,
 * downloads its `model/` folder through the artifact proxy, and verifies and loads it. Evaluate, predict
 * and the HTTP API all load models through here.
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
const MAX_MODEL_BYTES = 2 ** 31 - 1;

/**
 * Resolves and loads a registered model version.
 *
 * @param client MLflow client.
 * @param name Registered model name.
 * @param spec `"3"`, `"latest"`, `"@champion"` or a parsed spec.
 * @param codecs Engines to accept. @default {ENGINES}
 * @throws {PipelineError} for an unknown version or alias, a missing or corrupt artifact.
 */
export async function loadRegisteredModel(
  client: MlflowClient,
  name: string,
  spec: string | VersionSpec,
  codecs: readonly EngineCodec[] = ENGINES,
): Promise<RegisteredSentimentModel> {
  const version = await resolveModelVersion(client, name, spec);
  const downloadUri = await client.getDownloadUri(version.name, version.version);
  const files = await client.downloadArtifactDir(downloadUri, "", {
    maxFiles: 64,
    maxBytes: MAX_MODEL_BYTES,
  });
  verifyManifestChecksum(version, files);
  return { model: loadModel(files, codecs), version, downloadUri };
}
