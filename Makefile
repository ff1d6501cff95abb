# Run `make` (or `make help`) for the list of targets. Every target that needs Python first
# makes the virtual environment .venv/ from pyproject.toml (re-done when pyproject changes).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UI_PORT ?= 5000
# The embedded store: the same place mlstack.settings uses (MLSTACK_STORE_DIR, default here).
STORE := $(abspath $(or $(MLSTACK_STORE_DIR),.))
# Wine data for `make train` and `make simulate`: the team's shared copy when it sits beside this checkout, else
# empty = the settings default (download once from UCI).
DATA ?= $(wildcard ../shared/data/winequality-red.csv)
ARGS ?=
PYTEST_ARGS ?=
STACK_ARGS ?=
# Images (root Dockerfile). The commit and whether the tree had uncommitted changes go into the
# image, so `mlflow run` can refuse code from another commit (mlstack/provenance.py).
IMAGE ?= mlstack-train
DEV_IMAGE ?= mlstack-dev
# make serve-image: core (scikit-learn models) or tensorflow (adds TensorFlow, for digits).
SERVE_DEPS ?= core
SOURCE_COMMIT = $(or $(shell git rev-parse HEAD 2>/dev/null),unknown)
SOURCE_DIRTY = $(if $(shell git status --porcelain 2>/dev/null),true,false)
BUILD_ARGS = --build-arg SOURCE_COMMIT=$(SOURCE_COMMIT) --build-arg SOURCE_DIRTY=$(SOURCE_DIRTY)
# `make run P="alpha=0.5 l1_ratio=0.2"`: MLflow project parameters; ARGS: more `mlflow run` flags.
P ?=

export MLFLOW_DISABLE_TELEMETRY ?= true

.DEFAULT_GOAL := help
.PHONY: help setup train train-digits ui test lint format clean clean-store \
	stack-up stack-down stack-status pipelines-up monitor simulate env bench-tracking \
	bench-monitoring bench-backup bench-serving bench-images bench-startup image \
	dev-image serve-image run serve test-quick client

## Show this help
help:
	@awk '/^## /{doc=substr($$0,4); next} /^[a-zA-Z_-]+:/{if(doc){split($$0,t,":"); printf "  \033[36m%-14s\033[0m %s\n", t[1], doc}; doc=""}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

## Create .venv/ and install the pinned dependencies (pyproject.toml)
setup: $(STAMP)

## Train the wine ElasticNet on the embedded store (DATA=path-or-url, ARGS="--alpha 0.3 ...")
train: $(STAMP)
	$(PY) train.py $(if $(DATA),--data "$(DATA)") $(ARGS)

## Train the digits CNN on the embedded store (ARGS="--epochs 5 ...")
train-digits: $(STAMP)
	$(PY) train_digits.py $(ARGS)

## Open the MLflow UI on the embedded store at http://127.0.0.1:5000 (UI_PORT=...)
ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(STORE)/mlflow.db \
		--default-artifact-root $(STORE)/mlruns --host 127.0.0.1 --port $(UI_PORT)

## Build the docker_env image mlstack-train that `mlflow run .` runs (needs Docker)
image:
	docker build $(BUILD_ARGS) --target train -t $(IMAGE) .

## Build the dev image mlstack-dev (SSH key-only, JupyterLab, git)
dev-image:
	docker build $(BUILD_ARGS) --target dev -t $(DEV_IMAGE) .

## Build our model server's image mlstack-serve-$(SERVE_DEPS) (SERVE_DEPS=tensorflow for digits)
serve-image:
	docker build --target serve --build-arg SERVE_DEPS=$(SERVE_DEPS) -t mlstack-serve-$(SERVE_DEPS) .

## Rebuild the image, then `mlflow run .` in it on the host network (P="alpha=0.5", ARGS=...)
run: $(STAMP) image
	$(VENV)/bin/mlflow run . -A network=host $(foreach p,$(P),-P $(p)) $(ARGS)

## Write .env with random credentials for the stack (FORCE=1 replaces an existing one)
env:
	$(PYTHON) -m mlstack.entrypoints.envfile $(if $(FORCE),--force)

## Start the native tracking stack (PostgreSQL + S3 + MLflow server) on 127.0.0.1
stack-up: $(STAMP)
	$(PY) -m mlstack.stack up $(STACK_ARGS)

## Start the native stack with the Prefect server and the retraining runner (STACK_ARGS=...)
pipelines-up: $(STAMP)
	$(PY) -m mlstack.stack up --pipelines $(STACK_ARGS)

## The web client at http://127.0.0.1:8501 for our server (SERVER=http://127.0.0.1:8080)
client: $(STAMP)
	$(PY) -m mlstack.client --server-url "$(or $(SERVER),http://127.0.0.1:8080)" $(ARGS)

## Check the champion's prediction log for drift now (MODEL=wine, ARGS="--last 500 ...")
monitor: $(STAMP)
	$(PY) -m mlstack.monitor --model "$(or $(MODEL),wine)" $(ARGS)

## Send clean, then shifted traffic to the server on :8080 (DATA as for train; ARGS="--kind digits ...")
simulate: $(STAMP)
	$(PY) -m mlstack.monitor.simulate $(if $(DATA),--data "$(DATA)") $(ARGS)

## Stop the native stack (data is kept; STACK_ARGS=--purge deletes it)
stack-down: $(STAMP)
	$(PY) -m mlstack.stack down $(STACK_ARGS)

## Show the native stack's processes and health
stack-status: $(STAMP)
	$(PY) -m mlstack.stack status $(STACK_ARGS)

## Benchmark tracking overhead and log_batch throughput against a throwaway native stack
bench-tracking: $(STAMP)
	$(PY) -m benchmarks.tracking

## Time backup and restore (and their size) for a populated stack and one 10x larger
bench-backup: $(STAMP)
	$(PY) -m benchmarks.backup

## Benchmark our model server against `mlflow models serve` (needs wrk; WORKERS=2 for two each)
bench-serving: $(STAMP)
	$(PY) -m benchmarks.serving --workers $(or $(WORKERS),1)

## Time monitoring windows (1k-100k wine rows, 1k digits) end to end, with peak memory
bench-monitoring: $(STAMP)
	$(PY) -m benchmarks.monitoring

## Build every image and print their sizes against the goals and build-docker's (needs Docker)
bench-images: $(STAMP)
	$(PY) -m benchmarks.images

## Time `train.py --help` and `train_digits.py --help` against `python -c pass` (median, ratio)
bench-startup: $(STAMP)
	$(PY) -m benchmarks.startup

## Serve a model with our server on 127.0.0.1:8080 (MODEL=models:/wine@champion)
serve: $(STAMP)
	$(PY) -m mlstack.serving --model-uri "$(or $(MODEL),models:/wine@champion)" $(ARGS)

## Run the whole test suite: unit, integration (real stack) and Docker tiers (PYTEST_ARGS=...)
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## The quick loop: tests that train nothing and start no services (about 20 s)
test-quick: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

## Lint, check formatting (ruff) and declared dependencies (deptry)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/deptry .

## Format the code (ruff)
format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Remove caches (keeps .venv and the tracking store)
clean:
	rm -rf .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

## Delete the embedded tracking store (mlflow.db and mlruns/): all local runs and models
clean-store:
	rm -rf $(STORE)/mlflow.db $(STORE)/mlruns
