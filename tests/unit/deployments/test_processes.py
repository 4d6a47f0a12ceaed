"""Stopping a worker-like process: its own-session children first, then the process itself."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployments import processes

# Like a flow-run subprocess: its own session, a SIGTERM handler that reports whether its
# parent (the worker) was still alive when the signal came.
CHILD = """
import os, signal, sys, time
def stopped(*_):
    open(sys.argv[1], "w").write("parent alive" if os.getppid() == int(sys.argv[2]) else "orphan")
    sys.exit(0)
signal.signal(signal.SIGTERM, stopped)
open(sys.argv[1] + ".ready", "w").close()
time.sleep(60)
"""
PARENT = """
import os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], str(os.getpid())],
                 start_new_session=True)
time.sleep(60)
"""


def test_stop_ends_session_children_before_their_parent(tmp_path: Path) -> None:
    report = tmp_path / "child"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD, str(report)], start_new_session=True
    )
    deadline = time.monotonic() + 20
    while not Path(f"{report}.ready").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (child,) = processes.session_children(parent.pid)

    assert processes.stop(parent.pid, timeout=10)
    assert report.read_text() == "parent alive"
    assert not processes.group_alive(parent.pid)
    assert not processes.group_alive(child)
    assert not processes.stop(parent.pid)


def test_prefect_env_points_a_server_at_postgresql_through_asyncpg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    api_url = "http://127.0.0.1:1/api"
    url = "postgresql+psycopg://bench:s%40cret@db.example:5433/prefect_state"
    env = processes.prefect_env(tmp_path, api_url, database_url=url)
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"] == (
        "postgresql+asyncpg://bench:s%40cret@db.example:5433/prefect_state"
    )
    assert "PREFECT_API_DATABASE_CONNECTION_URL" not in processes.prefect_env(tmp_path, api_url)


def test_prefect_env_offers_refused_runs_again_after_5_s_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable = "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS"
    api_url = "http://127.0.0.1:1/api"
    monkeypatch.delenv(variable, raising=False)
    assert processes.prefect_env(tmp_path, api_url)[variable] == "5"
    monkeypatch.setenv(variable, "30")
    assert processes.prefect_env(tmp_path, api_url)[variable] == "30"
