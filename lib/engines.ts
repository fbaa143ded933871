/**
 * The model engines this build can train and load. A model artifact names its engine; evaluate, predict
 * and the HTTP API look it up here, so they load any family without knowing it in advance.
 *
 * @module
 */
import { deserializeForest, MODEL_FORMAT as FOREST_FORMAT } from "./forest/model_format.ts";
import type { EngineCodec } from "./model_artifact.ts";

/** The project's sparse random forest (`lib/forest/`). */
export const FOREST_ENGINE: EngineCodec = {
  name: FOREST_FORMAT,
  decode: (bytes) => deserializeForest(bytes),
};

/** Every engine this build can load. */
export const ENGINES: readonly EngineCodec[] = [FOREST_ENGINE];
