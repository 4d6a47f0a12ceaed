"""Operations against a real server and a supervised worker: zombies, SIGTERM, alerts.

One Prefect server (temporary PREFECT_HOME, free port) with heartbeats every 30 s (Prefect's
minimum) and a zombie window of 40 s, the bootstrap run twice, every deployment applied, and
`deployments.supervisor` running the worker as `make worker` does. Alerts go to a webhook
receiver on loopback in this process. Imports go to a fresh schema of a throwaway PostgreSQL
database.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments import processes
from deployments.automations import ERROR_RATE, RUN_FAILED, ZOMBIES
from deployments.bootstrap import POOL
from deployments.processes import ROOT
from samples.users import KEY, RULES
from tests.e2e.stack import deploy
from tests.flows.helpers import (
    UsersFile,
    committed_chunks,
    expected_ids,
    make_users,
    query,
    slow_down_inserts,
    table_ids,
)

# The first test also waits for the module's server, two bootstraps and the deploy.
pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(600)]

ZOMBIE_AFTER_SECONDS = 40


class Receiver(ThreadingHTTPServer):
    """Collects the JSON bodies POSTed to it."""

    messages: list[dict[str, Any]]


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.messages.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@dataclass
class Stack:
    """A running server and supervised worker, the environment reaching them, the receiver."""

    env: dict[str, str]
    api_url: str
    home: Path
    receiver: Receiver
    supervisor: subprocess.Popen[bytes] | None = None
    bootstraps: list[str] = field(default_factory=list)

    def start_worker(self) -> None:
        command = processes.supervised_worker_command(POOL, 2)
        self.supervisor = processes.spawn(command, self.env, self.home / "worker.log")

    def api(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(f"{self.api_url}{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def flow_run(self, name: str) -> dict[str, Any]:
        (run,) = self.api("/flow_runs/filter", {"flow_runs": {"name": {"any_": [name]}}})
        return dict(run)

    def run_import(self, watch: bool, **parameters: Any) -> tuple[int, str]:
        name = f"ops-{uuid.uuid4().hex[:8]}"
        command = [sys.executable, "-m", "prefect", "deployment", "run", "import-csv/import-csv"]
        command += ["--flow-run-name", name]
        for key, value in parameters.items():
            text = value if isinstance(value, str) else json.dumps(value)
            command += ["--param", f"{key}={text}"]
        if watch:
            command += ["--watch", "--watch-timeout", "240"]
        done = subprocess.run(
            command, env=self.env, cwd=ROOT, capture_output=True, timeout=300, check=False
        )
        return done.returncode, name

    def messages_about(self, run_id: str) -> list[dict[str, Any]]:
        return [m for m in self.receiver.messages if run_id in m.get("text", "")]

    def import_slots_in_use(self) -> int:
        limits = self.api("/v2/concurrency_limits/filter", {})
        return sum(
            int(limit["active_slots"])
            for limit in limits
            if str(limit["name"]).startswith("deployment:")
        )


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.5)
    return value


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    home = Path(tempfile.mkdtemp(prefix="batchflows-ops-"))
    receiver = Receiver(("127.0.0.1", 0), _Hook)
    receiver.messages = []
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    port = processes.free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = processes.prefect_env(
        home,
        api_url,
        BATCHFLOWS_HOME=str(ROOT),
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY="30",
        PREFECT_UI_URL=f"http://127.0.0.1:{port}",
        BATCHFLOWS_ZOMBIE_AFTER_SECONDS=str(ZOMBIE_AFTER_SECONDS),
        BATCHFLOWS_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{receiver.server_address[1]}/hook",
        BATCHFLOWS_STOP_TIMEOUT_SECONDS="60",
    )
    server = processes.spawn(processes.server_command(port), env, home / "server.log")
    running = Stack(env=env, api_url=api_url, home=home, receiver=receiver)
    try:
        processes.wait_healthy(api_url, server)
        running.bootstraps.extend(deploy(env, bootstraps=2))
        running.start_worker()
        yield running
    finally:
        if running.supervisor:
            processes.stop_supervisor(running.supervisor.pid, timeout=15)
        processes.stop(server.pid, timeout=15)
        receiver.shutdown()
        shutil.rmtree(home, ignore_errors=True)


def _rules() -> dict[str, Any]:
    return {column: rule.model_dump(exclude_none=True) for column, rule in RULES.items()}


def _start_slow_import(stack: Stack, users: UsersFile, url: str) -> str:
    """An import of `users` by the deployment, once 8 of its 40 chunks have committed."""
    slow_down_inserts(url)
    code, name = stack.run_import(
        False,
        source=str(users.path),
        table="users",
        key=KEY,
        rules=_rules(),
        chunk_size=100,
        max_concurrency=4,
        import_id="killed",
        database=url,
    )
    assert code == 0
    wait_for(lambda: committed_chunks(url) >= 8, 120, "the import never got going")
    return name


def _rerun_and_check(stack: Stack, users: UsersFile, url: str) -> None:
    """The same import_id again, by the deployment: exactly the uninterrupted result."""
    code, name = stack.run_import(
        True,
        source=str(users.path),
        table="users",
        key=KEY,
        rules=_rules(),
        chunk_size=100,
        import_id="killed",
        database=url,
    )
    assert code == 0, (stack.home / "worker.log").read_text()[-3000:]
    assert stack.flow_run(name)["state_type"] == "COMPLETED"
    assert table_ids(url) == expected_ids(users, "first")
    ledger = "SELECT count(*), count(DISTINCT chunk_index) FROM batchflows_chunks"
    assert tuple(query(url, ledger)[0]) == (40, 40)
    rejects = query(url, "SELECT count(*), count(DISTINCT line) FROM batchflows_rejects")
    assert tuple(rejects[0]) == (users.generated.invalid, users.generated.invalid)


def test_two_bootstraps_leave_each_automation_exactly_once(stack: Stack) -> None:
    automations = stack.api("/automations/filter", {})
    names = [a["name"] for a in automations]
    for name in (ZOMBIES, RUN_FAILED, ERROR_RATE):
        assert names.count(name) == 1
    (zombies,) = [a for a in automations if a["name"] == ZOMBIES]
    assert zombies["trigger"]["posture"] == "Proactive"
    assert zombies["trigger"]["within"] == ZOMBIE_AFTER_SECONDS
    assert zombies["actions"][0]["state"] == "CRASHED"
    reported = json.loads(stack.bootstraps[1])["automations"]
    assert reported["zombie_after_seconds"] == ZOMBIE_AFTER_SECONDS
    assert reported["alert_block"] == "custom-webhook/batchflows-alerts"


def test_a_failed_run_notifies_the_webhook_with_deployment_link_and_reason(
    stack: Stack, tmp_path: Path, postgres_url: str
) -> None:
    missing = tmp_path / "missing.csv"
    code, name = stack.run_import(
        True, source=str(missing), table="users", key=KEY, database=postgres_url
    )
    assert code != 0
    run = stack.flow_run(name)
    assert run["state_type"] == "FAILED"
    (message,) = wait_for(lambda: stack.messages_about(run["id"]), 60, "no failure alert")
    assert message["subject"] == f"batchflows: import-csv run {name} Failed"
    assert "Deployment: import-csv (flow import-csv)" in message["text"]
    assert f"{stack.env['PREFECT_UI_URL']}/runs/flow-run/{run['id']}" in message["text"]
    assert "Reason: " in message["text"]
    assert str(missing) in message["text"]


def test_an_import_over_its_alert_error_rate_completes_and_notifies_the_webhook(
    stack: Stack, tmp_path: Path, postgres_url: str
) -> None:
    users = make_users(tmp_path, postgres_url, 500, invalid_rate=0.3)
    code, name = stack.run_import(
        True,
        source=str(users.path),
        table="users",
        key=KEY,
        rules=_rules(),
        alert_error_rate=0.1,
        database=postgres_url,
    )
    assert code == 0
    run = stack.flow_run(name)
    assert run["state_type"] == "COMPLETED"
    (message,) = wait_for(lambda: stack.messages_about(run["id"]), 60, "no error-rate alert")
    invalid = users.generated.invalid
    assert message["subject"] == f"batchflows: import-csv run {name} rejected too many rows"
    assert f"{invalid:,} of 500 rows rejected ({invalid / 500:.1%})" in message["text"]
    assert "over alert_error_rate 10.0%" in message["text"]
    assert f"/runs/flow-run/{run['id']}" in message["text"]


def test_sigterm_to_the_supervised_worker_crashes_its_run_frees_the_slot_and_the_rerun_resumes(
    stack: Stack, tmp_path: Path, postgres_url: str
) -> None:
    users = make_users(tmp_path, postgres_url, 4000)
    name = _start_slow_import(stack, users, postgres_url)
    assert stack.supervisor is not None
    stack.supervisor.send_signal(signal.SIGTERM)  # what docker stop and Kubernetes send
    assert stack.supervisor.wait(timeout=90) == 0
    stack.supervisor = None

    run = stack.flow_run(name)
    assert run["state_type"] == "CRASHED"
    recorded = query(postgres_url, "SELECT status, error FROM batchflows_imports")
    assert tuple(recorded[0]) == ("failed", "stopped by TerminationSignal")
    stopped_at = committed_chunks(postgres_url)
    assert 8 <= stopped_at < 40
    in_ledger = query(postgres_url, "SELECT coalesce(sum(inserted), 0) FROM batchflows_chunks")
    assert query(postgres_url, "SELECT count(*) FROM users")[0][0] == in_ledger[0][0]
    assert stack.import_slots_in_use() == 0
    (alert,) = wait_for(lambda: stack.messages_about(run["id"]), 60, "no crash alert")
    assert "Crashed" in alert["subject"]

    stack.start_worker()
    _rerun_and_check(stack, users, postgres_url)


def test_a_run_whose_worker_is_sigkilled_is_marked_crashed_by_the_zombie_automation(
    stack: Stack, tmp_path: Path, postgres_url: str
) -> None:
    users = make_users(tmp_path, postgres_url, 4000)
    if stack.supervisor is None:
        stack.start_worker()
    assert stack.supervisor is not None
    name = _start_slow_import(stack, users, postgres_url)
    # The machine is lost: supervisor, worker and flow run die at once, nobody reports.
    (worker,) = processes.session_children(stack.supervisor.pid)
    flow_runs = processes.session_children(worker)
    assert flow_runs
    for group in [*flow_runs, worker]:
        os.killpg(group, signal.SIGKILL)
    stack.supervisor.kill()
    stack.supervisor.wait()
    stack.supervisor = None
    killed = time.monotonic()
    assert stack.flow_run(name)["state_type"] == "RUNNING"

    run = wait_for(
        lambda: (r := stack.flow_run(name))["state_type"] == "CRASHED" and r,
        ZOMBIE_AFTER_SECONDS + 90,
        "the zombie run was never marked Crashed",
    )
    assert time.monotonic() - killed <= ZOMBIE_AFTER_SECONDS + 90
    assert "No heartbeat for 40 s" in run["state"]["message"]
    assert stack.import_slots_in_use() == 0
    wait_for(lambda: stack.messages_about(run["id"]), 60, "no crash alert for the zombie")

    stack.start_worker()
    _rerun_and_check(stack, users, postgres_url)
