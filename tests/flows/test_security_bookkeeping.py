"""No flow reads or writes user data in a `batchflows_*` table, and cleanup deletes only inside
the exports root, whatever a planted bookkeeping row says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.cleanup import cleanup
from flows.export_table import export_table
from flows.import_csv import import_csv
from tasks.api.push_source import make_push_plan
from tasks.db.bookkeeping import dead_letters, ensure_bookkeeping, exports, imports
from tasks.db.engine import get_engine
from tasks.errors import InputError


@pytest.fixture(autouse=True)
def exports_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "exports-root"
    root.mkdir()
    monkeypatch.setenv("BATCHFLOWS_EXPORTS_ROOT", str(root))
    return root


@pytest.fixture
def victim_file(tmp_path: Path) -> Path:
    """A file outside the exports root that nothing may delete."""
    path = tmp_path / "outside" / "precious.txt"
    path.parent.mkdir()
    path.write_text("keep me")
    return path


def _count(url: str, table: sa.Table) -> int:
    with get_engine(url).connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


@pytest.mark.parametrize("table", ["batchflows_exports", "BATCHFLOWS_Dead_Letters"])
def test_import_into_a_bookkeeping_table_is_refused_before_anything_is_written(
    database_url: str, tmp_path: Path, victim_file: Path, table: str
) -> None:
    ensure_bookkeeping(get_engine(database_url))
    source = tmp_path / "plant.csv"
    source.write_text(
        "id,path,format,compression,source,rows,bytes,sha256,expires_at\n"
        f"1,{victim_file},csv,none,x,1,1,{'0' * 64},2000-01-01T00:00:00+00:00\n"
    )
    with pytest.raises(InputError, match="bookkeeping table") as caught:
        import_csv(source=str(source), table=table, key=["id"], database=database_url)
    assert "parameter 'table'" in str(caught.value)
    assert _count(database_url, exports) == 0
    assert _count(database_url, dead_letters) == 0
    assert _count(database_url, imports) == 0


@pytest.mark.parametrize(
    "options",
    [
        {"table": "batchflows_exports"},
        {"query": "SELECT path FROM batchflows_exports"},
        {"query": 'SELECT * FROM "BATCHFLOWS_DEAD_LETTERS"'},
        {"query": "SELECT * FROM public.batchflows_sync_state"},
        {"table": "users", "where": "id IN (SELECT id FROM batchflows_dead_letters)"},
    ],
)
def test_export_of_a_bookkeeping_table_is_refused(
    database_url: str, exports_root: Path, options: dict[str, Any]
) -> None:
    engine = get_engine(database_url)
    ensure_bookkeeping(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id integer PRIMARY KEY)"))
    with pytest.raises(InputError, match="bookkeeping table"):
        export_table(database=database_url, **options)
    assert not any(path.is_file() for path in exports_root.rglob("*"))
    assert _count(database_url, exports) == 0


@pytest.mark.parametrize(
    ("table", "query"),
    [("batchflows_dead_letters", None), (None, "SELECT * FROM batchflows_dead_letters")],
)
def test_push_from_a_bookkeeping_table_is_refused(
    database_url: str, table: str | None, query: str | None
) -> None:
    ensure_bookkeeping(get_engine(database_url))
    with pytest.raises(InputError, match="bookkeeping table"):
        make_push_plan(
            table=table,
            query=query,
            base_url="http://127.0.0.1:9",
            path="/items",
            method="POST",
            key=["id"],
            batch_size=1,
            headers={},
            database=database_url,
        )


def test_cleanup_ignores_and_reports_export_rows_outside_the_root(
    database_url: str, exports_root: Path, victim_file: Path
) -> None:
    engine = get_engine(database_url)
    ensure_bookkeeping(engine)
    expired = datetime.now(UTC) - timedelta(days=1)
    link = exports_root / "link.csv"
    link.symlink_to(victim_file)
    own = exports_root / "daily" / "users.csv"
    own.parent.mkdir()
    own.write_text("id\n1\n")
    planted = [str(victim_file), str(exports_root / ".." / "outside" / "precious.txt"), str(link)]
    with engine.begin() as conn:
        for path in [*planted, str(own)]:
            conn.execute(
                exports.insert().values(
                    path=path,
                    format="csv",
                    compression="none",
                    source="x",
                    rows=1,
                    bytes=1,
                    sha256="0" * 64,
                    expires_at=expired,
                )
            )
    result = cleanup(database=database_url)
    assert (result.export_files, result.exports, result.outside_exports_root) == (1, 1, 3)
    assert victim_file.read_text() == "keep me"
    assert link.is_symlink()
    assert not own.exists()
    again = cleanup(database=database_url, dry_run=True)
    assert (again.exports, again.outside_exports_root) == (0, 3)
