"""Chunk sizing: chunks tile the file whatever their sizes, adapt as the import runs, resume."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tasks.errors import InputError
from tasks.imports import sizing
from tasks.imports.csv_plan import ChunkSpec, CsvDialect, plan_file
from tasks.imports.sizing import ChunkCutter, CommittedRange, ResumePoint, resume_point

KB = 1024


def pieces(count: int, size: int = 100 * KB, rows: int = 1000, start: int = 10) -> list[ChunkSpec]:
    """`count` adjacent pieces of `size` bytes and `rows` rows, after a `start`-byte header."""
    return [
        ChunkSpec(
            index=i,
            start=start + i * size,
            end=start + (i + 1) * size,
            first_line=2 + i * rows,
            first_row=1 + i * rows,
            rows=rows,
        )
        for i in range(count)
    ]


def cutter(
    planned: list[ChunkSpec], *, reverse: bool = False, automatic: bool = True
) -> ChunkCutter:
    start = resume_point(planned, [], reverse=reverse)
    return ChunkCutter(planned, start, reverse=reverse, automatic=automatic)


def assert_tiles(chunks: list[ChunkSpec], planned: list[ChunkSpec], *, reverse: bool) -> None:
    """The chunks cover every piece once, adjacent, numbered in the order they apply."""
    assert [c.index for c in chunks] == list(range(len(chunks)))
    in_file_order = sorted(chunks, key=lambda c: c.start)
    assert in_file_order == (chunks[::-1] if reverse else chunks)
    assert in_file_order[0].start == planned[0].start
    assert in_file_order[-1].end == planned[-1].end
    for before, after in itertools.pairwise(in_file_order):
        assert before.end == after.start
        assert before.first_row + before.rows == after.first_row
    assert sum(c.rows for c in chunks) == sum(p.rows for p in planned)


@pytest.mark.parametrize("reverse", [False, True])
def test_an_explicit_chunk_size_runs_each_planned_piece_as_one_chunk(reverse: bool) -> None:
    planned = pieces(7)
    chunks = list(cutter(planned, reverse=reverse, automatic=False))
    assert [(c.start, c.end) for c in chunks] == [
        (p.start, p.end) for p in (planned[::-1] if reverse else planned)
    ]
    assert_tiles(chunks, planned, reverse=reverse)


@pytest.mark.parametrize("reverse", [False, True])
def test_automatic_chunks_grow_while_commits_are_fast_and_still_tile_the_file(
    reverse: bool,
) -> None:
    planned = pieces(400)
    cut = cutter(planned, reverse=reverse)
    chunks = []
    for chunk in cut:
        chunks.append(chunk)
        cut.observe(chunk.rows, 0)  # commits arrive at once: fast
    sizes = [c.end - c.start for c in chunks]
    assert sizes[0] == sizing.FIRST_CHUNK_BYTES // (100 * KB) * 100 * KB + 100 * KB
    assert max(sizes) <= sizing.MAX_CHUNK_BYTES + 100 * KB
    assert sizes[-2] > sizes[0]
    assert_tiles(chunks, planned, reverse=reverse)


def test_automatic_chunks_shrink_where_the_database_refuses_rows() -> None:
    planned = pieces(400)
    cut = cutter(planned)
    first = cut.cut()
    cut.observe(first.rows, 0)
    second = cut.cut()
    cut.observe(second.rows, refused=second.rows // 100)
    third = cut.cut()
    assert third.rows < second.rows


def test_a_slow_commit_keeps_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 5.0, 10.0])
    monkeypatch.setattr("tasks.imports.sizing.time.monotonic", lambda: next(clock))
    cut = cutter(pieces(400))
    sizes = []
    for _ in range(3):
        chunk = cut.cut()
        sizes.append(chunk.rows)
        cut.observe(chunk.rows, 0)
    assert sizes[0] == sizes[1] == sizes[2]


def test_a_large_file_makes_a_few_hundred_chunks_at_most() -> None:
    # 800 MB in pieces of 256 KB, never observed to commit fast: the floor bounds the count.
    planned = pieces(3200, size=256 * KB, rows=2000)
    chunks = list(cutter(planned))
    assert 200 < len(chunks) <= sizing.MAX_CHUNKS
    assert_tiles(chunks, planned, reverse=False)


def test_past_the_memory_ceiling_chunks_stay_small_and_their_count_grows() -> None:
    planned = pieces(8000, size=256 * KB, rows=2000)  # 2 GB
    chunks = list(cutter(planned))
    assert max(c.end - c.start for c in chunks) <= sizing.MAX_CHUNK_BYTES
    assert len(chunks) > sizing.MAX_CHUNKS


@pytest.mark.parametrize("reverse", [False, True])
def test_a_resume_continues_where_the_committed_chunks_end(reverse: bool) -> None:
    planned = pieces(200)
    first_run = cutter(planned, reverse=reverse)
    done = [first_run.cut() for _ in range(3)]
    ledger = [CommittedRange(index=c.index, start=c.start, end=c.end) for c in done]
    start = resume_point(planned, ledger, reverse=reverse)
    assert start.committed == 3
    rest = list(ChunkCutter(planned, start, reverse=reverse, automatic=False))
    assert rest[0].index == 3
    assert_tiles(done + rest, planned, reverse=reverse)


def test_a_finished_ledger_leaves_nothing_to_cut() -> None:
    planned = pieces(5)
    everything = CommittedRange(index=0, start=planned[0].start, end=planned[-1].end)
    start = resume_point(planned, [everything], reverse=False)
    assert start == ResumePoint(committed=1, piece=5)
    assert list(ChunkCutter(planned, start, reverse=False, automatic=True)) == []


@pytest.mark.parametrize(
    "ledger",
    [
        [(0, 10, 1000 * KB), (2, 1000 * KB, 2000 * KB)],  # chunk 1 missing
        [(0, 10, 100 * KB), (1, 300 * KB, 400 * KB)],  # a hole between them
        [(0, 10, 100 * KB + 5)],  # ends inside a piece
    ],
)
def test_a_ledger_that_does_not_tile_the_file_refuses_to_resume(
    ledger: list[tuple[int, int, int]],
) -> None:
    committed = [CommittedRange(index=i, start=s, end=e) for i, s, e in ledger]
    with pytest.raises(InputError, match="start a new import"):
        resume_point(pieces(50), committed, reverse=False)


def test_the_plan_cuts_pieces_on_record_boundaries_by_bytes(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    rows = [f'{i},"note {i}\nspans, a line"\n' for i in range(500)]
    path.write_text("id,note\n" + "".join(rows))
    plan = plan_file(str(path), CsvDialect(), None, piece_bytes=1000)
    assert sum(p.rows for p in plan.chunks) == 500
    assert all(1000 <= p.end - p.start < 1000 + 40 for p in plan.chunks[:-1])
    assert plan.chunks[-1].end == path.stat().st_size
    lines = [p.first_line for p in plan.chunks]
    assert lines == [2 + 2 * (p.first_row - 1) for p in plan.chunks]
