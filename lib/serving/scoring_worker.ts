/**
 * Worker of `ScoringPool` (./scoring_pool.ts): holds copies of the serving model (the current one and the
 * one before, so a request that started before a reload is scored by the model it started with) and
 * scores the slices of batches it is sent, answering each review's probability of `positive`.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { loadModel, type SentimentModel } from "../models/artifact.ts";
import { ENGINES } from "../models/engines.ts";

/** Messages from the pool. */
export type ScoringRequest =
  | { kind: "load"; id: number; model: number; files: [string, Uint8Array][] }
  | { kind: "score"; id: number; model: number; reviews: [string, string][] };

/** Answers to the pool. */
export type ScoringAnswer =
  | { id: number; ok: true; probabilities?: Float64Array }
  | { id: number; ok: false; message: string };

/** Models kept: the serving one and the previous one. */
const KEPT = 2;
const models = new Map<number, SentimentModel>();

self.onmessage = (event: MessageEvent<ScoringRequest>) => {
  const request = event.data;
  try {
    if (request.kind === "load") {
      models.set(request.model, loadModel(new Map(request.files), ENGINES));
      for (const old of [...models.keys()].slice(0, -KEPT)) models.delete(old);
      self.postMessage({ id: request.id, ok: true } satisfies ScoringAnswer);
      return;
    }
    const model = models.get(request.model);
    if (!model) throw new Error(`model ${request.model} is no longer held`);
    const probabilities = new Float64Array(request.reviews.length);
    request.reviews.forEach(([title, text], i) => {
      probabilities[i] = model.predict({ title, text }).positiveProbability;
    });
    self.postMessage(
      { id: request.id, ok: true, probabilities } satisfies ScoringAnswer,
      [probabilities.buffer],
    );
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    self.postMessage({ id: request.id, ok: false, message } satisfies ScoringAnswer);
  }
};
