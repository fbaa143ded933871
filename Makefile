# amazon-reviews-mlops: every target is `make <target>`; `make help` lists them.
# Stage targets call `deno task <stage>`, so each stage's permissions live in one place: deno.json.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

DENO_VERSION := 2.9.6
DENO := $(CURDIR)/node_modules/.bin/deno
TASK := $(DENO) task -q

# Extra flags for a stage, e.g. `make ingest ARGS="--rows 5000"`.
ARGS ?=

.PHONY: help setup deps fmt fmt-fix lint workflow-lint check test test-deps docs docs-diagram clean \
	ingest split-batches preprocess-batch preprocess-test pipeline-ingest \
	train evaluate predict serve pipeline-train demo

help: ## List the targets, by section
	@awk -v tracking_uri='$(MLFLOW_TRACKING_URI)' 'BEGIN {FS = ":.*?## "} \
		/^##@ / {title = substr($$0, 5); gsub(/\$$\(MLFLOW_TRACKING_URI\)/, tracking_uri, title); \
			printf "\n\033[1m%s\033[0m\n", title; next} \
		/^[a-zA-Z0-9_-]+:.*?## / {printf "  \033[36m%-30s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Set-up
$(DENO):
	npm install --prefix "$(CURDIR)" --no-save --no-audit --no-fund --loglevel=error deno@$(DENO_VERSION)
	@"$(DENO)" --version | head -1

setup: $(DENO) ## Install Deno (pinned, into node_modules/) and cache the npm dependencies from deno.lock
	@$(DENO) install --frozen --quiet --entrypoint scripts/*.ts tools/*.ts

##@ Quality
fmt: setup ## Check formatting (deno fmt --check)
	$(DENO) fmt --check -q

fmt-fix: setup ## Format the code in place
	$(DENO) fmt -q

lint: setup workflow-lint airflow-lint ## Lint (deno lint; the GitHub workflows with actionlint and zizmor; the DAG's Python with ruff)
	$(DENO) lint -q

LINT_VENV := $(CURDIR)/.venv-lint
LINT_STAMP := $(LINT_VENV)/.requirements-lint.stamp

$(LINT_STAMP): requirements-lint.txt
	@test -x $(LINT_VENV)/bin/python || $(PYTHON) -m venv $(LINT_VENV) || \
		{ echo "error: '$(PYTHON) -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	@$(LINT_VENV)/bin/python -m pip install --disable-pip-version-check --no-input -r requirements-lint.txt \
		>$(LINT_VENV)/pip-install.log 2>&1 || { tail -n 20 $(LINT_VENV)/pip-install.log >&2; \
		echo "error: pip install -r requirements-lint.txt failed; full log: .venv-lint/pip-install.log" >&2; exit 1; }
	@touch $@

# zizmor runs offline: its online audits ask GitHub's API about each action's tags and advisories.
workflow-lint: $(LINT_STAMP) ## Lint .github/workflows/ with actionlint and zizmor (pinned in requirements-lint.txt)
	@$(LINT_VENV)/bin/actionlint -no-color .github/workflows/*.yml
	@$(LINT_VENV)/bin/zizmor --offline --quiet --no-progress .github/workflows/

check: setup ## Type-check every module and the examples in their JSDoc (deno check --doc)
	$(DENO) check -q --frozen --doc scripts/ tools/ lib/

test: fmt lint check docker-lint airflow-install mlflow-test ## Run every test (fmt, lint, check, then deno test against a throw-away MLflow at :5501); ends with "N passed, N failed"
	@mkdir -p .tmp-test
	@set +e; MLFLOW_TRACKING_URI=$(MLFLOW_TEST_URI) $(DENO) test -P --frozen 2>&1 | tee .tmp-test/test-output.txt; status=$${PIPESTATUS[0]}; \
	summary=$$(sed 's/\x1b\[[0-9;]*m//g' .tmp-test/test-output.txt | grep -E '^(ok|FAILED) \| ' | tail -1); \
	passed=$$(echo "$$summary" | sed -nE 's/.* ([0-9]+) passed.*/\1/p'); \
	failed=$$(echo "$$summary" | sed -nE 's/.* ([0-9]+) failed.*/\1/p'); \
	ignored=$$(echo "$$summary" | sed -nE 's/.* ([0-9]+) ignored.*/\1/p'); \
	if [ -n "$$ignored" ]; then echo "$$ignored ignored: $$(sed 's/\x1b\[[0-9;]*m//g' .tmp-test/test-output.txt | grep -c 'skipped:') test file(s) printed why (grep 'skipped:' .tmp-test/test-output.txt)"; fi; \
	echo "$${passed:-0} passed, $${failed:-0} failed"; exit $$status

# Debian's Jekyll with the plugins GitHub Pages runs and the site's theme, for docs/site_test.ts.
JEKYLL_PACKAGES := jekyll jekyll-theme-minima ruby-jekyll-relative-links ruby-jekyll-optional-front-matter \
	ruby-jekyll-titles-from-headings ruby-jekyll-default-layout ruby-jekyll-readme-index ruby-jekyll-seo-tag

test-deps: ## Install Debian's chromium (browser test), jekyll (Pages site test), haproxy (proxy test) and Podman (container test) (root or sudo; CI runs it); without them those tests skip loudly
	@installed=$$(dpkg-query -W -f='$${db:Status-Status} $${Package}\n' chromium haproxy $(JEKYLL_PACKAGES) 2>/dev/null || true); \
	missing=$$(for package in chromium haproxy $(JEKYLL_PACKAGES); do \
		grep -qx "installed $$package" <<<"$$installed" || echo "$$package"; done); \
	test -z "$$missing" || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; }
	@$(MAKE) docker-deps DOCKER=podman

docs: setup ## Regenerate docs/model/scripts.md from every stage's --help (docs/docs_test.ts checks it)
	$(TASK) docs

docs-diagram: ## Re-render docs/assets/architecture.svg from its Graphviz source (needs dot: apt-get install graphviz)
	dot -Tsvg docs/assets/architecture.dot -o docs/assets/architecture.svg

clean: mlflow-test-stop ## Remove generated data, test scratch folders (keeps the MLflow server's data)
	rm -rf data/raw data/downloads data/batches data/processed .tmp-test

##@ Data stages
ingest: setup ## Get data/raw/{train,test}.csv (ARGS="--source sample|kaggle|PATH|URL --rows N")
	$(TASK) ingest $(ARGS)

split-batches: setup ## Split data/raw/train.csv into data/batches/train_batch_N.csv (ARGS="--batch-size N")
	$(TASK) split_batches $(ARGS)

preprocess-batch: setup ## Tokenise one batch: make preprocess-batch batch=N
	@test -n "$(batch)" || { echo "error: set batch=N, e.g. make preprocess-batch batch=0" >&2; exit 2; }
	$(TASK) preprocess_batch $(batch) $(ARGS)

preprocess-test: setup ## Tokenise data/raw/test.csv into data/processed/test.tsv
	$(TASK) preprocess_test $(ARGS)

pipeline-ingest: ingest split-batches ## ingest, then split-batches

##@ Model stages (MLflow at $(MLFLOW_TRACKING_URI); `make mlflow` starts a local server)
# Shell-quotes a make variable so titles with quotes or spaces reach the stage intact.
shell_quote = '$(subst ','\'',$(1))'
batches ?= all
model_version ?= latest

train: setup ## Train on processed batches, log to MLflow, register a version: make train batches="0 1 2"
	$(TASK) train --batches $(batches) $(ARGS)

evaluate: setup ## Score a registered version on data/processed/test.tsv: make evaluate model_version=V|latest|@champion
	$(TASK) evaluate --model_version $(model_version) $(ARGS)

predict: setup ## Predict one review: make predict title="..." message="..." model_version=V
	$(TASK) predict --title $(call shell_quote,$(title)) --message $(call shell_quote,$(message)) \
		--model_version $(model_version) $(ARGS)

pipeline-train: setup ## Preprocess batch N, train on it, preprocess-test, evaluate the new version: make pipeline-train batch=N
	@test -n "$(batch)" || { echo "error: set batch=N, e.g. make pipeline-train batch=0" >&2; exit 2; }
	$(TASK) preprocess_batch $(batch)
	@result=$$($(TASK) train --batches $(batch) --json); echo "$$result"; \
	version=$$(echo "$$result" | sed -nE 's/.*"model_version":"([^"]+)".*/\1/p'); \
	test -n "$$version" || { echo "error: train printed no model_version" >&2; exit 1; }; \
	$(TASK) preprocess_test; \
	$(TASK) evaluate --model_version "$$version"

SERVE_PORT ?= 8000
# MLFLOW_ALLOW_NET replaces the task's whole net grant, so the listen address is added back here.
serve: setup ## Serve a registered model over HTTP on :8000 (model_version=V to pick one; SERVE_PORT=N)
	MLFLOW_ALLOW_NET="$(MLFLOW_ALLOW_NET),0.0.0.0:$(SERVE_PORT),127.0.0.1:$(SERVE_PORT)" \
		$(TASK) serve --port $(SERVE_PORT) \
		$(if $(filter command line,$(origin model_version)),--model_version $(model_version)) $(ARGS)

##@ Demo
DEMO_ROWS ?= 20000
DEMO_TEST_ROWS ?= 5000
DEMO_BATCH_SIZE ?= 10000

demo: setup mlflow ## Everything end to end on generated sample data and a local MLflow (run it twice: two versions)
	$(TASK) ingest --source sample --rows $(DEMO_ROWS) --test-rows $(DEMO_TEST_ROWS)
	$(TASK) split_batches --batch-size $(DEMO_BATCH_SIZE)
	@for file in data/batches/train_batch_*.csv; do \
		n=$${file##*_}; n=$${n%.csv}; $(TASK) preprocess_batch $$n; done
	$(TASK) preprocess_test
	@result=$$($(TASK) train --batches all --json); \
	version=$$(echo "$$result" | sed -nE 's/.*"model_version":"([^"]+)".*/\1/p'); \
	test -n "$$version" || { echo "error: train printed no model_version" >&2; exit 1; }; \
	echo; echo "== evaluate model version $$version"; \
	$(TASK) evaluate --model_version "$$version"; \
	echo; echo "== predict with model version $$version"; \
	$(TASK) predict --model_version "$$version" --title "Stopped working after a week" \
		--message "The battery died after a week and support never answered. Not worth the money."; \
	echo; echo "Registered model version: $$version"; \
	echo "MLflow UI: $(MLFLOW_TRACKING_URI)  (experiment $${MLFLOW_EXPERIMENT_NAME:-amazon-reviews-training})"

##@ MLflow (the tracking server, from PyPI into .venv/, pinned in requirements-mlflow.txt)
PYTHON ?= python3
VENV := $(CURDIR)/.venv
MLFLOW_BIN := $(VENV)/bin/mlflow
# Re-installs only when requirements-mlflow.txt changes; pip's chatter goes to the log, not the terminal.
MLFLOW_STAMP := $(VENV)/.requirements-mlflow.stamp
MLFLOW_PIP_LOG := $(VENV)/pip-install.log
MLFLOW_SERVER_SH := $(CURDIR)/tools/mlflow_server.sh
MLFLOW_PORT ?= 5500
MLFLOW_TEST_PORT ?= 5501
MLFLOW_TRACKING_URI ?= http://127.0.0.1:$(MLFLOW_PORT)
MLFLOW_TEST_URI := http://127.0.0.1:$(MLFLOW_TEST_PORT)
# Where `make mlflow` keeps its database and artifacts.
MLFLOW_DATA ?= $(CURDIR)/mlflow-data
# host:port of MLFLOW_TRACKING_URI (80/443 when it names no port). The train/evaluate/predict tasks
# append $MLFLOW_ALLOW_NET, which replaces their default net grant with exactly this host.
MLFLOW_HOSTPORT := $(shell printf '%s\n' '$(MLFLOW_TRACKING_URI)' | \
	sed -E 's|^([a-zA-Z]+)://([^@/]*@)?([^/?]+).*|\1 \3|' | \
	awk '{ hp = $$2; if (hp !~ /:[0-9]+$$/) hp = hp ":" ($$1 == "https" ? 443 : 80); print hp }')
MLFLOW_ALLOW_NET ?= --allow-net=$(MLFLOW_HOSTPORT)
# Recorded as the mlflow.source.git.commit tag of every run.
GIT_COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
export MLFLOW_TRACKING_URI MLFLOW_ALLOW_NET GIT_COMMIT

.PHONY: mlflow-install mlflow mlflow-stop mlflow-test mlflow-test-stop

$(MLFLOW_STAMP): requirements-mlflow.txt
	@command -v $(PYTHON) >/dev/null || \
		{ echo "error: $(PYTHON) not found; install Python 3.10+ or set PYTHON=/path/to/python3" >&2; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV) || \
		{ echo "error: '$(PYTHON) -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	@echo "installing MLflow from requirements-mlflow.txt into .venv/ (log: .venv/pip-install.log)"
	@$(VENV)/bin/python -m pip install --disable-pip-version-check --no-input -r requirements-mlflow.txt \
		>$(MLFLOW_PIP_LOG) 2>&1 || { tail -n 20 $(MLFLOW_PIP_LOG) >&2; \
		echo "error: pip install -r requirements-mlflow.txt failed; full log: .venv/pip-install.log" >&2; exit 1; }
	@touch $@

mlflow-install: $(MLFLOW_STAMP) ## Install MLflow (pinned in requirements-mlflow.txt) into .venv/

# It listens on 127.0.0.1 only; `make mlflow MLFLOW_HOST=0.0.0.0` lets containers reach it
# (host.docker.internal, host.containers.internal), and so does every other machine that can reach this one.
mlflow: $(MLFLOW_STAMP) ## Start MLflow at MLFLOW_TRACKING_URI (default :5500) in the background, data in mlflow-data/
	@$(MLFLOW_SERVER_SH) start --url '$(MLFLOW_TRACKING_URI)' --data $(MLFLOW_DATA) --mlflow $(MLFLOW_BIN)

mlflow-stop: ## Stop the server `make mlflow` started
	@$(MLFLOW_SERVER_SH) stop --url '$(MLFLOW_TRACKING_URI)' --data $(MLFLOW_DATA)

mlflow-test: $(MLFLOW_STAMP) ## Start the tests' throw-away MLflow at :5501 (data in .tmp-test/mlflow/)
	@$(MLFLOW_SERVER_SH) start --url $(MLFLOW_TEST_URI) --data $(CURDIR)/.tmp-test/mlflow --mlflow $(MLFLOW_BIN)

mlflow-test-stop: ## Stop the tests' MLflow server
	@$(MLFLOW_SERVER_SH) stop --url $(MLFLOW_TEST_URI) --data $(CURDIR)/.tmp-test/mlflow

# Docker targets (docker-model-*, docker-api-*), Airflow targets and benchmark targets live in their own files.
-include docker/docker.mk
-include orchestration/airflow/airflow.mk
-include bench.mk
