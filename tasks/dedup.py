"""Resolve repeated keys inside one chunk so the import behaves as if rows were applied in order.

The contract is sequential: applying the file's valid rows one by one, in file order, gives the
final table and the counts. Within a chunk that means:

- `skip`: the first occurrence of a key is staged; later ones are counted skipped.
- `update`: the first occurrence is staged and compared with the table by the database; each
  later occurrence counts updated if it differs from the occurrence before it, else skipped;
  the last occurrence is staged again (phase 2) so it is what the table ends up holding.
- `error`: a repeated key stops the import, naming both lines.

Across chunks, order comes from applying chunks in file order (see tasks/chunk_writer.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Dedup:
    """Rows to stage (positions into the valid rows) and what the repeats already count."""

    first: IntArray
    last: IntArray
    skipped: int
    updated: int
    repeated: tuple[int, int] | None = None


def dedup(values: pa.Table, key: list[str], mode: str) -> Dedup:
    """Plan the staging of `values` (valid rows in file order) for conflict mode `mode`."""
    rows = values.num_rows
    frame = values.select(key).to_pandas()
    repeats = frame.duplicated(keep="first").to_numpy()
    if not repeats.any():
        everything = np.arange(rows, dtype=np.int64)
        return Dedup(first=everything, last=np.zeros(0, dtype=np.int64), skipped=0, updated=0)
    first = np.flatnonzero(~repeats).astype(np.int64)
    if mode == "error":
        position = int(np.flatnonzero(repeats)[0])
        match = frame.iloc[:position].eq(frame.iloc[position]).all(axis=1).to_numpy()
        return Dedup(
            first=first,
            last=np.zeros(0, dtype=np.int64),
            skipped=0,
            updated=0,
            repeated=(int(np.flatnonzero(match)[0]), position),
        )
    if mode == "skip":
        return Dedup(
            first=first, last=np.zeros(0, dtype=np.int64), skipped=int(repeats.sum()), updated=0
        )
    return _update_repeats(values, frame, first)


def _update_repeats(values: pa.Table, frame: pd.DataFrame, first: IntArray) -> Dedup:
    """Sequential counts for repeated keys in update mode, comparing each to its predecessor."""
    in_group = frame.duplicated(keep=False).to_numpy()
    members = np.flatnonzero(in_group)
    group_of = frame.iloc[members].groupby(list(frame.columns), sort=False).ngroup().to_numpy()
    rows = values.take(pa.array(members)).to_pylist()
    previous: dict[int, dict[str, object]] = {}
    first_of: dict[int, dict[str, object]] = {}
    last_position: dict[int, int] = {}
    updated = skipped = 0
    for position, group, row in zip(members.tolist(), group_of.tolist(), rows, strict=True):
        if group in previous:
            if _differs(row, previous[group]):
                updated += 1
            else:
                skipped += 1
        else:
            first_of[group] = row
        previous[group] = row
        last_position[group] = position
    # Stage the last occurrence only where it differs from the first one already staged.
    last = sorted(
        position
        for group, position in last_position.items()
        if _differs(previous[group], first_of[group])
    )
    return Dedup(first=first, last=np.array(last, dtype=np.int64), skipped=skipped, updated=updated)


def _differs(a: dict[str, object], b: dict[str, object]) -> bool:
    return any(a[name] != b[name] for name in a)
