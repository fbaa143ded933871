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

.PHONY: help setup deps fmt fmt-fix lint check test clean \
	ingest split-batches preprocess-batch preprocess-test pipeline-ingest

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-26s\033[0m %s\n", $$1, $$2}'

##@ Set-up
$(DENO):
	npm install --prefix "$(CURDIR)" --no-save --no-audit --no-fund --loglevel=error deno@$(DENO_VERSION)
	@"$(DENO)" --version | head -1

setup: $(DENO) ## Install Deno (pinned, into node_modules/) and cache the npm dependencies from deno.lock
	@$(DENO) install --frozen --quiet --entrypoint scripts/*.ts

##@ Quality
fmt: setup ## Check formatting (deno fmt --check)
	$(DENO) fmt --check -q

fmt-fix: setup ## Format the code in place
	$(DENO) fmt -q

lint: setup ## Lint (deno lint)
	$(DENO) lint -q

check: setup ## Type-check every module (deno check)
	$(DENO) check -q --frozen scripts/ lib/

test: fmt lint check ## Run every test (fmt, lint, check, then deno test); ends with "N passed, N failed"
	@mkdir -p .tmp-test
	@set +e; $(DENO) test -P --frozen 2>&1 | tee .tmp-test/test-output.txt; status=$${PIPESTATUS[0]}; \
	summary=$$(sed 's/\x1b\[[0-9;]*m//g' .tmp-test/test-output.txt | grep -E '^(ok|FAILED) \| ' | tail -1); \
	passed=$$(echo "$$summary" | sed -nE 's/.* ([0-9]+) passed.*/\1/p'); \
	failed=$$(echo "$$summary" | sed -nE 's/.* ([0-9]+) failed.*/\1/p'); \
	echo "$${passed:-0} passed, $${failed:-0} failed"; exit $$status

clean: ## Remove generated data, test scratch folders (keeps the MLflow server's data)
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

# Docker targets (docker-model-*, docker-api-*) live in their own file.
-include docker/docker.mk
