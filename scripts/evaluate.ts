/**
 * Stage `evaluate`: loads a registered model version from MLflow, scores `data/processed/test.tsv`, and
 * logs accuracy, precision, recall, F1, ROC AUC, log loss and the confusion matrix to a new MLflow run
 * (tagged with the model name and version), with confusion-matrix and ROC-curve charts as artifacts. The
 * metrics are also set as tags on the model version.
 *
 * @example
 * ```sh
 * deno task evaluate --model_version 3
 * make evaluate model_version=latest
 * ```
 *
 * @module
 */
import { checkTestSet, evaluateModel, metricsForMlflow, TEST_SET_PATH } from "../lib/evaluate.ts";
import { withRun } from "../lib/mlflow_client.ts";
import { parseVersionSpec } from "../lib/mlflow_registry.ts";
import { loadRegisteredModel } from "../lib/model_store.ts";
import { runStage, type StageContext, type StageResult, type StageSpec } from "./_cli.ts";
import { connectMlflow, DEFAULT_MODEL_NAME, MLFLOW_ENV_USAGE } from "./_mlflow.ts";
import { modelVersionFlag } from "./_model_flags.ts";

const USAGE = `Usage: deno task evaluate --model_version V [options]

Scores a registered model version on data/processed/test.tsv and logs the metrics to MLflow.

Options:
  --model_version V        version number, "latest" or "@alias" (also --model-version; required)
  --model-name NAME        registered model (default ${DEFAULT_MODEL_NAME}, or MLFLOW_MODEL_NAME)
  --json                   print {"model_name","model_version","run_id","metrics":{...}} on stdout
  -h, --help               show this help

${MLFLOW_ENV_USAGE}

Example:
  deno task evaluate --model_version latest`;

/** The evaluate stage's command line. */
export const spec: StageSpec = {
  name: "evaluate",
  usage: USAGE,
  options: {
    model_version: { type: "string" },
    "model-version": { type: "string" },
    "model-name": { type: "string" },
  },
};

function formatMetrics(metrics: Record<string, number>): string {
  return Object.entries(metrics)
    .map(([key, value]) => `  ${key.padEnd(16)} ${Number.isInteger(value) ? value : value.toFixed(4)}`)
    .join("\n");
}

async function main(ctx: StageContext): Promise<StageResult> {
  const { values, log, signal } = ctx;
  const versionSpec = parseVersionSpec(modelVersionFlag(values), "--model_version");
  // The test set must exist before anything is downloaded.
  await checkTestSet(TEST_SET_PATH);
  const mlflow = await connectMlflow({ modelName: values["model-name"] as string | undefined }, log, signal);
  const { client, config, modelName } = mlflow;
  const loaded = await loadRegisteredModel(client, modelName, versionSpec);
  const version = String(loaded.version.version);
  log.info(`evaluating ${modelName} version ${version}`, { source: loaded.version.source });

  const evaluation = await evaluateModel(loaded.model, TEST_SET_PATH, { signal });
  const metrics = metricsForMlflow(evaluation.metrics);
  const experiment = await client.getOrCreateExperiment(config.experimentName);
  const runId = await withRun(client, {
    experimentId: experiment.experimentId,
    runName: `evaluate-${modelName}-v${version}`,
    tags: {
      ...mlflow.sourceTags("scripts/evaluate.ts", "evaluate"),
      "model.name": modelName,
      "model.version": version,
      ...(loaded.version.runId ? { "model.run_id": loaded.version.runId } : {}),
    },
    signal,
    log,
  }, async (run) => {
    const id = run.info.runId;
    await client.logBatch(id, {
      params: { model_name: modelName, model_version: version, test_set: TEST_SET_PATH },
      metrics: { ...metrics, evaluate_seconds: evaluation.seconds },
    });
    await client.logInputs(id, [{
      name: "test",
      digest: evaluation.meta.output.sha256.slice(0, 36),
      sourceType: "local",
      source: { uri: TEST_SET_PATH },
      profile: { num_rows: evaluation.meta.rows },
      context: "evaluation",
    }]);
    const report = { model_name: modelName, model_version: version, metrics, roc_curve: evaluation.roc };
    await client.uploadArtifact(run.info.artifactUri, "metrics.json", JSON.stringify(report, null, 2));
    for (const [name, svg] of Object.entries(evaluation.charts)) {
      await client.uploadArtifact(run.info.artifactUri, name, svg);
    }
    return id;
  });
  for (const [key, value] of Object.entries(metrics)) {
    await client.setModelVersionTag(modelName, version, `eval.${key}`, String(value));
  }
  await client.setModelVersionTag(modelName, version, "eval.run_id", runId);

  return {
    json: { model_name: modelName, model_version: version, run_id: runId, metrics },
    text: `${modelName} version ${version} on ${TEST_SET_PATH} (run ${runId}):\n${formatMetrics(metrics)}`,
  };
}

if (import.meta.main) await runStage(spec, Deno.args, main);
