# batchflows: every command a data engineer or CI needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: $(VENV)/.installed ## create .venv with every pinned dependency (uv, from requirements.lock)

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements.lock
	touch $@

lock: ## re-pin every dependency after editing pyproject.toml
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock -q

check: setup ## ruff (lint + format) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: check ## everything CI runs: ruff, mypy, then pytest against real PostgreSQL and Prefect
	$(PY) -m pytest

server: setup ## local Prefect server in the background on 127.0.0.1:4200 (BATCHFLOWS_PREFECT_PORT)
	$(PY) -m deployments.local server

deploy: setup ## bootstrap pool, queues, limits, block; then every deployment in prefect.yaml
	$(PY) -m deployments.local deploy

worker: setup ## a process worker on pool batchflows, in the background, under a supervisor that stops its flow runs first on SIGTERM
	$(PY) -m deployments.local worker

stop: ## stop the worker and server that make server/worker started
	$(PY) -m deployments.local stop

demo: setup ## server, deploy, worker, then the import-csv deployment on a generated 100k-row file
	$(PY) -m deployments.local demo

demo-local: setup ## the same import in this process, no server or worker
	$(PY) -m deployments.demo

ui-screenshot: setup ## headless Chromium picture of the demo's import flow run: docs/flow-run.png
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)
	$(PY) -m deployments.screenshot

serve: setup ## serve every deployment from one process (no work pool needed)
	$(PY) -m deployments.serve

bench: setup ## benchmarks against their baselines (psql \copy, ...), measured in the same run
	$(PY) -m bench.bench_import
	$(PY) -m bench.bench_export
	$(PY) -m bench.bench_api

.PHONY: help setup lock check test server deploy worker stop demo demo-local ui-screenshot serve bench
