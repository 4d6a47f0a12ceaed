"""Repeated keys inside a chunk: first wins for skip, last wins for update, error names both."""

from __future__ import annotations

import pyarrow as pa

from tasks.imports.dedup import dedup, key_hashes

VALUES = pa.table({"email": ["a", "b", "a", "c", "a"], "n": [1, 2, 3, 4, 5]})


def test_skip_keeps_first_occurrences() -> None:
    kept = dedup(VALUES, ["email"], "skip")
    assert kept.keep.tolist() == [0, 1, 3]
    assert kept.superseded == 2


def test_update_keeps_last_occurrences() -> None:
    kept = dedup(VALUES, ["email"], "update")
    assert kept.keep.tolist() == [1, 3, 4]
    assert kept.superseded == 2


def test_error_mode_names_the_first_repeat_and_its_original() -> None:
    kept = dedup(VALUES, ["email"], "error")
    assert kept.repeated == (0, 2)


def test_composite_keys() -> None:
    table = pa.table({"a": [1, 1, 2, 1], "b": ["x", "y", "x", "x"]})
    assert dedup(table, ["a", "b"], "skip").keep.tolist() == [0, 1, 2]


def test_key_hashes_are_deterministic_and_tell_keys_apart() -> None:
    high, low = key_hashes(VALUES, ["email"])
    again_high, again_low = key_hashes(VALUES, ["email"])
    assert high.tolist() == again_high.tolist()
    assert low.tolist() == again_low.tolist()
    pairs = set(zip(high.tolist(), low.tolist(), strict=True))
    assert len(pairs) == 3
