/**
 * The DAG's image mode, run by Airflow once where the container test runs: every stage task starts the model
 * image through the Docker provider's `DockerOperator`, against the Docker-compatible API that Podman serves
 * on a socket of its own (`podman system service`). The image is built by the project's own target
 * (`make docker-base-images docker-model-build DOCKER=podman`, which shares its layers with the container
 * test's build), and the stages reach an MLflow server that listens beyond the loopback, as a stage in a
 * container must.
 *
 * Checks that every task instance succeeded, that the mapped preprocess ran once per batch, that the stages
 * wrote the data folder as the image's user (never root) and that the new version carries the Airflow tags.
 * Where Podman is missing (outside CI) the test is skipped, loudly, like the container test.
 * Its MLflow listens on the test MLflow's port + 3 (the container test uses + 1 and + 2).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { createProjectRoot, REPO_ROOT, requireServer } from "../../scripts/_testing.ts";

const PODMAN = "/usr/bin/podman";
const AIRFLOW = join(REPO_ROOT, ".venv-airflow", "bin", "airflow");
const MLFLOW_SERVER = join(REPO_ROOT, "tools", "mlflow_server.sh");
const DAG_ID = "amazon_reviews_pipeline";
const IMAGE = "tutoria-mlops-model:airflow-test";
/** uid of the image's `deno` user, who runs the stages when the worker is root. */
const IMAGE_UID = 1993;
const inCi = Deno.env.get("CI") === "true";
const present = await Deno.stat(PODMAN).then(() => true, () => false);
const testUri = Deno.env.get("MLFLOW_TRACKING_URI") ?? "http://127.0.0.1:5501";
/** The container test uses the test MLflow's port + 1 and + 2. */
const mlflowPort = Number(new URL(testUri).port) + 3;

if (!present && !inCi) {
  console.error(
    `\n!! SKIPPED orchestration/airflow/dag_image_test.ts: ${PODMAN} is missing, so the DAG's image mode is NOT` +
      " run here\n!! install Podman with `make test-deps` (root or sudo)\n",
  );
}

const decoder = new TextDecoder();

async function run(command: string, args: string[], env: Record<string, string> = {}) {
  const output = await new Deno.Command(command, {
    args,
    cwd: REPO_ROOT,
    env: { MAKEFLAGS: "", MFLAGS: "", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = decoder.decode(output.stdout) + decoder.decode(output.stderr);
  return { code: output.code, text };
}

function tail(text: string, lines = 40): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

Deno.test({
  name: "Airflow runs amazon_reviews_pipeline in image mode: DockerOperator against Podman's socket",
  ignore: !present && !inCi,
  // Podman's service and its helper processes are the engine's, stopped at the end.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    assert.ok(present, `${PODMAN} is missing in CI; make test-deps installs it`);
    const build = await run("make", [
      "--no-print-directory",
      "-s",
      "docker-base-images",
      "docker-model-build",
      "DOCKER=podman",
      `MODEL_IMAGE=${IMAGE}`,
      // make reads SSL_CERT_FILE from the environment: the CA bundle of a proxy that re-signs TLS, when set.
      "CA_CERT=$(SSL_CERT_FILE)",
    ]);
    assert.equal(build.code, 0, `building the model image failed:\n${tail(build.text)}`);

    await using root = await createProjectRoot();
    const scratch = root.resolve("image-mode");
    await Deno.mkdir(scratch, { recursive: true });
    const socket = join(scratch, "podman.sock");
    const service = new Deno.Command(PODMAN, {
      args: ["system", "service", "--time=0", `unix://${socket}`],
      env: { CONTAINERS_CONF: join(REPO_ROOT, "docker", "containers.conf") },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const mlflowUrl = `http://127.0.0.1:${mlflowPort}`;
    const mlflowData = join(scratch, "mlflow");
    try {
      for (let waited = 0; !(await Deno.stat(socket).then(() => true, () => false)); waited += 100) {
        assert.ok(waited < 30_000, "podman system service did not create its socket in 30 s");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      // A stage in a container reaches the host's MLflow only if it listens beyond 127.0.0.1.
      const mlflow = await run(
        MLFLOW_SERVER,
        [
          "start",
          "--url",
          mlflowUrl,
          "--data",
          mlflowData,
          "--mlflow",
          join(REPO_ROOT, ".venv", "bin", "mlflow"),
        ],
        { MLFLOW_HOST: "0.0.0.0", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
      );
      assert.equal(mlflow.code, 0, `MLflow did not start:\n${tail(mlflow.text)}`);
      const client = await requireServer(mlflowUrl);

      const home = join(scratch, "airflow-home");
      const dataDir = join(scratch, "data");
      const name = `airflow-image-test-${crypto.randomUUID().slice(0, 8)}`;
      const env = {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        HOME: Deno.env.get("HOME") ?? scratch,
        AIRFLOW_HOME: home,
        AIRFLOW__CORE__DAGS_FOLDER: join(REPO_ROOT, "orchestration", "airflow", "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES: "False",
        AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY: "1",
        AMAZON_REVIEWS_PROJECT_DIR: root.path,
        AMAZON_REVIEWS_IMAGE: IMAGE,
        AMAZON_REVIEWS_DATA_DIR: dataDir,
        DOCKER_HOST: `unix://${socket}`,
        MLFLOW_TRACKING_URI: mlflowUrl,
        MLFLOW_EXPERIMENT_NAME: name,
        MLFLOW_MODEL_NAME: name,
      };
      const migrate = await run(AIRFLOW, ["db", "migrate"], env);
      assert.equal(migrate.code, 0, `airflow db migrate failed:\n${tail(migrate.text)}`);
      const conf = { mode: "image", rows: 2000, test_rows: 400, num_batches: 2 };
      const dagRun = await run(AIRFLOW, ["dags", "test", DAG_ID, "-c", JSON.stringify(conf)], env);
      await Deno.writeTextFile(join(scratch, "airflow-dags-test.log"), dagRun.text);
      assert.equal(dagRun.code, 0, `airflow dags test (image mode) failed:\n${tail(dagRun.text)}`);
      assert.match(dagRun.text, /Starting docker container from image tutoria-mlops-model:airflow-test/);
      assert.match(
        dagRun.text,
        /\[train\] training a linear model/,
        "the stage's own lines are in the task log",
      );

      const db = new DatabaseSync(join(home, "airflow.db"), { readOnly: true });
      let runId: string;
      let tasks: { task_id: string; map_index: number; state: string }[];
      try {
        runId = (db.prepare("SELECT run_id FROM dag_run WHERE dag_id = ?").get(DAG_ID) as { run_id: string })
          .run_id;
        tasks = db.prepare(
          "SELECT task_id, map_index, state FROM task_instance WHERE run_id = ? ORDER BY task_id",
        )
          .all(runId) as unknown as typeof tasks;
      } finally {
        db.close();
      }
      assert.deepEqual(tasks.filter((task) => task.state !== "success"), [], "every task instance succeeded");
      assert.equal(tasks.filter((task) => task.task_id === "preprocess_batch").length, 2, "one per batch");

      const processed = await Deno.stat(join(dataDir, "processed", "train_batch_1.tsv"));
      // The scratch folder is this process's: its owner says who runs the test (without a sys grant).
      const self = (await Deno.stat(scratch)).uid;
      assert.equal(
        processed.uid,
        self === 0 ? IMAGE_UID : self,
        "the stages wrote as the image's user, never root",
      );

      const version = await client.getModelVersion(name, "1");
      assert.equal(version.tags["airflow.dag_run_id"], runId);
      assert.equal(version.tags["airflow.task_id"], "train");
      console.log(
        `airflow image mode: DAG run ${runId} succeeded in ${IMAGE} through Podman's socket; ` +
          `registered ${name} version 1`,
      );
    } finally {
      await run(MLFLOW_SERVER, ["stop", "--url", mlflowUrl, "--data", mlflowData], {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      });
      service.kill("SIGTERM");
      await service.status;
      await run(PODMAN, ["image", "rm", IMAGE], {
        CONTAINERS_CONF: join(REPO_ROOT, "docker", "containers.conf"),
      });
    }
  },
});
