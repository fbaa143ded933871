import assert from "node:assert/strict";
import fc from "fast-check";
import { loadModel } from "./artifact.ts";
import {
  calibratedProbability,
  CALIBRATION_BINS,
  CalibrationAccumulator,
  calibrationProblem,
  calibrationReport,
  decideCalibration,
  decisionPoint,
  fitIsotonic,
  fitPlatt,
} from "./calibration.ts";
import { ENGINES } from "./engines.ts";
import { rocAuc } from "./classification_metrics.ts";
import { LinearModel, SeededRandom } from "./linear/model.ts";
import { buildTinyLinearModelFiles } from "../serving/_tiny_model.ts";

/** Reviews whose true probability of being positive is `sigmoid(truth)`, scored `overconfidence × truth`. */
function overconfident(n: number, overconfidence: number, seed: number) {
  const random = new SeededRandom(seed);
  const scores: number[] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const truth = 6 * random.next() - 3;
    labels.push(random.next() < 1 / (1 + Math.exp(-truth)) ? 1 : 0);
    scores.push(overconfidence * truth);
  }
  return { scores, labels };
}

Deno.test("CalibrationAccumulator measures ECE, Brier and the reliability bins as defined", () => {
  const accumulator = new CalibrationAccumulator();
  // Bin 9: predicted 0.9, observed 1/2; bin 1: predicted 0.1, observed 0.
  accumulator.add(0.9, 1);
  accumulator.add(0.9, 0);
  accumulator.add(0.1, 0);
  accumulator.add(0.1, 0);
  const report = accumulator.report();
  assert.equal(report.rows, 4);
  assert.ok(Math.abs(report.ece - (0.5 * 0.4 + 0.5 * 0.1)) < 1e-12);
  assert.ok(Math.abs(report.mce - 0.4) < 1e-12);
  assert.ok(Math.abs(report.brier - (0.01 + 0.81 + 0.01 + 0.01) / 4) < 1e-12);
  assert.equal(report.bins.length, CALIBRATION_BINS);
  assert.deepEqual(report.bins.map((b) => b.count), [0, 2, 0, 0, 0, 0, 0, 0, 0, 2]);
  assert.ok(Number.isNaN(report.bins[0]!.observed));
  // A probability of exactly 1 falls in the last bin, not past it.
  const edges = calibrationReport([0, 1], [0, 1]);
  assert.deepEqual([edges.bins[0]!.count, edges.bins[9]!.count, edges.ece, edges.brier], [1, 1, 0, 0]);
  assert.ok(Number.isNaN(new CalibrationAccumulator().report().ece));
});

Deno.test("fitPlatt() recovers the scaling of over-confident scores", () => {
  const { scores, labels } = overconfident(20_000, 2.5, 1);
  const calibration = fitPlatt(scores, labels, "logit");
  assert.equal(calibration.method, "platt");
  assert.ok(Math.abs(calibration.a - 1 / 2.5) < 0.03, `a = ${calibration.a}`);
  assert.ok(Math.abs(calibration.b) < 0.05, `b = ${calibration.b}`);
  const calibrated = scores.map((s) => calibratedProbability(calibration, s));
  const raw = scores.map((s) => 1 / (1 + Math.exp(-s)));
  assert.ok(calibrationReport(calibrated, labels).ece < calibrationReport(raw, labels).ece / 3);
});

Deno.test("fitPlatt() stays finite on separable and one-class hold-outs, and refuses empty input", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.double({ min: -50, max: 50, noNaN: true }), fc.constantFrom(0, 1)), {
        minLength: 1,
        maxLength: 60,
      }),
      (pairs) => {
        const calibration = fitPlatt(pairs.map((p) => p[0]), pairs.map((p) => p[1]), "logit");
        assert.ok(
          Number.isFinite(calibration.a) && Number.isFinite(calibration.b),
          JSON.stringify(calibration),
        );
      },
    ),
    { numRuns: 300 },
  );
  assert.throws(() => fitPlatt([], [], "logit"), RangeError);
});

Deno.test("both calibrators are increasing, inside (0, 1), and never change a label (property)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: -20, max: 20 }), fc.constantFrom(0, 1)), {
        minLength: 1,
        maxLength: 80,
      }),
      fc.constantFrom("logit" as const, "probability" as const),
      (pairs, input) => {
        const toScore = (v: number) => (input === "logit" ? v / 4 : (v + 20) / 40);
        const scores = pairs.map((p) => toScore(p[0]));
        const labels = pairs.map((p) => p[1]);
        for (const calibration of [fitIsotonic(scores, labels, input), fitPlatt(scores, labels, input)]) {
          assert.equal(calibrationProblem(calibration), undefined, JSON.stringify(calibration));
          let previous = 0;
          for (let v = -32; v <= 32; v += 1) {
            const score = toScore(v);
            const p = calibratedProbability(calibration, score);
            assert.ok(p > 0 && p < 1 && p >= previous, `${calibration.method} ${score} → ${p}`);
            assert.equal(
              p >= 0.5,
              score >= decisionPoint(input),
              `${calibration.method}: the label of ${score}`,
            );
            previous = p;
          }
        }
      },
    ),
    { numRuns: 300 },
  );
  assert.throws(() => fitIsotonic([1], [], "logit"), RangeError);
});

Deno.test("fitIsotonic() pools each side of the decision point and keeps it at 1/2", () => {
  // Below 0: -2 (negative), -1 (positive); above: 1 (negative), 2 (positive). Smoothed by half a review.
  const calibration = fitIsotonic([-2, -1, 1, 2], [0, 1, 0, 1], "logit");
  assert.deepEqual(calibration.x, [-2, -1, 0, 1, 2]);
  assert.deepEqual(calibration.y, [0.25, 0.5 - 1e-9, 0.5, 0.5, 0.75]);
  assert.equal(calibratedProbability(calibration, 0), 0.5);
  assert.equal(calibratedProbability(calibration, 1.5), (0.5 + 0.75) / 2);
  assert.ok(calibratedProbability(calibration, -1e-6) < 0.5);
  // Past the end knots the probability still rises, a little: no two far scores tie.
  assert.ok(calibratedProbability(calibration, 5) > calibratedProbability(calibration, 3));
  assert.ok(calibratedProbability(calibration, 5) < 0.75 + 0.25 * 0.01);
});

/** Scores over-confident at the extremes and about right in the middle, as the linear model's are. */
function stretchedAtTheEnds(n: number, seed: number) {
  const random = new SeededRandom(seed);
  const scores: number[] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const truth = 6 * random.next() - 3;
    labels.push(random.next() < 1 / (1 + Math.exp(-truth)) ? 1 : 0);
    scores.push(truth ** 3 / 2);
  }
  return { scores, labels };
}

Deno.test("decideCalibration() keeps the calibrator that helps most on reviews it was not fitted on", () => {
  const off = overconfident(4000, 3, 2);
  const needed = decideCalibration(off.scores, off.labels, "logit");
  assert.ok(needed.before.ece > 0.02);
  assert.ok(needed.calibration && needed.after && needed.tried, needed.reason);
  assert.ok(needed.after.ece < needed.before.ece && needed.after.logLoss < needed.before.logLoss);
  assert.equal(needed.after.logLoss, Math.min(needed.tried.platt, needed.tried.isotonic));
  assert.match(needed.reason, /cross-fitted log loss: Platt 0\.\d+, isotonic 0\.\d+/);

  // A distortion no single slope undoes: isotonic regression wins.
  const bent = stretchedAtTheEnds(4000, 5);
  const isotonic = decideCalibration(bent.scores, bent.labels, "logit");
  assert.equal(isotonic.calibration?.method, "isotonic", isotonic.reason);
  assert.ok(isotonic.after!.ece < 0.03 && isotonic.before.ece > 0.05, isotonic.reason);
  // The order of the reviews is kept, but where the fit pooled reviews at 1/2: the ROC AUC barely moves.
  const labels = Uint8Array.from(bent.labels);
  const calibrated = Float64Array.from(bent.scores, (s) => calibratedProbability(isotonic.calibration!, s));
  const auc = rocAuc(labels, Float64Array.from(bent.scores));
  assert.ok(Math.abs(rocAuc(labels, calibrated) - auc) < 1e-4, `${rocAuc(labels, calibrated)} vs ${auc}`);

  const fine = overconfident(4000, 1, 3);
  const kept = decideCalibration(fine.scores, fine.labels, "logit");
  assert.ok(kept.before.ece <= 0.02, `ece ${kept.before.ece}`);
  assert.equal(kept.calibration, undefined);
  assert.equal(kept.after, undefined);
  assert.match(kept.reason, /is within 0\.02/);

  // Forced on well-calibrated scores, a calibrator is kept only if it lowers the held-out log loss.
  const forced = decideCalibration(fine.scores, fine.labels, "logit", { force: true });
  if (forced.calibration === undefined) assert.match(forced.reason, /no calibrator helps/);
  else assert.ok(forced.after!.logLoss < forced.before.logLoss);

  // Probabilities (a forest's scale) are calibrated the same way.
  const squeezed = off.scores.map((s) => 0.5 + 0.2 * Math.tanh(s / 6));
  const forest = decideCalibration(squeezed, off.labels, "probability");
  assert.equal(forest.calibration?.input, "probability");
  assert.ok(forest.after!.ece < forest.before.ece);
  assert.match(decideCalibration([0.3], [1], "probability").reason, /only 1 held-out reviews/);
});

Deno.test("a model saved with a calibrator serves calibrated probabilities; one without keeps loading", () => {
  const plain = loadModel(buildTinyLinearModelFiles(), ENGINES);
  const calibration = { method: "platt" as const, a: 0.5, b: 0.2, input: "logit" as const };
  const files = buildTinyLinearModelFiles({ calibration });
  const calibrated = loadModel(files, ENGINES);
  assert.deepEqual(calibrated.manifest.calibration, calibration);
  assert.equal(plain.manifest.calibration, undefined);
  const review = { title: "Great", text: "love it, works great" };
  const logit = (calibrated.engine as LinearModel).logitTokens(calibrated.tokenizer.tokenizeReview(review));
  const expected = 1 / (1 + Math.exp(-(0.5 * logit + 0.2)));
  assert.ok(Math.abs(calibrated.predict(review).positiveProbability - expected) < 1e-12);
  assert.ok(Math.abs(plain.predict(review).positiveProbability - 1 / (1 + Math.exp(-logit))) < 1e-12);
  // A broken calibrator fails loading instead of serving NaN.
  const isotonic = { method: "isotonic", input: "logit", x: [0, 1], y: [0.2, 0.9] };
  for (
    const broken of [
      { ...calibration, a: -1 },
      { ...calibration, b: null },
      { ...calibration, input: "rank" },
      { ...calibration, method: "beta" },
      { ...isotonic, x: [1, 0] },
      { ...isotonic, y: [0.2, 1] },
      { ...isotonic, y: [0.2] },
    ]
  ) {
    const manifest = JSON.parse(new TextDecoder().decode(files.get("model.json")));
    manifest.calibration = broken;
    const copy = new Map(files);
    copy.set("model.json", new TextEncoder().encode(JSON.stringify(manifest)));
    assert.throws(() => loadModel(copy, ENGINES), /calibrator is invalid/);
  }
});
