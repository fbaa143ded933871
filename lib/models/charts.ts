/**
 * Charts logged to MLflow as SVG artifacts (the MLflow UI previews SVG images), drawn with Vega-Lite
 * rendered headless by Vega: no canvas, no browser, no permissions.
 *
 * @module
 */
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import type { ConfusionMatrix, RocPoint } from "./classification_metrics.ts";
import type { ReliabilityBin } from "./calibration.ts";

/** Renders a Vega-Lite spec to an SVG document. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const runtime = vega.parse(compile(spec).spec);
  const view = new vega.View(runtime, { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** A 2×2 confusion-matrix heatmap with counts, actual classes on rows, predicted on columns. */
export function confusionMatrixChart(
  confusion: ConfusionMatrix,
  title = "Confusion matrix",
): Promise<string> {
  const cells = [
    { actual: "negative", predicted: "negative", count: confusion.trueNegative },
    { actual: "negative", predicted: "positive", count: confusion.falsePositive },
    { actual: "positive", predicted: "negative", count: confusion.falseNegative },
    { actual: "positive", predicted: "positive", count: confusion.truePositive },
  ];
  return renderSvg({
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title,
    data: { values: cells },
    width: 240,
    height: 240,
    encoding: {
      x: { field: "predicted", type: "nominal", title: "predicted", sort: ["negative", "positive"] },
      y: { field: "actual", type: "nominal", title: "actual", sort: ["negative", "positive"] },
    },
    layer: [
      {
        mark: "rect",
        encoding: { color: { field: "count", type: "quantitative", scale: { scheme: "blues" } } },
      },
      {
        mark: { type: "text", fontSize: 16 },
        encoding: {
          text: { field: "count", type: "quantitative", format: "," },
          color: {
            condition: { test: `datum.count > ${maxCount(cells) / 2}`, value: "white" },
            value: "black",
          },
        },
      },
    ],
  });
}

function maxCount(cells: Array<{ count: number }>): number {
  return Math.max(...cells.map((cell) => cell.count));
}

/** A ROC curve with the chance diagonal and the AUC in the title. */
export function rocCurveChart(points: RocPoint[], auc: number): Promise<string> {
  return renderSvg({
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: `ROC curve (AUC = ${auc.toFixed(4)})`,
    width: 320,
    height: 320,
    layer: [
      {
        data: { values: points.map((p) => ({ fpr: p.falsePositiveRate, tpr: p.truePositiveRate })) },
        mark: { type: "line", interpolate: "step-after" },
        encoding: {
          x: { field: "fpr", type: "quantitative", title: "false positive rate", scale: { domain: [0, 1] } },
          y: { field: "tpr", type: "quantitative", title: "true positive rate", scale: { domain: [0, 1] } },
        },
      },
      {
        data: { values: [{ fpr: 0, tpr: 0 }, { fpr: 1, tpr: 1 }] },
        mark: { type: "line", strokeDash: [4, 4], color: "gray" },
        encoding: { x: { field: "fpr", type: "quantitative" }, y: { field: "tpr", type: "quantitative" } },
      },
    ],
  });
}

/** A horizontal bar chart of the most important words. */
export function featureImportanceChart(
  words: Array<{ word: string; importance: number }>,
  title = "Most important words",
): Promise<string> {
  return renderSvg({
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title,
    width: 360,
    data: { values: words },
    mark: "bar",
    encoding: {
      y: { field: "word", type: "nominal", sort: "-x", title: null },
      x: { field: "importance", type: "quantitative", title: "impurity decrease (share)" },
    },
  });
}

/**
 * A reliability diagram: per probability bin, the share of reviews that were positive against the mean
 * probability the model gave them (on the diagonal when the probabilities mean what they say), the points
 * sized by how many reviews the bin holds, with the expected calibration error in the title.
 */
export function reliabilityChart(bins: readonly ReliabilityBin[], ece: number): Promise<string> {
  const points = bins.filter((bin) => bin.count > 0).map((bin) => ({
    predicted: bin.predicted,
    observed: bin.observed,
    reviews: bin.count,
  }));
  return renderSvg({
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: `Reliability (expected calibration error = ${ece.toFixed(4)})`,
    width: 320,
    height: 320,
    layer: [
      {
        data: { values: [{ predicted: 0, observed: 0 }, { predicted: 1, observed: 1 }] },
        mark: { type: "line", strokeDash: [4, 4], color: "gray" },
        encoding: {
          x: { field: "predicted", type: "quantitative" },
          y: { field: "observed", type: "quantitative" },
        },
      },
      {
        data: { values: points },
        mark: { type: "line", point: true },
        encoding: {
          x: {
            field: "predicted",
            type: "quantitative",
            title: "mean predicted probability of positive",
            scale: { domain: [0, 1] },
          },
          y: {
            field: "observed",
            type: "quantitative",
            title: "share of reviews that were positive",
            scale: { domain: [0, 1] },
          },
        },
      },
      {
        data: { values: points },
        mark: { type: "circle", opacity: 0.35 },
        encoding: {
          x: { field: "predicted", type: "quantitative" },
          y: { field: "observed", type: "quantitative" },
          size: { field: "reviews", type: "quantitative", title: "reviews" },
        },
      },
    ],
  });
}
