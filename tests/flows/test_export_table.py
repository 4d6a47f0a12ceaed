"""The export-table flow on SQLite and the real PostgreSQL: content, parts, snapshot, bad input."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from flows.export_table import ExportResult, export_table, parts_status
from flows.import_csv import import_csv
from samples.users import KEY, RULES
from tasks.errors import InputError, SchemaError, TargetError
from tasks.exports import part as part_module
from tasks.exports.files import write_stream
from tasks.exports.part import ExportJob, PartResult, write_part
from tasks.exports.source import ExportSource, KeyRange, key_ranges
from tests.flows.helpers import execute, make_users, query

FORMATS = ["csv", "ndjson", "json", "parquet"]
COLUMNS = ["id", "name", "amount", "ts", "flag"]
Parse = Callable[[Any], Any]


@pytest.fixture(autouse=True)
def exports_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "exports-root"
    monkeypatch.setenv("BATCHFLOWS_EXPORTS_ROOT", str(root))
    return root


def _create_items(url: str, ids: list[int], table: str = "items") -> None:
    """A table with the awkward values: NULL and empty text, quotes, newlines, non-ASCII,
    exact decimals, timestamps with zone and booleans."""
    engine = sa.create_engine(url)
    timestamp = "timestamptz" if engine.dialect.name == "postgresql" else "TIMESTAMP"
    names = [None, "", 'Zoë "quoted", comma', "line one\nline two", "李雷", " spaced "]
    start = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
    rows = [
        {
            "id": key,
            "name": names[index % len(names)],
            "amount": None if index % 7 == 3 else Decimal(index) / 4 - Decimal("99.75"),
            "ts": start + timedelta(minutes=17 * index, microseconds=index),
            "flag": index % 3 == 0,
        }
        for index, key in enumerate(ids)
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text, "
                f"amount numeric(12,2), ts {timestamp} NOT NULL, flag boolean)"
            )
        )
        if rows:
            conn.execute(
                sa.text(f"INSERT INTO {table} VALUES (:id, :name, :amount, :ts, :flag)").bindparams(
                    sa.bindparam("ts", type_=sa.DateTime(timezone=True)),
                    sa.bindparam("amount", type_=sa.Numeric(12, 2)),
                ),
                rows,
            )
    engine.dispose()


def _timestamp(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _boolean(value: Any) -> bool:
    if isinstance(value, str):
        return value in ("t", "true", "1")
    return bool(value)


PARSERS: dict[str, Parse] = {
    "id": int,
    "name": str,
    "amount": lambda v: Decimal(str(v)),
    "ts": _timestamp,
    "flag": _boolean,
}


def _canonical(record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(None if record[name] is None else PARSERS[name](record[name]) for name in COLUMNS)


def _table_rows(url: str, table: str = "items") -> list[tuple[Any, ...]]:
    rows = query(url, f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY id")
    return [_canonical(dict(row._mapping)) for row in rows]


def _csv_records(text: str) -> Iterator[list[tuple[str, bool]]]:
    """RFC 4180 records as (value, was_quoted) fields, so NULL and '' stay apart."""
    fields: list[tuple[str, bool]] = []
    value, quoted, i = "", False, 0
    while i < len(text):
        char = text[i]
        if char == '"' and not value and not quoted:
            end = i + 1
            while True:
                end = text.index('"', end)
                if text.startswith('""', end):
                    end += 2
                    continue
                break
            value, quoted, i = text[i + 1 : end].replace('""', '"'), True, end + 1
            continue
        if char in ",\n":
            fields.append((value, quoted))
            value, quoted = "", False
            if char == "\n":
                yield fields
                fields = []
        else:
            value += char
        i += 1


def _file_rows(result: ExportResult) -> list[tuple[Any, ...]]:
    """The exported rows, read back as a consumer would, in id order."""
    path = Path(result.path)
    if result.format == "parquet":
        records = pq.read_table(path).to_pylist()
    else:
        data = path.read_bytes()
        text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode()
        if result.format == "json":
            records = json.loads(text)
        elif result.format == "ndjson":
            records = [json.loads(line) for line in text.splitlines()]
        else:
            header, *lines = list(_csv_records(text))
            assert [name for name, _ in header] == COLUMNS
            records = [
                {
                    n: (v if v or quoted else None)
                    for n, (v, quoted) in zip(COLUMNS, line, strict=True)
                }
                for line in lines
            ]
    return sorted((_canonical(record) for record in records), key=lambda row: row[0])


def _export(url: str, **options: Any) -> ExportResult:
    result: ExportResult = export_table(database=url, **options)
    return result


@pytest.mark.parametrize("file_format", FORMATS)
def test_every_format_round_trips_the_table_content(
    database_url: str, file_format: str, exports_root: Path
) -> None:
    ids = [*range(1, 400), *range(1000, 1100, 3), 10**12]
    _create_items(database_url, ids)
    result = _export(database_url, table="items", format=file_format, chunk_size=60)
    assert result.rows == len(ids)
    assert _file_rows(result) == _table_rows(database_url)
    postgres = database_url.startswith("postgresql")
    assert result.parts > 1 if postgres else result.parts == 1
    assert Path(result.path).parent == (exports_root / "exports").resolve()
    assert [p.name for p in Path(result.path).parent.iterdir()] == [Path(result.path).name]
    recorded = query(database_url, "SELECT * FROM batchflows_exports")
    assert len(recorded) == 1
    assert (recorded[0].path, recorded[0].rows, recorded[0].sha256) == (
        result.path,
        result.rows,
        result.sha256,
    )
    assert recorded[0].bytes == Path(result.path).stat().st_size == result.bytes


def test_parquet_row_groups_gather_the_parts_batches_up_to_their_bounds(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = list(range(1, 1001))
    _create_items(postgres_url, ids)
    whole = _export(postgres_url, table="items", format="parquet", chunk_size=100)
    assert whole.parts > 1
    assert pq.ParquetFile(whole.path).metadata.num_row_groups == 1
    assert _file_rows(whole) == _table_rows(postgres_url)

    monkeypatch.setattr(part_module, "ROW_GROUP_ROWS", 250)
    grouped = _export(postgres_url, table="items", format="parquet", chunk_size=100)
    metadata = pq.ParquetFile(grouped.path).metadata
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert sum(sizes) == len(ids)
    assert len(sizes) > 1
    assert all(size >= 250 for size in sizes[:-1])
    assert _file_rows(grouped) == _table_rows(postgres_url)


def test_csv_keeps_null_apart_from_empty_and_has_one_gzip_file(database_url: str) -> None:
    _create_items(database_url, [1, 2])
    result = _export(database_url, table="items", columns=["id", "name"], chunk_size=1)
    text = gzip.decompress(Path(result.path).read_bytes()).decode()
    assert text == 'id,name\n1,\n2,""\n'
    assert result.path.endswith(".csv.gz")


@pytest.mark.parametrize("file_format", ["json", "csv", "parquet"])
def test_empty_table_and_empty_parts_give_valid_files(database_url: str, file_format: str) -> None:
    _create_items(database_url, [])
    result = _export(database_url, table="items", format=file_format, compression="none")
    assert result.rows == 0
    assert _file_rows(result) == []


def test_parts_lose_and_double_nothing_at_range_edges_and_holes(postgres_url: str) -> None:
    ids = [-5, 0, 1, 2, 3, 99, 100, 101, 199, 200, 5000, 5001, 10**9, 10**9 + 1]
    _create_items(postgres_url, ids)
    for chunk_size in (1, 2, 3, 5):
        result = _export(postgres_url, table="items", format="ndjson", chunk_size=chunk_size)
        assert [row[0] for row in _file_rows(result)] == sorted(ids)
        assert result.parts > 1


def test_table_without_integer_key_is_one_stream(postgres_url: str) -> None:
    execute(
        postgres_url,
        "CREATE TABLE tags (name text PRIMARY KEY, n int)",
        "INSERT INTO tags SELECT 'tag' || g, g FROM generate_series(1, 500) g",
    )
    result = _export(postgres_url, table="tags", format="json", chunk_size=10)
    assert result.parts == 1
    assert sorted(r["n"] for r in json.loads(gzip.decompress(Path(result.path).read_bytes()))) == (
        list(range(1, 501))
    )


def test_parts_read_the_flow_snapshot_not_later_commits(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _create_items(postgres_url, list(range(1, 301)))
    before = _table_rows(postgres_url)
    libpq = sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(False)

    def ranges_then_concurrent_writes(
        conn: Any, source: ExportSource, chunk_size: int
    ) -> tuple[list[KeyRange], int | None]:
        planned = key_ranges(conn, source, chunk_size)
        with psycopg.connect(libpq, autocommit=True) as other:
            other.execute("DELETE FROM items WHERE id = 150")
            other.execute("UPDATE items SET name = 'changed' WHERE id = 10")
            other.execute("INSERT INTO items (id, ts) VALUES (0, now()), (100000, now())")
        return planned

    monkeypatch.setattr("tasks.exports.steps.key_ranges", ranges_then_concurrent_writes)
    result = _export(postgres_url, table="items", format="csv", chunk_size=50)
    assert result.parts > 1
    assert _file_rows(result) == before


def test_query_and_where_exports_on_both_databases(database_url: str) -> None:
    _create_items(database_url, list(range(1, 101)))
    result = _export(
        database_url,
        query="SELECT id, name FROM items WHERE id <= 10 ORDER BY id;",
        format="ndjson",
        compression="none",
    )
    lines = Path(result.path).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == list(range(1, 11))
    assert Path(result.path).name.startswith("query_")
    filtered = _export(
        database_url, table="items", columns=["id"], where="id > 90 AND flag", format="json"
    )
    exported = json.loads(gzip.decompress(Path(filtered.path).read_bytes()))
    assert [r["id"] for r in exported] == [i for i in range(91, 101) if (i - 1) % 3 == 0]


def test_reimporting_an_export_with_import_csv_updates_nothing(
    tmp_path: Path, database_url: str
) -> None:
    users = make_users(tmp_path, database_url, 400, invalid_rate=0, duplicate_rate=0)
    import_csv(source=str(users.path), table="users", key=KEY, rules=RULES, database=database_url)
    result = _export(database_url, table="users", compression="none", chunk_size=70)
    again = import_csv(
        source=result.path,
        table="users",
        key=KEY,
        rules=RULES,
        on_conflict="update",
        database=database_url,
    )
    assert (again.total, again.inserted, again.updated, again.failed) == (400, 0, 0, 0)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({}, InputError, "give exactly one"),
        ({"table": "items", "query": "select 1"}, InputError, "give exactly one"),
        ({"query": "delete from items"}, InputError, "parameter 'query'"),
        ({"query": "select 1; drop table items"}, InputError, "only one statement"),
        ({"query": "select nope from items"}, InputError, "parameter 'query'"),
        ({"table": "nope"}, SchemaError, "parameter 'table'"),
        ({"table": "items", "columns": ["id", "nope"]}, SchemaError, "parameter 'columns'"),
        ({"table": "items", "where": "nope > 1"}, InputError, "parameter 'where'"),
        ({"table": "items", "destination": "../../etc"}, InputError, "parameter 'destination'"),
        ({"table": "items", "destination": "/etc"}, InputError, "parameter 'destination'"),
        ({"table": "items", "filename": "../x.csv"}, InputError, "parameter 'filename'"),
        ({"table": "items", "chunk_size": 0}, InputError, "parameter 'chunk_size'"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(
    database_url: str,
    exports_root: Path,
    options: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    _create_items(database_url, [1, 2, 3])
    with pytest.raises(error, match=message):
        _export(database_url, **options)
    assert not any(path.is_file() for path in exports_root.rglob("*"))
    assert len(query(database_url, "SELECT id FROM items")) == 3


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_a_write_hidden_in_a_function_fails_in_the_read_only_transaction(
    postgres_url: str, file_format: str
) -> None:
    execute(postgres_url, "CREATE SEQUENCE s")
    _create_items(postgres_url, [1])
    with pytest.raises(TargetError, match="read-only transaction"):
        _export(postgres_url, query="select nextval('s')", format=file_format)
    assert query(postgres_url, "SELECT last_value, is_called FROM s")[0] == (1, False)


def test_a_failing_part_leaves_no_file_and_fails_the_run(
    postgres_url: str, exports_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _create_items(postgres_url, list(range(1, 501)))

    def failing(job: ExportJob, part: KeyRange) -> PartResult:
        if part.index == 3:
            raise OSError(28, "No space left on device")
        return write_part(job, part)

    monkeypatch.setattr("tasks.exports.steps.write_part", failing)
    with pytest.raises(OSError, match="No space left"):
        _export(postgres_url, table="items", chunk_size=50, filename="items.csv.gz")
    assert not any(path.is_file() for path in exports_root.rglob("*"))


def test_exports_never_overwrite_and_default_names_get_a_suffix(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _create_items(database_url, [1])
    first = _export(database_url, table="items", filename="items.csv")
    with pytest.raises(InputError, match="already exists"):
        _export(database_url, table="items", filename="items.csv")
    # Three exports within the same second: the default name is taken, then -2, then -3.
    monkeypatch.setattr(
        "tasks.exports.steps.default_filename", lambda *_: "items_20261125T084500Z.csv.gz"
    )
    names = [Path(_export(database_url, table="items").path).name for _ in range(3)]
    assert names == [
        "items_20261125T084500Z.csv.gz",
        "items_20261125T084500Z-2.csv.gz",
        "items_20261125T084500Z-3.csv.gz",
    ]
    assert Path(first.path).exists()


def test_parts_are_even_however_the_keys_are_spread(postgres_url: str) -> None:
    ids = [*range(1, 2001), *range(10**12, 10**12 + 40), 2**62]
    _create_items(postgres_url, ids)
    source = ExportSource(
        backend="postgresql",
        projection="id",
        relation="items",
        conditions=[],
        key="id",
        columns=["id"],
        label="table items",
        name="items",
    )
    libpq = sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(libpq) as conn:
        ranges, count = key_ranges(conn, source, 200)
        sizes = [len(conn.execute(source.sql(part.low, part.high)).fetchall()) for part in ranges]
    assert count == len(ids)
    assert sum(sizes) == len(ids)
    assert len(ranges) == 11
    assert max(sizes) <= 201


@pytest.mark.parametrize("file_format", ["csv", "ndjson"])
def test_a_full_disk_mid_part_leaves_no_file_and_the_database_usable(
    postgres_url: str, exports_root: Path, monkeypatch: pytest.MonkeyPatch, file_format: str
) -> None:
    _create_items(postgres_url, list(range(1, 301)))

    def disk_full(path: Path, chunks: Iterator[bytes], gzip: bool) -> int:
        path.write_bytes(next(chunks))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tasks.exports.part.write_stream", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _export(postgres_url, table="items", format=file_format, chunk_size=100)
    assert not any(path.is_file() for path in exports_root.rglob("*"))
    monkeypatch.setattr("tasks.exports.part.write_stream", write_stream)
    assert _export(postgres_url, table="items", format=file_format, chunk_size=100).rows == 300


def test_live_status_names_parquet_part_bytes_as_arrow_ipc() -> None:
    done = [
        PartResult(index=0, rows=10, path="p0", bytes=100),
        PartResult(index=1, rows=5, path="p1", bytes=50),
    ]
    assert parts_status("csv", done, 4) == {"parts done": 2, "parts": 4, "rows": 15, "bytes": 150}
    parquet = parts_status("parquet", done, 4)
    assert parquet["Arrow IPC bytes"] == 150
    assert "bytes" not in parquet
