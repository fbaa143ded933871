import { strict as assert } from "node:assert";
import {
  bestTrial,
  gridOf,
  LINEAR_SEARCH_SPACE,
  planTrials,
  runTrials,
  type Trial,
  trialBeats,
  withoutFixed,
} from "./tuning.ts";

type P = { a: number; b: string; c: number };

Deno.test("gridOf() lists every combination, first parameter slowest", () => {
  assert.deepEqual(gridOf<P>({ a: [1, 2], b: ["x", "y"] }), [
    { a: 1, b: "x" },
    { a: 1, b: "y" },
    { a: 2, b: "x" },
    { a: 2, b: "y" },
  ]);
  assert.deepEqual(gridOf<P>({}), [{}]);
  assert.equal(gridOf(LINEAR_SEARCH_SPACE).length, 16);
});

Deno.test("planTrials() runs the whole grid when it fits, else a seeded sample of distinct points", () => {
  const space = { a: [1, 2, 3], b: ["x", "y"], c: [7, 8] };
  const all = planTrials<P>(space, 12, 1);
  assert.deepEqual(all.map((t) => t.params), gridOf<P>(space));
  assert.deepEqual(all.map((t) => t.index), [...Array(12).keys()]);
  const some = planTrials<P>(space, 5, 1);
  assert.equal(some.length, 5);
  assert.equal(new Set(some.map((t) => JSON.stringify(t.params))).size, 5, "distinct");
  assert.deepEqual(planTrials<P>(space, 5, 1), some, "same seed, same plan");
  const others = [2, 3, 4, 5].map((seed) => JSON.stringify(planTrials<P>(space, 5, seed)));
  assert.ok(others.some((plan) => plan !== JSON.stringify(some)), "another seed, another plan");
  assert.throws(() => planTrials<P>(space, 0, 1), /trial count must be >= 1/);
});

Deno.test("withoutFixed() drops the parameters given explicitly", () => {
  assert.deepEqual(Object.keys(withoutFixed(LINEAR_SEARCH_SPACE, { epochs: 5 })).sort(), [
    "dim",
    "learningRate",
  ]);
  assert.deepEqual(withoutFixed(LINEAR_SEARCH_SPACE, {}), LINEAR_SEARCH_SPACE);
});

const trials: Trial<P>[] = Array.from({ length: 7 }, (_, index) => ({ index, params: { a: index } }));

Deno.test("runTrials() runs at most `concurrency` trials at once and returns results in trial order", async () => {
  let running = 0;
  let peak = 0;
  const results = await runTrials(trials, async (trial) => {
    running++;
    peak = Math.max(peak, running);
    // Later trials finish first, so order by completion would differ from trial order.
    await new Promise((resolve) => setTimeout(resolve, 30 - 4 * trial.index));
    running--;
    return trial.params.a! * 10;
  }, { concurrency: 2 });
  assert.equal(peak, 2);
  assert.deepEqual(results, [0, 10, 20, 30, 40, 50, 60]);
});

Deno.test("runTrials() aborts the running trials and starts no more after the first failure", async () => {
  const started: number[] = [];
  const aborted: number[] = [];
  await assert.rejects(
    runTrials(trials, (trial, signal) => {
      started.push(trial.index);
      return new Promise((resolve, reject) => {
        if (trial.index === 1) return setTimeout(() => reject(new Error("trial 1 failed")), 10);
        const timer = setTimeout(() => resolve(trial.index), 1000);
        signal.addEventListener("abort", () => {
          clearTimeout(timer);
          aborted.push(trial.index);
          reject(signal.reason);
        });
      });
    }, { concurrency: 2 }),
    /trial 1 failed/,
  );
  assert.deepEqual(started, [0, 1]);
  assert.deepEqual(aborted, [0]);
});

Deno.test("runTrials() stops when the outer signal aborts", async () => {
  const controller = new AbortController();
  const running = runTrials(trials, (_trial, signal) =>
    new Promise((_resolve, reject) => {
      signal.addEventListener("abort", () => reject(signal.reason));
    }), { concurrency: 2, signal: controller.signal });
  controller.abort(new Error("interrupted"));
  await assert.rejects(running, /interrupted/);
});

Deno.test("bestTrial() picks the highest accuracy, then the lowest log loss, then the earliest", () => {
  assert.equal(bestTrial([{ accuracy: 0.8, logLoss: 0.4 }, { accuracy: 0.9, logLoss: 0.5 }]), 1);
  assert.equal(bestTrial([{ accuracy: 0.9, logLoss: 0.4 }, { accuracy: 0.9, logLoss: 0.3 }]), 1);
  assert.equal(bestTrial([{ accuracy: 0.9, logLoss: 0.3 }, { accuracy: 0.9, logLoss: 0.3 }]), 0);
  assert.throws(() => bestTrial([]), /no trial/);
  assert.equal(bestTrial([{ accuracy: NaN, logLoss: NaN }, { accuracy: 0.5, logLoss: 1 }]), 1);
});

Deno.test("trialBeats() agrees with bestTrial() whatever order trials finish in", () => {
  const scores = [
    { accuracy: 0.9, logLoss: 0.3 },
    { accuracy: 0.91, logLoss: 0.5 },
    { accuracy: 0.91, logLoss: 0.4 },
    { accuracy: 0.91, logLoss: 0.4 },
    { accuracy: 0.7, logLoss: 0.2 },
  ];
  for (const order of [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [3, 0, 4, 2, 1]]) {
    let best = order[0]!;
    for (const i of order.slice(1)) if (trialBeats(scores[i]!, i, scores[best]!, best)) best = i;
    assert.equal(best, bestTrial(scores));
    assert.equal(best, 2);
  }
});
