"""Skip mode on PostgreSQL probes the table before a chunk's turn; the turn stays exact.

Two chunks of a hand-written file share a key. Chunk 1 probes while chunk 0 has not yet
committed, so the key is not in the table then; at its turn chunk 1 must skip it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from samples.users import COLUMNS, create_users_table
from tasks.imports.chunk import run_chunk
from tasks.imports.ledger import ChunkCounts
from tasks.imports.recent_keys import RECENT
from tasks.imports.steps import chunk_cutter
from tasks.imports.writer.base import ChunkWriter, StagedChunk
from tasks.imports.writer.postgres import PostgresWriter
from tests.flows.helpers import plan_users, query

ROWS = [
    "1,a@example.com,Ann,30,1.00,true,2024-01-01T00:00:00Z,first a",
    "2,b@example.com,Bob,31,2.00,true,2024-01-01T00:00:00Z,",
    "3,c@example.com,Cid,32,3.00,true,2024-01-01T00:00:00Z,",
    "4,a@example.com,Ann,33,4.00,true,2024-01-01T00:00:00Z,second a",
]
WAIT_SECONDS = 30


def _run_chunk_0_committing_after_chunk_1_probed(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[ChunkCounts], list[Any], list[int]]:
    """Both chunks in threads, chunk 0's commit held until chunk 1 has probed; returns the
    counts in chunk order, what chunk 1's probe returned and which chunks fell back to the
    generic ON CONFLICT statements."""
    source = tmp_path / "users.csv"
    source.write_text(",".join(COLUMNS) + "\n" + "\n".join(ROWS) + "\n", encoding="utf-8")
    create_users_table(url, replace=True)
    plan = plan_users(source, url, chunk_size=2, import_id="probe-ahead")
    chunks = list(chunk_cutter(plan))
    assert [chunk.rows for chunk in chunks] == [2, 2]

    registered, probed = threading.Event(), threading.Event()
    probe, apply = PostgresWriter._probe_ahead, PostgresWriter.apply_in_transaction
    found: list[Any] = []

    def probe_in_order(self: PostgresWriter, cur: Any, staged: StagedChunk) -> Any:
        if staged.chunk.index == 1:
            assert registered.wait(WAIT_SECONDS)
        result = probe(self, cur, staged)
        if staged.chunk.index == 0:
            registered.set()
        else:
            found.append(result)
            probed.set()
        return result

    def commit_after_probe(self: PostgresWriter, cur: Any, staged: StagedChunk, *a: Any) -> Any:
        if staged.chunk.index == 0:
            assert probed.wait(WAIT_SECONDS)
        return apply(self, cur, staged, *a)

    generic, fallbacks = ChunkWriter.apply, []

    def counted(self: ChunkWriter, cur: Any, low: int, high: int) -> tuple[int, int]:
        assert self.chunk is not None
        fallbacks.append(self.chunk.index)
        return generic(self, cur, low, high)

    monkeypatch.setattr(ChunkWriter, "apply", counted)
    monkeypatch.setattr(PostgresWriter, "_probe_ahead", probe_in_order)
    monkeypatch.setattr(PostgresWriter, "apply_in_transaction", commit_after_probe)
    counts: dict[int, ChunkCounts] = {}
    threads = [
        threading.Thread(target=lambda c=chunk: counts.update({c.index: run_chunk(plan.job, c)}))
        for chunk in chunks
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    assert sorted(counts) == [0, 1], "a chunk failed; its thread printed why"
    return [counts[0], counts[1]], found, fallbacks


def _table(url: str) -> dict[str, tuple[int, str | None]]:
    rows = [tuple(row) for row in query(url, "SELECT email, id, bio FROM users")]
    return {email: (id_, bio) for email, id_, bio in rows}


def _exact(url: str, counts: list[ChunkCounts]) -> None:
    assert (counts[0].inserted, counts[0].skipped) == (2, 0)
    assert (counts[1].inserted, counts[1].skipped, counts[1].failed) == (1, 1, 0)
    assert counts[1].refused == 0
    assert _table(url) == {
        "a@example.com": (1, "first a"),
        "b@example.com": (2, None),
        "c@example.com": (3, None),
    }


def test_a_key_committed_between_the_probe_and_the_turn_is_skipped(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts, found, fallbacks = _run_chunk_0_committing_after_chunk_1_probed(
        tmp_path, postgres_url, monkeypatch
    )
    # Chunk 1 staged c (ordinal 0) and a (ordinal 1): a is the one chunk 0 may add.
    assert [list(ordinals) for ordinals in found] == [[1]]
    assert fallbacks == []  # the turn unstaged a itself; the unique index never refused
    _exact(postgres_url, counts)


@pytest.mark.parametrize("recent", [None, []], ids=["chunk 0 staged elsewhere", "missed"])
def test_without_chunk_0s_keys_the_turn_is_exact_all_the_same(
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    recent: list[pa.Array] | None,
) -> None:
    """None: the turn probes every row. []: the registry says no key can collide; the
    unique index refuses the repeat and the ON CONFLICT path applies the chunk instead."""
    real_between: Callable[..., Any] = RECENT.between

    def between(import_id: str, after: int, before: int) -> list[pa.Array] | None:
        real_between(import_id, after, before)
        return recent

    monkeypatch.setattr(RECENT, "between", between)
    counts, found, fallbacks = _run_chunk_0_committing_after_chunk_1_probed(
        tmp_path, postgres_url, monkeypatch
    )
    assert [None if f is None else list(f) for f in found] == [None if recent is None else []]
    assert fallbacks == ([] if recent is None else [1])
    _exact(postgres_url, counts)
