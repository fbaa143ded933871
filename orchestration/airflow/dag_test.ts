/**
 * Runs the `amazon_reviews_pipeline` DAG with Airflow itself: `airflow dags test` (the scheduler's
 * dependency and mapping logic, in one process) on a throw-away `AIRFLOW_HOME` with its own SQLite metadata
 * database, in the `deno task` mode, on generated data in a throw-away project root, against the real MLflow
 * server at MLFLOW_TRACKING_URI. Then reads what Airflow recorded (task instances, XComs) and what MLflow
 * recorded (the registered version, its runs' tags).
 *
 * Needs Airflow in .venv-airflow/ (`make airflow-install`; `make test` and `make airflow-dag-test` install
 * it). Writes the summary line that `make airflow-dag-test` prints last to .tmp-test/airflow-dag-test.txt.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { createProjectRoot, type ProjectRoot, REPO_ROOT, requireServer } from "../../scripts/_testing.ts";

const AIRFLOW = join(REPO_ROOT, ".venv-airflow", "bin", "airflow");
const DAGS_FOLDER = join(REPO_ROOT, "orchestration", "airflow", "dags");
const DAG_ID = "amazon_reviews_pipeline";
const SUMMARY_FILE = join(REPO_ROOT, ".tmp-test", "airflow-dag-test.txt");
const trackingUri = Deno.env.get("MLFLOW_TRACKING_URI") ?? "http://127.0.0.1:5501";
/** Generous: the run itself takes well under a minute on two cores. */
const AIRFLOW_TIMEOUT_MS = 10 * 60_000;

interface AirflowRun {
  code: number;
  output: string;
}

interface TaskInstanceRow {
  task_id: string;
  map_index: number;
  state: string | null;
  try_number: number;
  rendered_map_index: string | null;
}

/** Runs the Airflow CLI with its state in `home`; stdout and stderr together, as a task log reads. */
async function airflow(
  root: ProjectRoot,
  env: Record<string, string>,
  args: string[],
): Promise<AirflowRun> {
  const command = new Deno.Command(AIRFLOW, {
    args,
    cwd: root.path,
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(AIRFLOW_TIMEOUT_MS),
  });
  const { code, stdout, stderr } = await command.output();
  const output = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  await Deno.writeTextFile(root.resolve(`airflow-${args.slice(0, 2).join("-")}.log`), output, {
    append: true,
  });
  return { code, output };
}

function tail(text: string, lines = 60): string {
  return text.split("\n").slice(-lines).join("\n");
}

/** What Airflow recorded about one DAG run, read from its metadata database. */
function readDagRun(home: string, runId: string) {
  const db = new DatabaseSync(join(home, "airflow.db"), { readOnly: true });
  try {
    const tasks = db.prepare(
      "SELECT task_id, map_index, state, try_number, rendered_map_index FROM task_instance " +
        "WHERE dag_id = ? AND run_id = ? ORDER BY task_id, map_index",
    ).all(DAG_ID, runId) as unknown as TaskInstanceRow[];
    const xcoms = new Map<string, unknown>();
    for (
      const row of db.prepare(
        "SELECT task_id, map_index, key, value FROM xcom WHERE dag_id = ? AND run_id = ?",
      )
        .all(DAG_ID, runId) as unknown as { task_id: string; map_index: number; key: string; value: string }[]
    ) {
      xcoms.set(`${row.task_id}[${row.map_index}].${row.key}`, JSON.parse(row.value));
    }
    return { tasks, xcoms };
  } finally {
    db.close();
  }
}

function runIds(home: string): string[] {
  const db = new DatabaseSync(join(home, "airflow.db"), { readOnly: true });
  try {
    return (db.prepare("SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id").all(DAG_ID) as unknown as {
      run_id: string;
    }[]).map((row) => row.run_id);
  } finally {
    db.close();
  }
}

Deno.test({
  name:
    "Airflow runs amazon_reviews_pipeline end to end (deno task mode), and a failing stage fails its task",
  sanitizeResources: false,
  async fn(t) {
    assert.ok(
      (await Deno.stat(AIRFLOW).catch(() => null))?.isFile,
      `Airflow is not installed in .venv-airflow/; run "make airflow-install" (make test does)`,
    );
    const mlflow = await requireServer(trackingUri);
    await using root = await createProjectRoot();
    const home = root.resolve("airflow-home");
    const name = `airflow-dag-test-${crypto.randomUUID().slice(0, 8)}`;
    const env: Record<string, string> = {
      // The root has no node_modules/: the stages run with the project's pinned Deno from the PATH.
      PATH: `${join(REPO_ROOT, "node_modules", ".bin")}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
      HOME: Deno.env.get("HOME") ?? root.path,
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
      ...(Deno.env.get("TMPDIR") ? { TMPDIR: Deno.env.get("TMPDIR")! } : {}),
      AIRFLOW_HOME: home,
      AIRFLOW__CORE__DAGS_FOLDER: DAGS_FOLDER,
      AIRFLOW__CORE__LOAD_EXAMPLES: "False",
      // The retried stages back off from this delay (300 s by default), so the failing run ends in seconds.
      AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY: "1",
      AMAZON_REVIEWS_PROJECT_DIR: root.path,
      MLFLOW_TRACKING_URI: trackingUri,
      MLFLOW_EXPERIMENT_NAME: name,
      MLFLOW_MODEL_NAME: name,
    };

    const migrate = await airflow(root, env, ["db", "migrate"]);
    assert.equal(migrate.code, 0, `airflow db migrate failed:\n${tail(migrate.output)}`);

    const batches = 3;
    let runId = "";
    let version = "";
    let taskNames: string[] = [];

    await t.step(
      "airflow dags test: every task instance succeeds, one preprocess_batch per batch",
      async () => {
        const conf = { source: "sample", rows: 3000, test_rows: 600, num_batches: batches, model: "linear" };
        const run = await airflow(root, env, ["dags", "test", DAG_ID, "-c", JSON.stringify(conf)]);
        assert.equal(run.code, 0, `airflow dags test failed:\n${tail(run.output)}`);
        runId = runIds(home)[0] ?? "";
        assert.ok(runId, "Airflow recorded no DAG run");

        const { tasks, xcoms } = readDagRun(home, runId);
        const notSucceeded = tasks.filter((task) => task.state !== "success");
        assert.deepEqual(notSucceeded, [], "every task instance succeeded");
        taskNames = [...new Set(tasks.map((task) => task.task_id))];
        assert.deepEqual(
          taskNames.toSorted(),
          [
            "evaluate",
            "ingest",
            "list_batches",
            "preprocess_batch",
            "preprocess_test",
            "split_batches",
            "train",
          ],
        );

        const manifest = JSON.parse(
          await Deno.readTextFile(root.resolve("data", "batches", "manifest.json")),
        );
        assert.equal(manifest.batches.length, batches, "split_batches made the requested number of batches");
        const mapped = tasks.filter((task) => task.task_id === "preprocess_batch");
        assert.deepEqual(mapped.map((task) => task.map_index), [0, 1, 2], "one mapped instance per batch");
        assert.deepEqual(mapped.map((task) => task.rendered_map_index), ["batch 0", "batch 1", "batch 2"]);
        for (const batch of manifest.batches) {
          assert.ok(
            (await Deno.stat(root.resolve("data", "processed", `train_batch_${batch.index}.tsv`))).size > 0,
            `batch ${batch.index} was preprocessed`,
          );
        }
        // The stages' own lines are in the task log.
        assert.match(run.output, /\[ingest\] train\.csv: read 3000 = accepted 3000 \+ rejected 0/);
        assert.match(run.output, /\[train\]/);

        // The Airflow task links forward to MLflow: train's XCom carries the run id and the new version.
        version = String(xcoms.get("train[-1].model_version"));
        const trainRunId = String(xcoms.get("train[-1].mlflow_run_id"));
        assert.equal(version, "1", "the first version of a fresh registered model");
        assert.match(trainRunId, /^[0-9a-f]{32}$/);
        assert.equal((xcoms.get("train[-1].return_value") as { run_id: string }).run_id, trainRunId);
        assert.equal(
          xcoms.get("evaluate[-1].model_version"),
          version,
          "evaluate scored the version train made",
        );

        // MLflow links back to Airflow: the version and its runs carry the DAG run and task.
        const registered = await mlflow.getModelVersion(name, version);
        assert.equal(registered.runId, trainRunId);
        assert.equal(registered.tags["airflow.dag_id"], DAG_ID);
        assert.equal(registered.tags["airflow.dag_run_id"], runId);
        assert.equal(registered.tags["airflow.task_id"], "train");
        const trainRun = await mlflow.getRun(trainRunId);
        assert.equal(trainRun.data.tags["airflow.dag_run_id"], runId);
        assert.equal(trainRun.data.tags["airflow.task_id"], "train");
        assert.match(
          trainRun.data.tags["airflow.task_url"] ?? "",
          /\/dags\/amazon_reviews_pipeline\/runs\/.+\/tasks\/train/,
        );
        const evaluateRun = await mlflow.getRun(String(xcoms.get("evaluate[-1].mlflow_run_id")));
        assert.equal(evaluateRun.data.tags["airflow.dag_run_id"], runId);
        assert.equal(evaluateRun.data.tags["airflow.task_id"], "evaluate");
        assert.equal(evaluateRun.data.tags["model.version"], version);
      },
    );

    await t.step(
      "a stage that fails (a missing input) fails its task with the stage's error line",
      async () => {
        const conf = { source: "data/external/missing.zip" };
        const run = await airflow(root, env, ["dags", "test", DAG_ID, "-c", JSON.stringify(conf)]);
        assert.notEqual(run.code, 0, "the DAG run failed");
        const failedRunId = runIds(home).at(-1)!;
        assert.notEqual(failedRunId, runId);
        const { tasks } = readDagRun(home, failedRunId);
        const ingest = tasks.find((task) => task.task_id === "ingest")!;
        assert.equal(ingest.state, "failed");
        assert.equal(ingest.try_number, 3, "ingest is safe to retry: two retries, then it fails");
        for (const task of tasks.filter((task) => task.task_id !== "ingest")) {
          assert.equal(task.state, "upstream_failed", `${task.task_id} never ran`);
        }
        const stageError = "error: --source data/external/missing.zip does not exist";
        assert.ok(run.output.includes(stageError), "the stage's own error line is in the task log");
        assert.match(
          run.output,
          /stage ingest failed \(exit 1\): error: --source data\/external\/missing\.zip does not exist/,
        );
      },
    );

    // In the DAG's order, not the metadata database's.
    const order = [
      "ingest",
      "split_batches",
      "list_batches",
      "preprocess_batch",
      "preprocess_test",
      "train",
      "evaluate",
    ];
    const mapped = taskNames.toSorted((a, b) => order.indexOf(a) - order.indexOf(b))
      .map((task) => task === "preprocess_batch" ? `preprocess_batch x${batches}` : task);
    const summary =
      `airflow-dag-test: DAG run ${runId} of ${DAG_ID} succeeded (tasks ${mapped.join(", ")}); ` +
      `registered ${name} version ${version}; a missing input failed ingest with its error line: ok`;
    await Deno.writeTextFile(SUMMARY_FILE, summary + "\n");
  },
});
