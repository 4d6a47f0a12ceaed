"""The import-csv flow on SQLite and the real PostgreSQL: exact counts, order, resumes, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import Artifact, State

from flows.import_csv import ImportResult, import_csv
from samples.users import KEY, RULES
from tasks.errors import ConflictError, CsvFormatError, ErrorRateExceeded, InputError, SchemaError
from tasks.imports.chunk import run_chunk as real_run_chunk
from tests.flows.helpers import execute, expected_ids, make_users, query, table_ids

SMALL_CHUNKS = 37


def _import(users_path: Path, url: str, **options: Any) -> ImportResult:
    options = {"key": KEY, "rules": RULES, "chunk_size": SMALL_CHUNKS, **options}
    result: ImportResult = import_csv(
        source=str(users_path), table="users", database=url, **options
    )
    return result


def _balanced(result: ImportResult) -> bool:
    return result.total == result.inserted + result.updated + result.skipped + result.failed


def _run_with_artifacts(path: Path, url: str, **options: Any) -> tuple[State, list[Artifact]]:
    """Run an import of `path` in chunks of 50 rows; its final state and its artifacts."""
    state = import_csv(
        source=str(path),
        table="users",
        key=KEY,
        rules=RULES,
        chunk_size=50,
        database=url,
        return_state=True,
        **options,
    )
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return state, artifacts


def _invalid_emails_after_row_100(path: Path) -> None:
    """Rewrite the users file so that every row after the 100th has an invalid e-mail."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    for row in rows[101:]:
        row[1] = row[1].replace("@", "-at-")
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def test_every_row_counts_once_and_first_occurrence_wins(tmp_path: Path, database_url: str) -> None:
    users = make_users(tmp_path, database_url, 600)
    result = _import(users.path, database_url, max_concurrency=6)
    generated = users.generated
    assert result.total == 600
    assert _balanced(result)
    assert result.failed == generated.invalid
    assert result.chunks == -(-600 // SMALL_CHUNKS)
    assert table_ids(database_url) == expected_ids(users, "first")
    assert result.inserted == len(expected_ids(users, "first"))


def test_rejects_keep_physical_line_raw_text_and_reason(tmp_path: Path, database_url: str) -> None:
    users = make_users(tmp_path, database_url, 300)
    result = _import(users.path, database_url)
    rejects = query(
        database_url,
        "SELECT line, raw, errors FROM batchflows_rejects WHERE import_id = :id ORDER BY line",
        id=result.import_id,
    )
    assert [r.line for r in rejects] == users.generated.invalid_lines
    lines = users.path.read_bytes().decode("utf-8").split("\n")
    for reject in rejects:
        assert reject.raw.split("\n")[0] == lines[reject.line - 1]
        errors = reject.errors if isinstance(reject.errors, dict) else json.loads(reject.errors)
        assert errors
        assert all(isinstance(reason, str) and reason for reason in errors.values())


def test_update_last_occurrence_wins_and_identical_reimport_updates_nothing(
    tmp_path: Path, database_url: str
) -> None:
    users = make_users(tmp_path, database_url, 500)
    first = _import(users.path, database_url, on_conflict="update")
    assert table_ids(database_url) == expected_ids(users, "last")
    assert first.updated == 0
    assert _balanced(first)
    again = _import(users.path, database_url, on_conflict="update")
    assert (again.inserted, again.updated, again.failed) == (0, 0, users.generated.invalid)
    assert table_ids(database_url) == expected_ids(users, "last")


def test_update_counts_only_rows_whose_values_change(tmp_path: Path, database_url: str) -> None:
    users = make_users(tmp_path, database_url, 200, invalid_rate=0, duplicate_rate=0)
    _import(users.path, database_url)
    execute(database_url, "UPDATE users SET name = 'changed' WHERE id IN (3, 50, 150)")
    result = _import(users.path, database_url, on_conflict="update")
    assert (result.inserted, result.updated, result.skipped) == (0, 3, 197)
    assert query(database_url, "SELECT count(*) FROM users WHERE name = 'changed'")[0][0] == 0


def test_a_new_import_of_an_imported_file_skips_every_valid_row(
    tmp_path: Path, database_url: str
) -> None:
    users = make_users(tmp_path, database_url, 250)
    first = _import(users.path, database_url)
    second = _import(users.path, database_url)
    assert second.import_id != first.import_id
    assert second.inserted == 0
    assert second.skipped == 250 - users.generated.invalid
    assert table_ids(database_url) == expected_ids(users, "first")


def test_error_mode_stops_at_an_existing_key_and_names_its_line(
    tmp_path: Path, database_url: str
) -> None:
    users = make_users(tmp_path, database_url, 200, invalid_rate=0, duplicate_rate=0)
    execute(
        database_url,
        "INSERT INTO users (id, email, name, active, created_at) "
        "VALUES (9999, 'user120@example.com', 'x', true, '2024-01-01')",
    )
    with pytest.raises(ConflictError, match=r"line \d+: key \(email='user120@example.com'\)"):
        _import(users.path, database_url, on_conflict="error", chunk_size=50)
    committed = query(database_url, "SELECT count(*) FROM users")[0][0]
    assert committed == 1 + 100  # chunks 0 and 1 (rows 1-100) committed before the conflict


def test_error_mode_refuses_a_key_repeated_in_the_file(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "dup.csv"
    path.write_text(
        "id,email,name,active,created_at\n1,a@x.io,A,true,2024-01-01\n2,a@x.io,B,true,2024-01-01\n"
    )
    make_users(tmp_path, database_url, 1)
    with pytest.raises(ConflictError, match="line 3: key repeats line 2"):
        import_csv(
            source=str(path), table="users", key=KEY, on_conflict="error", database=database_url
        )


def test_rerun_with_the_same_import_id_applies_each_chunk_once(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = make_users(tmp_path, database_url, 400)

    def crash_on_chunk_5(job: Any, chunk: Any) -> Any:
        if chunk.index == 5:
            raise RuntimeError("worker died")
        return real_run_chunk(job, chunk)

    monkeypatch.setattr("tasks.imports.steps.run_chunk", crash_on_chunk_5)
    with pytest.raises(RuntimeError, match="worker died"):
        _import(users.path, database_url, import_id="resume-me")
    assert query(database_url, "SELECT max(chunk_index) FROM batchflows_chunks")[0][0] == 4
    monkeypatch.setattr("tasks.imports.steps.run_chunk", real_run_chunk)
    resumed = _import(users.path, database_url, import_id="resume-me")
    assert resumed.resumed_chunks == 5
    assert resumed.total == 400
    assert _balanced(resumed)
    assert resumed.failed == users.generated.invalid
    assert table_ids(database_url) == expected_ids(users, "first")
    ledger = query(
        database_url,
        "SELECT chunk_index, count(*) FROM batchflows_chunks WHERE import_id = 'resume-me' "
        "GROUP BY chunk_index HAVING count(*) > 1",
    )
    assert ledger == []


def test_a_prefect_retry_of_the_flow_run_resumes_the_import(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = make_users(tmp_path, database_url, 300)
    failures = {3: 1}

    def fail_once(job: Any, chunk: Any) -> Any:
        if failures.get(chunk.index):
            failures[chunk.index] -= 1
            raise RuntimeError("lost the worker")
        return real_run_chunk(job, chunk)

    monkeypatch.setattr("tasks.imports.steps.run_chunk", fail_once)
    retrying = import_csv.with_options(retries=1, retry_delay_seconds=0)
    result = retrying(
        source=str(users.path),
        table="users",
        key=KEY,
        rules=RULES,
        chunk_size=SMALL_CHUNKS,
        database=database_url,
    )
    assert result.resumed_chunks == 3
    assert result.total == 300
    assert _balanced(result)
    assert table_ids(database_url) == expected_ids(users, "first")


def test_max_error_rate_stops_before_writing_more(tmp_path: Path, database_url: str) -> None:
    users = make_users(tmp_path, database_url, 200, invalid_rate=0.0, duplicate_rate=0.0)
    _invalid_emails_after_row_100(users.path)
    with pytest.raises(ErrorRateExceeded, match=r"over max_error_rate 10\.0%.*stay committed"):
        _import(users.path, database_url, max_error_rate=0.1, chunk_size=50)
    assert query(database_url, "SELECT count(*) FROM users")[0][0] == 100
    assert query(database_url, "SELECT status FROM batchflows_imports")[0][0] == "failed"


def test_an_import_that_stops_says_why_in_its_status_artifact(
    tmp_path: Path, sqlite_url: str
) -> None:
    users = make_users(tmp_path, sqlite_url, 150, invalid_rate=0.0, duplicate_rate=0.0)
    _invalid_emails_after_row_100(users.path)

    state, artifacts = _run_with_artifacts(users.path, sqlite_url, max_error_rate=0.1)

    assert state.is_failed()
    status = str(next(a for a in artifacts if a.type == "markdown").data)
    assert "**Stopped:**" in status
    assert "ErrorRateExceeded: " in status
    assert "over max_error_rate" in status
    assert "| processed | total | successful | failed |" in status
    assert "| 100 | 150 | 100 | 0 |" in status


@pytest.mark.parametrize("on_conflict", ["skip", "update"])
def test_rows_the_database_refuses_become_rejects(
    tmp_path: Path, database_url: str, on_conflict: str
) -> None:
    users = make_users(tmp_path, database_url, 120, invalid_rate=0, duplicate_rate=0)
    execute(database_url, "DROP TABLE users")
    execute(
        database_url,
        "CREATE TABLE users (id bigint PRIMARY KEY, email varchar(254) NOT NULL UNIQUE, "
        "name varchar(100) NOT NULL, age integer CHECK (age < 60), score numeric(8,2), "
        "active boolean NOT NULL, created_at timestamp NOT NULL, bio text)",
    )
    result = _import(users.path, database_url, rules={}, on_conflict=on_conflict)
    rows: dict[int, dict[str, str]] = {}  # first line of each record (bios span lines) -> row
    with users.path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        start = 2
        for row in reader:
            rows[start] = row
            start = reader.line_num + 1
    # The CHECK (age < 60) refuses exactly the rows aged 60 or more, by their file line.
    refused = {line for line, row in rows.items() if row["age"] and int(row["age"]) >= 60}
    assert refused
    assert result.failed == len(refused)
    assert result.inserted == 120 - len(refused)
    rejects = query(database_url, "SELECT line, errors FROM batchflows_rejects")
    assert {int(r.line) for r in rejects} == refused
    assert all("_database" in str(r.errors) for r in rejects)
    kept = {row["email"] for line, row in rows.items() if line not in refused}
    assert set(table_ids(database_url)) == kept


def test_headerless_files_and_extra_columns(tmp_path: Path, database_url: str) -> None:
    make_users(tmp_path, database_url, 1)
    plain = tmp_path / "plain.csv"
    plain.write_text("5,e@x.io,Eve,33,1.50,true,2024-01-01T00:00:00Z,\n")
    result = import_csv(
        source=str(plain),
        table="users",
        key=KEY,
        header=False,
        database=database_url,
        columns=["id", "email", "name", "age", "score", "active", "created_at", "bio"],
    )
    assert result.inserted == 1
    extra = tmp_path / "extra.csv"
    extra.write_text(
        "ID,Email,Name,Active,Created_At,shoe_size\n6,f@x.io,Fay,false,2024-01-01,42\n"
    )
    with pytest.raises(SchemaError, match="'shoe_size' are not in table users"):
        import_csv(source=str(extra), table="users", key=KEY, database=database_url)
    result = import_csv(
        source=str(extra), table="users", key=KEY, ignore_extra_columns=True, database=database_url
    )
    assert result.inserted == 1
    assert table_ids(database_url) == {"e@x.io": "5", "f@x.io": "6"}


def test_quoted_identifiers_reach_sql_safely(tmp_path: Path, database_url: str) -> None:
    execute(database_url, 'CREATE TABLE "Odd Table" ("Key Col" integer PRIMARY KEY, "v""q" text)')
    path = tmp_path / "odd.csv"
    path.write_text('Key Col,"v""q"\n1,a\n2,b\n')
    result = import_csv(source=str(path), table="Odd Table", key=["Key Col"], database=database_url)
    assert result.inserted == 2


BAD_INPUTS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("missing.csv", {}, InputError, r"parameter 'source': .*missing\.csv does not exist"),
    ("users.csv", {"table": "nope"}, SchemaError, "table 'nope' does not exist"),
    (
        "users.csv",
        {"table": "users; drop table x"},
        SchemaError,
        "table 'users; drop table x' does not exist",
    ),
    (
        "users.csv",
        {"key": ["name"]},
        SchemaError,
        r"no primary key or unique constraint on \(name\)",
    ),
    ("users.csv", {"key": ["nope"]}, SchemaError, "'nope' is not a column of table users"),
    ("users.csv", {"delimiter": ";;"}, InputError, "parameter 'delimiter'"),
    ("users.csv", {"max_error_rate": 2.0}, InputError, "parameter 'max_error_rate'"),
    ("empty.csv", {}, CsvFormatError, "empty.csv line 1: the file is empty"),
    ("unbalanced.csv", {}, CsvFormatError, 'unbalanced.csv line 3: column "name": a quoted value'),
    ("latin.csv", {}, CsvFormatError, 'latin.csv line 2: column "name": bytes e9'),
    ("wrongheader.csv", {}, SchemaError, r"header column\(s\) 'mail' are not in table users"),
    ("missingcol.csv", {}, SchemaError, "no column for 'name', which table users requires"),
]


@pytest.mark.parametrize(("name", "options", "error", "message"), BAD_INPUTS)
def test_bad_input_fails_clearly_with_nothing_written(
    tmp_path: Path,
    database_url: str,
    name: str,
    options: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    make_users(tmp_path, database_url, 20)
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "unbalanced.csv").write_text(
        'id,name,email,active,created_at\n1,a,a@x.io,true,2024-01-01\n2,"b,b@x.io,true,2024-01-01\n'
    )
    (tmp_path / "latin.csv").write_bytes(
        b"id,name,email,active,created_at\n1,caf\xe9,a@x.io,true,2024-01-01\n"
    )
    (tmp_path / "wrongheader.csv").write_text("id,mail,name\n1,a@x.io,A\n")
    (tmp_path / "missingcol.csv").write_text(
        "id,email,active,created_at\n1,a@x.io,true,2024-01-01\n"
    )
    arguments: dict[str, Any] = {"table": "users", "key": KEY, **options}
    with pytest.raises(error, match=message):
        import_csv(source=str(tmp_path / name), database=database_url, **arguments)
    assert query(database_url, "SELECT count(*) FROM users")[0][0] == 0


def test_progress_and_summary_artifacts_are_published(tmp_path: Path, sqlite_url: str) -> None:
    users = make_users(tmp_path, sqlite_url, 150)

    _, artifacts = _run_with_artifacts(users.path, sqlite_url)

    kinds = sorted(a.type or "" for a in artifacts)
    assert kinds == ["markdown", "progress", "table", "table"]
    progress = next(a for a in artifacts if a.type == "progress")
    assert progress.data == 100.0
    status = next(a for a in artifacts if a.type == "markdown")
    assert "| processed |" in str(status.data)
    assert "150" in str(status.data)
