"""Retention on SQLite and PostgreSQL: only what is expired goes, running imports keep theirs."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect import flow, get_client
from prefect.states import Crashed, Running
from sqlalchemy.engine import Engine

from flows.cleanup import cleanup
from flows.import_csv import import_csv
from samples.users import KEY, RULES
from tasks import retention
from tasks.db.bookkeeping import (
    chunks,
    claims,
    dead_letters,
    ensure_bookkeeping,
    exports,
    imports,
    rejects,
)
from tasks.db.engine import get_engine
from tasks.retention import Removed
from tests.flows.helpers import expected_ids, make_users, slow_down_inserts, table_ids

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _import(
    conn: sa.Connection,
    import_id: str,
    status: str,
    finished: datetime | None,
    flow_run_id: str | None = None,
) -> None:
    conn.execute(
        imports.insert().values(
            import_id=import_id,
            flow_run_id=flow_run_id,
            source="users.csv",
            fingerprint="f",
            table_name="users",
            options={},
            status=status,
            total_rows=3,
            chunk_count=3,
            started_at=(finished or NOW) - timedelta(hours=1),
            finished_at=finished,
        )
    )
    for index in range(3):
        conn.execute(
            chunks.insert().values(
                import_id=import_id,
                chunk_index=index,
                start_byte=index,
                end_byte=index + 1,
                first_line=index + 2,
                rows=1,
                inserted=1,
                updated=0,
                skipped=0,
                failed=0,
                cum_rows=index + 1,
                cum_failed=0,
            )
        )
    for line in range(4):
        conn.execute(
            rejects.insert().values(
                import_id=import_id, chunk_index=0, line=line, raw="x", errors={"a": "b"}
            )
        )
    for key in range(2):
        conn.execute(claims.insert().values(import_id=import_id, key_hi=key, key_lo=key))


def _export(conn: sa.Connection, path: Path, expires: datetime, *, file: bool = True) -> None:
    """Record an export expiring at `expires`, and write its file unless `file` is False."""
    if file:
        path.write_text("data")
    conn.execute(
        exports.insert().values(
            path=str(path),
            format="csv",
            compression="none",
            source="users",
            rows=1,
            bytes=4,
            sha256="0" * 64,
            expires_at=expires,
        )
    )


def _letter(conn: sa.Connection, key: str, replayed: datetime | None) -> None:
    conn.execute(
        dead_letters.insert().values(
            method="POST",
            url="http://api/users",
            idempotency_key=key,
            record_key=[key],
            payload={},
            headers={},
            error="500",
            attempts=1,
            replayed_at=replayed,
        )
    )


@pytest.fixture
def seeded(database_url: str, tmp_path: Path) -> Engine:
    """Old and recent finished imports, a running one, exports and dead letters of each kind."""
    engine = get_engine(database_url)
    ensure_bookkeeping(engine)
    old = NOW - timedelta(days=31)
    recent = NOW - timedelta(days=29)
    with engine.begin() as conn:
        _import(conn, "old-ok", "succeeded", old)
        _import(conn, "old-failed", "failed", old)
        _import(conn, "recent", "succeeded", recent)
        _import(conn, "running", "running", None)
        _export(conn, tmp_path / "expired.csv", NOW - timedelta(minutes=1))
        _export(conn, tmp_path / "valid.csv", NOW + timedelta(hours=1))
        _export(conn, tmp_path / "gone.csv", NOW - timedelta(days=2), file=False)
        _letter(conn, "replayed-old", old)
        _letter(conn, "replayed-recent", recent)
        _letter(conn, "pending", None)
    return engine


def _remaining(engine: Engine, table: sa.Table) -> dict[str, int]:
    query = sa.select(table.c.import_id, sa.func.count()).group_by(table.c.import_id)
    with engine.connect() as conn:
        return {row[0]: row[1] for row in conn.execute(query)}


def test_everything_expired_goes_and_nothing_else(seeded: Engine, tmp_path: Path) -> None:
    cutoff = retention.cutoff_of(NOW, 30)
    exported = retention.delete_expired_exports(seeded, NOW, root=tmp_path, batch_size=1)
    finished = retention.purgeable_imports(seeded, cutoff)
    ledger = sum(
        (retention.purge_import(seeded, i, cutoff, batch_size=2) for i in finished), Removed()
    )
    letters = retention.delete_replayed_dead_letters(seeded, cutoff, batch_size=1)

    assert finished == ["old-failed", "old-ok"]
    assert exported == Removed(export_files=1, exports=2)
    assert ledger == Removed(rejects=8, chunks=6, claims=4)
    assert letters == Removed(dead_letters=1)
    assert not (tmp_path / "expired.csv").exists()
    assert (tmp_path / "valid.csv").exists()
    for table in (chunks, rejects, claims):
        assert set(_remaining(seeded, table)) == {"recent", "running"}
    with seeded.connect() as conn:
        deleted = conn.execute(
            sa.select(exports.c.path).where(exports.c.deleted_at.is_not(None))
        ).scalars()
        assert {Path(p).name for p in deleted} == {"expired.csv", "gone.csv"}
        keys = conn.execute(sa.select(dead_letters.c.idempotency_key)).scalars()
        assert set(keys) == {"replayed-recent", "pending"}
        assert conn.execute(sa.select(sa.func.count()).select_from(imports)).scalar_one() == 4
    # A second pass finds nothing left to do.
    assert retention.purgeable_imports(seeded, cutoff) == []
    assert retention.delete_expired_exports(seeded, NOW, root=tmp_path) == Removed()


def test_dry_run_counts_without_deleting(seeded: Engine, tmp_path: Path) -> None:
    cutoff = retention.cutoff_of(NOW, 30)
    counted = retention.delete_expired_exports(seeded, NOW, root=tmp_path, dry_run=True)
    counted += retention.purge_import(seeded, "old-ok", cutoff, dry_run=True)
    counted += retention.delete_replayed_dead_letters(seeded, cutoff, dry_run=True)

    assert counted == Removed(
        export_files=1, exports=2, rejects=4, chunks=3, claims=2, dead_letters=1
    )
    assert (tmp_path / "expired.csv").exists()
    assert _remaining(seeded, chunks)["old-ok"] == 3


def test_a_resumed_import_keeps_its_ledger(seeded: Engine) -> None:
    cutoff = retention.cutoff_of(NOW, 30)
    with seeded.begin() as conn:
        conn.execute(
            imports.update()
            .where(imports.c.import_id == "old-failed")
            .values(status="running", finished_at=None)
        )
    assert retention.purge_import(seeded, "old-failed", cutoff) == Removed()
    assert _remaining(seeded, chunks)["old-failed"] == 3


def _status(engine: Engine, import_id: str) -> tuple[str, str | None]:
    query = sa.select(imports.c.status, imports.c.error).where(imports.c.import_id == import_id)
    with engine.connect() as conn:
        status, error = conn.execute(query).one()
    return status, error


def test_an_import_whose_flow_run_ended_unrecorded_is_closed_as_failed(seeded: Engine) -> None:
    with seeded.begin() as conn:
        _import(conn, "killed", "running", None, flow_run_id="run-killed")
        _import(conn, "active", "running", None, flow_run_id="run-active")
        _import(conn, "resumed", "running", None, flow_run_id="run-old")
    ended = {"run-killed": "Crashed: No heartbeat for 40 s", "run-old": "Crashed"}
    asked: list[list[str]] = []

    def ended_runs(run_ids: list[str]) -> dict[str, str]:
        asked.append(run_ids)
        return ended

    def resumed_meanwhile(run_ids: list[str]) -> dict[str, str]:
        # A rerun resumes "resumed" after cleanup read the rows: the row is its now.
        with seeded.begin() as conn:
            conn.execute(
                imports.update()
                .where(imports.c.import_id == "resumed")
                .values(flow_run_id="run-new")
            )
        return ended_runs(run_ids)

    assert retention.close_abandoned(seeded, ended_runs, dry_run=True) == 2
    assert _status(seeded, "killed") == ("running", None)
    assert retention.close_abandoned(seeded, resumed_meanwhile) == 1

    assert asked[0] == ["run-active", "run-killed", "run-old"]
    status, error = _status(seeded, "killed")
    assert status == "failed"
    assert error is not None
    assert "flow run run-killed ended Crashed: No heartbeat for 40 s" in error
    assert "same import_id to resume" in error
    assert _status(seeded, "active") == ("running", None)
    assert _status(seeded, "resumed") == ("running", None)
    assert _status(seeded, "running") == ("running", None)  # no flow run: never guessed at


def test_cleanup_closes_imports_of_crashed_runs_by_their_prefect_state(database_url: str) -> None:
    @flow(name="cleanup-probe")
    def probe() -> None:
        """Only its flow runs matter: created in the states a worker would leave."""

    with get_client(sync_client=True) as client:
        crashed = client.create_flow_run(probe, state=Crashed(message="No heartbeat for 40 s"))
        running = client.create_flow_run(probe, state=Running())
    engine = get_engine(database_url)
    ensure_bookkeeping(engine)
    with engine.begin() as conn:
        _import(conn, "crashed", "running", None, flow_run_id=str(crashed.id))
        _import(conn, "running", "running", None, flow_run_id=str(running.id))
        _import(conn, "hostile", "running", None, flow_run_id="'; DROP TABLE users; --")
        _import(conn, "unknown", "running", None, flow_run_id=str(uuid.uuid4()))

    result = cleanup(retention_days=7, database=database_url)

    assert result.abandoned_imports == 1
    status, error = _status(engine, "crashed")
    assert status == "failed"
    assert f"flow run {crashed.id} ended Crashed: No heartbeat for 40 s" in (error or "")
    for import_id in ("running", "hostile", "unknown"):
        assert _status(engine, import_id) == ("running", None)


def test_retention_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="retention_days"):
        retention.cutoff_of(NOW, -1)


def test_cleanup_flow_reports_by_kind(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHFLOWS_EXPORTS_ROOT", str(tmp_path))
    engine = get_engine(database_url)
    ensure_bookkeeping(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        _import(conn, "old", "succeeded", now - timedelta(days=8))
        _import(conn, "running", "running", None)
        _export(conn, tmp_path / "expired.csv", now - timedelta(minutes=1))

    dry = cleanup(retention_days=7, dry_run=True, database=database_url)
    result = cleanup(retention_days=7, database=database_url)

    assert (dry.chunks, dry.export_files, dry.imports) == (3, 1, 1)
    assert dry.dry_run
    assert result.model_dump(include=set(Removed.model_fields)) == {
        "export_files": 1,
        "outside_exports_root": 0,
        "temp_files": 0,
        "exports": 1,
        "rejects": 4,
        "chunks": 3,
        "claims": 2,
        "dead_letters": 0,
    }
    assert result.imports == 1
    assert set(_remaining(engine, chunks)) == {"running"}


def test_cleanup_running_alongside_an_import_leaves_it_exact(
    postgres_url: str, tmp_path: Path
) -> None:
    users = make_users(tmp_path, postgres_url, 3000)
    slow_down_inserts(postgres_url, 0.02)
    engine = get_engine(postgres_url)
    ensure_bookkeeping(engine)
    with engine.begin() as conn:
        for number in range(30):
            _import(conn, f"old-{number}", "succeeded", datetime.now(UTC) - timedelta(days=60))
    purged: list[Removed] = []
    done = threading.Event()

    def clean_continuously() -> None:
        # Deletes from the same tables, in small batches, while the import commits chunks.
        while not done.is_set():
            cutoff = retention.cutoff_of(datetime.now(UTC), 1)
            for import_id in retention.purgeable_imports(engine, cutoff):
                purged.append(retention.purge_import(engine, import_id, cutoff, batch_size=1))
            time.sleep(0.005)

    cleaner = threading.Thread(target=clean_continuously)
    cleaner.start()
    try:
        result = import_csv(
            source=str(users.path),
            table="users",
            key=KEY,
            rules=RULES,
            chunk_size=100,
            import_id="live",
            database=postgres_url,
        )
    finally:
        done.set()
        cleaner.join()

    assert sum(purged, Removed()) == Removed(rejects=120, chunks=90, claims=60)
    assert result.total == 3000
    assert result.failed == users.generated.invalid
    assert result.inserted == len(expected_ids(users, "first"))
    assert table_ids(postgres_url) == expected_ids(users, "first")
    assert _remaining(engine, chunks) == {"live": 30}
