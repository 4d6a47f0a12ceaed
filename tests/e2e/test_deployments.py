"""The deployments as a user runs them: real server, `prefect deploy --all`, a worker, the CLI.

One Prefect server (temporary PREFECT_HOME, free port) and one worker serve the module; both
are stopped by PID at the end, also when a test fails. Imports go to a fresh schema of a
throwaway PostgreSQL database, passed as the `database` parameter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments import processes
from deployments.processes import ROOT
from samples.users import KEY, RULES
from tests.e2e.stack import Stack, running_stack
from tests.flows.helpers import (
    committed_chunks,
    expected_ids,
    make_users,
    query,
    slow_down_inserts,
    table_ids,
)

# The first test also waits for the module's server, bootstrap and deploy.
pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as running:
        yield running


def _run_import(
    stack: Stack, *, watch: bool = True, **parameters: Any
) -> tuple[subprocess.CompletedProcess[str], str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    command = ["deployment", "run", "import-csv/import-csv", "--flow-run-name", name]
    for key, value in parameters.items():
        command += ["--param", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    if watch:
        command += ["--watch", "--watch-timeout", "240"]
    return stack.prefect(*command), name


def _rules() -> dict[str, Any]:
    return {column: rule.model_dump(exclude_none=True) for column, rule in RULES.items()}


def test_bootstrap_made_the_pool_queues_and_rate_limit(stack: Stack) -> None:
    queues = stack.api("/work_pools/batchflows/queues/filter", {})
    assert {q["name"]: q["priority"] for q in queues} == {"high": 1, "default": 2, "low": 3}
    limit = httpx.get(f"{stack.api_url}/v2/concurrency_limits/api-rate", timeout=10).json()
    assert (limit["limit"], limit["slot_decay_per_second"]) == (20, 20.0)
    deployments = stack.api("/deployments/filter", {})
    names = {d["name"] for d in deployments}
    assert {"import-csv", "export-table", "api-pull", "api-push", "cleanup"} <= names
    assert {"replay-dead-letters", "import-csv-urgent", "daily"} <= names
    # A second bootstrap changes nothing (idempotent).
    again = subprocess.run(
        [sys.executable, "-m", "deployments.bootstrap"],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(again.stdout.splitlines()[-1])["queues"] == {
        "high": 1,
        "default": 2,
        "low": 3,
    }


def test_deployment_run_imports_and_reports(
    stack: Stack, postgres_url: str, tmp_path: Path
) -> None:
    users = make_users(tmp_path, postgres_url, 3000)
    done, name = _run_import(
        stack,
        source=str(users.path),
        table="users",
        key=KEY,
        rules=_rules(),
        chunk_size=500,
        database=postgres_url,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert table_ids(postgres_url) == expected_ids(users, "first")
    assert query(postgres_url, "SELECT status, total_rows FROM batchflows_imports")[0] == (
        "succeeded",
        3000,
    )
    run = stack.flow_run(name)
    assert run["state_type"] == "COMPLETED"
    artifacts = stack.api(
        "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
    )
    progress = [a for a in artifacts if a["type"] == "progress"]
    assert [a["data"] for a in progress] == [100.0]
    (summary,) = [a for a in artifacts if a["key"] == "import-users-summary"]
    (row,) = json.loads(summary["data"])
    assert row["total"] == 3000
    assert row["failed"] == users.generated.invalid
    assert row["inserted"] == len(expected_ids(users, "first"))


def test_a_failing_run_exits_non_zero_with_the_error_in_its_logs(
    stack: Stack, postgres_url: str, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-file.csv"
    done, name = _run_import(
        stack, source=str(missing), table="users", key=KEY, database=postgres_url
    )

    assert done.returncode != 0
    run = stack.flow_run(name)
    assert run["state_type"] == "FAILED"
    logs = stack.api("/logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}})
    errors = [log["message"] for log in logs if log["level"] >= 40]
    assert any(str(missing) in message for message in errors), errors


def test_the_ci_trigger_script_passes_on_success_and_fails_on_failure(
    stack: Stack, postgres_url: str, tmp_path: Path
) -> None:
    users = make_users(tmp_path, postgres_url, 200)
    script = ROOT / "deployments" / "ci_trigger.sh"
    env = {
        **stack.env,
        "PREFECT": f"{sys.executable} -m prefect",
        "SOURCE": str(users.path),
        "TABLE": "users",
        "DATABASE": postgres_url,
    }

    ok = subprocess.run([script], env=env, capture_output=True, text=True, check=False)
    missing = {**env, "SOURCE": str(tmp_path / "missing.csv")}
    failed = subprocess.run([script], env=missing, capture_output=True, text=True, check=False)

    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    assert table_ids(postgres_url) == expected_ids(users, "first")
    assert failed.returncode != 0


def test_stopping_the_worker_mid_import_crashes_the_run_cleanly_and_a_rerun_resumes_it(
    stack: Stack, postgres_url: str, tmp_path: Path
) -> None:
    users = make_users(tmp_path, postgres_url, 4000)
    # Each chunk's insert takes 50 ms longer, so the stop lands mid-import.
    slow_down_inserts(postgres_url)
    parameters: dict[str, Any] = {
        "source": str(users.path),
        "table": "users",
        "key": KEY,
        "rules": _rules(),
        "chunk_size": 100,
        "max_concurrency": 2,
        "import_id": "e2e-stopped",
        "database": postgres_url,
    }
    created, name = _run_import(stack, watch=False, **parameters)
    assert created.returncode == 0, created.stderr[-3000:]
    deadline = time.monotonic() + 120
    while committed_chunks(postgres_url) < 8:
        assert time.monotonic() < deadline, "the import never got going"
        time.sleep(0.05)
    assert stack.worker is not None
    processes.stop(stack.worker.pid)  # what `make stop` does
    stack.start_worker()

    stopped = stack.flow_run(name)
    assert (stopped["state_type"], stopped["state"]["message"]) == (
        "CRASHED",
        "Execution was aborted by a termination signal.",
    )
    stopped_at = committed_chunks(postgres_url)
    assert 8 <= stopped_at < 40
    in_ledger = query(postgres_url, "SELECT coalesce(sum(inserted), 0) FROM batchflows_chunks")
    assert query(postgres_url, "SELECT count(*) FROM users")[0][0] == in_ledger[0][0]

    done, rerun = _run_import(stack, **parameters)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert table_ids(postgres_url) == expected_ids(users, "first")
    (summary,) = [
        a
        for a in stack.api(
            "/artifacts/filter",
            {"artifacts": {"flow_run_id": {"any_": [stack.flow_run(rerun)["id"]]}}},
        )
        if a["key"] == "import-users-summary"
    ]
    (row,) = json.loads(summary["data"])
    assert (row["total"], row["resumed_chunks"]) == (4000, stopped_at)
    assert row["inserted"] == len(expected_ids(users, "first"))
