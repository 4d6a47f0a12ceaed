"""Time limits: a chunk stuck behind another transaction's lock cannot hold its run forever.

Fault: another connection holds a lock on the target table mid-import (a long migration, a
forgotten `BEGIN` in psql). Expected: the session's lock_timeout turns the wait into a
transient error, the run's timeout_seconds ends it Failed with the reason, nothing half
applied; once the lock is gone a rerun with the same import_id ends exactly as an
uninterrupted import.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from flows.import_csv import import_csv
from samples.users import KEY, RULES
from tasks.db.engine import LOCK_TIMEOUT_VAR, dispose_engines, get_engine
from tasks.db.errors import database_errors
from tasks.errors import TargetError
from tests.flows.helpers import (
    committed_chunks,
    make_users,
    query,
    resume_and_check,
    slow_down_inserts,
)


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.mark.timeout(240)
def test_a_run_stuck_on_a_lock_times_out_failed_with_the_reason_and_the_rerun_resumes(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOCK_TIMEOUT_VAR, "1")
    dispose_engines()
    users = make_users(tmp_path, postgres_url, 4000)
    slow_down_inserts(postgres_url)
    locked = threading.Event()
    release = threading.Event()

    def hold_lock_after_five_chunks() -> None:
        with psycopg.connect(_plain(postgres_url)) as holder:
            while committed_chunks(postgres_url) < 5 and not release.is_set():
                release.wait(0.02)
            holder.execute("LOCK TABLE users IN SHARE MODE")  # blocks every INSERT
            locked.set()
            release.wait(200)

    holder = threading.Thread(target=hold_lock_after_five_chunks)
    holder.start()
    try:
        state = import_csv(
            source=str(users.path),
            table="users",
            key=KEY,
            rules=RULES,
            chunk_size=100,
            max_concurrency=4,
            import_id="killed",
            database=postgres_url,
            timeout_seconds=15,
            return_state=True,
        )
    finally:
        release.set()
        holder.join(30)

    assert locked.is_set()
    assert state.is_failed()
    assert "exceeded timeout_seconds=15" in (state.message or "")
    assert query(postgres_url, "SELECT status FROM batchflows_imports")[0][0] == "failed"
    assert "timeout_seconds=15" in query(postgres_url, "SELECT error FROM batchflows_imports")[0][0]
    # Nothing half applied: every row in the table belongs to a chunk in the ledger.
    stopped_at = committed_chunks(postgres_url)
    assert 5 <= stopped_at < 40
    in_ledger = query(postgres_url, "SELECT coalesce(sum(inserted), 0) FROM batchflows_chunks")
    assert query(postgres_url, "SELECT count(*) FROM users")[0][0] == in_ledger[0][0]

    resume_and_check(users, postgres_url, stopped_at)


@pytest.mark.timeout(60)
def test_a_statement_waiting_on_a_lock_fails_transient_after_lock_timeout(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOCK_TIMEOUT_VAR, "0.5")
    dispose_engines()
    with psycopg.connect(_plain(postgres_url), autocommit=True) as setup:
        setup.execute("CREATE TABLE t (id int PRIMARY KEY)")
    with psycopg.connect(_plain(postgres_url)) as holder:
        holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        engine = get_engine(postgres_url)
        with (
            pytest.raises(TargetError, match="lock timeout") as caught,
            database_errors("insert"),
            engine.begin() as conn,
        ):
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    assert caught.value.transient
    assert query(postgres_url, "SELECT count(*) FROM t")[0][0] == 0
    settings = "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
    with engine.connect() as conn:
        assert tuple(conn.exec_driver_sql(settings).one()) == ("500ms", "1h")
