"""The amazon-reviews-mlops pipeline as an Airflow DAG.

    ingest -> split_batches -> list_batches -> preprocess_batch[0..N-1] -> train -> evaluate
          \\-> preprocess_test -------------------------------------------------------/

Every task but ``list_batches`` runs a real stage (see ``pipeline_stage.py`` for the two modes), and tasks
share nothing but the data folder and MLflow. ``preprocess_batch`` is mapped over the batches that
``split_batches`` wrote, as its manifest lists them, so the fan-out's width comes from the data, and a
Celery or Kubernetes executor spreads the mapped instances over many workers.

Retries: ingest, split_batches and the preprocess stages are safe to run again (each writes
``<file>.partial`` and renames it into place, and skips work whose inputs are unchanged), so they retry
with exponential back-off from Airflow's ``[core] default_task_retry_delay``. train and evaluate never
retry: a second train registers a second model version, and a second evaluate logs a second run and
may move the aliases again.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING

import pendulum
from airflow.sdk import Param, dag, task
from pipeline_stage import MODES, PipelineStageOperator, data_dir, resolve_mode

if TYPE_CHECKING:
    from airflow.sdk import Context

MANIFEST = "batches/manifest.json"

# The argument builders below are callables in a templated field: Airflow renders them by calling them with
# the task's context (and its Jinja environment, unused here) just before the task runs.

SAFE_TO_RETRY = {
    "retries": 2,
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
}
NEVER_RETRY = {"retries": 0}


def ingest_arguments(context: Context, jinja_env: object = None) -> list[str]:
    params = context["params"]
    arguments = ["--source", params["source"]]
    if params["source"] == "sample":
        arguments += ["--rows", str(params["rows"]), "--test-rows", str(params["test_rows"])]
    return arguments


def train_arguments(context: Context, jinja_env: object = None) -> list[str]:
    batches = context["ti"].xcom_pull(task_ids="list_batches")
    return ["--batches", ",".join(str(batch) for batch in batches), "--model", context["params"]["model"]]


def evaluate_arguments(context: Context, jinja_env: object = None) -> list[str]:
    return ["--model_version", str(context["ti"].xcom_pull(task_ids="train", key="model_version"))]


@dag(
    dag_id="amazon_reviews_pipeline",
    description="Amazon reviews sentiment: ingest, split, preprocess each batch, train, evaluate and promote",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    # Two runs at once would share the data folder and race on the newest model version.
    max_active_runs=1,
    tags=["amazon-reviews", "mlflow"],
    doc_md=__doc__,
    params={
        "source": Param("sample", type="string", description="ingest --source: sample, kaggle, PATH or URL"),
        "rows": Param(20000, type="integer", minimum=1, description="sample source: training reviews"),
        "test_rows": Param(5000, type="integer", minimum=1, description="sample source: test reviews"),
        "num_batches": Param(
            4, type="integer", minimum=1, maximum=1000, description="split_batches --num-batches"
        ),
        "model": Param("linear", enum=["linear", "forest"], description="model family to train"),
        "mode": Param(
            None,
            type=["null", "string"],
            enum=[None, *MODES],
            description="deno: `deno task <stage>` on the worker; image: the stage in the model image. "
            "Empty: the Variable amazon_reviews_mode, else deno",
        ),
    },
)
def amazon_reviews_pipeline() -> None:
    ingest = PipelineStageOperator(
        task_id="ingest", stage="ingest", arguments=ingest_arguments, **SAFE_TO_RETRY
    )
    split_batches = PipelineStageOperator(
        task_id="split_batches",
        stage="split_batches",
        arguments=["--num-batches", "{{ params.num_batches }}"],
        **SAFE_TO_RETRY,
    )

    @task
    def list_batches() -> list[int]:
        """The batch numbers split_batches wrote, from its manifest (the width of the fan-out)."""
        from airflow.sdk import get_current_context

        context = get_current_context()
        manifest = json.loads((data_dir(resolve_mode(context)) / MANIFEST).read_text())
        return [batch["index"] for batch in manifest["batches"]]

    batches = list_batches()
    preprocess_batch = PipelineStageOperator.partial(
        task_id="preprocess_batch",
        stage="preprocess_batch",
        map_index_template="batch {{ task.arguments[0] }}",
        **SAFE_TO_RETRY,
    ).expand(arguments=batches.map(lambda batch: [str(batch)]))
    preprocess_test = PipelineStageOperator(
        task_id="preprocess_test", stage="preprocess_test", **SAFE_TO_RETRY
    )
    train = PipelineStageOperator(task_id="train", stage="train", arguments=train_arguments, **NEVER_RETRY)
    evaluate = PipelineStageOperator(
        task_id="evaluate", stage="evaluate", arguments=evaluate_arguments, **NEVER_RETRY
    )

    ingest >> split_batches >> batches
    ingest >> preprocess_test
    preprocess_batch >> train >> evaluate
    preprocess_test >> evaluate


amazon_reviews_pipeline()
