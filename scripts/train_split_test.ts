/**
 * train uses the processed batches of the current split only: a new split retires the processed files of
 * the old one, and `train --batches all` skips (or, for batches named on the command line, refuses) any
 * processed batch that does not match `data/batches/manifest.json`. The sequence is the one that once
 * trained on old and new reviews together without a word: a large ingest split into two batches and
 * preprocessed, then a small ingest split into one batch, preprocessed, and `train --batches all`.
 */
import { strict as assert } from "node:assert";
import { createProjectRoot, errorLines, mlflowEnv, ok, requireServer, runTask } from "./_testing.ts";

const trackingUri = Deno.env.get("MLFLOW_TRACKING_URI") ?? "http://127.0.0.1:5501";

interface DatasetInput {
  dataset: { name: string; digest: string; source: string; profile: string };
}

/** The run's dataset inputs, from the REST API (the client's Run type leaves them out). */
async function datasetInputs(runId: string): Promise<DatasetInput[]> {
  const response = await fetch(`${trackingUri}/api/2.0/mlflow/runs/get?run_id=${runId}`);
  const body = await response.json();
  return body.run.inputs?.dataset_inputs ?? [];
}

Deno.test("train --batches all after a new split uses only that split's batches and says which it skipped", async () => {
  const client = await requireServer(trackingUri);
  const env = mlflowEnv(trackingUri, `test-train-split-${crypto.randomUUID().slice(0, 8)}`);
  await using root = await createProjectRoot();
  const stage = async (task: string, ...args: string[]) =>
    ok(await runTask(root, task, args, { env, timeoutMs: 120_000 }), `${task} ${args.join(" ")}`);

  // The old split: 2,000 reviews in two batches, both preprocessed.
  await stage("ingest", "--source", "sample", "--rows", "2000", "--test-rows", "200");
  await stage("split_batches", "--batch-size", "1000");
  await stage("preprocess_batch", "0");
  await stage("preprocess_batch", "1");
  const oldBatch1 = {
    tsv: await Deno.readFile(root.resolve("data/processed/train_batch_1.tsv")),
    meta: await Deno.readFile(root.resolve("data/processed/train_batch_1.meta.json")),
  };

  // The new split: 500 reviews, one batch.
  await stage("ingest", "--source", "sample", "--rows", "500", "--test-rows", "200", "--seed", "3");
  const split = await stage("split_batches");
  await stage("preprocess_batch", "0");

  const trained = JSON.parse((await stage("train", "--batches", "all", "--epochs", "1", "--json")).stdout);
  const run = await client.getRun(trained.run_id);
  // Fitted on the 500 new reviews, less those held out to calibrate it.
  const { train_rows: fitted, calibration_rows: heldOut = 0 } = run.data.metrics;
  assert.equal(fitted! + heldOut, 500);
  assert.equal(run.data.params.batches, "0");
  const [input] = await datasetInputs(trained.run_id);
  assert.ok(input, "the run logs its dataset input");
  assert.equal(input.dataset.name, "train_batches_0");
  const source = JSON.parse(input.dataset.source);
  const manifest = JSON.parse(await Deno.readTextFile(root.resolve("data/batches/manifest.json")));
  assert.equal(source.split.source_sha256, manifest.source.sha256);
  const profile = JSON.parse(input.dataset.profile);
  assert.deepEqual(profile.batches.map((b: { index: number; sha256: string }) => [b.index, b.sha256]), [
    [0, manifest.batches[0].sha256],
  ]);
  assert.equal(profile.num_rows, 500);

  // The split said it retired the old processed batches, and they are gone.
  assert.match(split.stderr, /retired .*train_batch_0.*train_batch_1|retired .*batches? 0, 1\b/);
  for (const file of ["train_batch_1.tsv", "train_batch_1.meta.json", "train_batch_1.rejects.csv"]) {
    assert.equal(await Deno.stat(root.resolve("data/processed", file)).then(() => true, () => false), false);
  }

  // A processed batch of the old split put back by hand is skipped with one line, or refused when named.
  await Deno.writeFile(root.resolve("data/processed/train_batch_1.tsv"), oldBatch1.tsv);
  await Deno.writeFile(root.resolve("data/processed/train_batch_1.meta.json"), oldBatch1.meta);
  const again = await stage("train", "--batches", "all", "--epochs", "1", "--json");
  const skipped = again.stderr.split("\n").filter((line) => line.includes("train_batch_1.tsv"));
  assert.equal(skipped.length, 1, again.stderr);
  assert.match(skipped[0]!, /skipping data\/processed\/train_batch_1\.tsv: .*current split/);
  const againMetrics = (await client.getRun(JSON.parse(again.stdout).run_id)).data.metrics;
  assert.equal(againMetrics.train_rows! + (againMetrics.calibration_rows ?? 0), 500);

  const named = await runTask(root, "train", ["--batches", "0", "1", "--epochs", "1"], { env });
  assert.equal(named.code, 1, named.stderr);
  assert.equal(errorLines(named).length, 1, named.stderr);
  assert.match(errorLines(named)[0]!, /train_batch_1\.tsv .*current split.*data\/batches\/manifest\.json/);
});
