"""The keys of the chunks this process staged lately, so a chunk can probe before its turn.

In skip mode a PostgreSQL chunk unstages the rows whose key the table already holds while
the chunk before it is still applying (writer/postgres.py). At its turn only keys that
chunks committed since that probe can still collide, and when this process staged those
chunks their keys are here, so the turn checks a few rows instead of all of them.

A shortcut, never the source of truth: a chunk staged elsewhere (another worker, an
earlier run) or evicted means the full probe at the turn, and a key missed anyway is
refused by the unique index, which the apply already turns into its ON CONFLICT path.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import pyarrow as pa

# Chunks kept per process, across imports: the window of chunks in flight needs a few.
CAPACITY = 16


class RecentKeys:
    """Key columns of staged chunks by (import id, chunk index); thread-safe, bounded."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._lock = threading.Lock()
        self._capacity = capacity
        self._keys: OrderedDict[tuple[str, int], pa.Array] = OrderedDict()

    def add(self, import_id: str, index: int, keys: pa.Array) -> None:
        """Remember chunk `index`'s staged keys (the oldest entry goes past the capacity)."""
        with self._lock:
            self._keys[(import_id, index)] = keys
            self._keys.move_to_end((import_id, index))
            while len(self._keys) > self._capacity:
                self._keys.popitem(last=False)

    def between(self, import_id: str, after: int, before: int) -> list[pa.Array] | None:
        """The keys of chunks `after`+1 to `before`-1, or None unless all are here.

        Chunks up to `after` have committed, so they are forgotten: the table answers for them.
        """
        with self._lock:
            for entry in [e for e in self._keys if e[0] == import_id and e[1] <= after]:
                del self._keys[entry]
            found = [self._keys.get((import_id, index)) for index in range(after + 1, before)]
        if any(keys is None for keys in found):
            return None
        return [keys for keys in found if keys is not None]


RECENT = RecentKeys()
