"""Faults on the real PostgreSQL: a killed worker, a dropped connection, a deadlock."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flows.import_csv import import_csv
from samples.users import KEY, RULES
from tasks.common.retry import is_transient
from tasks.db.errors import database_errors
from tasks.errors import TargetError
from tasks.imports.csv_plan import ChunkSpec
from tasks.imports.writer.postgres import PostgresWriter
from tests.flows.helpers import (
    committed_chunks,
    expected_ids,
    make_users,
    query,
    resume_and_check,
    slow_down_inserts,
    start_import_child,
    table_ids,
)


def test_kill_9_mid_import_then_rerun_gives_the_uninterrupted_result(
    tmp_path: Path, postgres_url: str
) -> None:
    users = make_users(tmp_path, postgres_url, 4000)
    # Each chunk's insert takes 50 ms longer, so the kill lands mid-import.
    slow_down_inserts(postgres_url)
    child = start_import_child(users, postgres_url)
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_at = committed_chunks(postgres_url)
    assert 8 <= killed_at < 40
    status = query(postgres_url, "SELECT status FROM batchflows_imports")[0][0]
    assert status == "running"  # nobody was left to record the crash

    resume_and_check(users, postgres_url, killed_at)


def test_a_connection_dropped_mid_chunk_is_retried_and_applied_once(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = make_users(tmp_path, postgres_url, 600)
    real_wait = PostgresWriter.wait_for_previous
    dropped: list[int] = []

    def drop_connection_once(self: PostgresWriter, cur: Any, index: int) -> tuple[int, int]:
        if index == 2 and not dropped:
            dropped.append(index)
            cur.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return real_wait(self, cur, index)

    monkeypatch.setattr(PostgresWriter, "wait_for_previous", drop_connection_once)
    result = import_csv(
        source=str(users.path),
        table="users",
        key=KEY,
        rules=RULES,
        chunk_size=100,
        database=postgres_url,
    )
    assert dropped == [2]
    assert result.total == 600
    assert result.total == result.inserted + result.updated + result.skipped + result.failed
    assert table_ids(postgres_url) == expected_ids(users, "first")


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.SerializationFailure("could not serialize"),
        psycopg.errors.AdminShutdown("terminating connection"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
    ],
)
def test_deadlocks_and_lost_connections_are_transient(error: Exception, postgres_url: str) -> None:
    chunk = ChunkSpec(index=3, start=0, end=1, first_line=2, first_row=1, rows=1)
    with pytest.raises(TargetError) as caught, database_errors(f"chunk {chunk.index}"):
        raise error
    assert is_transient(caught.value)
    assert "chunk 3" in str(caught.value)
    del postgres_url


def test_a_refusal_that_is_not_row_level_fails_without_retry(postgres_url: str) -> None:
    chunk = ChunkSpec(index=1, start=0, end=1, first_line=2, first_row=1, rows=1)
    with pytest.raises(TargetError) as caught, database_errors(f"chunk {chunk.index}"):
        raise psycopg.errors.InsufficientPrivilege("permission denied for table users")
    assert not is_transient(caught.value)
    assert "permission denied" in str(caught.value)
    del postgres_url
