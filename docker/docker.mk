# Docker targets, included by the Makefile. Each docker-model-<stage> target runs the same stage as
# `make <stage>`, in the model image: `docker run IMAGE <stage> [args...]` runs scripts/<stage>.ts with that
# stage's deno.json permission set (docker/entrypoint.sh). docker/docker_test.ts runs every docker-model-*
# target against a stand-in `docker` that executes the entrypoint locally, so these recipes and the image
# cannot drift apart; docker/e2e.ts runs them with a real engine (`make docker-e2e`). Guide: docs/model/docker.md.

MODEL_IMAGE = tutoria-mlops-model:latest
MODEL_DOCKERFILE = docker/model.Dockerfile
API_IMAGE = tutoria-mlops-api:latest
API_DOCKERFILE = docker/api.Dockerfile
# The base images: the Dockerfiles' FROM and compose.yaml's MLflow service (docker/docker_test.ts keeps them equal).
DENO_IMAGE = denoland/deno:debian-$(DENO_VERSION)
MLFLOW_IMAGE = ghcr.io/mlflow/mlflow:v3.17.2
# The containers' experiment: MLFLOW_EXPERIMENT_NAME from your environment or the make command line, as
# for the host's stages, else the stages' default.
MLFLOW_EXPERIMENT_NAME ?= amazon-reviews-training
# The docker CLI: docker, podman, or a path to either.
DOCKER ?= docker
# "podman" when $(DOCKER) is Podman (also under the name docker, as Podman's docker wrapper), asked once.
docker_engine = $(or $(_docker_engine),$(eval _docker_engine := $(if $(findstring podman,$(shell $(DOCKER) --version 2>/dev/null)),podman,docker))$(_docker_engine))
is_podman = $(filter podman,$(docker_engine))
# Podman's settings for this project (docker/containers.conf), unless CONTAINERS_CONF is set already;
# PODMAN_CONF= (empty) leaves Podman with its own.
PODMAN_CONF ?= $(CURDIR)/docker/containers.conf
ifeq ($(origin CONTAINERS_CONF),undefined)
export CONTAINERS_CONF = $(if $(is_podman),$(PODMAN_CONF))
endif
# How a container reaches this host, where `make mlflow MLFLOW_HOST=0.0.0.0` serves MLflow: Podman names it
# host.containers.internal by itself; Docker resolves host.docker.internal with --add-host ...:host-gateway
# (which Podman 4 rejects).
MODEL_LOCALHOST = http://$(if $(is_podman),host.containers.internal,host.docker.internal)
DOCKER_HOST_FLAGS = $(if $(is_podman),,--add-host=host.docker.internal:host-gateway)
# The tracking URI inside the containers: MLFLOW_TRACKING_URI (see the Makefile), except that a server on
# this host (127.0.0.1, localhost) is reached as MODEL_LOCALHOST, since 127.0.0.1 in a container is the
# container itself.
mlflow_host = $(firstword $(subst :, ,$(MLFLOW_HOSTPORT)))
mlflow_port = $(lastword $(subst :, ,$(MLFLOW_HOSTPORT)))
DOCKER_MLFLOW_URI = $(if $(filter 127.0.0.1 localhost,$(mlflow_host)),$(MODEL_LOCALHOST):$(mlflow_port),$(MLFLOW_TRACKING_URI))
# Host folder mounted at /app/data: the containers' data/ (raw, batches, processed), kept apart from the
# host's own data/ so the two pipelines never mix outputs.
DOCKER_DATA = $(CURDIR)/data/docker
# Who the stages run as: you, so the files in data/docker/ are yours; when make runs as root, the image's own
# user (uid 1993), never root. DOCKER_USER=uid:gid overrides it.
DOCKER_USER = $(if $(filter 0,$(shell id -u)),1993:1993,$(shell id -u):$(shell id -g))
# Podman and Buildah keep a HEALTHCHECK only in the Docker image format.
DOCKER_BUILD = $(DOCKER) build$(if $(is_podman), --format docker)
# A PEM file of extra CAs the builds trust, behind a proxy that re-signs TLS: copied to docker/certs/extra-ca.pem.
CA_CERT ?=
# Extra flags per stage for the pipeline targets (ARGS goes to single-stage targets only).
INGEST_ARGS ?=
SPLIT_ARGS ?=
API_PORT ?= 8000
# The API container's name (docker logs, docker stop, its health status).
API_CONTAINER ?= tutoria-mlops-api

# `-e NAME` without a value forwards the caller's variable if it is set, so secrets never appear in this
# file nor in `make -n`.
MLFLOW_DOCKER_ENV = -e MLFLOW_TRACKING_URI=$(call shell_quote,$(DOCKER_MLFLOW_URI)) \
	-e MLFLOW_MODEL_NAME -e MLFLOW_TRACKING_USERNAME -e MLFLOW_TRACKING_PASSWORD -e MLFLOW_TRACKING_TOKEN
DOCKER_RUN = $(DOCKER) run --rm --user $(DOCKER_USER) $(DOCKER_HOST_FLAGS) \
	-v "$(DOCKER_DATA):/app/data" $(MLFLOW_DOCKER_ENV) -e MLFLOW_EXPERIMENT_NAME=$(call shell_quote,$(MLFLOW_EXPERIMENT_NAME))
# Kaggle credentials, and INGEST_ALLOW_NET for an `ingest --source URL` (see docker/entrypoint.sh).
INGEST_ENV = -e KAGGLE_API_TOKEN -e KAGGLE_USERNAME -e KAGGLE_KEY -e INGEST_ALLOW_NET

.PHONY: docker-deps docker-base-images docker-certs docker-e2e docker-lint docker-model-build docker-model-ingest docker-model-split-batches \
	docker-model-preprocess-batch docker-model-train docker-model-preprocess-test docker-model-evaluate \
	docker-model-pipeline-ingest docker-model-pipeline-train docker-model-predict docker-api-build \
	docker-api-run

##@ Docker or Podman (model image, data in data/docker/, MLflow on this host as host.docker.internal or host.containers.internal)
# Debian 12's packages: Podman and what it needs on a machine without systemd, Docker for DOCKER=docker, and
# debootstrap for the base-image stand-ins. The compose tools come from PyPI (docker/requirements-compose.txt).
PODMAN_PACKAGES = podman buildah runc slirp4netns fuse-overlayfs uidmap netavark aardvark-dns \
	containernetworking-plugins iptables conmon catatonit
COMPOSE_VENV = $(CURDIR)/.cache/compose
COMPOSE_STAMP = $(COMPOSE_VENV)/.requirements-compose.stamp

docker-deps: $(COMPOSE_STAMP) ## Install Podman (DOCKER=docker: Docker) and debootstrap from Debian (root or sudo), compose tools from PyPI
	@packages="debootstrap $(if $(is_podman),$(PODMAN_PACKAGES),docker.io)"; \
	missing=$$(for p in $$packages; do dpkg -s "$$p" >/dev/null 2>&1 || echo "$$p"; done); \
	if [ -n "$$missing" ]; then \
		echo "installing from Debian: "$$missing; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(COMPOSE_STAMP): docker/requirements-compose.txt
	@test -x $(COMPOSE_VENV)/bin/python || $(PYTHON) -m venv $(COMPOSE_VENV)
	@$(COMPOSE_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-input \
		-r docker/requirements-compose.txt >$(COMPOSE_VENV)/pip-install.log 2>&1 || { tail -n 20 $(COMPOSE_VENV)/pip-install.log >&2; \
		echo "error: pip install -r docker/requirements-compose.txt failed; log: $(COMPOSE_VENV)/pip-install.log" >&2; exit 1; }
	@# The docker CLI finds Compose v2 as the plugin DOCKER_CONFIG/cli-plugins/docker-compose.
	@mkdir -p $(COMPOSE_VENV)/cli-plugins && ln -sf "$$($(COMPOSE_VENV)/bin/python -c \
		'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')" \
		$(COMPOSE_VENV)/cli-plugins/docker-compose
	@touch $@

docker-base-images: $(DENO) ## Pull the base images, or build LOCAL STAND-INS under their names when no registry answers (root)
	@docker/stand-in/base_images.sh --engine $(DOCKER) --deno-image $(DENO_IMAGE) --deno-bin $(DENO) \
		--mlflow-image $(MLFLOW_IMAGE) --requirements requirements-mlflow.txt $(if $(CA_CERT),--ca-cert $(CA_CERT))

# Copies CA_CERT where the Dockerfiles look for a proxy's CA (docker/certs/README.md), and says when one is used.
docker-certs:
	@if [ -n "$(CA_CERT)" ] && ! cmp -s "$(CA_CERT)" docker/certs/extra-ca.pem; then \
		install -m 0644 "$(CA_CERT)" docker/certs/extra-ca.pem; fi
	@if [ -s docker/certs/extra-ca.pem ]; then echo "the build trusts the CAs in docker/certs/extra-ca.pem"; fi
	@stand_in=$$($(DOCKER) image inspect --format '{{ index .Config.Labels "tutoria-mlops.stand-in" }}' $(DENO_IMAGE) 2>/dev/null || true); \
	if [ -n "$$stand_in" ] && [ "$$stand_in" != "<no value>" ]; then \
		echo "note: $(DENO_IMAGE) here is a LOCAL STAND-IN built by make docker-base-images, not the upstream image"; fi

# Runs the images for real: base images, both builds, every stage, the API and compose (docs/model/docker.md).
# Its ports: a host MLflow and the compose one (two from DOCKER_E2E_MLFLOW_PORT), the API container and the
# compose one (two from DOCKER_E2E_API_PORT).
DOCKER_E2E_MLFLOW_PORT ?= $(shell echo $$(($(MLFLOW_TEST_PORT) + 1)))
DOCKER_E2E_API_PORT ?= 18000
docker-e2e: setup mlflow-install docker-deps ## End-to-end test with a real engine (DOCKER=podman|docker); ends with one line: engine, image sizes, ok
	@$(DENO) run -q -P=docker_e2e docker/e2e.ts --engine $(DOCKER) \
		--mlflow-port $(DOCKER_E2E_MLFLOW_PORT) --api-port $(DOCKER_E2E_API_PORT)
docker-lint: ## Lint the Dockerfiles (dockerfilelint, dockerfile-utils; via npx, quiet unless they find something)
	@for file in $(MODEL_DOCKERFILE) $(API_DOCKERFILE); do \
		out=$$(npx --yes --quiet dockerfilelint@1.8.0 "$$file" 2>&1) || { echo "$$out" >&2; exit 1; }; \
		out=$$(npx --yes --quiet dockerfile-utils@0.16.3 lint "$$file" 2>&1) || { echo "$$out" >&2; exit 1; }; \
	done

docker-model-build: docker-certs ## Build the model image (every stage; CA_CERT=file trusts a proxy's CA)
	$(DOCKER_BUILD) -f $(MODEL_DOCKERFILE) -t $(MODEL_IMAGE) .

# Created by the caller before the first run (a folder the engine creates for a bind mount belongs to root),
# and given to the stages' user when make runs as root.
$(DOCKER_DATA):
	@mkdir -p "$@"
	@if [ "$$(id -u)" = 0 ]; then chown "$(DOCKER_USER)" "$@"; fi

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

docker-api-build: docker-certs ## Build the API image (CA_CERT=file trusts a proxy's CA)
	$(DOCKER_BUILD) -f $(API_DOCKERFILE) -t $(API_IMAGE) .

docker-api-run: ## Run the API on http://127.0.0.1:8000 (model_version=V|latest|@alias, API_PORT=N; MLflow as above)
	$(DOCKER) run --rm --name $(API_CONTAINER) -p 127.0.0.1:$(API_PORT):8000 $(DOCKER_HOST_FLAGS) \
		$(MLFLOW_DOCKER_ENV) $(API_IMAGE) --model_version $(model_version) $(ARGS)
