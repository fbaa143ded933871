# Docker targets, included by the Makefile. Each docker-model-<stage> target runs the same stage as
# `make <stage>`, in the model image: `docker run IMAGE <stage> [args...]` runs scripts/<stage>.ts with that
# stage's deno.json permission set (docker/entrypoint.sh). docker/docker_test.ts runs every docker-model-*
# target against a stand-in `docker` that executes the entrypoint locally, so these recipes and the image
# cannot drift apart. Guide: docs/model/docker.md.

MODEL_IMAGE = tutoria-mlops-model:latest
MODEL_DOCKERFILE = docker/model.Dockerfile
API_IMAGE = tutoria-mlops-api:latest
API_DOCKERFILE = docker/api.Dockerfile
# How a container reaches the host, where `make mlflow MLFLOW_HOST=0.0.0.0` serves MLflow; --add-host below
# makes the name resolve on Linux too.
MODEL_LOCALHOST = http://host.docker.internal
MLFLOW_EXP_NAME = amazon-reviews-training
# The tracking URI inside the containers: MLFLOW_TRACKING_URI (see the Makefile), except that a server on
# this host (127.0.0.1, localhost) is reached as MODEL_LOCALHOST, since 127.0.0.1 in a container is the
# container itself.
mlflow_host = $(firstword $(subst :, ,$(MLFLOW_HOSTPORT)))
mlflow_port = $(lastword $(subst :, ,$(MLFLOW_HOSTPORT)))
DOCKER_MLFLOW_URI = $(if $(filter 127.0.0.1 localhost,$(mlflow_host)),$(MODEL_LOCALHOST):$(mlflow_port),$(MLFLOW_TRACKING_URI))
# The docker CLI (e.g. DOCKER=podman).
DOCKER ?= docker
# Host folder mounted at /app/data: the containers' data/ (raw, batches, processed), kept apart from the
# host's own data/ so the two pipelines never mix outputs.
DOCKER_DATA = $(CURDIR)/data/docker
# The image runs as uid 1993 (`deno`); running as the calling user keeps the bind-mounted files yours.
DOCKER_USER = $(shell id -u):$(shell id -g)
# Extra flags per stage for the pipeline targets (ARGS goes to single-stage targets only).
INGEST_ARGS ?=
SPLIT_ARGS ?=
API_PORT ?= 8000

# `-e NAME` without a value forwards the caller's variable if it is set, so secrets never appear in this
# file nor in `make -n`.
MLFLOW_DOCKER_ENV = -e MLFLOW_TRACKING_URI=$(call shell_quote,$(DOCKER_MLFLOW_URI)) \
	-e MLFLOW_MODEL_NAME -e MLFLOW_TRACKING_USERNAME -e MLFLOW_TRACKING_PASSWORD -e MLFLOW_TRACKING_TOKEN
DOCKER_RUN = $(DOCKER) run --rm --user $(DOCKER_USER) --add-host=host.docker.internal:host-gateway \
	-v "$(DOCKER_DATA):/app/data" $(MLFLOW_DOCKER_ENV) -e MLFLOW_EXPERIMENT_NAME=$(call shell_quote,$(MLFLOW_EXP_NAME))
# Kaggle credentials, and INGEST_ALLOW_NET for an `ingest --source URL` (see docker/entrypoint.sh).
INGEST_ENV = -e KAGGLE_API_TOKEN -e KAGGLE_USERNAME -e KAGGLE_KEY -e INGEST_ALLOW_NET

.PHONY: docker-lint docker-model-build docker-model-ingest docker-model-split-batches \
	docker-model-preprocess-batch docker-model-train docker-model-preprocess-test docker-model-evaluate \
	docker-model-pipeline-ingest docker-model-pipeline-train docker-model-predict docker-api-build \
	docker-api-run

##@ Docker (model image, data in data/docker/, MLflow on this host reached as host.docker.internal)
docker-lint: ## Lint the Dockerfiles (dockerfilelint, dockerfile-utils; via npx, quiet unless they find something)
	@for file in $(MODEL_DOCKERFILE) $(API_DOCKERFILE); do \
		out=$$(npx --yes --quiet dockerfilelint@1.8.0 "$$file" 2>&1) || { echo "$$out" >&2; exit 1; }; \
		out=$$(npx --yes --quiet dockerfile-utils@0.16.3 lint "$$file" 2>&1) || { echo "$$out" >&2; exit 1; }; \
	done

docker-model-build: ## Build the model image (every stage)
	$(DOCKER) build -f $(MODEL_DOCKERFILE) -t $(MODEL_IMAGE) .

# Created by the caller before the first run; a folder Docker creates for a bind mount belongs to root.
$(DOCKER_DATA):
	@mkdir -p "$@"

docker-model-ingest: | $(DOCKER_DATA) ## ingest in the container (ARGS="--source sample --rows N"; Kaggle credentials from your env)
	$(DOCKER_RUN) $(INGEST_ENV) $(MODEL_IMAGE) ingest $(ARGS)

docker-model-split-batches: | $(DOCKER_DATA) ## split-batches in the container (ARGS="--batch-size N")
	$(DOCKER_RUN) $(MODEL_IMAGE) split-batches $(ARGS)

docker-model-preprocess-batch: | $(DOCKER_DATA) ## preprocess-batch in the container: make docker-model-preprocess-batch batch=N
	@test -n "$(batch)" || { echo "error: set batch=N, e.g. make docker-model-preprocess-batch batch=0" >&2; exit 2; }
	$(DOCKER_RUN) $(MODEL_IMAGE) preprocess-batch $(batch) $(ARGS)

docker-model-preprocess-test: | $(DOCKER_DATA) ## preprocess-test in the container
	$(DOCKER_RUN) $(MODEL_IMAGE) preprocess-test $(ARGS)

docker-model-train: | $(DOCKER_DATA) ## train in the container: make docker-model-train batches="0 1 2"
	$(DOCKER_RUN) $(MODEL_IMAGE) train --batches $(batches) $(ARGS)

docker-model-evaluate: | $(DOCKER_DATA) ## evaluate in the container: make docker-model-evaluate model_version=V
	$(DOCKER_RUN) $(MODEL_IMAGE) evaluate --model_version $(model_version) $(ARGS)

docker-model-predict: | $(DOCKER_DATA) ## predict in the container: make docker-model-predict title="..." message="..." model_version=V
	$(DOCKER_RUN) $(MODEL_IMAGE) predict --title $(call shell_quote,$(title)) \
		--message $(call shell_quote,$(message)) --model_version $(model_version) $(ARGS)

docker-model-pipeline-ingest: | $(DOCKER_DATA) ## ingest, then split-batches, in containers (INGEST_ARGS=..., SPLIT_ARGS=...)
	$(DOCKER_RUN) $(INGEST_ENV) $(MODEL_IMAGE) ingest $(INGEST_ARGS)
	$(DOCKER_RUN) $(MODEL_IMAGE) split-batches $(SPLIT_ARGS)

docker-model-pipeline-train: | $(DOCKER_DATA) ## preprocess batch N, train on it, preprocess-test, evaluate, in containers: batch=N
	@test -n "$(batch)" || { echo "error: set batch=N, e.g. make docker-model-pipeline-train batch=0" >&2; exit 2; }
	$(DOCKER_RUN) $(MODEL_IMAGE) preprocess-batch $(batch)
	@result=$$($(DOCKER_RUN) $(MODEL_IMAGE) train --batches $(batch) --json); echo "$$result"; \
	version=$$(echo "$$result" | sed -nE 's/.*"model_version":"([^"]+)".*/\1/p'); \
	test -n "$$version" || { echo "error: train printed no model_version" >&2; exit 1; }; \
	$(DOCKER_RUN) $(MODEL_IMAGE) preprocess-test; \
	$(DOCKER_RUN) $(MODEL_IMAGE) evaluate --model_version "$$version"

docker-api-build: ## Build the API image
	$(DOCKER) build -f $(API_DOCKERFILE) -t $(API_IMAGE) .

docker-api-run: ## Run the API on http://127.0.0.1:8000 (model_version=V|latest|@alias, API_PORT=N; MLflow as above)
	$(DOCKER) run --rm -p 127.0.0.1:$(API_PORT):8000 --add-host=host.docker.internal:host-gateway \
		$(MLFLOW_DOCKER_ENV) $(API_IMAGE) --model_version $(model_version) $(ARGS)
