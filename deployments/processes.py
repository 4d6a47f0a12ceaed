"""Start, probe and stop the Prefect processes batchflows runs: server and worker.

Shared by `make server/worker/stop/demo` (deployments.local), the end-to-end tests and the
benchmarks. Each process gets its own session, so stopping its PID's process group stops its
children (a worker's flow-run subprocesses, the server's services) and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]

# A flow run that finds its deployment's concurrency limit full is refused, and offered to the
# workers again only this many seconds later (Prefect's default is 30). One worker at its own
# limit never asks for such a run, but a second worker does: four concurrent 1M-row imports
# (limit 2) took 0.77-0.85x of one worker's time with two workers at 30 s, the second pair
# of runs starting 6-8 s later than with one worker, and 0.99-1.08x at 5 s (bench/bench_scale.py).
SLOT_WAIT = {"PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prefect_env(
    home: Path, api_url: str, *, database_url: str | None = None, **extra: str
) -> dict[str, str]:
    """This environment plus the settings every batchflows Prefect process uses.

    With `database_url` (a SQLAlchemy URL of a PostgreSQL database), a server started in it
    keeps its state there, through the asyncpg driver Prefect's server needs, not in SQLite.
    A server started in it offers runs refused for a full deployment limit again after 5 s
    (SLOT_WAIT), unless this environment says otherwise.
    """
    database: dict[str, str] = {}
    if database_url is not None:
        import sqlalchemy as sa  # noqa: PLC0415  (only servers on PostgreSQL need it)

        asyncpg = sa.make_url(database_url).set(drivername="postgresql+asyncpg")
        database["PREFECT_API_DATABASE_CONNECTION_URL"] = asyncpg.render_as_string(
            hide_password=False
        )
    return {
        **SLOT_WAIT,
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        **database,
        **extra,
    }


def is_healthy(api_url: str) -> bool:
    """Whether the Prefect API at `api_url` answers its health check."""
    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(api_url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Block until the API answers; fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    while not is_healthy(api_url):
        if process.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Prefect API at {api_url} did not answer in {timeout:.0f} s")
        time.sleep(0.5)


def spawn(
    command: list[str], env: Mapping[str, str], log: Path | None, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    """Start `command` in `cwd` (default: this checkout) in its own session, output appended
    to `log` (or discarded)."""
    output = log.open("ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            command,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log:
            output.close()  # type: ignore[union-attr]


def server_command(port: int) -> list[str]:
    """`prefect server start` on 127.0.0.1:`port` (SQLite under PREFECT_HOME)."""
    host = ["--host", "127.0.0.1", "--port", str(port)]
    return [sys.executable, "-m", "prefect", "server", "start", *host]


def worker_command(pool: str, limit: int) -> list[str]:
    """A process worker on `pool` running at most `limit` flow runs at once."""
    options = ["--pool", pool, "--type", "process", "--limit", str(limit)]
    return [sys.executable, "-m", "prefect", "worker", "start", *options]


def service_command() -> list[str]:
    """The jobs HTTP service (`python -m service`), on $BATCHFLOWS_SERVICE_PORT."""
    return [sys.executable, "-m", "service"]


def wait_service(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Block until the service at `url` answers /healthz; fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service at {url} did not answer in {timeout:.0f} s")
        time.sleep(0.3)


def supervised_worker_command(pool: str, limit: int) -> list[str]:
    """The worker under deployments.supervisor, which stops its flow runs first on SIGTERM."""
    options = ["--pool", pool, "--limit", str(limit)]
    return [sys.executable, "-m", "deployments.supervisor", *options]


def stop_supervisor(pid: int, timeout: float = 90) -> bool:
    """Stop a supervised worker: SIGTERM to the supervisor alone, which stops the flow runs
    and then the worker; what still runs after `timeout` is stopped as `stop` does.
    False if nothing was running."""
    if not group_alive(pid):
        return False
    workers = session_children(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(map(group_alive, [pid, *workers])) and time.monotonic() < deadline:
        time.sleep(0.1)
    for group in [*workers, pid]:
        stop(group, timeout=10)
    return True


def _reap(pid: int) -> None:
    """Collect `pid`'s exit status if it is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group led by `pgid` still runs (zombies do not count)."""
    _reap(pgid)
    proc = Path("/proc")
    if proc.is_dir():
        return any(stat[2] == str(pgid) and stat[0] != "Z" for stat in _stats(proc).values())
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stats(proc: Path) -> dict[int, list[str]]:
    """pid -> the fields of /proc/pid/stat after the command name (state, ppid, pgrp, sid...)."""
    stats: dict[int, list[str]] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    return stats


def session_children(pid: int) -> list[int]:
    """Children of `pid` that lead their own session: a worker's flow-run subprocesses.

    Read from /proc (Linux); elsewhere none are found and the worker is stopped directly.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    return [
        child
        for child, stat in _stats(proc).items()
        if stat[1] == str(pid) and stat[3] == str(child) and stat[0] != "Z"
    ]


def stop(pid: int, timeout: float = 60) -> bool:
    """Stop the process `pid` leads, gracefully; False if nothing was running.

    Its flow-run subprocesses (own sessions, out of reach of its group) get SIGTERM first and
    are waited for: each lets its chunk in flight commit, records the stop and ends Crashed.
    A worker signalled first would kill them without a word, leaving runs Running forever.
    Then the process group gets SIGTERM, and SIGKILL for what remains after `timeout`.
    """
    if not group_alive(pid):
        return False
    deadline = time.monotonic() + timeout
    for group in [*session_children(pid), pid]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        while group_alive(group):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                if time.monotonic() > deadline + 10:
                    break  # unkillable (uninterruptible I/O): give up rather than hang
            time.sleep(0.1)
    return True
