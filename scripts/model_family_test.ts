/**
 * Integration tests of the linear model family, tuning runs and champion promotion: train, evaluate and
 * predict run as processes with their real permission sets against the real MLflow server at
 * MLFLOW_TRACKING_URI (`make test` starts one on port 5501), and the tests check what MLflow holds.
 */
import { strict as assert } from "node:assert";
import { MlflowClient } from "../lib/tracking/mlflow_client.ts";
import { createProjectRoot, ok, type ProjectRoot, runTask, type StageRun } from "./_testing.ts";
import { DEFAULT_LINEAR_PARAMS } from "../lib/models/linear/trainer.ts";

const trackingUri = Deno.env.get("MLFLOW_TRACKING_URI") ?? "http://127.0.0.1:5501";
const client = new MlflowClient({ trackingUri, retry: { retries: 1, baseDelayMs: 50 } });
const suffix = crypto.randomUUID().slice(0, 8);
const experimentName = `test-model-family-${suffix}`;
const modelName = `test-family-${suffix}`;
const env = {
  MLFLOW_TRACKING_URI: trackingUri,
  MLFLOW_ALLOW_NET: `--allow-net=${new URL(trackingUri).host}`,
  MLFLOW_EXPERIMENT_NAME: experimentName,
  MLFLOW_MODEL_NAME: modelName,
};
const TIMEOUT_MS = 180_000;

async function stage(root: ProjectRoot, task: string, args: string[]): Promise<StageRun> {
  return await runTask(root, task, args, { env, timeoutMs: TIMEOUT_MS });
}

async function json(root: ProjectRoot, task: string, args: string[]): Promise<Record<string, unknown>> {
  return JSON.parse(ok(await stage(root, task, [...args, "--json"]), `${task} ${args.join(" ")}`).stdout);
}

async function prepareData(root: ProjectRoot): Promise<void> {
  for (
    const [task, args] of [
      ["ingest", ["--source", "sample", "--rows", "1600", "--test-rows", "400"]],
      ["split_batches", ["--batch-size", "800"]],
      ["preprocess_batch", ["0"]],
      ["preprocess_batch", ["1"]],
      ["preprocess_test", []],
    ] as const
  ) {
    ok(await runTask(root, task, [...args], { timeoutMs: TIMEOUT_MS }), `${task} ${args.join(" ")}`);
  }
}

async function aliases(): Promise<Record<string, number>> {
  return (await client.getRegisteredModel(modelName))?.aliases ?? {};
}

Deno.test("linear family, warm start, search and promotion run end to end against a real MLflow server", async (t) => {
  try {
    await client.health();
  } catch (error) {
    throw new Error(`no MLflow server at ${trackingUri}; start one with "make mlflow-test" (${error})`);
  }
  await using root = await createProjectRoot();
  await prepareData(root);

  await t.step(
    "train trains the linear family by default and logs an artifact without a vocabulary",
    async () => {
      const result = await json(root, "train", ["--batches", "0", "1", "--seed", "7"]);
      assert.equal(result.model, "linear");
      assert.equal(result.model_version, "1");
      const run = await client.getRun(result.run_id as string);
      assert.equal(run.info.status, "FINISHED");
      assert.equal(run.data.params.engine, "hashed-linear");
      assert.equal(run.data.params.model_family, "linear");
      assert.equal(run.data.params.epochs, String(DEFAULT_LINEAR_PARAMS.epochs));
      assert.equal(run.data.params.seed, "7");
      assert.equal(run.data.metrics.train_rows! + run.data.metrics.calibration_rows!, 1600);
      const losses = await client.getMetricHistory(run.info.runId, "train_log_loss");
      assert.deepEqual(
        losses.map((m) => m.step),
        Array.from({ length: DEFAULT_LINEAR_PARAMS.epochs }, (_, i) => i + 1),
      );
      assert.ok(losses.at(-1)!.value < losses[0]!.value, "the training loss falls");
      const files = (await client.listArtifacts(run.info.artifactUri, "model")).map((f) => f.path).sort();
      assert.deepEqual(files, ["model/MLmodel", "model/engine.bin", "model/model.json"]);
      assert.equal((await client.getModelVersion(modelName, 1)).tags.engine, "hashed-linear");
    },
  );

  await t.step("evaluate promotes the first version to @champion and records why", async () => {
    const result = await json(root, "evaluate", ["--model_version", "1"]);
    const metrics = result.metrics as Record<string, number>;
    assert.ok(metrics.accuracy! > 0.8, `accuracy ${metrics.accuracy}`);
    assert.deepEqual(result.promotion, {
      promoted: true,
      alias: "champion",
      decision: "promoted",
      metric: "accuracy",
      margin: 0.002,
      new: metrics.accuracy,
      champion: null,
      champion_version: null,
      reason: `no champion yet; version 1 (accuracy ${metrics.accuracy!.toFixed(4)}) becomes the first`,
    });
    assert.deepEqual(await aliases(), { champion: 1 });
    const version = await client.getModelVersion(modelName, 1);
    assert.equal(version.tags["promotion.decision"], "promoted");
    assert.match(version.tags["promotion.reason"]!, /no champion yet/);
    assert.equal(version.tags["eval.accuracy"], String(metrics.accuracy));
    const run = await client.getRun(result.run_id as string);
    assert.equal(run.data.tags["promotion.decision"], "promoted");
    assert.equal(run.data.tags["model.engine"], "hashed-linear");
  });

  await t.step(
    "a worse model does not take @champion: it becomes @challenger and the line says so",
    async () => {
      const trained = await json(root, "train", ["--batches", "0", "--epochs", "1", "--lr", "0.01"]);
      assert.equal(trained.model_version, "2");
      const run = ok(await stage(root, "evaluate", ["--model_version", "2"]), "evaluate 2");
      const champion = Number((await client.getModelVersion(modelName, 1)).tags["eval.accuracy"]);
      const last = run.stdout.trim().split("\n").at(-1)!;
      assert.match(
        last,
        new RegExp(
          `^promotion: NOT promoted; version 2 is @challenger \\(accuracy 0\\.\\d{4} vs ${
            champion.toFixed(4).replace(".", "\\.")
          } of version 1, needs \\+0\\.0020\\)$`,
        ),
      );
      assert.deepEqual(await aliases(), { champion: 1, challenger: 2 });
      const version = await client.getModelVersion(modelName, 2);
      assert.equal(version.tags["promotion.decision"], "challenger");
      assert.equal(version.tags["promotion.champion_version"], "1");
      assert.equal(Number(version.tags["promotion.champion_score"]), champion);
      assert.match(version.tags["promotion.reason"]!, /not better by the margin/);
    },
  );

  await t.step("evaluate --no-promote leaves the aliases alone", async () => {
    const result = await json(root, "evaluate", ["--model_version", "2", "--no-promote"]);
    assert.equal(result.promotion, null);
    assert.deepEqual(await aliases(), { champion: 1, challenger: 2 });
  });

  await t.step("predict loads the linear @champion without being told its family", async () => {
    const result = await json(root, "predict", [
      "--title",
      "Broke after a week",
      "--message",
      "Terrible, would not buy again",
      "--model_version",
      "@champion",
    ]);
    assert.equal(result.model_version, "1");
    assert.equal(result.label, "negative");
  });

  await t.step("predict --explain decomposes the linear model's logit over the words typed", async () => {
    const result = await json(root, "predict", [
      "--title",
      "Not GOOD",
      "--message",
      "It didn't work, terrible",
      "--model_version",
      "@champion",
      "--explain",
    ]);
    const e = result.explanation as {
      method: string;
      bias: number;
      score: number;
      probability: number;
      calibrated: boolean;
      absent: number;
      words: { text: string; tokens: string[]; contribution: number; start: number; field: string }[];
    };
    assert.equal(e.method, "linear-decomposition");
    assert.equal(e.absent, 0);
    const total = e.words.reduce((sum, w) => sum + w.contribution, e.bias);
    assert.ok(Math.abs(total - e.score) < 1e-9, `${total} vs ${e.score}`);
    const positive = result.label === "positive"
      ? result.probability as number
      : 1 - (result.probability as number);
    // The probability served is the explanation's; without a calibrator it is the logit's sigmoid.
    assert.ok(Math.abs(e.probability - positive) < 1e-12);
    if (!e.calibrated) assert.ok(Math.abs(1 / (1 + Math.exp(-e.score)) - positive) < 1e-9);
    const good = e.words.find((w) => w.text === "GOOD")!;
    assert.deepEqual([good.field, good.start, good.tokens[0]], ["title", 4, "not_good"]);
    assert.deepEqual(e.words.find((w) => w.text === "didn't")!.tokens, ["did", "not"]);
  });

  await t.step("--warm-start-from continues a registered linear version", async () => {
    const result = await json(root, "train", ["--batches", "1", "--warm-start-from", "1", "--epochs", "2"]);
    assert.equal(result.model_version, "3");
    const run = await client.getRun(result.run_id as string);
    assert.equal(run.data.tags["warm_start.version"], "1");
    assert.equal(run.data.params.warm_start_from_version, "1");
    // Version 1 saw its training reviews x the default epochs; this run adds its own x 2.
    const first = (await client.getRun((await client.getModelVersion(modelName, 1)).runId!)).data.metrics;
    assert.equal(
      run.data.metrics.trained_examples_total,
      first.train_rows! * DEFAULT_LINEAR_PARAMS.epochs + run.data.metrics.train_rows! * 2,
    );
    const conflict = await stage(root, "train", ["--batches", "1", "--warm-start-from", "1", "--dim", "20"]);
    assert.equal(conflict.code, 2, conflict.stderr);
    assert.match(
      conflict.stderr,
      /^error: --dim 20 conflicts with the warm-start model's dim 10; drop --dim$/m,
    );
  });

  await t.step("a forest flag selects the forest, which cannot be warm-started", async () => {
    const forest = await json(root, "train", ["--batches", "0", "--trees", "3"]);
    assert.equal(forest.model, "forest");
    const run = await stage(root, "train", [
      "--batches",
      "0",
      "--warm-start-from",
      String(forest.model_version),
    ]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(
      run.stderr,
      /^error: --warm-start-from 4: .* version 4 is a sparse-forest model; warm starts need a linear one/m,
    );
  });

  await t.step(
    "--search logs each trial as a child run of one parent and registers only the best",
    async () => {
      const before = (await client.getLatestVersion(modelName))!.version;
      const result = await json(root, "train", [
        "--batches",
        "0",
        "1",
        "--search",
        "--trials",
        "3",
        "--epochs",
        "2",
      ]);
      const search = result.search as Record<string, unknown>;
      assert.equal(search.trials, 3);
      assert.equal(Number(result.model_version), before + 1);
      assert.equal((await client.getLatestVersion(modelName))!.version, before + 1, "one version only");
      const parentId = result.run_id as string;
      assert.equal((await client.getModelVersion(modelName, before + 1)).runId, parentId);
      const experiment = (await client.getExperimentByName(experimentName))!;
      const children = (await client.searchRuns({
        experimentIds: [experiment.experimentId],
        filter: `tags.\`mlflow.parentRunId\` = '${parentId}'`,
      })).runs;
      assert.equal(children.length, 3);
      for (const child of children) {
        assert.equal(child.info.status, "FINISHED");
        assert.equal(child.data.params.epochs, "2", "an explicit flag is not tuned");
        assert.equal(typeof child.data.metrics.val_accuracy, "number");
        const files = await client.listArtifacts(child.info.artifactUri);
        assert.deepEqual(files, [], "trials register nothing and upload no model");
      }
      const best = children.reduce((a, b) =>
        a.data.metrics.val_accuracy! >= b.data.metrics.val_accuracy! ? a : b
      );
      assert.equal(best.data.metrics.val_accuracy, search.best_val_accuracy);
      const marked = children.filter((child) => child.data.tags["search.best"] === "true");
      assert.equal(marked.length, 1);
      assert.equal(marked[0]!.data.metrics.val_accuracy, search.best_val_accuracy);
      const parent = await client.getRun(parentId);
      assert.equal(parent.data.tags["search.best_run_id"], marked[0]!.info.runId);
      assert.equal(parent.data.params.learning_rate, marked[0]!.data.params.learning_rate);
      assert.equal(parent.data.params.search_trials, "3");
    },
  );

  await t.step("flags of the wrong family or mode are usage errors", async () => {
    for (
      const [args, message] of [
        [
          ["--batches", "0", "--model", "linear", "--trees", "5"],
          /--trees applies to --model forest, not linear/,
        ],
        [["--batches", "0", "--trials", "3"], /--trials applies to --search; add --search/],
        [["--batches", "0", "--model", "svm"], /--model expects forest or linear, got "svm"/],
        [["--full", "--batches", "0"], /give --full or --batches, not both/],
      ] as const
    ) {
      const run = await stage(root, "train", [...args]);
      assert.equal(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
      assert.match(run.stderr, message);
    }
    const evaluate = await stage(root, "evaluate", ["--model_version", "1", "--promotion-metric", "speed"]);
    assert.equal(evaluate.code, 2);
    assert.match(evaluate.stderr, /--promotion-metric expects accuracy, f1, roc_auc, got "speed"/);
  });

  await t.step("evaluate marks FAILED a run that a killed process left RUNNING", async () => {
    // What a train killed with SIGKILL leaves: RUNNING, its last heartbeat 20 minutes old.
    const experiment = (await client.getExperimentByName(experimentName))!;
    const lastBeat = new Date(Date.now() - 20 * 60_000).toISOString();
    const abandoned = await client.createRun({
      experimentId: experiment.experimentId,
      runName: "killed-train",
      tags: { "pipeline.heartbeat": lastBeat, "pipeline.stage": "train" },
    });
    const run = ok(await stage(root, "evaluate", ["--model_version", "1", "--no-promote"]), "evaluate");
    assert.match(
      run.stderr,
      new RegExp(
        `marked MLflow run ${abandoned.info.runId} \\(killed-train\\) FAILED: left RUNNING by a killed process`,
      ),
    );
    const marked = await client.getRun(abandoned.info.runId);
    assert.equal(marked.info.status, "FAILED");
    assert.match(marked.data.tags["pipeline.abandoned"]!, /marked FAILED by evaluate$/);
  });
});
