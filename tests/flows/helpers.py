"""Shared helpers for flow tests: generated users files and what importing them must give."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prefect.settings import PREFECT_API_URL

from flows.import_csv import import_csv
from samples.users import KEY, RULES, Generated, create_users_table, write_users_csv
from tasks.imports.csv_plan import CsvDialect
from tasks.imports.plan import ImportOptions, ImportPlan, make_plan

# Tasks run outside a flow run on purpose (a flow's `.fn`, a task window without a flow) log
# through Prefect's API handler, which warns that it has no flow run to send the lines to.
OUTSIDE_A_FLOW_RUN = pytest.mark.filterwarnings(
    "ignore:Logger 'prefect.task_runs' attempted to send logs to the API without a flow run id"
    ":UserWarning"
)


@dataclass(frozen=True)
class UsersFile:
    """A generated users CSV and the facts a test needs about it."""

    path: Path
    generated: Generated


def make_users(
    tmp_path: Path,
    url: str,
    rows: int,
    *,
    invalid_rate: float = 0.05,
    duplicate_rate: float = 0.05,
    seed: int = 7,
    name: str = "users.csv",
) -> UsersFile:
    """Write a users file and create an empty users table at `url`."""
    path = tmp_path / name
    generated = write_users_csv(
        path, rows, invalid_rate=invalid_rate, duplicate_rate=duplicate_rate, seed=seed
    )
    create_users_table(url, replace=True)
    return UsersFile(path=path, generated=generated)


def plan_users(source: Path, url: str, chunk_size: int | None, import_id: str) -> ImportPlan:
    """The import of a users file into `users`, planned (registered, nothing applied)."""
    options = ImportOptions(
        table="users",
        key=KEY,
        on_conflict="skip",
        rules=RULES,
        chunk_size=chunk_size,
        dialect=CsvDialect(),
        columns=None,
        ignore_extra_columns=False,
    )
    return make_plan(
        source=str(source),
        options=options,
        import_id=import_id,
        database=url,
        max_error_rate=1.0,
    )


def expected_ids(users: UsersFile, keep: str) -> dict[str, str]:
    """email -> id that a skip ("first") or update ("last") import must leave in the table."""
    invalid = set(users.generated.invalid_lines)
    winners: dict[str, str] = {}
    with users.path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        start = 2
        for row in reader:
            if start not in invalid and (keep == "last" or row[1] not in winners):
                winners[row[1]] = row[0]
            start = reader.line_num + 1
    return winners


def table_ids(url: str, table: str = "users") -> dict[str, str]:
    """email -> id as the table holds them."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT email, id FROM {table}")).all()
    finally:
        engine.dispose()
    return {email: str(user_id) for email, user_id in rows}


def query(url: str, sql: str, **params: Any) -> list[sa.Row[Any]]:
    """Run one SELECT against the test database."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())
    finally:
        engine.dispose()


def execute(url: str, *statements: str) -> None:
    """Run statements in one transaction."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def committed_chunks(url: str) -> int:
    """Chunks in the import ledger so far (0 before the bookkeeping tables exist)."""
    exists = query(url, "SELECT to_regclass('batchflows_chunks') IS NOT NULL")[0][0]
    return int(query(url, "SELECT count(*) FROM batchflows_chunks")[0][0]) if exists else 0


def slow_down_inserts(url: str, seconds: float = 0.05) -> None:
    """Make each insert statement into `users` take `seconds` longer (PostgreSQL)."""
    execute(
        url,
        "CREATE FUNCTION slow_down() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$",
        "CREATE TRIGGER slow_down AFTER INSERT ON users "
        "FOR EACH STATEMENT EXECUTE FUNCTION slow_down()",
    )


IMPORT_CHILD = """
import sys
from samples.users import KEY, RULES
from flows.import_csv import import_csv
import_csv(source=sys.argv[1], table="users", key=KEY, rules=RULES, chunk_size=100,
           max_concurrency=4, import_id="killed", database=sys.argv[2])
"""


def start_import_child(
    users: UsersFile, url: str, chunks: int = 8, script: str = IMPORT_CHILD
) -> subprocess.Popen[bytes]:
    """An import of `users` in a child process (`script`, given the file and the database),
    once it has committed `chunks` chunks."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(users.path), url],
        env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())},
        cwd=Path(__file__).parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while committed_chunks(url) < chunks:
            assert child.poll() is None, "the import ended before it could be interrupted"
            assert time.monotonic() < deadline, "the import never got going"
            time.sleep(0.02)
    except BaseException:
        child.kill()
        child.wait()
        raise
    return child


def resume_and_check(users: UsersFile, url: str, interrupted_at: int) -> None:
    """Rerun the interrupted import: it must end exactly as an uninterrupted one would."""
    resumed = import_csv(
        source=str(users.path),
        table="users",
        key=KEY,
        rules=RULES,
        chunk_size=100,
        import_id="killed",
        database=url,
    )
    uninterrupted = expected_ids(users, "first")
    assert resumed.resumed_chunks >= interrupted_at
    assert resumed.total == 4000
    assert resumed.failed == users.generated.invalid
    assert resumed.total == resumed.inserted + resumed.updated + resumed.skipped + resumed.failed
    assert table_ids(url) == uninterrupted
    assert (resumed.inserted, resumed.updated) == (len(uninterrupted), 0)
    ledger = "SELECT count(*), count(DISTINCT chunk_index) FROM batchflows_chunks"
    assert query(url, ledger)[0] == (40, 40)
    rejects = query(url, "SELECT count(*), count(DISTINCT line) FROM batchflows_rejects")
    assert rejects[0] == (users.generated.invalid, users.generated.invalid)
