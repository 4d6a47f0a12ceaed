"""The task window taken as tasks finish: a slow task never holds back the next submission."""

from __future__ import annotations

import threading
import time

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from tasks.common.task_window import results_as_finished
from tests.flows.helpers import OUTSIDE_A_FLOW_RUN

pytestmark = pytest.mark.timeout(120)

_lock = threading.Lock()
_running: list[int] = []
_most: list[int] = [0]
_times: dict[str, tuple[float, float]] = {}


@task(cache_policy=NO_CACHE)
def pause(name: str, seconds: float) -> str:
    """Sleep `seconds`, counting how many run at once and when each ran; fail when asked."""
    with _lock:
        _running.append(1)
        _most[0] = max(_most[0], len(_running))
    started = time.monotonic()
    try:
        time.sleep(seconds)
        if name == "broken":
            raise ValueError("broken on purpose")
        return name
    finally:
        with _lock:
            _running.pop()
            _times[name] = (started, time.monotonic())


def _sets(*pairs: tuple[str, float]) -> list[dict[str, object]]:
    return [{"name": name, "seconds": seconds} for name, seconds in pairs]


@flow
def window(sets: list[dict[str, object]], ahead: int) -> list[str]:
    return list(results_as_finished(pause, sets, ahead))


def test_a_slow_task_does_not_hold_back_the_ones_after_it() -> None:
    _most[0] = 0
    sets = _sets(("slow", 5.0), *((f"fast-{i}", 0.1) for i in range(5)))
    names = window(sets, 2)
    assert names == [*(f"fast-{i}" for i in range(5)), "slow"]
    assert _most[0] == 2
    # In submission order only fast-0 would run beside the slow task, the rest after it.
    slow_ended = _times["slow"][1]
    assert all(_times[f"fast-{i}"][1] < slow_ended for i in range(5))


@OUTSIDE_A_FLOW_RUN
def test_outside_a_flow_run_too() -> None:
    sets = _sets(("slow", 1.0), ("fast", 0.1))
    assert list(results_as_finished(pause, sets, 2)) == ["fast", "slow"]


@OUTSIDE_A_FLOW_RUN
def test_a_failure_stops_submitting_and_waits_for_the_work_in_flight() -> None:
    sets = _sets(("broken", 0.1), ("long", 1.0), ("never", 0.1))
    seen: list[str] = []
    with pytest.raises(ValueError, match="broken on purpose"):
        seen.extend(results_as_finished(pause, sets, 2))
    assert seen == []
    assert _running == []  # "long" finished before the error was raised
