"""Submit tasks ahead in a bounded window and take their results in submission order, or as
they finish where order does not matter.

Work fans out concurrently, while results arrive in order (pages and chunks commit in order)
and at most `ahead` submissions are pending at once, so memory stays flat however long the
input. Taken as they finish, a task that ends early is replaced at once instead of waiting
for the ones submitted before it. On the first failure nothing more is submitted, the work
in flight is let finish (a half-done transaction is never abandoned) and the error is raised.
Inside a flow run the flow's task runner takes the submissions; outside one (a flow's `.fn()`
called directly) a thread-pool runner of our own does, so the flows work either way.
With `timeout_seconds`, each task must finish within that long after the one before it in
order finished (so waiting for its turn does not count against it); otherwise the window
raises `TaskTimedOut`, after the same wait for the work in flight.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from prefect import Task
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.common.deadline import TaskTimedOut

Result = TypeVar("Result")
Submit = Callable[[dict[str, Any]], PrefectFuture[Result]]


def results_in_order(
    task: Task[..., Result],
    parameter_sets: Iterable[dict[str, Any]],
    ahead: int,
    on_error: Callable[[BaseException], None] | None = None,
    timeout_seconds: float | None = None,
) -> Iterator[Result]:
    """`task`'s result for each set of parameters, in order, up to `ahead` submitted at once.

    `on_error` runs on the first failure before the work in flight is waited for, so it can
    tell that work to stop early (an import marks itself failed, and waiting chunks give up).
    """
    positions = itertools.count()

    def oldest(window: list[PrefectFuture[Result]]) -> Result:
        return _result_within(window.pop(0), timeout_seconds, task.name, next(positions))

    return _windowed(task, parameter_sets, ahead, oldest, on_error)


def results_as_finished(
    task: Task[..., Result], parameter_sets: Iterable[dict[str, Any]], ahead: int
) -> Iterator[Result]:
    """`task`'s result for each set of parameters in the order they finish, `ahead` at once:
    the next set is submitted as soon as any task ends (e-mail batches and API push groups,
    whose totals add up whatever the order)."""

    def first_finished(window: list[PrefectFuture[Result]]) -> Result:
        finished = next(as_completed(window))
        window.remove(finished)
        return finished.result()

    return _windowed(task, parameter_sets, ahead, first_finished)


def _windowed(
    task: Task[..., Result],
    parameter_sets: Iterable[dict[str, Any]],
    ahead: int,
    take: Callable[[list[PrefectFuture[Result]]], Result],
    on_error: Callable[[BaseException], None] | None = None,
) -> Iterator[Result]:
    """The window both orders share: `take` removes one future from the window and returns
    its result; after each, one more set is submitted; on a failure the rest is waited for."""
    with _submitter(task, ahead) as submit:
        pending = iter(parameter_sets)
        window = [submit(parameters) for parameters in itertools.islice(pending, ahead)]
        while window:
            try:
                result = take(window)
            except BaseException as exc:
                if on_error is not None:
                    on_error(exc)
                for future in window:
                    future.wait()
                raise
            window.extend(submit(parameters) for parameters in itertools.islice(pending, 1))
            yield result


def _result_within(
    future: PrefectFuture[Result], seconds: float | None, name: str, position: int
) -> Result:
    """The future's result, waiting at most `seconds` (None: as long as it takes)."""
    started = time.monotonic()
    try:
        return future.result(timeout=seconds)
    except TimeoutError as exc:
        if seconds is None or time.monotonic() - started < seconds:
            raise  # the task's own TimeoutError, not our wait
        raise TaskTimedOut(
            f"{name} number {position + 1} did not finish within its time limit of "
            f"{seconds:g} s (counted from when the one before it finished); the run stops, "
            "and that task commits whole or rolls back"
        ) from exc


@contextmanager
def _submitter(task: Task[..., Result], ahead: int) -> Iterator[Submit[Result]]:
    """The flow run's task runner, or outside a run a thread per submission in the window."""
    if FlowRunContext.get() is not None:
        yield lambda parameters: task.submit(**parameters)
        return
    runner: ThreadPoolTaskRunner[Result] = ThreadPoolTaskRunner(max_workers=max(ahead, 1))
    with runner:
        yield lambda parameters: runner.submit(task, parameters)
