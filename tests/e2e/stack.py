"""A real Prefect server, the deployments of prefect.yaml and a worker, for end-to-end tests.

Started once per test module on a free port under a temporary PREFECT_HOME, and stopped by
PID at the end, also when a test fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from deployments import processes
from deployments.bootstrap import POOL
from deployments.processes import ROOT


@dataclass
class Stack:
    """A running server and worker, and the environment that reaches them."""

    env: dict[str, str]
    api_url: str
    home: Path
    worker: subprocess.Popen[bytes] | None = None

    def start_worker(self) -> None:
        command = processes.worker_command(POOL, 2)
        self.worker = processes.spawn(command, self.env, self.home / "worker.log")

    def api(self, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        response = httpx.post(f"{self.api_url}{path}", json=body, timeout=10)
        response.raise_for_status()
        return list(response.json())

    def prefect(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def flow_run(self, name: str) -> dict[str, Any]:
        (run,) = self.api("/flow_runs/filter", {"flow_runs": {"name": {"any_": [name]}}})
        return run


def deploy(env: dict[str, str], bootstraps: int = 1) -> list[str]:
    """Run `deployments.bootstrap` `bootstraps` times, then `prefect deploy --all`, against the
    server `env` names; each must succeed. The bootstraps' output, in order."""
    outputs = []
    commands = [["deployments.bootstrap"]] * bootstraps + [
        ["prefect", "--no-prompt", "deploy", "--all"]
    ]
    for command in commands:
        done = subprocess.run(
            [sys.executable, "-m", *command],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        outputs.append(done.stdout)
    return outputs[:bootstraps]


@contextmanager
def running_stack(**extra_env: str) -> Iterator[Stack]:
    """Server, `bootstrap` + `prefect deploy --all`, then a worker; `extra_env` for all of them."""
    home = Path(tempfile.mkdtemp(prefix="batchflows-e2e-"))
    port = processes.free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    # The worker polls every second so runs start at once; BATCHFLOWS_HOME fills the pull step.
    env = processes.prefect_env(
        home, api_url, BATCHFLOWS_HOME=str(ROOT), PREFECT_WORKER_QUERY_SECONDS="1", **extra_env
    )
    server = processes.spawn(processes.server_command(port), env, home / "server.log")
    running = Stack(env=env, api_url=api_url, home=home)
    try:
        processes.wait_healthy(api_url, server)
        deploy(env)
        running.start_worker()
        yield running
    finally:
        # The tests are over: nothing is left to commit, so what does not stop soon is killed.
        if running.worker:
            processes.stop(running.worker.pid, timeout=15)
        processes.stop(server.pid, timeout=15)
        shutil.rmtree(home, ignore_errors=True)
