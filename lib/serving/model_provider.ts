/**
 * Where the HTTP API gets its model from, behind a small interface so the handler can be tested without
 * MLflow: {@linkcode ModelProvider} hands out the current model and swaps in a new one on request.
 *
 * A reload builds the new model completely before it replaces the old one in a single assignment, so a
 * request that is being scored keeps the model it started with and none is dropped or sees a half-loaded
 * model. Reloads that arrive while one is running join it instead of downloading the model twice.
 *
 * @module
 */
import type { Explanation } from "../models/explanation.ts";

/** What the API reads from one prediction; `SentimentModel.predict` (lib/models/artifact.ts) returns this shape. */
export interface PredictionLike {
  /** Human-readable label, e.g. "positive". */
  label: string;
  /** The dataset's polarity: 1 = negative, 2 = positive. */
  polarity: number;
  /** Probability of the predicted label. */
  probability: number;
  /** Probability that the review is positive. */
  positiveProbability: number;
}

/** Anything that scores one review; `SentimentModel` from `lib/models/artifact.ts` is one. */
export interface ReviewPredictor {
  /** Scores one review. Must not throw for any pair of strings. */
  predict(review: { title: string; text: string }): PredictionLike;
  /** Whether {@linkcode ReviewPredictor.explain} works; a predictor without it cannot explain. */
  readonly explainable?: boolean;
  /** Explains the prediction of one review exactly (`SentimentModel.explain`). */
  explain?(review: { title: string; text: string }): Explanation;
  /** Scores many reviews in order, e.g. on several threads (`ScoringPool`); optional. */
  predictBatch?(reviews: readonly { title: string; text: string }[]): Promise<PredictionLike[]>;
}

/** A model ready to serve, with the facts `/version` and the logs report about it. */
export interface LoadedModel {
  /** The scorer. */
  predictor: ReviewPredictor;
  /** Registered model name, e.g. "amazon-reviews-sentiment". */
  name: string;
  /** Registered model version, e.g. "3". */
  version: string;
  /** MLflow run that produced the model, when known. */
  runId?: string;
  /** Where the model's files came from (a download URI), when known. */
  source?: string;
  /** What was asked for, e.g. "@champion" or "latest", when it was not a plain version number. */
  requested?: string;
  /**
   * Where the version's model card is: its page in the MLflow UI (the description is the card in brief)
   * and `model_card.md`, the full card train and evaluate write beside the model.
   */
  modelCard?: { page: string; markdown: string };
  /** When this process finished loading it. */
  loadedAt: Date;
}

/** Result of {@linkcode ModelProvider.reload}. */
export interface ReloadOutcome {
  /** "loaded": a different model now serves; "unchanged": the requested model is already serving. */
  status: "loaded" | "unchanged";
  /** The model serving now. */
  model: LoadedModel;
  /** The model that served before, if any. */
  previous?: LoadedModel;
}

/** Hands out the model to score with, and replaces it on request. */
export interface ModelProvider {
  /** The model serving now, or `undefined` before the first successful load. */
  current(): LoadedModel | undefined;
  /**
   * Loads the requested model again (re-resolving an alias such as `@champion`) and swaps it in.
   * On failure the current model keeps serving and the promise rejects.
   */
  reload(): Promise<ReloadOutcome>;
}

/**
 * Loads a model. Given the model serving now, it may return that same object to say "nothing changed"
 * (e.g. an alias still points at the serving version), which skips the download.
 */
export type ModelLoader = (current: LoadedModel | undefined) => Promise<LoadedModel>;

/**
 * A {@linkcode ModelProvider} around a {@linkcode ModelLoader}: atomic swap, coalesced reloads, and the
 * old model kept when a reload fails.
 *
 * @example Usage
 * ```ts
 * import { ReloadingModelProvider } from "./model_provider.ts";
 * const provider = new ReloadingModelProvider(async () => ({
 *   predictor: {
 *     predict: () => ({ label: "positive", polarity: 2, probability: 0.9, positiveProbability: 0.9 }),
 *   },
 *   name: "demo",
 *   version: "1",
 *   loadedAt: new Date(),
 * }));
 * await provider.reload();
 * provider.current()?.version; // "1"
 * ```
 */
export class ReloadingModelProvider implements ModelProvider {
  #load: ModelLoader;
  #current: LoadedModel | undefined;
  #pending: Promise<ReloadOutcome> | undefined;

  /** @param load Builds the model; called once per (coalesced) reload. */
  constructor(load: ModelLoader) {
    this.#load = load;
  }

  /** The model serving now, or `undefined` before the first successful load. */
  current(): LoadedModel | undefined {
    return this.#current;
  }

  /** Whether a reload is running right now. */
  get reloading(): boolean {
    return this.#pending !== undefined;
  }

  /** Loads and swaps in the model; concurrent calls share one load. */
  reload(): Promise<ReloadOutcome> {
    this.#pending ??= this.#reloadOnce().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  async #reloadOnce(): Promise<ReloadOutcome> {
    const previous = this.#current;
    const next = await this.#load(previous);
    if (next === previous) return { status: "unchanged", model: next };
    // The one assignment that makes the new model visible; requests already running keep `previous`.
    this.#current = next;
    return previous ? { status: "loaded", model: next, previous } : { status: "loaded", model: next };
  }
}

/**
 * A provider that always serves one model and cannot reload; for tests and the load test.
 *
 * @param model The model to serve, or `undefined` for a server that is never ready.
 * @returns A provider whose `reload()` answers "unchanged" (or rejects when there is no model).
 */
export function staticModelProvider(model: LoadedModel | undefined): ModelProvider {
  return {
    current: () => model,
    reload: () =>
      model
        ? Promise.resolve({ status: "unchanged", model })
        : Promise.reject(new Error("this server was started without a model source; nothing to reload")),
  };
}
