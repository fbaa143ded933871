/**
 * The project's forest against the reference implementation, `npm:ml-random-forest`, on the same small
 * generated data: at least as accurate, and much faster. (ml-random-forest needs `noOOB: true` on tiny
 * data, and its `predictProbability` miscounts the first tree's vote, so its majority vote `predict` is
 * compared.)
 */
import assert from "node:assert/strict";
import { RandomForestClassifier } from "ml-random-forest";
import { accuracy, synthetic } from "./_synthetic.ts";
import { trainForest } from "./forest.ts";

Deno.test("trainForest() is at least as accurate as ml-random-forest and much faster", async () => {
  // Text-like: besides the three strong words, 30 of the 60 words lean to one class. Small, because the
  // reference copies the dense matrix at every node (seconds for a few hundred rows).
  const numFeatures = 60;
  const options = { numFeatures, flip: 0.05, noise: 0.1, informative: 30 };
  const train = synthetic({ rows: 250, seed: 31, ...options });
  const test = synthetic({ rows: 1000, seed: 32, ...options });
  const dense = (rows: number[][]) =>
    rows.map((row) => {
      const x = new Array(numFeatures).fill(0);
      for (const f of row) x[f] = 1;
      return x;
    });

  let started = performance.now();
  const reference = new RandomForestClassifier({ nEstimators: 15, seed: 42, noOOB: true });
  reference.train(dense(train.rows), train.labels);
  const referencePredictions: number[] = reference.predict(dense(test.rows));
  const referenceMs = performance.now() - started;
  const referenceAccuracy = accuracy(referencePredictions, test.labels);

  started = performance.now();
  const forest = await trainForest(train.dataset, { trees: 15, seed: 42 }, { workers: 0 });
  const ours = forest.predictProbaBatch(test.dataset);
  const oursMs = performance.now() - started;
  const oursAccuracy = accuracy(ours, test.labels);

  console.log(
    `accuracy ours ${oursAccuracy.toFixed(3)} vs ml-random-forest ${referenceAccuracy.toFixed(3)}; ` +
      `time ours ${oursMs.toFixed(0)} ms vs ${referenceMs.toFixed(0)} ms`,
  );
  assert.ok(referenceAccuracy > 0.6, "the reference learned something (the comparison is meaningful)");
  assert.ok(oursAccuracy >= referenceAccuracy, `ours ${oursAccuracy} < reference ${referenceAccuracy}`);
  assert.ok(oursMs * 10 < referenceMs, `ours ${oursMs} ms is not 10x faster than ${referenceMs} ms`);
});
