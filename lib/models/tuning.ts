/**
 * Hyper-parameter search for `train --search`: which settings to try ({@linkcode planTrials}: the whole
 * grid when it is small enough, else a seeded random sample of it), running trials a few at a time
 * ({@linkcode runTrials}), and picking the best ({@linkcode bestTrial}).
 *
 * Kept free of MLflow and of any model family: `scripts/train.ts` passes a function that runs one trial
 * (in a worker, as a child MLflow run) and gets the results back in trial order, so the outcome does not
 * depend on which trial finished first.
 *
 * @module
 */
import type { LinearParams } from "./linear/trainer.ts";
import { SeededRandom } from "./linear/model.ts";

/** The values to try for each parameter; a parameter with one value is fixed. */
export type SearchSpace<P> = { [K in keyof P]?: readonly P[K][] };

/**
 * The default search space of the linear model: learning rates from half to four times the default (√n
 * pooling and naive-Bayes weighting make larger steps than fastText's mean pooling, so the rates
 * Joulin et al. (2016) chose from, 0.1 to 1.0, are shifted down), and the default and twice its epochs
 * and dimension. Bigrams are not searched: they won on every dataset in that paper and on the
 * development data.
 */
export const LINEAR_SEARCH_SPACE: Readonly<SearchSpace<LinearParams>> = Object.freeze({
  learningRate: [0.025, 0.05, 0.1, 0.2],
  epochs: [5, 10],
  dim: [10, 20],
});

/** Trials of a search when the command line names no count. */
export const DEFAULT_SEARCH_TRIALS = 8;

/** Share of the training reviews a search holds out to score its trials on. */
export const DEFAULT_VALIDATION_FRACTION = 0.1;

/** One planned trial: its number (from 0, in plan order) and the parameters it sets. */
export interface Trial<P> {
  index: number;
  params: Partial<P>;
}

/**
 * Every combination of a search space, in a fixed order (the first parameter varies slowest).
 *
 * @param space Values per parameter.
 * @returns The combinations; one empty combination for an empty space.
 *
 * @example Usage
 * ```ts
 * import { gridOf } from "./tuning.ts";
 * console.assert(gridOf<{ a: number; b: number }>({ a: [1, 2], b: [3, 4] }).length === 4);
 * ```
 */
export function gridOf<P>(space: SearchSpace<P>): Partial<P>[] {
  let grid: Partial<P>[] = [{}];
  for (const [key, values] of Object.entries(space) as [keyof P, readonly P[keyof P][] | undefined][]) {
    if (!values || values.length === 0) continue;
    grid = grid.flatMap((partial) => values.map((value) => ({ ...partial, [key]: value })));
  }
  return grid;
}

/**
 * Plans the trials of a search: the whole grid when it has at most `count` points, otherwise `count`
 * distinct points drawn at random (seeded, so the same seed plans the same trials).
 *
 * @param space Values per parameter.
 * @param count Maximum number of trials (at least 1).
 * @param seed Seed of the random draw.
 * @returns The trials, numbered from 0.
 * @throws {RangeError} when `count` is below 1.
 */
export function planTrials<P>(space: SearchSpace<P>, count: number, seed: number): Trial<P>[] {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`trial count must be >= 1, got ${count}`);
  const grid = gridOf(space);
  let chosen = grid;
  if (grid.length > count) {
    // A partial Fisher-Yates shuffle: the first `count` positions are a uniform sample without repeats.
    const random = new SeededRandom(seed ^ 0x3c6ef372);
    const order = grid.map((_, i) => i);
    for (let i = 0; i < count; i++) {
      const j = i + random.below(order.length - i);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    chosen = order.slice(0, count).sort((a, b) => a - b).map((i) => grid[i]!);
  }
  return chosen.map((params, index) => ({ index, params }));
}

/**
 * Removes from a space the parameters the user fixed on the command line, so a search never overrides
 * an explicit `--epochs 5`.
 *
 * @param space The search space.
 * @param fixed The parameters set explicitly.
 * @returns The space without those parameters.
 */
export function withoutFixed<P>(space: SearchSpace<P>, fixed: Partial<P>): SearchSpace<P> {
  return Object.fromEntries(
    Object.entries(space).filter(([key]) => (fixed as Record<string, unknown>)[key] === undefined),
  ) as SearchSpace<P>;
}

/** Options of {@linkcode runTrials}. */
export interface RunTrialsOptions {
  /** Trials running at the same time. */
  concurrency: number;
  /** Aborting stops starting trials; running trials see the abort through the signal they are given. */
  signal?: AbortSignal;
}

/**
 * Runs trials at most `concurrency` at a time. The first failure aborts the trials still running (through
 * the signal each trial gets) and is what this rejects with, once every started trial has settled.
 *
 * @param trials The trials.
 * @param run Runs one trial; must honour its signal.
 * @param options Concurrency and an outer abort signal.
 * @returns Each trial's result, in trial order.
 */
export async function runTrials<P, R>(
  trials: readonly Trial<P>[],
  run: (trial: Trial<P>, signal: AbortSignal) => Promise<R>,
  options: RunTrialsOptions,
): Promise<R[]> {
  const controller = new AbortController();
  const outer = options.signal;
  const forward = () => controller.abort(outer!.reason);
  if (outer?.aborted) forward();
  outer?.addEventListener("abort", forward, { once: true });
  const results: R[] = new Array(trials.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const lane = async () => {
    while (next < trials.length && !controller.signal.aborted) {
      const trial = trials[next++]!;
      try {
        results[trial.index] = await run(trial, controller.signal);
      } catch (error) {
        failure ??= { error };
        controller.abort(error);
      }
    }
  };
  try {
    const lanes = Math.max(1, Math.min(options.concurrency, trials.length));
    await Promise.all(Array.from({ length: lanes }, lane));
  } finally {
    outer?.removeEventListener("abort", forward);
  }
  if (failure) throw failure.error;
  controller.signal.throwIfAborted();
  return results;
}

/** The score a trial is judged by. */
export interface TrialScore {
  /** Validation accuracy: higher is better. */
  accuracy: number;
  /** Validation log loss: breaks ties, lower is better. */
  logLoss: number;
}

/**
 * Whether trial `a` (number `ai`) beats trial `b` (number `bi`): higher accuracy, then lower log loss,
 * then the earlier trial. A total order, so trials can be compared as they finish, in any order, and
 * the winner is the same as {@linkcode bestTrial}'s.
 */
export function trialBeats(a: TrialScore, ai: number, b: TrialScore, bi: number): boolean {
  if (a.accuracy !== b.accuracy) return a.accuracy > b.accuracy || Number.isNaN(b.accuracy);
  if (a.logLoss !== b.logLoss) return a.logLoss < b.logLoss || Number.isNaN(b.logLoss);
  return ai < bi;
}

/**
 * The index of the best trial: highest accuracy, then lowest log loss, then the earliest trial (so a
 * tie goes to the first planned, e.g. the fewest epochs when the grid lists them first).
 *
 * @param scores One score per trial, in trial order.
 * @returns The index of the best one.
 * @throws {RangeError} when there is no score.
 */
export function bestTrial(scores: readonly TrialScore[]): number {
  if (scores.length === 0) throw new RangeError("no trial to choose from");
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (trialBeats(scores[i]!, i, scores[best]!, best)) best = i;
  return best;
}
