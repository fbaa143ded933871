import assert from "node:assert/strict";
import { lengthBin, SliceAccumulator, sliceMetricsForMlflow } from "./slices.ts";

Deno.test("lengthBin() puts every length in exactly one bin, open at the top", () => {
  assert.deepEqual([1, 10, 11, 25, 26, 100, 200, 201, 5000].map(lengthBin), [
    "1-10",
    "1-10",
    "11-25",
    "11-25",
    "26-50",
    "51-100",
    "101-200",
    "201+",
    "201+",
  ]);
});

Deno.test("SliceAccumulator reports accuracy, interval and balance per slice, length bins in order", () => {
  const slices = new SliceAccumulator("length");
  for (let i = 0; i < 10; i++) slices.add("201+", i < 6, i % 2 === 0);
  slices.add("1-10", true, true);
  const report = slices.report();
  assert.deepEqual(report.map((s) => s.name), ["1-10", "201+"]);
  assert.deepEqual([report[1]!.rows, report[1]!.accuracy, report[1]!.positiveShare], [10, 0.6, 0.5]);
  assert.ok(report[1]!.interval[0] < 0.6 && report[1]!.interval[1] > 0.6);
  const metrics = sliceMetricsForMlflow([...report, { ...report[0]!, by: "source", name: "Hu & Liu (CR)" }]);
  assert.equal(metrics["slice.length.201+.accuracy"], undefined, "a + is not allowed in an MLflow key");
  assert.equal(metrics["slice.length.201_.accuracy"], 0.6);
  assert.equal(metrics["slice.source.Hu _ Liu _CR_.rows"], 1);
});
