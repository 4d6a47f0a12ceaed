"""User SQL (export `query`/`where`, push `query`, report `query`) cannot write, whatever it
smuggles in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.export_table import ExportResult, export_table
from flows.report import report
from tasks.api.push_source import make_push_plan, stream_rows
from tasks.db.engine import get_engine
from tasks.errors import BatchflowsError
from tests.flows.helpers import execute, query

# PostgreSQL reads `$a1$` as a dollar quote: the first statement ends at `;` and the DELETE
# is a statement of its own, hidden from a lexer that sees `/* ... */` as a comment.
QUERY_ATTACK = (
    "SELECT $a1$ /* $a1$ AS x) q; COMMIT; DELETE FROM victim; "
    "SELECT * FROM (SELECT 1 AS y --*/\n, 2 AS z"
)
WHERE_ATTACK = (
    "1 = 1 OR $a1$ /* $a1$ = '') LIMIT 0; COMMIT; DELETE FROM victim; "
    "SELECT 1 WHERE (true --*/\nAND true"
)
# An identifier may hold non-ASCII letters and `$`: `é$a$` is one name, not a dollar quote.
IDENT_ATTACK = "SELECT 1 AS é$a$, 2 AS z; COMMIT; DELETE FROM victim; SELECT 1 AS $a$"
ROWS = 50


@pytest.fixture(autouse=True)
def exports_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "exports-root"
    monkeypatch.setenv("BATCHFLOWS_EXPORTS_ROOT", str(root))
    return root


@pytest.fixture
def victim(postgres_url: str) -> str:
    """A table that every test below must leave full."""
    execute(
        postgres_url,
        "CREATE TABLE victim (id bigint PRIMARY KEY, name text)",
        f"INSERT INTO victim SELECT i, 'n' || i FROM generate_series(1, {ROWS}) i",
    )
    return postgres_url


def _export(url: str, **options: Any) -> ExportResult:
    result: ExportResult = export_table(database=url, **options)
    return result


def _victim_rows(url: str) -> int:
    return int(query(url, "SELECT count(*) FROM victim")[0][0])


@pytest.mark.parametrize("file_format", ["csv", "json", "parquet"])
@pytest.mark.parametrize("attack", [QUERY_ATTACK, IDENT_ATTACK])
def test_export_query_cannot_commit_and_delete(
    victim: str, exports_root: Path, file_format: str, attack: str
) -> None:
    with pytest.raises(BatchflowsError):
        _export(victim, query=attack, format=file_format)
    assert _victim_rows(victim) == ROWS
    assert not any(path.is_file() for path in exports_root.rglob("*"))


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_export_where_cannot_commit_and_delete(
    victim: str, exports_root: Path, file_format: str
) -> None:
    with pytest.raises(BatchflowsError):
        _export(victim, table="victim", where=WHERE_ATTACK, format=file_format)
    assert _victim_rows(victim) == ROWS
    assert not any(path.is_file() for path in exports_root.rglob("*"))


@pytest.mark.parametrize("attack", [QUERY_ATTACK, IDENT_ATTACK])
def test_push_query_cannot_commit_and_delete(victim: str, attack: str) -> None:
    options: dict[str, Any] = {
        "table": None,
        "base_url": "http://127.0.0.1:9",
        "path": "/items",
        "method": "POST",
        "key": ["z"],
        "batch_size": 1,
        "headers": {},
        "database": victim,
    }
    with pytest.raises(BatchflowsError):
        make_push_plan(query=attack, **options)
    with pytest.raises(BatchflowsError, match="the database refused"):
        list(stream_rows(get_engine(victim), attack))
    assert _victim_rows(victim) == ROWS


@pytest.mark.parametrize("attack", [QUERY_ATTACK, IDENT_ATTACK])
def test_report_query_cannot_commit_and_delete(victim: str, attack: str) -> None:
    with pytest.raises(BatchflowsError, match="one statement"):
        report(query=attack, format="csv", database=victim)
    assert _victim_rows(victim) == ROWS


def test_an_ad_hoc_report_cannot_read_the_bookkeeping(victim: str) -> None:
    with pytest.raises(BatchflowsError, match="bookkeeping table"):
        report(query="SELECT * FROM batchflows_imports", format="csv", database=victim)


@pytest.fixture
def reader_role(victim: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A role allowed to read `victim` and nothing else, named in BATCHFLOWS_READONLY_ROLE."""
    role = f"batchflows_reader_{uuid.uuid4().hex[:8]}"
    schema = query(victim, "SELECT current_schema()")[0][0]
    execute(
        victim,
        f'CREATE ROLE "{role}" NOLOGIN',
        f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"',
        f'GRANT SELECT ON victim TO "{role}"',
    )
    monkeypatch.setenv("BATCHFLOWS_READONLY_ROLE", role)
    yield role
    execute(victim, f'DROP OWNED BY "{role}"', f'DROP ROLE "{role}"')


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_export_runs_as_the_read_only_role_which_cannot_read_server_files(
    victim: str, reader_role: str, exports_root: Path, file_format: str
) -> None:
    result = _export(victim, table="victim", format=file_format, chunk_size=20)
    assert result.rows == ROWS
    with pytest.raises(BatchflowsError, match="permission denied"):
        _export(victim, query="SELECT pg_read_file('PG_VERSION') AS leaked", format=file_format)
    assert [path.name for path in exports_root.rglob("*") if path.is_file()] == [
        Path(result.path).name
    ]


def test_a_percent_sign_in_a_condition_is_text_not_a_placeholder(
    victim: str, exports_root: Path
) -> None:
    result = _export(victim, table="victim", where="name LIKE 'n1%' OR name = '%s'", chunk_size=10)
    assert result.rows == len([i for i in range(1, ROWS + 1) if str(i).startswith("1")])
