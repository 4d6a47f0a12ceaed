"""Scale-out as a user sets it up: a Prefect server on PostgreSQL, two workers on two machines.

The two "machines" are two `git clone`s of this repository in temporary directories, each
with its own PREFECT_HOME and a process worker on pool `batchflows` started from it
(BATCHFLOWS_HOME points the deployments' pull step at the clone). One clone bootstraps and
deploys. Imports, exports and API pulls are submitted at once; then every result must be
exact, both workers must have taken runs, the import deployment's concurrency limit (2) and
the `api-rate` global limit (20 requests/s, shared) must have held across both workers.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from deployments import processes
from deployments.bootstrap import POOL
from deployments.processes import ROOT
from samples.api_server import create_items_table, items, serve_elsewhere
from samples.users import KEY, RULES, create_users_table, write_users_csv
from tests.conftest import ADMIN_URL
from tests.flows.helpers import UsersFile, expected_ids, query, table_ids

pytestmark = [pytest.mark.scale, pytest.mark.e2e, pytest.mark.postgres]

IMPORTS = 4
IMPORT_ROWS = 20_000
EXPORTS = 2
EXPORT_ROWS = 30_000
PULLS = 2
PULL_RECORDS = 4_000
RATE = 20  # the api-rate global limit the bootstrap creates: 20 slots, 20 decay per second
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class Machine:
    """A clone of the repository with its own Prefect home and worker."""

    name: str
    path: Path
    env: dict[str, str]
    worker: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.path / "worker.log"

    def run(self, *command: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", *command],
            env=self.env,
            cwd=self.path,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    def flow_runs_taken(self) -> set[str]:
        """Ids of the flow runs this machine's worker submitted, from its log."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return set(re.findall(r"submitting flow run '([0-9a-f-]{36})'", text))


@dataclass
class Cluster:
    """The server on PostgreSQL and the two machines."""

    api_url: str
    machines: list[Machine] = field(default_factory=list)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def submit(self, deployment: str, **parameters: Any) -> str:
        """Create a flow run of `deployment` (flow/deployment name); its id."""
        found = self.api("GET", f"/deployments/name/{deployment}")
        run = self.api(
            "POST",
            f"/deployments/{found['id']}/create_flow_run",
            {"parameters": parameters, "name": f"scale-{uuid.uuid4().hex[:8]}"},
        )
        return str(run["id"])

    def wait(self, ids: list[str], timeout: float = 900) -> list[dict[str, Any]]:
        """The flow runs `ids` once all have ended."""
        deadline = time.monotonic() + timeout
        while True:
            runs = self.api("POST", "/flow_runs/filter", {"flow_runs": {"id": {"any_": ids}}})
            if all(run["state"]["type"] in TERMINAL for run in runs) and len(runs) == len(ids):
                return list(runs)
            assert time.monotonic() < deadline, [run["state"]["type"] for run in runs]
            time.sleep(2)


@pytest.fixture(scope="module")
def prefect_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the Prefect server: its SQLAlchemy URL."""
    name = f"batchflows_prefect_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = sa.make_url(ADMIN_URL).set(database=name)
    yield url.render_as_string(hide_password=False)
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def cluster(prefect_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("scale")
    port = processes.free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server_env = processes.prefect_env(
        base / "server-home",
        api_url,
        database_url=prefect_database,
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
    )
    server = processes.spawn(processes.server_command(port), server_env, base / "server.log")
    running = Cluster(api_url=api_url)
    try:
        processes.wait_healthy(api_url, server, timeout=300)
        for name in ("machine-a", "machine-b"):
            path = base / name
            subprocess.run(["git", "clone", "--quiet", str(ROOT), str(path)], check=True)
            env = processes.prefect_env(
                path / ".prefect",
                api_url,
                BATCHFLOWS_HOME=str(path),
                PREFECT_WORKER_QUERY_SECONDS="1",
            )
            running.machines.append(Machine(name=name, path=path, env=env))
        first = running.machines[0]
        first.run("deployments.bootstrap")
        first.run("prefect", "--no-prompt", "deploy", "--all")
        for machine in running.machines:
            command = processes.worker_command(POOL, 2)
            machine.worker = processes.spawn(command, machine.env, machine.log, cwd=machine.path)
        yield running
    finally:
        for machine in running.machines:
            if machine.worker:
                processes.stop(machine.worker.pid)
        processes.stop(server.pid)
        shutil.rmtree(base, ignore_errors=True)


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The most of `runs` that were running at the same moment."""
    edges = []
    for run in runs:
        edges.append((datetime.fromisoformat(run["start_time"]), 1))
        edges.append((datetime.fromisoformat(run["end_time"]), -1))
    running = most = 0
    for _, step in sorted(edges):  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most


def assert_within_rate(arrivals: list[float], rate: int) -> None:
    """No stretch of the requests beat the bucket: n requests within W s need n <= rate (1 + W)."""
    times = sorted(arrivals)
    for first, last in itertools.combinations(range(len(times)), 2):
        span = times[last] - times[first]
        assert last - first + 1 <= rate * (1 + span) + 1, (last - first + 1, span)


def test_two_workers_share_imports_exports_and_pulls_within_the_limits(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    files = []
    for number in range(IMPORTS):
        path = tmp_path / f"users_{number}.csv"
        generated = write_users_csv(
            path, IMPORT_ROWS, invalid_rate=0.02, duplicate_rate=0.01, seed=number
        )
        create_users_table(postgres_url, f"users_{number}")
        files.append(UsersFile(path=path, generated=generated))
    create_users_table(postgres_url, "export_source")
    with sa.create_engine(postgres_url).begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO export_source SELECT n, 'u' || n || '@example.com', 'name ' || n, "
                "n % 100, n / 7.0, n % 2 = 0, now(), NULL FROM generate_series(1, :rows) n"
            ),
            {"rows": EXPORT_ROWS},
        )
    pulled = [f"items_{number}" for number in range(PULLS)]
    for table in pulled:
        create_items_table(postgres_url, table)

    collections = {table: items(PULL_RECORDS) for table in pulled}
    with serve_elsewhere(collections, limit_per_second=RATE) as api:
        rules = {column: rule.model_dump(exclude_none=True) for column, rule in RULES.items()}
        imports = [
            cluster.submit(
                "import-csv/import-csv",
                source=str(users.path),
                table=f"users_{number}",
                key=KEY,
                rules=rules,
                database=postgres_url,
            )
            for number, users in enumerate(files)
        ]
        exports = [
            cluster.submit(
                "export-table/export-table",
                table="export_source",
                format="csv",
                filename=f"export_{number}.csv.gz",
                database=postgres_url,
            )
            for number in range(EXPORTS)
        ]
        pulls = [
            cluster.submit(
                "api-pull/api-pull",
                base_url=api.url,
                path=f"/{table}",
                table=table,
                key=["id"],
                rate_limit_per_second=RATE,
                database=postgres_url,
            )
            for table in pulled
        ]
        runs = {run["id"]: run for run in cluster.wait(imports + exports + pulls)}
        arrivals = api.ask("arrivals")

    failed = {
        i: run["state"]["message"] for i, run in runs.items() if run["state_type"] != "COMPLETED"
    }
    assert not failed, failed
    taken = [machine.flow_runs_taken() for machine in cluster.machines]
    assert all(taken), "each worker took flow runs"
    assert set().union(*taken) == set(runs)
    assert most_at_once([runs[i] for i in imports]) <= 2  # import-csv's concurrency limit

    for number, users in enumerate(files):
        assert table_ids(postgres_url, f"users_{number}") == expected_ids(users, "first")
    summary = query(
        postgres_url,
        "SELECT status, sum(inserted + skipped + failed), sum(failed) FROM batchflows_imports "
        "GROUP BY status",
    )
    invalid = sum(users.generated.invalid for users in files)
    assert [tuple(row) for row in summary] == [("succeeded", IMPORTS * IMPORT_ROWS, invalid)]

    written = [
        tuple(row) for row in query(postgres_url, "SELECT path, rows FROM batchflows_exports")
    ]
    assert sorted(rows for _, rows in written) == [EXPORT_ROWS] * EXPORTS
    for path, _ in written:
        assert any((machine.path / path).is_file() for machine in cluster.machines), path

    for table in pulled:
        stored = query(postgres_url, f"SELECT count(DISTINCT id), count(*) FROM {table}")
        assert tuple(stored[0]) == (PULL_RECORDS, PULL_RECORDS)
    assert_within_rate(arrivals, RATE)
    print(json.dumps({m.name: len(t) for m, t in zip(cluster.machines, taken, strict=True)}))
