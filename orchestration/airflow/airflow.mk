# Airflow targets, included by the Makefile. Airflow lives in its own virtual environment, .venv-airflow/,
# pinned in orchestration/airflow/requirements.txt; the DAG is orchestration/airflow/dags/. Guide:
# docs/infra/airflow.md.

AIRFLOW_VENV := $(CURDIR)/.venv-airflow
AIRFLOW_BIN := $(AIRFLOW_VENV)/bin/airflow
AIRFLOW_REQUIREMENTS := orchestration/airflow/requirements.txt
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.requirements.stamp
AIRFLOW_PIP_LOG := $(AIRFLOW_VENV)/pip-install.log
AIRFLOW_DAGS := $(CURDIR)/orchestration/airflow/dags
# Where `make airflow-run` keeps Airflow's own state (SQLite metadata database, task logs).
AIRFLOW_LOCAL_HOME := $(CURDIR)/.airflow
# DAG run configuration for `make airflow-run`, e.g. AIRFLOW_CONF='{"model": "forest", "num_batches": 4}'.
AIRFLOW_CONF ?= {}

.PHONY: airflow-install airflow-dag-test airflow-run airflow-lint

##@ Airflow (its own venv .venv-airflow/, pinned in orchestration/airflow/requirements.txt)
$(AIRFLOW_STAMP): $(AIRFLOW_REQUIREMENTS)
	@command -v $(PYTHON) >/dev/null || \
		{ echo "error: $(PYTHON) not found; install Python 3.10-3.13 or set PYTHON=/path/to/python3" >&2; exit 1; }
	@test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV) || \
		{ echo "error: '$(PYTHON) -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	@echo "installing Airflow from $(AIRFLOW_REQUIREMENTS) into .venv-airflow/ (log: .venv-airflow/pip-install.log)"
	@start=$$(date +%s); \
	$(AIRFLOW_VENV)/bin/python -m pip install --disable-pip-version-check --no-input -r $(AIRFLOW_REQUIREMENTS) \
		>$(AIRFLOW_PIP_LOG) 2>&1 || { tail -n 20 $(AIRFLOW_PIP_LOG) >&2; \
		echo "error: pip install -r $(AIRFLOW_REQUIREMENTS) failed; full log: .venv-airflow/pip-install.log" >&2; exit 1; }; \
	echo "Airflow $$($(AIRFLOW_BIN) version 2>/dev/null) installed in $$(( $$(date +%s) - start )) s"
	@touch $@

airflow-install: $(AIRFLOW_STAMP) ## Install Airflow and its Docker provider (pinned) into .venv-airflow/

airflow-dag-test: setup airflow-install ## Run the whole DAG with Airflow (airflow dags test, throw-away home) against $MLFLOW_TRACKING_URI
	@mkdir -p .tmp-test
	@MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) $(DENO) test -P --frozen orchestration/airflow/
	@cat .tmp-test/airflow-dag-test.txt

airflow-run: setup airflow-install ## Run the DAG once on this project's data/ with `airflow dags test` against $MLFLOW_TRACKING_URI (AIRFLOW_CONF='{...}')
	@mkdir -p $(AIRFLOW_LOCAL_HOME)
	@export AIRFLOW_HOME=$(AIRFLOW_LOCAL_HOME) AIRFLOW__CORE__DAGS_FOLDER=$(AIRFLOW_DAGS) \
		AIRFLOW__CORE__LOAD_EXAMPLES=False AMAZON_REVIEWS_PROJECT_DIR=$(CURDIR); \
	$(AIRFLOW_BIN) db migrate >$(AIRFLOW_LOCAL_HOME)/db-migrate.log 2>&1 || \
		{ tail -n 20 $(AIRFLOW_LOCAL_HOME)/db-migrate.log >&2; echo "error: airflow db migrate failed" >&2; exit 1; }; \
	$(AIRFLOW_BIN) dags test amazon_reviews_pipeline -c $(call shell_quote,$(AIRFLOW_CONF))

airflow-lint: $(LINT_STAMP) ## Lint and format-check the DAG's Python with ruff (orchestration/airflow/ruff.toml)
	@$(LINT_VENV)/bin/ruff check --quiet orchestration/airflow
	@$(LINT_VENV)/bin/ruff format --quiet --check orchestration/airflow
