/**
 * Integration tests of train, evaluate and predict: each stage runs as a process with its real permission
 * set against the real MLflow server at MLFLOW_TRACKING_URI (`make test` starts one on port 5501), and
 * the tests check what MLflow holds afterwards.
 */
import { strict as assert } from "node:assert";
import { MlflowClient } from "../lib/tracking/mlflow_client.ts";
import { createProjectRoot, ok, type ProjectRoot, runTask } from "./_testing.ts";

const trackingUri = Deno.env.get("MLFLOW_TRACKING_URI") ?? "http://127.0.0.1:5501";
const client = new MlflowClient({ trackingUri, retry: { retries: 1, baseDelayMs: 50 } });
const suffix = crypto.randomUUID().slice(0, 8);
const experimentName = `test-model-stages-${suffix}`;
const modelName = `test-sentiment-${suffix}`;
const env = {
  MLFLOW_TRACKING_URI: trackingUri,
  MLFLOW_ALLOW_NET: `--allow-net=${new URL(trackingUri).host}`,
  MLFLOW_EXPERIMENT_NAME: experimentName,
  MLFLOW_MODEL_NAME: modelName,
};

async function prepareData(root: ProjectRoot): Promise<void> {
  ok(await runTask(root, "ingest", ["--source", "sample", "--rows", "1600", "--test-rows", "400"]), "ingest");
  ok(await runTask(root, "split_batches", ["--batch-size", "800"]), "split_batches");
  ok(await runTask(root, "preprocess_batch", ["0"]), "preprocess_batch 0");
  ok(await runTask(root, "preprocess_batch", ["1"]), "preprocess_batch 1");
  ok(await runTask(root, "preprocess_test", []), "preprocess_test");
}

async function health(): Promise<void> {
  try {
    await client.health();
  } catch (error) {
    throw new Error(`no MLflow server at ${trackingUri}; start one with "make mlflow-test" (${error})`);
  }
}

Deno.test("train, evaluate and predict run end to end against a real MLflow server", async (t) => {
  await health();
  await using root = await createProjectRoot();
  await prepareData(root);

  let first: { run_id: string; model_name: string; model_version: string };
  await t.step(
    "train logs a FINISHED run with params, metrics, the model and a registered version",
    async () => {
      const run = ok(
        await runTask(root, "train", ["--batches", "0", "1", "--trees", "12", "--seed", "7", "--json"], {
          env,
        }),
        "train",
      );
      first = JSON.parse(run.stdout);
      assert.equal(first.model_name, modelName);
      assert.equal(first.model_version, "1");
      const mlflowRun = await client.getRun(first.run_id);
      assert.equal(mlflowRun.info.status, "FINISHED");
      assert.equal(mlflowRun.data.params.trees, "12");
      assert.equal(mlflowRun.data.params.batches, "0 1");
      assert.equal(mlflowRun.data.params.engine, "sparse-forest");
      // 5% of the reviews are held out to measure calibration.
      const { train_rows: trainRows, calibration_rows: heldOut } = mlflowRun.data.metrics;
      assert.equal(trainRows! + heldOut!, 1600);
      assert.ok(heldOut! > 40 && heldOut! < 130, `held out ${heldOut}`);
      assert.equal(typeof mlflowRun.data.metrics.calibration_error_before, "number");
      assert.match(mlflowRun.data.params.calibrator!, /^(none|platt|isotonic)$/);
      assert.ok(mlflowRun.data.metrics.oob_accuracy! > 0.6, `oob ${mlflowRun.data.metrics.oob_accuracy}`);
      assert.equal(mlflowRun.data.tags["mlflow.source.name"], "scripts/train.ts");
      const files = (await client.listArtifacts(mlflowRun.info.artifactUri, "model")).map((f) => f.path)
        .sort();
      assert.deepEqual(files, [
        "model/MLmodel",
        "model/engine.bin",
        "model/model.json",
        "model/vocabulary.json",
      ]);
      const version = await client.getModelVersion(modelName, 1);
      assert.equal(version.runId, first.run_id);
      assert.equal(version.source, `${mlflowRun.info.artifactUri}/model`);
    },
  );

  await t.step("a second train registers version 2", async () => {
    const run = ok(
      await runTask(root, "train", ["--batches", "0", "--trees", "5", "--seed", "8", "--json"], { env }),
      "train",
    );
    assert.equal(JSON.parse(run.stdout).model_version, "2");
  });

  await t.step("evaluate logs metrics and charts for the version it was given", async () => {
    const run = ok(await runTask(root, "evaluate", ["--model_version", "1", "--json"], { env }), "evaluate");
    const result = JSON.parse(run.stdout);
    assert.equal(result.model_version, "1");
    for (const key of ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]) {
      assert.equal(typeof result.metrics[key], "number", key);
    }
    assert.ok(result.metrics.accuracy > 0.6, `accuracy ${result.metrics.accuracy}`);
    assert.equal(result.metrics.test_rows, 400 - 0);
    const mlflowRun = await client.getRun(result.run_id);
    assert.equal(mlflowRun.info.status, "FINISHED");
    assert.equal(mlflowRun.data.tags["model.name"], modelName);
    assert.equal(mlflowRun.data.tags["model.version"], "1");
    assert.equal(mlflowRun.data.metrics.accuracy, result.metrics.accuracy);
    const artifacts = (await client.listArtifacts(mlflowRun.info.artifactUri)).map((f) => f.path).sort();
    assert.deepEqual(artifacts, [
      "confusion_matrix.svg",
      "metrics.json",
      "model_card.json",
      "model_card.md",
      "reliability_diagram.svg",
      "roc_curve.svg",
    ]);
    const version = await client.getModelVersion(modelName, 1);
    assert.equal(version.tags["eval.accuracy"], String(result.metrics.accuracy));
    // Calibration, intervals, slices and behaviour checks, as metrics.
    const logged = mlflowRun.data.metrics;
    for (
      const key of [
        "calibration_error",
        "brier_score",
        "accuracy_ci_low",
        "accuracy_ci_high",
        "behaviour_checks",
      ]
    ) {
      assert.equal(typeof logged[key], "number", key);
    }
    assert.ok(
      logged.accuracy_ci_low! < result.metrics.accuracy && result.metrics.accuracy < logged.accuracy_ci_high!,
    );
    assert.ok(Object.keys(logged).some((key) => /^slice\.length\.\d+-\d+\.accuracy$/.test(key)));
    // The version's card is completed: its description and model_card.md beside the model.
    assert.match(version.description, /\*\*Test\*\* \(400 reviews\): accuracy 0\.\d{4} \(95%: /);
    assert.match(version.description, /\*\*Behaviour checks\*\*: passed \d+ of \d+/);
    const trainRun = await client.getRun(first.run_id);
    const card = new TextDecoder().decode(
      await client.downloadArtifact(trainRun.info.artifactUri, "model_card.md"),
    );
    assert.match(card, /^# Model card: test-sentiment-\w+ version 1\n/);
    assert.match(card, /\| reviews trained on \| 1,5\d\d \|/);
    assert.match(card, /## Behaviour checks\n\nPassed \d+ of \d+/);
    assert.match(card, /### Slices/);
  });

  await t.step("evaluate --sources adds the accuracy of each source file", async () => {
    await Deno.mkdir(root.resolve("data/external/sources"), { recursive: true });
    await Deno.writeTextFile(
      root.resolve("data/external/sources/gadgets.csv"),
      '"2","Great","Works perfectly, love it"\n"1","Awful","Broke on day one"\n',
    );
    await Deno.writeTextFile(
      root.resolve("data/external/sources/books.csv"),
      '"2","Lovely","A great read"\n',
    );
    const run = ok(
      await runTask(root, "evaluate", [
        "--model_version",
        "1",
        "--sources",
        "data/external/sources",
        "--no-promote",
      ], {
        env,
      }),
      "evaluate --sources",
    );
    assert.match(run.stdout, /accuracy_sources +(1|0\.\d{4})\n/);
    const versionCard = (await client.getModelVersion(modelName, 1)).description;
    assert.match(versionCard, /\*\*Test\*\*/);
    const runs = await client.searchRuns({
      experimentIds: [(await client.getExperimentByName(experimentName))!.experimentId],
      orderBy: ["attributes.start_time DESC"],
      maxResults: 1,
    });
    const metrics = runs.runs[0]!.data.metrics;
    assert.equal(metrics["slice.source.gadgets.rows"], 2);
    assert.equal(metrics["slice.source.books.rows"], 1);
    assert.equal(metrics["slice.source.all sources.rows"], 3);
    const outside = await runTask(root, "evaluate", ["--model_version", "1", "--sources", "/tmp"], { env });
    assert.equal(outside.code, 1);
    assert.match(outside.stderr, /evaluate may not read \/tmp; put the source files under data\/external/);
  });

  await t.step("predict answers with the version it was given", async () => {
    const args = ["--title", "Broke after a week", "--message", "Terrible, would not buy again", "--json"];
    const one = JSON.parse(
      ok(await runTask(root, "predict", [...args, "--model_version", "1"], { env }), "p").stdout,
    );
    assert.equal(one.model_version, "1");
    assert.ok(one.label === "negative" || one.label === "positive");
    assert.equal(one.polarity, one.label === "negative" ? 1 : 2);
    assert.ok(one.probability >= 0.5 && one.probability <= 1);
    const latest = JSON.parse(
      ok(await runTask(root, "predict", [...args, "--model-version", "latest"], { env }), "p").stdout,
    );
    assert.equal(latest.model_version, "2");
  });

  await t.step(
    "predict --explain prints the words that pushed a forest's label, adding up exactly",
    async () => {
      const args = [
        "--title",
        "Not good",
        "--message",
        "Terrible, broke after a week",
        "--model_version",
        "1",
      ];
      const text = ok(
        await runTask(root, "predict", [...args, "--explain", "--top", "3"], { env }),
        "explain",
      );
      assert.match(text.stdout, /^(negative|positive) \(probability/);
      assert.match(
        text.stdout,
        /words that pushed the label most \(contribution to the probability of positive/,
      );
      assert.match(text.stdout, /"good" \(title\) +as not_good not__lexpos_\n/);
      assert.match(
        text.stdout,
        /= score [+-]\d\.\d{3}(, probability of positive 0\.\d{4} \(calibrated\))?\n/,
      );
      const result = JSON.parse(
        ok(await runTask(root, "predict", [...args, "--explain", "--json"], { env }), "explain --json")
          .stdout,
      );
      const e = result.explanation;
      assert.equal(e.method, "path-contribution");
      const total = e.words.reduce((sum: number, w: { contribution: number }) => sum + w.contribution, 0);
      assert.ok(Math.abs(e.bias + total + e.absent - e.score) < 1e-9);
      const positive = result.label === "positive" ? result.probability : 1 - result.probability;
      // The served probability is the explanation's: the score's, through the calibrator if there is one.
      assert.ok(Math.abs(e.probability - positive) < 1e-12, `${e.probability} vs ${positive}`);
      if (!e.calibrated) assert.ok(Math.abs(e.score - positive) < 1e-9, `${e.score} vs ${positive}`);
      const usage = await runTask(root, "predict", ["--input", "x.csv", "--explain"], { env });
      assert.equal(usage.code, 2);
      assert.match(usage.stderr, /--explain explains one review/);
    },
  );

  await t.step("predict --input scores a CSV file and writes CSV", async () => {
    await Deno.mkdir(root.resolve("data/external"), { recursive: true });
    await Deno.writeTextFile(
      root.resolve("data/external/few.csv"),
      '"2","Great","Works perfectly, love it"\n"1","Awful","Broke on day one"\nnot,a,review\n',
    );
    const run = ok(
      await runTask(root, "predict", ["--input", "data/external/few.csv", "--model_version", "1"], { env }),
      "predict --input",
    );
    const lines = run.stdout.trim().split("\n");
    assert.equal(lines[0], "line,true_polarity,polarity,label,probability");
    assert.equal(lines.length, 3);
    assert.match(lines[1]!, /^1,2,[12],(positive|negative),0\.\d+$/);
    assert.match(run.stderr, /line 3 skipped/);
  });

  await t.step(
    "predict --input on an empty file, or one without a single valid review, exits 1 and prints nothing",
    async () => {
      await Deno.writeTextFile(root.resolve("data/external/empty.csv"), "");
      await Deno.writeTextFile(root.resolve("data/external/junk.csv"), "not,a,review\n<html>\n");
      for (
        const [file, message] of [
          [
            "empty.csv",
            "error: data/external/empty.csv is empty; it must hold reviews as polarity,title,text",
          ],
          [
            "junk.csv",
            "error: none of the 2 lines of data/external/junk.csv is a valid review (line 1: label not 1 or 2 " +
            '(got "not")); it must hold reviews as polarity,title,text, and nothing was predicted',
          ],
        ]
      ) {
        const run = await runTask(root, "predict", [
          "--input",
          `data/external/${file}`,
          "--model_version",
          "1",
        ], {
          env,
        });
        assert.equal(run.code, 1, run.stderr);
        assert.equal(run.stdout, "", "not even the header");
        assert.deepEqual(run.stderr.split("\n").filter((line) => line.startsWith("error: ")), [message]);
      }
    },
  );

  await t.step("an unknown version is a one-line error", async () => {
    const run = await runTask(root, "evaluate", ["--model_version", "99"], { env });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^error: .*no version 99.*latest is 2/m);
    assert.doesNotMatch(run.stderr, /\n\s+at /);
  });

  await t.step("a missing processed batch lists the available ones", async () => {
    const run = await runTask(root, "train", ["--batches", "7"], { env });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^error: batch 7 is not preprocessed .*available: 0, 1/m);
  });
});

Deno.test("MLflow stages fail within seconds with the URI when MLflow is unreachable", async () => {
  await using root = await createProjectRoot();
  const deadUri = "http://127.0.0.1:9";
  const started = performance.now();
  const run = await runTask(root, "predict", ["--title", "x", "--message", "y"], {
    env: { MLFLOW_TRACKING_URI: deadUri, MLFLOW_ALLOW_NET: "--allow-net=127.0.0.1:9" },
  });
  assert.equal(run.code, 1);
  assert.match(run.stderr, /^error: .*127\.0\.0\.1:9/m);
  assert.ok(performance.now() - started < 15_000);
});

Deno.test("an MLflow URI outside the stage's network grant says what to set", async () => {
  await using root = await createProjectRoot();
  const run = await runTask(root, "predict", ["--title", "x", "--message", "y"], {
    env: { MLFLOW_TRACKING_URI: "http://mlflow.example.com:5000" },
  });
  assert.equal(run.code, 1);
  assert.match(run.stderr, /MLFLOW_ALLOW_NET=--allow-net=mlflow\.example\.com:5000/);
});

for (const stage of ["train", "evaluate", "predict"]) {
  Deno.test(`${stage} --help prints usage and exits 0; a bad flag exits 2 with usage`, async () => {
    await using root = await createProjectRoot();
    const help = await runTask(root, stage, ["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, new RegExp(`^Usage: deno task ${stage}`));
    const bad = await runTask(root, stage, ["--bogus"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^error: .*--bogus/);
    assert.match(bad.stderr, /Usage: /);
  });
}
