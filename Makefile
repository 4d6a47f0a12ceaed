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

setup: system-libs $(VENV)/.installed ## create .venv with every pinned dependency (uv, from requirements.lock)

# WeasyPrint (PDF reports) needs Pango and HarfBuzz; installed once, only when missing.
PDF_LIBS := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core
system-libs: ## Debian libraries that PDF reports need (Pango, HarfBuzz subset, a font)
	@dpkg -s $(PDF_LIBS) >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q $(PDF_LIBS))

# Bytecode is compiled at install time (pip's default, not uv's): where
# PYTHONDONTWRITEBYTECODE is set, as on CI, every process would otherwise compile Prefect,
# pandas and SQLAlchemy again, about 5 s for each worker, flow run and server start.
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -r requirements.lock
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

service: setup ## the jobs HTTP API in the background on 127.0.0.1:8000 (BATCHFLOWS_SERVICE_PORT)
	$(PY) -m deployments.local service

stop: ## stop the service, worker and server that make service/worker/server started
	$(PY) -m deployments.local stop

demo: setup ## server, deploy, worker, then the import-csv deployment on a generated 100k-row file
	$(PY) -m deployments.local demo

demo-local: setup ## the same import in this process, no server or worker
	$(PY) -m deployments.demo

ui-screenshot: setup ## headless Chromium picture of the demo's import flow run: docs/flow-run.png
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)
	$(PY) -m deployments.screenshot

report-screenshot: setup ## headless Chromium picture of the users-signups HTML report: docs/report.png
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)
	$(PY) -m deployments.report_screenshot

serve: setup ## serve every deployment from one process (no work pool needed)
	$(PY) -m deployments.serve

bench: setup ## benchmarks against their baselines (psql \copy, ...), measured in the same run
	$(PY) -m bench.bench_import
	$(PY) -m bench.bench_export
	$(PY) -m bench.bench_api
	$(PY) -m bench.bench_service
	$(PY) -m bench.bench_email

test-scale: setup ## scale-out: Prefect server on PostgreSQL, two workers from two clones (minutes)
	BATCHFLOWS_TEST_SCALE=1 $(PY) -m pytest -m scale tests/scale

bench-scale: setup ## four concurrent 1M-row imports with one worker, then two (PostgreSQL-backed server)
	$(PY) -m bench.bench_scale

bench-10m: setup ## the import benchmark at 10,000,000 rows beside 1,000,000 (minutes; 2.3 GB of files)
	$(PY) -m bench.bench_import --rows 10000000

.PHONY: help setup system-libs lock check test server deploy worker service stop demo demo-local ui-screenshot report-screenshot serve bench bench-10m bench-scale test-scale
