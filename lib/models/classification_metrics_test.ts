import { strict as assert } from "node:assert";
import {
  metricIntervals,
  MetricsAccumulator,
  rocAuc,
  rocAucInterval,
  rocCurve,
  wilsonInterval,
} from "./classification_metrics.ts";

function scoreAll(pairs: Array<[boolean, number]>) {
  const acc = new MetricsAccumulator();
  for (const [label, p] of pairs) acc.add(label, p);
  return acc;
}

Deno.test("MetricsAccumulator computes the confusion matrix and the derived metrics", () => {
  const metrics = scoreAll([[true, 0.9], [true, 0.4], [false, 0.6], [false, 0.1], [true, 0.8]]).result();
  assert.deepEqual(metrics.confusion, {
    truePositive: 2,
    falsePositive: 1,
    trueNegative: 1,
    falseNegative: 1,
  });
  assert.equal(metrics.accuracy, 3 / 5);
  assert.equal(metrics.precision, 2 / 3);
  assert.equal(metrics.recall, 2 / 3);
  assert.ok(Math.abs(metrics.f1 - 2 / 3) < 1e-12);
  assert.equal(metrics.support, 5);
});

Deno.test("MetricsAccumulator log loss matches the closed form and clips certainty", () => {
  const metrics = scoreAll([[true, 0.8], [false, 0.3]]).result();
  assert.ok(Math.abs(metrics.logLoss - -(Math.log(0.8) + Math.log(0.7)) / 2) < 1e-12);
  const certainWrong = scoreAll([[true, 0]]).result();
  assert.ok(Number.isFinite(certainWrong.logLoss) && certainWrong.logLoss > 30);
});

Deno.test("rocAuc() equals scikit-learn's value on a small case with ties", () => {
  // Positives 0.35, 0.8, 0.4 against negatives 0.1, 0.4, 0.2: 2 + 3 + 2.5 (a tie counts half) of 9 pairs,
  // which is also sklearn.metrics.roc_auc_score's value.
  const auc = rocAuc(new Uint8Array([0, 0, 1, 1, 1, 0]), new Float64Array([0.1, 0.4, 0.35, 0.8, 0.4, 0.2]));
  assert.ok(Math.abs(auc - 7.5 / 9) < 1e-12);
  assert.ok(Number.isNaN(rocAuc(new Uint8Array([1, 1]), new Float64Array([0.2, 0.3]))));
});

Deno.test("rocCurve() runs from (0,0) to (1,1) and is thinned to maxPoints", () => {
  const n = 1000;
  const labels = new Uint8Array(n);
  const scores = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 2;
    scores[i] = (i % 2) * 0.3 + (i / n) * 0.7;
  }
  const curve = rocCurve(labels, scores, 50);
  assert.equal(curve.length, 50);
  assert.deepEqual([curve[0]!.falsePositiveRate, curve[0]!.truePositiveRate], [0, 0]);
  assert.deepEqual([curve.at(-1)!.falsePositiveRate, curve.at(-1)!.truePositiveRate], [1, 1]);
  for (let i = 1; i < curve.length; i++) {
    assert.ok(curve[i]!.falsePositiveRate >= curve[i - 1]!.falsePositiveRate);
    assert.ok(curve[i]!.truePositiveRate >= curve[i - 1]!.truePositiveRate);
  }
});

Deno.test("wilsonInterval() matches published values and stays inside [0, 1]", () => {
  // Newcombe (1998), table I: 81/263 → 0.2553 to 0.3662.
  const [low, high] = wilsonInterval(81, 263);
  assert.ok(Math.abs(low - 0.2553) < 5e-4 && Math.abs(high - 0.3662) < 5e-4, `${low} ${high}`);
  assert.deepEqual(wilsonInterval(0, 10).map((v) => Number(v.toFixed(4))), [0, 0.2775]);
  assert.equal(wilsonInterval(10, 10)[1], 1);
  assert.ok(wilsonInterval(10, 10)[0] > 0.69);
  assert.ok(wilsonInterval(5, 0).every(Number.isNaN));
});

Deno.test("rocAucInterval() follows Hanley & McNeil and narrows with more reviews", () => {
  // Their formula by hand for AUC 0.9 with 50 and 50: Q1 = 0.8182, Q2 = 0.8526, standard error 0.0321.
  const [low, high] = rocAucInterval(0.9, 50, 50);
  assert.ok(Math.abs((high - low) / 2 / 1.96 - 0.0321) < 5e-4, `${low} ${high}`);
  const [wideLow, wideHigh] = rocAucInterval(0.9, 10, 10);
  assert.ok(wideHigh - wideLow > high - low);
  assert.ok(rocAucInterval(NaN, 10, 10).every(Number.isNaN));
});

Deno.test("metricIntervals() gives each metric an interval around it", () => {
  const accumulator = new MetricsAccumulator();
  for (let i = 0; i < 200; i++) accumulator.add(i % 2 === 0, i % 5 === 0 ? 0.3 : (i % 2 === 0 ? 0.8 : 0.2));
  const metrics = accumulator.result();
  const intervals = metricIntervals(metrics);
  for (
    const [name, value] of [
      ["accuracy", metrics.accuracy],
      ["precision", metrics.precision],
      ["recall", metrics.recall],
      ["rocAuc", metrics.rocAuc],
    ] as const
  ) {
    const [low, high] = intervals[name];
    assert.ok(low < value && value <= high, `${name} ${value} in [${low}, ${high}]`);
  }
});
