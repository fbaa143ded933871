# LOCAL STAND-IN for ghcr.io/mlflow/mlflow:v<version>, built by docker/stand-in/base_images.sh only when no
# registry answers (compose.yaml's MLflow service). Not the upstream image: a Debian bookworm minbase plus a
# Python venv with the MLflow the project pins (requirements-mlflow.txt); `mlflow` and `python` on the PATH.
ARG BASE
FROM ${BASE}
ARG MLFLOW_VERSION
COPY requirements-mlflow.txt extra-ca.pem /tmp/stand-in/
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null \
    && python3 -m venv /opt/mlflow \
    && if [ -s /tmp/stand-in/extra-ca.pem ]; then export PIP_CERT=/tmp/stand-in/extra-ca.pem; fi \
    && /opt/mlflow/bin/pip install -q --no-cache-dir --disable-pip-version-check -r /tmp/stand-in/requirements-mlflow.txt \
    && /opt/mlflow/bin/mlflow --version \
    && rm -rf /tmp/stand-in /var/lib/apt/lists/* /var/cache/apt/*.bin
ENV PATH=/opt/mlflow/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL tutoria-mlops.stand-in="ghcr.io/mlflow/mlflow:v${MLFLOW_VERSION}" \
    org.opencontainers.image.description="LOCAL STAND-IN for ghcr.io/mlflow/mlflow:v${MLFLOW_VERSION} (Debian bookworm minbase + MLflow from PyPI), not the upstream image"
