"""Resolve repeated keys inside one chunk, and hash keys for resolving them across chunks.

Counts describe the import's net effect on the table:

- `skip`: the first valid occurrence of a key is the one offered to the table; later ones are
  skipped. Chunks apply in file order, so an earlier chunk's occurrence is in the table before
  a later chunk looks.
- `update`: the last valid occurrence wins; earlier ones are skipped (superseded). Chunks apply
  in reverse file order and claim their keys (tasks/imports/writer/), so an earlier occurrence
  never overwrites a later one, and an identical re-import reports 0 updated.
- `error`: a repeated key stops the import, naming both lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from tasks.imports.arrays import IntArray
from tasks.imports.rules import OnConflict

# Two independent 64-bit hashes make a 128-bit key fingerprint: collisions are out of reach
# (about 1e-25 for ten million keys), so claims can store fixed-size numbers for any key type.
_HASH_KEYS = ("batchflows-key-1", "batchflows-key-2")


@dataclass(frozen=True)
class Dedup:
    """Rows to stage (positions into the valid rows, in file order) and repeats skipped."""

    keep: IntArray
    superseded: int
    repeated: tuple[int, int] | None = None


def dedup(values: pa.Table, key: list[str], mode: OnConflict) -> Dedup:
    """Keep one row per key of `values` (valid rows in file order) for conflict mode `mode`."""
    frame = values.select(key).to_pandas()
    keep_last = mode == "update"
    repeats = frame.duplicated(keep="last" if keep_last else "first").to_numpy()
    if mode == "error" and repeats.any():
        again = int(np.flatnonzero(repeats)[0])
        same = frame.iloc[:again].eq(frame.iloc[again]).all(axis=1).to_numpy()
        return Dedup(
            keep=np.flatnonzero(~repeats).astype(np.int64),
            superseded=0,
            repeated=(int(np.flatnonzero(same)[0]), again),
        )
    return Dedup(keep=np.flatnonzero(~repeats).astype(np.int64), superseded=int(repeats.sum()))


def key_hashes(values: pa.Table, key: list[str]) -> tuple[IntArray, IntArray]:
    """A 128-bit fingerprint of each row's key, as two signed 64-bit halves."""
    frame = values.select(key).to_pandas()
    halves = [
        pd.util.hash_pandas_object(frame, index=False, hash_key=hash_key).to_numpy()
        for hash_key in _HASH_KEYS
    ]
    return halves[0].view(np.int64), halves[1].view(np.int64)
