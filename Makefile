# Short-video recommender: `make demo` runs the pipeline, `make test` runs the suite.
# Only Python 3.11 and pip are needed: uv is bootstrapped into .tools/, and the locked
# environment (uv.lock) is synced into .venv/.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synced
# pytest-xdist workers for `make test` (a module's tests stay on one worker); 2 fits this machine's cores
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install demo promote simulate airflow serve test test-fast lint bench clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	@touch $@

install: $(STAMP) ## Install uv and the locked environment into .venv
	@echo "environment ready: $(VENV)"

demo: install ## Generate the default data set, run `dvc repro`, register the model, run the gates, print a summary
	RECO_DEMO=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	-@$(MAKE) --no-print-directory promote
	@$(BIN)/python -m components.summary

promote: install ## Register the trained ranker as a candidate and run the offline, shadow and canary gates
	$(BIN)/python -m components.deploy.registry register
	$(BIN)/python -m components.deploy.promote all

simulate: install ## The closed loop: simulated users on the API -> stream -> retrain -> live shadow / canary -> KPIs per day and arm
	RECO_DEMO=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m components.simulate.loop

serve: install ## Serve the feed API on HOST:PORT (default 127.0.0.1:8000; docs at /docs; after `make demo`)
	RECO_DEMO=$${RECO_DEMO:-1} RECO_API_KEYS=$${RECO_API_KEYS:-demo:demo-key} $(BIN)/python -m components.serving.app

AIRFLOW_HOME ?= $(CURDIR)/.airflow
AIRFLOW_PORT ?= 8080
airflow: install ## Start Airflow (standalone: SQLite, the project's DAGs) on http://127.0.0.1:$(AIRFLOW_PORT)
	@mkdir -p "$(AIRFLOW_HOME)"
	@echo "Airflow UI: http://127.0.0.1:$(AIRFLOW_PORT)  (user admin; the password is printed below as"
	@echo "'Password for user admin: ...' and kept in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated)"
	AIRFLOW_HOME="$(AIRFLOW_HOME)" \
	AIRFLOW__CORE__DAGS_FOLDER="$(CURDIR)/dags" \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__API__HOST=127.0.0.1 \
	AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(AIRFLOW_PORT)/execution/ \
	RECO_DEMO=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/airflow standalone

test: install ## Run the whole test suite (unit, feature repo, DAGs, end to end) on TEST_WORKERS processes
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=20

test-fast: install ## Unit tests only
	$(BIN)/python -m pytest tests/unit

lint: install ## ruff, mypy and the import contracts (pyproject.toml [tool.importlinter])
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install ## Ingest + preprocess throughput at 1M / 5M / 10M events
	$(BIN)/python -m benchmarks.bench_ingest --events 1000000 5000000 10000000

clean: ## Remove generated data, metrics and reports (keeps the environment)
	rm -rf data metrics reports .dvc/tmp
