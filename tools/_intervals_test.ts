import { strict as assert } from "node:assert";
import { SeededRandom } from "../lib/models/linear/model.ts";
import { accuracyInterval, formatPoints, marginInterval, unitScores } from "./_intervals.ts";

/** `n` predictions, one per review, right with probability `p` (seeded). */
function draws(n: number, p: number, seed: number): boolean[] {
  const random = new SeededRandom(seed);
  return Array.from({ length: n }, () => random.next() < p);
}

const identity = (n: number) => Array.from({ length: n }, (_, i) => i);

Deno.test("unitScores() sums predictions and right answers per review, and checks its input", () => {
  const scores = unitScores([0, 1, 1, 2], 3, [[true, false, true, true], [1, 1, 0, 0]]);
  assert.deepEqual([...scores.counts], [1, 2, 1]);
  assert.deepEqual([...scores.correct[0]!], [1, 1, 1]);
  assert.deepEqual([...scores.correct[1]!], [1, 1, 0]);
  assert.throws(() => unitScores([0, 1], 2, [[true]]), /model 0 has 1 predictions, expected 2/);
  assert.throws(() => unitScores([0, 5], 2, [[true, true]]), /prediction 1 names review 5/);
});

Deno.test("accuracyInterval() holds the accuracy, matches the binomial interval, and is seeded", () => {
  const n = 4000;
  const right = draws(n, 0.88, 3);
  const scores = unitScores(identity(n), n, [right]);
  const interval = accuracyInterval(scores, 0);
  const accuracy = right.filter(Boolean).length / n;
  assert.equal(interval.value, accuracy);
  assert.ok(interval.low < accuracy && accuracy < interval.high);
  const binomial = 1.96 * Math.sqrt((accuracy * (1 - accuracy)) / n);
  const half = (interval.high - interval.low) / 2;
  assert.ok(Math.abs(half - binomial) < 0.1 * binomial, `bootstrap ±${half}, binomial ±${binomial}`);
  assert.deepEqual(accuracyInterval(scores, 0), interval);
  assert.notDeepEqual(accuracyInterval(scores, 0, 2), interval);
  const perfect = accuracyInterval(unitScores(identity(10), 10, [Array(10).fill(true)]), 0);
  assert.deepEqual(perfect, { value: 1, low: 1, high: 1 });
});

Deno.test("marginInterval() is paired: reviews both models get right or wrong cancel", () => {
  const n = 4000;
  const a = draws(n, 0.88, 5);
  // b agrees with a except on 120 reviews a gets right and 40 it gets wrong: a is ahead by 2 points.
  const b = [...a];
  let flippedDown = 0;
  let flippedUp = 0;
  for (let i = 0; i < n; i++) {
    if (a[i] && flippedDown < 120) (b[i] = false), flippedDown++;
    else if (!a[i] && flippedUp < 40) (b[i] = true), flippedUp++;
  }
  const scores = unitScores(identity(n), n, [a, b]);
  const margin = marginInterval(scores, 0, 1);
  assert.ok(Math.abs(margin.value - 80 / n) < 1e-12);
  assert.ok(margin.low > 0, "a lead this consistent is not noise");
  const unpaired = accuracyInterval(scores, 0);
  assert.ok(margin.high - margin.low < unpaired.high - unpaired.low, "narrower than either accuracy");
  const same = marginInterval(unitScores(identity(n), n, [a, a]), 0, 1);
  assert.deepEqual(same, { value: 0, low: 0, high: 0 });
  assert.ok(marginInterval(scores, 1, 0).value < 0);
});

Deno.test("intervals resample reviews, so a review scored by several splits is not several reviews", () => {
  const n = 1000;
  const once = draws(n, 0.8, 7);
  // The same reviews scored three times, with the same outcome each time.
  const units = [...identity(n), ...identity(n), ...identity(n)];
  const repeated = accuracyInterval(unitScores(units, n, [[...once, ...once, ...once]]), 0);
  const asIfDistinct = accuracyInterval(
    unitScores(identity(3 * n), 3 * n, [[...once, ...once, ...once]]),
    0,
  );
  assert.equal(repeated.value, asIfDistinct.value);
  assert.ok(repeated.high - repeated.low > 1.5 * (asIfDistinct.high - asIfDistinct.low));
});

Deno.test("formatPoints() prints accuracy points, signed for margins", () => {
  assert.equal(formatPoints({ value: 0.88123, low: 0.875, high: 0.887 }), "88.12 (87.50 to 88.70)");
  assert.equal(formatPoints({ value: 0.0123, low: -0.001, high: 0.02 }, true), "+1.23 (-0.10 to +2.00)");
  assert.equal(formatPoints({ value: NaN, low: NaN, high: NaN }), "–");
});
