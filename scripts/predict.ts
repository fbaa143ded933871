/**
 * Stage `predict`: the sentiment of one review (`--title`, `--message`), or of every review of a CSV file
 * (`--input`, the dataset's format, written to stdout as CSV), with a registered model version from MLflow.
 * Needs no write permission; reaches only the MLflow server.
 *
 * @example
 * ```sh
 * deno task predict --title "Great pan" --message "Heats evenly, easy to clean" --model_version 1
 * make predict title="Great pan" message="Heats evenly" model_version=latest
 * ```
 *
 * @module
 */
import { PipelineError, UsageError } from "../lib/core/errors.ts";
import { parseVersionSpec } from "../lib/tracking/mlflow_registry.ts";
import type { Prediction } from "../lib/models/artifact.ts";
import { loadRegisteredModel } from "../lib/tracking/model_store.ts";
import { readReviews } from "../lib/data/review_reader.ts";
import { explanationJson, formatExplanation } from "../lib/models/explanation.ts";
import { intFlag } from "../lib/core/flags.ts";
import { defineStage, runStage, type StageContext, type StageResult } from "./_cli.ts";
import { connectMlflow, DEFAULT_MODEL_NAME, MLFLOW_ENV_USAGE } from "./_mlflow.ts";
import { modelVersionFlag } from "./_model_flags.ts";
import { openInput } from "../lib/core/read_guard.ts";
import { EXTERNAL_DIR, RAW_DIR } from "../lib/data/layout.ts";

/** Words `--explain` prints when `--top` is not given. */
export const DEFAULT_TOP = 10;

/** Version predicted with when `--model_version` is not given. */
export const DEFAULT_MODEL_VERSION = "latest";

const USAGE = `Usage: deno task predict --title T --message M [--model_version V] [options]
       deno task predict --input FILE.csv [--model_version V] [options]

Predicts the sentiment of a review with a registered model version.

Options:
  --title T                review title (may be empty)
  --message M              review text (also --text)
  --input FILE.csv         reviews in the dataset's format (polarity,title,text; polarity is kept as
                           true_polarity); predictions go to stdout as CSV. Readable under ${EXTERNAL_DIR}
                           or ${RAW_DIR}
  --model_version V        version number, "latest" or "@alias" (also --model-version; default ${DEFAULT_MODEL_VERSION})
  --model-name NAME        registered model (default ${DEFAULT_MODEL_NAME}, or MLFLOW_MODEL_NAME)
  --explain                also print the words that pushed the label most, each with the sign and size
                           of its contribution (exact: they add up to the model's score), and the
                           tokens it became (a negated "good" shows as not_good)
  --top N                  how many words --explain prints (default ${DEFAULT_TOP})
  --json                   print {"label","polarity","probability","model_version"} on stdout
                           (with --explain, also "explanation": every word, the top features)
  -h, --help               show this help

${MLFLOW_ENV_USAGE}

Examples:
  deno task predict --title "Broke in a week" --message "Cheap plastic, would not buy again" --model_version 1
  deno task predict --title "Not good" --message "It didn't work" --explain`;

/** The predict stage's command line. */
export const spec = defineStage({
  name: "predict",
  usage: USAGE,
  options: {
    title: { type: "string" },
    message: { type: "string" },
    text: { type: "string" },
    input: { type: "string" },
    model_version: { type: "string" },
    "model-version": { type: "string" },
    "model-name": { type: "string" },
    explain: { type: "boolean" },
    top: { type: "string" },
  },
});

/** Longest title plus message predict accepts, in characters. */
export const MAX_REVIEW_CHARS = 100_000;

function predictionJson(prediction: Prediction) {
  return { label: prediction.label, polarity: prediction.polarity, probability: prediction.probability };
}

async function predictFile(
  path: string,
  predict: (review: { title: string; text: string }) => Prediction,
  ctx: StageContext,
  version: string,
): Promise<StageResult> {
  if ((await Deno.permissions.query({ name: "read", path })).state !== "granted") {
    throw new PipelineError(
      `predict may not read ${path}; put the file under data/external/ (or data/raw/) of the project`,
    );
  }
  let file: Deno.FsFile;
  try {
    file = await openInput(path, [EXTERNAL_DIR, RAW_DIR]);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new PipelineError(`${path} not found`);
    throw error;
  }
  const rows: Array<Record<string, unknown>> = [];
  const lines: string[] = ["line,true_polarity,polarity,label,probability"];
  const encoder = new TextEncoder();
  const flush = () => {
    if (ctx.json || lines.length === 0) return;
    Deno.stdout.writeSync(encoder.encode(lines.join("\n") + "\n"));
    lines.length = 0;
  };
  const rejects: Array<{ line: number; reason: string }> = [];
  const reader = readReviews(file.readable, { signal: ctx.signal, onReject: (r) => void rejects.push(r) });
  let predicted = 0;
  for await (const { line, review } of reader) {
    predicted++;
    const prediction = predict(review);
    if (ctx.json) rows.push({ line, true_polarity: review.polarity, ...predictionJson(prediction) });
    else {
      lines.push(
        `${line},${review.polarity},${prediction.polarity},${prediction.label},${
          prediction.probability.toFixed(6)
        }`,
      );
      if (lines.length >= 1000) flush();
    }
  }
  if (predicted === 0) {
    // A header alone would read as success to a script: no valid review is a failure, as in ingest.
    const first = rejects[0];
    throw new PipelineError(
      first === undefined
        ? `${path} is empty; it must hold reviews as polarity,title,text`
        : `none of the ${rejects.length} lines of ${path} is a valid review (line ${first.line}: ${first.reason}); ` +
          "it must hold reviews as polarity,title,text, and nothing was predicted",
    );
  }
  flush();
  for (const reject of rejects.slice(0, 10)) ctx.log.warn(`line ${reject.line} skipped: ${reject.reason}`);
  if (rejects.length > 10) ctx.log.warn(`${rejects.length - 10} more lines skipped`);
  return { json: { model_version: version, input: path, rejected: rejects.length, predictions: rows } };
}

async function main(ctx: StageContext<typeof spec.options>): Promise<StageResult> {
  const { values, log, signal } = ctx;
  const versionSpec = parseVersionSpec(modelVersionFlag(values, DEFAULT_MODEL_VERSION), "--model_version");
  const input = values.input;
  const title = values.title ?? "";
  const message = values.message ?? values.text;
  if (input !== undefined && (values.title !== undefined || message !== undefined)) {
    throw new UsageError("give either --input or --title/--message, not both");
  }
  const explain = values.explain === true;
  if (explain && input !== undefined) {
    throw new UsageError("--explain explains one review; give --title/--message instead of --input");
  }
  if (values.top !== undefined && !explain) throw new UsageError("--top applies to --explain; add --explain");
  const top = intFlag("--top", values.top, { min: 1, max: 1000 }) ?? DEFAULT_TOP;
  if (input === undefined) {
    if (message === undefined && values.title === undefined) {
      throw new UsageError("nothing to predict: give --title and --message, or --input FILE.csv");
    }
    if (title.trim() === "" && (message ?? "").trim() === "") {
      throw new UsageError("--title and --message are both empty; give the review's text");
    }
    if (title.length + (message ?? "").length > MAX_REVIEW_CHARS) {
      throw new UsageError(`the review is longer than ${MAX_REVIEW_CHARS} characters`);
    }
  }

  const mlflow = await connectMlflow({ modelName: values["model-name"] }, log, signal);
  const loaded = await loadRegisteredModel(mlflow.client, mlflow.modelName, versionSpec);
  const version = String(loaded.version.version);
  log.info(`using ${mlflow.modelName} version ${version}`);
  if (input !== undefined) return await predictFile(input, loaded.model.predict, ctx, version);

  const review = { title, text: message ?? "" };
  const prediction = loaded.model.predict(review);
  const line = `${prediction.label} (probability ${
    prediction.probability.toFixed(4)
  }, polarity ${prediction.polarity}) by ${mlflow.modelName} version ${version}`;
  if (!explain) return { json: { ...predictionJson(prediction), model_version: version }, text: line };
  if (!loaded.model.explainable) {
    throw new PipelineError(
      `${mlflow.modelName} version ${version} was saved without what explanations need (a forest trained before them); retrain it to explain`,
    );
  }
  const explanation = loaded.model.explain(review);
  return {
    json: {
      ...predictionJson(prediction),
      model_version: version,
      explanation: explanationJson(explanation, top),
    },
    text: [line, ...formatExplanation(explanation, top)].join("\n"),
  };
}

if (import.meta.main) await runStage(spec, Deno.args, main);
