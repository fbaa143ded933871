"""One pipeline stage as an Airflow task, run in one of two modes.

``deno``: ``deno task <stage> [args...]`` in the project folder on the worker, with the permission set that
``deno.json`` declares for the stage. ``image``: ``<stage> [args...]`` in the project's model image through
the Docker provider's ``DockerOperator``, against Docker's socket or Podman's Docker-compatible one
(``DOCKER_HOST``), with the data folder mounted at ``/app/data``.

Either way the task streams the stage's own log lines into the task log, passes the Airflow coordinates of
the task to the stage as MLflow run tags (``MLFLOW_RUN_TAGS``), pushes the stage's ``--json`` result as its
XCom, and fails with the stage's ``error: ...`` line when the stage fails. A usage error (exit 2) is never
retried: the same arguments fail the same way.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.docker.exceptions import DockerContainerFailedException
from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from docker.types import Mount

if TYPE_CHECKING:
    from airflow.sdk import Context

MODES = ("deno", "image")
"""How a stage runs: ``deno task`` on the worker, or the stage's command in the model image."""

MODE_VARIABLE = "amazon_reviews_mode"
"""Airflow Variable naming the mode when the DAG run's ``mode`` param is empty (default ``deno``)."""

DEFAULT_IMAGE = "tutoria-mlops-model:latest"
EXIT_USAGE = 2

Arguments = Sequence[str] | Callable[..., Sequence[str]]


def project_dir() -> Path:
    """The project checkout the stages run in: ``AMAZON_REVIEWS_PROJECT_DIR``, else the one holding this DAG."""
    configured = os.environ.get("AMAZON_REVIEWS_PROJECT_DIR")
    return Path(configured).resolve() if configured else Path(__file__).resolve().parents[3]


def container_data_dir() -> Path:
    """The host folder mounted at ``/app/data`` in image mode: ``AMAZON_REVIEWS_DATA_DIR``, else ``data/docker``
    of the project, the folder ``make docker-model-*`` uses."""
    configured = os.environ.get("AMAZON_REVIEWS_DATA_DIR")
    return Path(configured).resolve() if configured else project_dir() / "data" / "docker"


def resolve_mode(context: Context) -> str:
    """The DAG run's ``mode`` param, else the Variable :data:`MODE_VARIABLE`, else ``deno``."""
    mode = context["params"].get("mode") or Variable.get(MODE_VARIABLE, default="deno")
    if mode not in MODES:
        raise AirflowFailException(f"mode {mode!r} is not one of {', '.join(MODES)}")
    return mode


def data_dir(mode: str) -> Path:
    """Where the stages of ``mode`` keep their data folders (raw/, batches/, processed/) on the worker."""
    return project_dir() / "data" if mode == "deno" else container_data_dir()


def airflow_run_tags(context: Context) -> dict[str, str]:
    """MLflow tags that link a stage's MLflow run back to this task instance."""
    ti = context["ti"]
    tags = {
        "airflow.dag_id": ti.dag_id,
        "airflow.dag_run_id": ti.run_id,
        "airflow.task_id": ti.task_id,
        "airflow.try_number": str(ti.try_number),
        "airflow.task_url": ti.log_url,
    }
    if ti.map_index is not None and ti.map_index >= 0:
        tags["airflow.map_index"] = str(ti.map_index)
    return tags


def mlflow_net_grant(uri: str) -> str:
    """The ``--allow-net=host:port`` that ``deno task`` needs for a tracking URI (what the Makefile derives)."""
    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"--allow-net={parts.hostname}:{port}"


def last_error_line(lines: Sequence[str]) -> str | None:
    """The stage's last ``error: ...`` line (the one-line reason every stage prints when it fails)."""
    for line in reversed(lines):
        text = line.strip()
        if text.startswith("error:"):
            return text
    return None


def json_result(lines: Sequence[str]) -> dict[str, Any] | None:
    """The object a stage printed with ``--json``: its last output line that parses as a JSON object."""
    for line in reversed(lines):
        text = line.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


class PipelineStageOperator(DockerOperator):
    """Runs one stage of the pipeline (``ingest``, ``split_batches``, ``preprocess_batch``, ...).

    :param stage: The stage, as in ``deno task <stage>``.
    :param arguments: Its arguments (``--json`` is added). Templated: strings may use Jinja, and a callable
        ``f(context, jinja_env)`` is called when the task runs and returns the list. Mappable:
        ``.partial(stage=...).expand(arguments=...)`` runs one task instance per list.
    """

    template_fields: Sequence[str] = (*DockerOperator.template_fields, "arguments")

    def __init__(self, *, stage: str, arguments: Arguments = (), **kwargs: Any) -> None:
        kwargs.setdefault("image", os.environ.get("AMAZON_REVIEWS_IMAGE", DEFAULT_IMAGE))
        kwargs.setdefault("mount_tmp_dir", False)
        kwargs.setdefault("auto_remove", "force")
        super().__init__(**kwargs)
        self.stage = stage
        self.arguments = arguments

    def stage_arguments(self, context: Context) -> list[str]:
        """The stage's command-line arguments for this task instance, ending in ``--json``."""
        return [str(argument) for argument in self.arguments] + ["--json"]

    def execute(self, context: Context) -> dict[str, Any] | None:
        mode = resolve_mode(context)
        arguments = self.stage_arguments(context)
        self.log.info("stage %s %s (mode %s)", self.stage, " ".join(arguments), mode)
        tags = airflow_run_tags(context)
        result = (
            self.run_deno_task(arguments, tags)
            if mode == "deno"
            else self.run_in_image(context, arguments, tags)
        )
        for key in ("run_id", "model_version"):
            if result and result.get(key) is not None:
                context["ti"].xcom_push(key=f"mlflow_{key}" if key == "run_id" else key, value=result[key])
        return result

    # deno mode ---------------------------------------------------------------------------------------------

    def run_deno_task(self, arguments: list[str], tags: Mapping[str, str]) -> dict[str, Any] | None:
        root = project_dir()
        local_deno = root / "node_modules" / ".bin" / "deno"
        deno = str(local_deno) if local_deno.exists() else "deno"
        env = dict(os.environ)
        env["MLFLOW_RUN_TAGS"] = json.dumps(dict(tags))
        uri = env.get("MLFLOW_TRACKING_URI")
        if uri and "MLFLOW_ALLOW_NET" not in env:
            env["MLFLOW_ALLOW_NET"] = mlflow_net_grant(uri)
        command = [deno, "task", "-q", self.stage, *arguments]
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        self._process = process
        stdout: list[str] = []
        stderr: list[str] = []

        def pump(stream: Any, lines: list[str]) -> None:
            for line in stream:
                lines.append(line.rstrip("\n"))
                self.log.info("%s", line.rstrip("\n"))

        readers = [
            threading.Thread(target=pump, args=(process.stdout, stdout), daemon=True),
            threading.Thread(target=pump, args=(process.stderr, stderr), daemon=True),
        ]
        for reader in readers:
            reader.start()
        code = process.wait()
        for reader in readers:
            reader.join()
        if code != 0:
            self.fail(code, stderr)
        return json_result(stdout)

    # image mode --------------------------------------------------------------------------------------------

    def run_in_image(
        self, context: Context, arguments: list[str], tags: Mapping[str, str]
    ) -> dict[str, Any] | None:
        podman = engine_is_podman(self.cli.version())
        self.user = os.environ.get("AMAZON_REVIEWS_CONTAINER_USER") or container_user()
        self.mounts = [Mount(target="/app/data", source=str(prepare_data_dir(self.user)), type="bind")]
        if not podman:
            # Docker resolves the host's name only when asked; Podman names it host.containers.internal itself.
            self.extra_hosts = {"host.docker.internal": "host-gateway"}
        self.command = [self.stage, *arguments]
        self.environment = {
            **container_mlflow_env(podman),
            **(self.environment or {}),
            "MLFLOW_RUN_TAGS": json.dumps(dict(tags)),
        }
        self.private_environment = {
            name: os.environ[name]
            for name in (
                "MLFLOW_TRACKING_USERNAME",
                "MLFLOW_TRACKING_PASSWORD",
                "MLFLOW_TRACKING_TOKEN",
                "KAGGLE_API_TOKEN",
                "KAGGLE_USERNAME",
                "KAGGLE_KEY",
            )
            if os.environ.get(name)
        }
        self.xcom_all = True
        self.do_xcom_push = True
        try:
            lines = super().execute(context)
        except DockerContainerFailedException as error:
            logs = [line.decode() if isinstance(line, bytes) else str(line) for line in (error.logs or [])]
            status = re.search(r"'StatusCode': (\d+)", str(error))
            self.fail(int(status.group(1)) if status else 1, logs)
        return json_result(lines if isinstance(lines, list) else [str(lines or "")])

    def fail(self, code: int, lines: Sequence[str]) -> None:
        """Raises the failure Airflow shows for a stage that exited with ``code``."""
        reason = last_error_line(lines) or f"exited with code {code} without an error line"
        message = f"stage {self.stage} failed (exit {code}): {reason}"
        if code == EXIT_USAGE:
            raise AirflowFailException(message)
        raise AirflowException(message)

    def on_kill(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            process.terminate()
        else:
            super().on_kill()


def engine_is_podman(version: Mapping[str, Any]) -> bool:
    """Whether the engine behind the Docker API is Podman (from ``GET /version``)."""
    return any(
        "podman" in str(component.get("Name", "")).lower() for component in version.get("Components") or []
    )


def container_user() -> str:
    """Who the stages run as in a container: the worker's user, so the data files are its own; the image's own
    user (uid 1993) when the worker runs as root, never root (what ``make docker-model-*`` does)."""
    uid, gid = os.getuid(), os.getgid()
    return "1993:1993" if uid == 0 else f"{uid}:{gid}"


def prepare_data_dir(user: str) -> Path:
    """The data folder for image mode, created if missing and, when the worker is root, given to ``user``."""
    folder = container_data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if os.getuid() == 0:
        uid, _, gid = user.partition(":")
        if uid.isdigit() and (not gid or gid.isdigit()):
            os.chown(folder, int(uid), int(gid or uid))
    return folder


def container_mlflow_env(podman: bool) -> dict[str, str]:
    """MLflow settings for a stage in a container: the worker's, except that a server on the worker's loopback
    is reached through the engine's name for the host (``AMAZON_REVIEWS_CONTAINER_MLFLOW_URI`` overrides).
    That server must listen beyond 127.0.0.1 (``make mlflow MLFLOW_HOST=0.0.0.0``)."""
    env = {
        name: os.environ[name]
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_MODEL_NAME")
        if os.environ.get(name)
    }
    uri = env.get("MLFLOW_TRACKING_URI")
    if uri:
        parts = urlsplit(uri)
        if parts.hostname in ("127.0.0.1", "localhost"):
            host = "host.containers.internal" if podman else "host.docker.internal"
            env["MLFLOW_TRACKING_URI"] = parts._replace(netloc=f"{host}:{parts.port or 80}").geturl()
    override = os.environ.get("AMAZON_REVIEWS_CONTAINER_MLFLOW_URI")
    if override:
        env["MLFLOW_TRACKING_URI"] = override
    return env
