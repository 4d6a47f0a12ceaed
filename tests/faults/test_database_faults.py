"""The database goes away mid-import: its connections are terminated, or the server restarts.

Faults and expected outcomes:
- every connection of the import terminated while chunks are in their transactions
  (`pg_terminate_backend`): the chunks in flight roll back and are retried, the run completes,
  counts and rows exactly those of an uninterrupted import;
- PostgreSQL restarted mid-import (a private cluster of this test, `pg_ctl restart -m fast`):
  the same, the chunk retries span the restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from deployments.processes import free_port
from flows.import_csv import import_csv
from samples.users import KEY, RULES
from tests.flows.helpers import (
    committed_chunks,
    make_users,
    resume_and_check,
    slow_down_inserts,
    start_import_child,
)

BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.mark.timeout(240)
def test_every_connection_terminated_mid_chunk_is_retried_and_the_counts_are_exact(
    tmp_path: Path, postgres_url: str
) -> None:
    users = make_users(tmp_path, postgres_url, 4000)
    slow_down_inserts(postgres_url)
    terminated: list[str] = []
    with psycopg.connect(_plain(postgres_url)) as conn:
        started = conn.execute("SELECT clock_timestamp()").fetchone()

    def terminate_all_after_eight_chunks() -> None:
        # Every connection the import opened (the test's own fixtures connected before).
        while committed_chunks(postgres_url) < 8:
            threading.Event().wait(0.02)
        with psycopg.connect(_plain(postgres_url), autocommit=True) as admin:
            rows = admin.execute(
                "SELECT state, pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend' AND backend_start > %s",
                started,
            ).fetchall()
        terminated.extend(str(state) for state, _ in rows)

    killer = threading.Thread(target=terminate_all_after_eight_chunks)
    killer.start()
    try:
        result = import_csv(
            source=str(users.path),
            table="users",
            key=KEY,
            rules=RULES,
            chunk_size=100,
            max_concurrency=4,
            import_id="killed",
            database=postgres_url,
        )
    finally:
        killer.join(60)

    # Chunks were inside their transactions when their connections went.
    assert any(state in ("active", "idle in transaction") for state in terminated), terminated
    assert result.total == 4000
    assert result.resumed_chunks == 0
    resume_and_check(users, postgres_url, 40)


@contextlib.contextmanager
def _private_cluster() -> Iterator[tuple[str, list[str]]]:
    """A PostgreSQL cluster of this test only: its URL and the pg_ctl command to drive it."""
    if BIN is None or not (BIN / "initdb").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are needed for this test")
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    home = Path(tempfile.mkdtemp(prefix="batchflows-pg-"))
    user = "postgres" if os.geteuid() == 0 else None  # initdb refuses to run as root
    if user:
        shutil.chown(home, user)
    port = free_port()
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(BIN / "pg_ctl"), "-D", str(home / "data"), "-w", "-o", options]
    initdb = [str(BIN / "initdb"), "-D", str(home / "data"), "-U", "postgres", "-A", "trust"]
    try:
        subprocess.run([*initdb, "--no-sync"], user=user, check=True, capture_output=True)
        subprocess.run([*pg_ctl, "-l", str(home / "log"), "start"], user=user, check=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", pg_ctl
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], user=user, check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.timeout(300)
def test_postgresql_restarted_mid_import_the_run_completes_exactly(tmp_path: Path) -> None:
    with _private_cluster() as (url, pg_ctl):
        users = make_users(tmp_path, url, 4000)
        slow_down_inserts(url)
        child = start_import_child(users, url)
        try:
            user = "postgres" if os.geteuid() == 0 else None
            subprocess.run([*pg_ctl, "-m", "fast", "restart"], user=user, check=True)
            restarted_at = committed_chunks(url)
            assert restarted_at < 40, "the import ended before the restart"
            code = child.wait(timeout=180)
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                child.wait()
        # Measured: the chunks in flight fail with a lost connection, are retried with
        # backoff once the server is back, and the run completes with every chunk once.
        assert code == 0
        assert committed_chunks(url) == 40
        resume_and_check(users, url, 40)
