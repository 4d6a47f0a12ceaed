"""Automatic chunk sizing: chunks of varying size, exact counts, exact resume after kill -9."""

from __future__ import annotations

import itertools
import signal
from pathlib import Path
from typing import Any

import pytest

from flows.import_csv import ImportResult, import_csv
from samples.users import KEY, RULES
from tasks.errors import InputError
from tasks.imports import chunk as chunk_module
from tasks.imports import csv_plan, sizing
from tasks.imports.chunk import run_chunk as real_run_chunk
from tasks.imports.csv_plan import ChunkSpec
from tasks.imports.steps import chunk_cutter
from tests.flows.helpers import (
    committed_chunks,
    expected_ids,
    make_users,
    plan_users,
    query,
    slow_down_inserts,
    start_import_child,
    table_ids,
)

# Small sizes, so a 4,000-row file (about 400 kB) makes chunks of several sizes.
SMALL = {"PIECE_BYTES": 4096, "FIRST_CHUNK_BYTES": 8192, "MAX_CHUNK_BYTES": 40_000}
AUTO_CHILD = f"""
import sys
from tasks.imports import csv_plan, sizing
csv_plan.PIECE_BYTES = {SMALL["PIECE_BYTES"]}
sizing.FIRST_CHUNK_BYTES = {SMALL["FIRST_CHUNK_BYTES"]}
sizing.MAX_CHUNK_BYTES = {SMALL["MAX_CHUNK_BYTES"]}
from samples.users import KEY, RULES
from flows.import_csv import import_csv
import_csv(source=sys.argv[1], table="users", key=KEY, rules=RULES, max_concurrency=4,
           import_id="killed", database=sys.argv[2])
"""


@pytest.fixture
def small_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_plan, "PIECE_BYTES", SMALL["PIECE_BYTES"])
    monkeypatch.setattr(sizing, "FIRST_CHUNK_BYTES", SMALL["FIRST_CHUNK_BYTES"])
    monkeypatch.setattr(sizing, "MAX_CHUNK_BYTES", SMALL["MAX_CHUNK_BYTES"])


def _import(path: Path, url: str, **options: Any) -> ImportResult:
    result: ImportResult = import_csv(
        source=str(path), table="users", key=KEY, rules=RULES, database=url, **options
    )
    return result


def ledger(url: str, import_id: str) -> list[tuple[int, ...]]:
    """(chunk_index, start_byte, end_byte, rows) of an import, in apply order."""
    rows = query(
        url,
        "SELECT chunk_index, start_byte, end_byte, rows FROM batchflows_chunks "
        "WHERE import_id = :id ORDER BY chunk_index",
        id=import_id,
    )
    return [tuple(int(value) for value in row) for row in rows]


def assert_ledger_tiles_the_file(
    url: str, import_id: str, path: Path, rows: int, *, reverse: bool = False
) -> list[int]:
    """The ledger's ranges cover the file's records once, adjacent; returns chunk sizes."""
    chunks = ledger(url, import_id)
    assert [c[0] for c in chunks] == list(range(len(chunks)))
    in_file_order = chunks[::-1] if reverse else chunks
    assert in_file_order[-1][2] == path.stat().st_size
    for before, after in itertools.pairwise(in_file_order):
        assert before[2] == after[1]
    assert sum(c[3] for c in chunks) == rows
    return [c[2] - c[1] for c in chunks]


@pytest.mark.parametrize("on_conflict", ["skip", "update"])
def test_automatic_chunks_vary_in_size_and_every_row_counts_once(
    tmp_path: Path, database_url: str, small_sizes: None, on_conflict: str
) -> None:
    users = make_users(tmp_path, database_url, 3000)
    result = _import(users.path, database_url, on_conflict=on_conflict, import_id="auto")
    assert result.total == 3000
    assert result.total == result.inserted + result.updated + result.skipped + result.failed
    assert result.failed == users.generated.invalid
    keep = "last" if on_conflict == "update" else "first"
    assert table_ids(database_url) == expected_ids(users, keep)
    reverse = on_conflict == "update"
    sizes = assert_ledger_tiles_the_file(database_url, "auto", users.path, 3000, reverse=reverse)
    assert len(set(sizes)) > 2  # the first chunk, grown chunks, and the file's tail
    assert max(sizes) <= SMALL["MAX_CHUNK_BYTES"] + SMALL["PIECE_BYTES"] + 2048
    assert query(database_url, "SELECT chunk_count FROM batchflows_imports")[0][0] == len(sizes)


def test_kill_9_mid_automatic_import_then_rerun_with_other_sizes_is_exact(
    tmp_path: Path, postgres_url: str, small_sizes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = make_users(tmp_path, postgres_url, 4000)
    slow_down_inserts(postgres_url)
    child = start_import_child(users, postgres_url, chunks=4, script=AUTO_CHILD)
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_at = committed_chunks(postgres_url)
    before = ledger(postgres_url, "killed")
    # The rerun cuts what is left with other sizes than the killed run would have.
    monkeypatch.setattr(sizing, "FIRST_CHUNK_BYTES", 12_000)
    resumed = _import(users.path, postgres_url, import_id="killed")
    assert resumed.resumed_chunks == killed_at
    assert resumed.total == 4000
    assert resumed.failed == users.generated.invalid
    assert resumed.total == resumed.inserted + resumed.updated + resumed.skipped + resumed.failed
    uninterrupted = expected_ids(users, "first")
    assert table_ids(postgres_url) == uninterrupted
    assert (resumed.inserted, resumed.updated) == (len(uninterrupted), 0)
    assert ledger(postgres_url, "killed")[:killed_at] == before[:killed_at]
    assert_ledger_tiles_the_file(postgres_url, "killed", users.path, 4000)
    rejects = query(postgres_url, "SELECT count(*), count(DISTINCT line) FROM batchflows_rejects")
    assert rejects[0] == (users.generated.invalid, users.generated.invalid)


def test_a_chunk_that_does_not_follow_the_committed_one_is_refused(
    tmp_path: Path, database_url: str, small_sizes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = make_users(tmp_path, database_url, 1500)

    def crash_on_chunk_3(job: Any, chunk: ChunkSpec) -> Any:
        if chunk.index == 3:
            raise RuntimeError("worker died")
        return real_run_chunk(job, chunk)

    monkeypatch.setattr("tasks.imports.steps.run_chunk", crash_on_chunk_3)
    with pytest.raises(RuntimeError, match="worker died"):
        _import(users.path, database_url, import_id="cut-twice")
    plan = plan_users(users.path, database_url, chunk_size=None, import_id="cut-twice")
    cutter = chunk_cutter(plan)
    skipped = cutter.cut()  # what another run would have applied as chunk 3
    stray = cutter.cut().model_copy(update={"index": skipped.index})
    with pytest.raises(InputError, match="does not follow committed chunk 2"):
        chunk_module.run_chunk(plan.job, stray)
    assert len(ledger(database_url, "cut-twice")) == 3
