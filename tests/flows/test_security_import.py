"""Hostile import input: NUL bytes and huge fields are single rejects, sources stay inside the
configured roots, and a malformed database URL never shows its password."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.import_csv import import_csv
from tasks.db.bookkeeping import imports, rejects
from tasks.db.engine import get_engine
from tasks.errors import InputError
from tests.flows.helpers import execute, query

HUGE = 5 * 1024 * 1024


def test_a_nul_byte_and_a_huge_field_reject_their_rows_only(
    postgres_url: str, tmp_path: Path
) -> None:
    execute(postgres_url, "CREATE TABLE people (id int PRIMARY KEY, name varchar(50))")
    source = tmp_path / "people.csv"
    source.write_bytes(b"id,name\n1,ann\n2,b\x00b\n3,cy\n4," + b"x" * HUGE + b"\n5,dee\n")
    result = import_csv(source=str(source), table="people", key=["id"], database=postgres_url)
    assert (result.inserted, result.failed) == (3, 2)
    assert [row[0] for row in query(postgres_url, "SELECT id FROM people ORDER BY id")] == [1, 3, 5]
    stored: list[tuple[Any, ...]] = [
        tuple(row)
        for row in query(
            postgres_url,
            "SELECT line, length(raw), errors->>'name' FROM batchflows_rejects ORDER BY line",
        )
    ]
    assert [(row[0], row[2].split(" ", 1)[1]) for row in stored] == [
        (3, "contains a NUL byte (\\x00), which PostgreSQL text cannot hold"),
        (5, "is longer than the 50 characters the column allows"),
    ]
    assert max(row[1] for row in stored) < 1_100
    again = import_csv(
        source=str(source),
        table="people",
        key=["id"],
        database=postgres_url,
        import_id=result.import_id,
    )
    assert (again.total, again.resumed_chunks) == (5, result.chunks)


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    monkeypatch.setenv("BATCHFLOWS_SOURCE_ROOTS", str(allowed))
    return allowed


def test_sources_outside_the_roots_are_refused_before_they_are_read(
    sqlite_url: str, tmp_path: Path, roots: Path
) -> None:
    execute(sqlite_url, "CREATE TABLE people (id int PRIMARY KEY, name text)")
    secret = tmp_path / "secret.csv"
    secret.write_text("id,name\n1,top secret\n")
    (roots / "link.csv").symlink_to(secret)
    escapes = [
        f"{roots}/../../../../../../../../etc/passwd",
        "../../etc/passwd",
        str(roots / "link.csv"),
        f"file://{secret}",
    ]
    for source in escapes:
        with pytest.raises(InputError, match=r"parameter 'source': .* outside the directories"):
            import_csv(source=source, table="people", key=["id"], database=sqlite_url)
    assert query(sqlite_url, "SELECT count(*) FROM people")[0][0] == 0
    with get_engine(sqlite_url).connect() as conn:
        if sa.inspect(conn).has_table("batchflows_imports"):
            assert conn.execute(sa.select(sa.func.count()).select_from(imports)).scalar() == 0
            assert conn.execute(sa.select(sa.func.count()).select_from(rejects)).scalar() == 0
    (roots / "people.csv").write_text("id,name\n1,ann\n")
    inside = import_csv(
        source=str(roots / "people.csv"), table="people", key=["id"], database=sqlite_url
    )
    assert inside.inserted == 1


@pytest.mark.parametrize(
    "database",
    [
        "postgresql://admin:s3cr3t-pw@db.example:54x2/app",
        "postgresql//admin:s3cr3t-pw@db.example/app",
        "postgresql://admin:s3cr3t-pw@[::1/app",
    ],
)
def test_a_malformed_database_url_never_echoes_its_password(
    tmp_path: Path,
    database: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "people.csv"
    source.write_text("id,name\n1,ann\n")
    state = import_csv(
        source=str(source), table="people", key=["id"], database=database, return_state=True
    )
    assert state.is_failed()
    with pytest.raises(InputError, match="parameter 'database'") as caught:
        state.result()
    captured = capfd.readouterr()
    seen = [str(caught.value), repr(caught.value.__cause__), str(state.message), caplog.text]
    seen += [captured.out, captured.err]
    assert all("s3cr3t-pw" not in text for text in seen)
    assert "admin" not in str(caught.value)
