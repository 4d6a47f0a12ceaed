"""Repeated keys inside a chunk: first wins for skip, last wins for update, error names both."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_an_empty_chunk_keeps_nothing() -> None:
    assert dedup(VALUES.slice(0, 0), ["email"], "skip").keep.tolist() == []


def test_null_keys_repeat_each_other_in_error_mode() -> None:
    table = pa.table({"a": [1, None, 2, None], "b": ["x", None, "y", None]})
    assert dedup(table, ["a", "b"], "error").repeated == (1, 3)


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.none() | st.integers(0, 3), st.none() | st.sampled_from(["x", "y"])),
        max_size=30,
    ),
    mode=st.sampled_from(["skip", "update"]),
)
def test_arrow_grouping_keeps_what_pandas_duplicated_keeps(
    rows: list[tuple[int | None, str | None]], mode: str
) -> None:
    table = pa.table({"a": pa.array([r[0] for r in rows], pa.int64()), "b": [r[1] for r in rows]})
    frame = pd.DataFrame({"a": [r[0] for r in rows], "b": [r[1] for r in rows]}, dtype=object)
    repeats = frame.duplicated(keep="last" if mode == "update" else "first").to_numpy()

    kept = dedup(table, ["a", "b"], "update" if mode == "update" else "skip")

    assert kept.keep.tolist() == [i for i, repeat in enumerate(repeats) if not repeat]
    assert kept.superseded == int(repeats.sum())
