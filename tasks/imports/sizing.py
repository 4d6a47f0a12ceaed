"""Chunk sizing: join the planned pieces of a file into the chunks the import's tasks run.

With an explicit `chunk_size` every planned piece is one chunk, exactly as planned. Without
one, chunks are cut lazily, just before each is submitted, from the pieces' measured bytes
and rows: the first about `FIRST_CHUNK_BYTES`, then larger while chunks commit quickly
(fewer task runs for the Prefect server to record), smaller where the database refuses rows
often (each refused row costs a bisection of its chunk). Sizes stay between a floor that
keeps the number of chunks at about `MAX_CHUNKS` at most and a ceiling that keeps the chunks
in flight within the memory budget; past `MAX_CHUNKS * MAX_CHUNK_BYTES` (about 0.9 GB) memory
wins and the number of chunks grows with the file.

Exactness does not depend on the sizes. Chunks are numbered in the order they apply and each
chunk's ledger row holds its byte range. Chunks commit one after another, so the committed
ones are always a prefix of that order: a resumed run reads where they end and cuts the rest
afresh, and each chunk checks in its transaction that it starts where the chunk before it
ended (tasks/imports/writer/base.py), so two runs that cut differently can never overlap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence

from pydantic import BaseModel

from tasks.errors import InputError
from tasks.imports.csv_plan import ChunkSpec

FIRST_CHUNK_BYTES = 1024 * 1024
# As many chunks as CPU cores are in flight by default; each costs many times its bytes while
# parsed, validated and staged: bench/bench_import.py measured a peak RSS of 345 MB at 3 MB
# chunks with two in flight (390 MB with three, 423 MB with four, at the same speed).
MAX_CHUNK_BYTES = 3 * 1024 * 1024
MAX_CHUNKS = 300
GROWTH = 1.5
# A commit interval below this means the fixed cost per task run is a large share: grow.
FAST_COMMIT_SECONDS = 1.0
# Share of a chunk's rows the database refused (each isolated by bisection) that halves it.
REFUSED_SHARE = 0.001


class CommittedRange(BaseModel):
    """A chunk the ledger holds: its place in the apply order and its byte range."""

    index: int
    start: int
    end: int


class ResumePoint(BaseModel):
    """Where the work left to do starts: committed chunks so far and the first piece left."""

    committed: int
    piece: int


def resume_point(
    pieces: Sequence[ChunkSpec], committed: Sequence[CommittedRange], *, reverse: bool
) -> ResumePoint:
    """Where a resumed import continues, from the ranges its ledger holds.

    Forward imports continue with the piece that starts where the last committed chunk ends;
    reverse ones (update mode) with the pieces before the one where it starts. The committed
    chunks must tile the file from its first (last) record without a gap.
    """
    ordered = sorted(committed, key=lambda c: c.index)
    if not ordered:
        return ResumePoint(committed=0, piece=len(pieces) if reverse else 0)
    expected = _data_end(pieces) if reverse else _data_start(pieces)
    for position, chunk in enumerate(ordered):
        edge = chunk.end if reverse else chunk.start
        if chunk.index != position or edge != expected:
            raise InputError(
                f"the ledger of this import has a gap at chunk {position} (byte {expected}); "
                "it cannot be resumed exactly: start a new import (leave import_id empty)"
            )
        expected = chunk.start if reverse else chunk.end
    boundary = {(p.end if reverse else p.start): i for i, p in enumerate(pieces)}
    if expected == (_data_start(pieces) if reverse else _data_end(pieces)):
        return ResumePoint(committed=len(ordered), piece=0 if reverse else len(pieces))
    if expected not in boundary:
        raise InputError(
            f"the committed chunks of this import end at byte {expected}, which is not a "
            "record boundary of the plan; start a new import (leave import_id empty)"
        )
    piece = boundary[expected] + 1 if reverse else boundary[expected]
    return ResumePoint(committed=len(ordered), piece=piece)


class ChunkCutter:
    """Cuts the next chunk when it is needed, sized from what the import has seen so far."""

    def __init__(
        self,
        pieces: Sequence[ChunkSpec],
        start: ResumePoint,
        *,
        reverse: bool,
        automatic: bool,
    ) -> None:
        self.pieces = pieces
        self.reverse = reverse
        self.automatic = automatic
        self.index = start.committed
        self.position = start.piece
        data = _data_end(pieces) - _data_start(pieces)
        self.ceiling = MAX_CHUNK_BYTES
        self.floor = min(self.ceiling, max(1, math.ceil(data / MAX_CHUNKS)))
        self.target = min(self.ceiling, max(self.floor, FIRST_CHUNK_BYTES))
        self.last_commit: float | None = None
        self.committed = start.committed

    def __iter__(self) -> Iterator[ChunkSpec]:
        while self.remaining_pieces:
            yield self.cut()

    @property
    def remaining_pieces(self) -> int:
        return self.position if self.reverse else len(self.pieces) - self.position

    def cut(self) -> ChunkSpec:
        """The next chunk, in apply order: at least one piece, about `target` bytes."""
        target = self.target if self.automatic else 0
        if self.reverse:
            low = self.position - 1
            while low > 0 and self.pieces[self.position - 1].end - self.pieces[low].start < target:
                low -= 1
            taken = self.pieces[low : self.position]
            self.position = low
        else:
            high = self.position + 1
            while (
                high < len(self.pieces)
                and self.pieces[high - 1].end - self.pieces[self.position].start < target
            ):
                high += 1
            taken = self.pieces[self.position : high]
            self.position = high
        chunk = ChunkSpec(
            index=self.index,
            start=taken[0].start,
            end=taken[-1].end,
            first_line=taken[0].first_line,
            first_row=taken[0].first_row,
            rows=sum(p.rows for p in taken),
        )
        self.index += 1
        return chunk

    def observe(self, rows: int, refused: int, *, already_committed: bool = False) -> None:
        """Adapt the size of chunks not yet cut to the chunk that just committed."""
        self.committed += 1
        now = time.monotonic()
        interval = None if self.last_commit is None else now - self.last_commit
        self.last_commit = now
        if not self.automatic or already_committed:
            return
        if rows and refused / rows > REFUSED_SHARE:
            self.target = max(self.floor, self.target // 2)
        elif interval is not None and interval < FAST_COMMIT_SECONDS:
            self.target = min(self.ceiling, int(self.target * GROWTH))

    @property
    def estimated_chunks(self) -> int:
        """Chunks committed so far plus those still to cut at the current size (exact once
        every chunk is cut)."""
        if self.remaining_pieces == 0:
            return max(self.index, self.committed)
        if not self.automatic:
            return self.index + self.remaining_pieces
        if self.reverse:
            left = self.pieces[self.position - 1].end - self.pieces[0].start
        else:
            left = self.pieces[-1].end - self.pieces[self.position].start
        return self.index + math.ceil(left / self.target)


def _data_start(pieces: Sequence[ChunkSpec]) -> int:
    return pieces[0].start if pieces else 0


def _data_end(pieces: Sequence[ChunkSpec]) -> int:
    return pieces[-1].end if pieces else 0
