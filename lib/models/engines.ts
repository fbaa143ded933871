/**
 * The model engines this build can train and load. A model artifact names its engine; evaluate, predict
 * and the HTTP API look it up here, so they load any family without knowing it in advance.
 *
 * @module
 */
import { deserializeForest, MODEL_FORMAT as FOREST_FORMAT } from "./forest/model_format.ts";
import { type LinearHistory, LinearModel, type LinearShape } from "./linear/model.ts";
import { deserializeLinear, LINEAR_ENGINE_NAME } from "./linear/model_format.ts";
import type { EngineCodec } from "./artifact.ts";

/** The project's sparse random forest (`lib/models/forest/`): scores vocabulary ids. */
export const FOREST_ENGINE: EngineCodec = {
  name: FOREST_FORMAT,
  decode: (bytes) => deserializeForest(bytes),
};

/** What a linear model is made of, as it crosses between threads (the embeddings are transferred). */
interface LinearState {
  shape: LinearShape;
  embeddings: Float32Array;
  output: Float64Array;
  bias: number;
  history: LinearHistory;
  bucketScores: Float64Array;
}

/** The fastText-style linear model over hashed n-grams (`lib/models/linear/`): scores tokens. */
export const LINEAR_ENGINE: EngineCodec = {
  name: LINEAR_ENGINE_NAME,
  // The decoder computes the bucket scores too: where the model is loaded (a worker thread when serving),
  // not in its first request.
  decode: (bytes) => deserializeLinear(bytes),
  pack(engine) {
    if (!(engine instanceof LinearModel)) throw new TypeError("not a linear model");
    const state: LinearState = {
      shape: { ...engine.shape },
      embeddings: engine.embeddings,
      output: engine.output,
      bias: engine.bias,
      history: engine.history,
      bucketScores: engine.bucketScores(),
    };
    return {
      state,
      transfer: [engine.embeddings.buffer as ArrayBuffer, state.bucketScores.buffer as ArrayBuffer],
    };
  },
  unpack(state) {
    const { shape, embeddings, output, bias, history, bucketScores } = state as LinearState;
    return new LinearModel(shape, embeddings, output, bias, history, bucketScores);
  },
};

/** Every engine this build can load. */
export const ENGINES: readonly EngineCodec[] = [FOREST_ENGINE, LINEAR_ENGINE];
