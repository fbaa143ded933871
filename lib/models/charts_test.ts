import { strict as assert } from "node:assert";
import { confusionMatrixChart, featureImportanceChart, reliabilityChart, rocCurveChart } from "./charts.ts";
import { calibrationReport } from "./calibration.ts";

Deno.test("confusionMatrixChart() renders an SVG that shows every count", async () => {
  const svg = await confusionMatrixChart({
    truePositive: 1234,
    falsePositive: 56,
    trueNegative: 789,
    falseNegative: 10,
  });
  assert.match(svg, /^<svg/);
  for (const text of ["1,234", "56", "789", "10", "predicted", "actual"]) assert.ok(svg.includes(text), text);
});

Deno.test("rocCurveChart() renders an SVG with the AUC in its title", async () => {
  const svg = await rocCurveChart([
    { falsePositiveRate: 0, truePositiveRate: 0, threshold: Infinity },
    { falsePositiveRate: 0.1, truePositiveRate: 0.8, threshold: 0.5 },
    { falsePositiveRate: 1, truePositiveRate: 1, threshold: 0 },
  ], 0.9123);
  assert.match(svg, /^<svg/);
  assert.ok(svg.includes("AUC = 0.9123"));
  assert.ok(svg.includes("<path"));
});

Deno.test("featureImportanceChart() lists the words", async () => {
  const svg = await featureImportanceChart([{ word: "great", importance: 0.2 }, {
    word: "not_good",
    importance: 0.1,
  }]);
  assert.ok(svg.includes("great") && svg.includes("not_good"));
});

Deno.test("reliabilityChart() renders the bins against the diagonal, with the ECE in its title", async () => {
  const report = calibrationReport([0.05, 0.15, 0.55, 0.95, 0.97], [0, 0, 1, 1, 0]);
  const svg = await reliabilityChart(report.bins, report.ece);
  assert.match(svg, /^<svg/);
  assert.ok(svg.includes(`expected calibration error = ${report.ece.toFixed(4)}`));
  assert.ok(svg.includes("mean predicted probability of positive"));
  assert.equal((svg.match(/<path/g) ?? []).length >= 2, true, "the diagonal and the curve");
});
