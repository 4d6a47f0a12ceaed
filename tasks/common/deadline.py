"""Whole-run time limits: a flow's `timeout_seconds` parameter, enforced over its whole body.

A flow adopts it with one decorator under `@flow` and one parameter:

    @flow(name="import-csv")
    @with_run_timeout
    def import_csv(..., timeout_seconds: RunTimeoutSeconds = 6 * HOUR) -> ImportResult:

When the time is up the flow body gets `RunTimedOut` where it stands, and Prefect ends the
run Failed with its message as the reason. Work in flight is not abandoned half-way: the
flows' task windows (tasks/common/task_window.py) let submitted tasks finish or roll back
before the error propagates, and every task commits its work with its ledger row in one
transaction, so a rerun resumes. Each task of a window has its own limit too
(`results_in_order(..., timeout_seconds=...)`, raising `TaskTimedOut`); a statement blocked
inside the database is bounded by the session's `lock_timeout` and `statement_timeout`
(tasks/db/engine.py), since no Python-level timeout can interrupt a blocking call. (Prefect's
own task `timeout_seconds` cannot either in a thread, and warns so on every task run.)

In the main thread (a worker's flow-run process, a script) the limit is a SIGALRM timer; in
any other thread, or under an outer alarm, Prefect's watcher-thread cancel scope raises it.
Every flow names its whole-run limit `timeout_seconds` (the API flows call the limit of one
HTTP request `request_timeout_seconds`).
"""

from __future__ import annotations

import functools
import inspect
import signal
import threading
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated, ParamSpec, TypeVar

from prefect._internal.concurrency.cancellation import CancelledError, cancel_sync_after
from pydantic import Field

from tasks.errors import BatchflowsError

MINUTE = 60
HOUR = 60 * MINUTE

RunTimeoutSeconds = Annotated[
    float,
    Field(
        gt=0,
        description="Whole-run time limit in seconds: past it the run ends Failed (TimedOut); "
        "committed work stays and a rerun resumes.",
    ),
]
TaskTimeoutSeconds = Annotated[
    float,
    Field(gt=0, description="Time limit in seconds of one task (a chunk, a part, a page)."),
]

P = ParamSpec("P")
R = TypeVar("R")


class RunTimedOut(BatchflowsError):
    """A flow run went past its `timeout_seconds`.

    Not a `TimeoutError` on purpose: Prefect's futures turn any `TimeoutError` raised while
    waiting into their own message, which would lose the reason.
    """


class TaskTimedOut(BatchflowsError):
    """A task in a window (a chunk, a part, a page) went past its own time limit."""


@contextmanager
def run_deadline(
    seconds: float | None, what: str, parameter: str = "timeout_seconds"
) -> Iterator[None]:
    """Raise `RunTimedOut` inside the block once `seconds` have passed (None: no limit)."""
    if seconds is None:
        yield
        return
    if seconds <= 0:
        raise RunTimedOutParameter(parameter, seconds)
    message = (
        f"{what} exceeded {parameter}={seconds:g}: stopped after {seconds:g} s. Work that "
        "committed stays; rerun it (same import_id for an import) to resume, or raise "
        f"{parameter}"
    )
    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None):
        with _alarm(seconds, message):
            yield
        return
    try:
        with cancel_sync_after(seconds):
            yield
    except CancelledError as exc:
        raise RunTimedOut(message) from exc


class RunTimedOutParameter(BatchflowsError, ValueError):
    """A time limit that is not positive (the flow's schema refuses it; direct calls too)."""

    def __init__(self, parameter: str, seconds: float) -> None:
        super().__init__(f"parameter {parameter!r}: {seconds:g} must be greater than 0")


@contextmanager
def _alarm(seconds: float, message: str) -> Iterator[None]:
    """A one-shot SIGALRM that raises `RunTimedOut(message)` in the main thread."""

    def expire(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        raise RunTimedOut(message)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def with_run_timeout(function: Callable[P, R]) -> Callable[P, R]:
    """Decorator (under `@flow`): the whole call is limited by its `timeout_seconds` argument.

    The signature and annotations stay the flow function's, so Prefect's parameter schema
    (with `gt=0` from `RunTimeoutSeconds`) and validation see the original.
    """

    parameter = "timeout_seconds"
    signature = inspect.signature(function)
    if parameter not in signature.parameters:
        raise TypeError(f"{function.__name__} has no parameter {parameter!r} to limit it by")
    what = f"flow run of {function.__name__.replace('_', '-')}"

    @functools.wraps(function)
    def limited(*args: P.args, **kwargs: P.kwargs) -> R:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        seconds = bound.arguments[parameter]
        with run_deadline(seconds, what, parameter):
            return function(*args, **kwargs)

    # Prefect validates parameters against the wrapper's module namespace, where the flow
    # module's names (under `from __future__ import annotations`) do not resolve: hand it
    # the signature with its annotations already resolved.
    hints = typing.get_type_hints(function, include_extras=True)
    limited.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in signature.parameters.values()
        ],
        return_annotation=hints.get("return", signature.return_annotation),
    )
    return limited
