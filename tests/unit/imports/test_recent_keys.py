"""The per-process registry of staged chunks' keys that the probe ahead relies on."""

from __future__ import annotations

import pyarrow as pa

from tasks.imports.recent_keys import RecentKeys
from tasks.imports.writer.postgres import _ordinals_among


def test_keys_of_the_chunks_in_between_or_none_if_one_is_missing() -> None:
    recent = RecentKeys()
    recent.add("a", 3, pa.array(["x"]))
    recent.add("a", 4, pa.array(["y"]))
    recent.add("b", 4, pa.array(["other import"]))

    assert [keys.to_pylist() for keys in recent.between("a", 2, 5) or []] == [["x"], ["y"]]
    assert recent.between("a", 4, 5) == []  # nothing in between: nothing to check
    assert recent.between("a", 1, 5) is None  # chunk 2 was staged elsewhere


def test_committed_chunks_are_forgotten_and_the_oldest_go_past_the_capacity() -> None:
    recent = RecentKeys(capacity=2)
    recent.add("a", 0, pa.array(["x"]))
    recent.add("a", 1, pa.array(["y"]))
    assert recent.between("a", 0, 2) is not None
    assert recent.between("a", -1, 2) is None  # chunk 0 was forgotten once it committed

    recent.add("a", 2, pa.array(["z"]))
    recent.add("a", 3, pa.array(["w"]))  # evicts chunk 1
    assert recent.between("a", 0, 4) is None
    assert recent.between("a", 1, 4) is not None


def test_ordinals_of_keys_a_chunk_in_between_staged() -> None:
    keys = pa.array(["c", "a", "d"])
    found = _ordinals_among(keys, [pa.array(["a", "b"]), pa.array(["d"])])
    assert found is not None
    assert found.tolist() == [1, 2]
    none_in_between = _ordinals_among(keys, [])
    assert none_in_between is not None
    assert none_in_between.tolist() == []
    assert _ordinals_among(keys, None) is None
    # Keys that do not compare (a type changed between chunks): probe every row at the turn.
    assert _ordinals_among(keys, [pa.array([1, 2])]) is None
