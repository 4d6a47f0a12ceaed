"""What every benchmark needs: a throwaway database, a real Prefect server, timed children.

Work under test runs in a child process that reports its own duration and peak RSS as JSON,
so the figures describe the worker process alone, and the Prefect API is up before the clock
starts, as it is in production.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from deployments import processes

ADMIN_URL = os.environ.get(
    "BATCHFLOWS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
OUT = Path("bench/out")
ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards; yields its SQLAlchemy URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            sa.make_url(ADMIN_URL)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def prefect_server(database_url: str | None = None) -> Iterator[dict[str, str]]:
    """A Prefect server (temporary home) on a free port, warmed up by one small flow run
    (bench/warm_up.py); yields the env to reach it. Its database is SQLite, or the PostgreSQL
    database at `database_url` (a SQLAlchemy URL, as `throwaway_database` yields)."""
    home = Path(tempfile.mkdtemp(prefix="batchflows-bench-prefect-"))
    port = processes.free_port()
    env = processes.prefect_env(home, f"http://127.0.0.1:{port}/api", database_url=database_url)
    server = processes.spawn(processes.server_command(port), env, log=None)
    try:
        processes.wait_healthy(env["PREFECT_API_URL"], server, timeout=90)
        subprocess.run(
            [sys.executable, "-m", "bench.warm_up"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        yield env
    finally:
        processes.stop(server.pid, timeout=20)


def run_child(module: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `python -m module args` and return the JSON object it prints last."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env or dict(os.environ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def listed(values: Iterable[float], unit: str = "") -> str:
    """Each round's figure, for the line beside a median: "0.72, 0.57, 0.61"."""
    return ", ".join(f"{value:.2f}" for value in values) + unit


def timed(command: list[str]) -> float:
    """Seconds a shell command takes (it must succeed)."""
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB: VmHWM, the high-water mark of the
    memory its program image got at exec. (getrusage's ru_maxrss keeps the RSS of the
    parent it was forked from: a child of a bench that had just generated the 10M-row files
    reported their 1 GB as its own.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line: peak RSS needs Linux")


def psql(url: str, *commands: str) -> list[str]:
    """The psql command line for `url` running `commands`."""
    parsed = sa.make_url(url)
    line = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", parsed.host or "127.0.0.1"]
    line += [
        "-p",
        str(parsed.port or 5432),
        "-U",
        parsed.username or "postgres",
        "-d",
        parsed.database or "",
    ]
    for command in commands:
        line += ["-c", command]
    return line
