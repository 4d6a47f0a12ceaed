"""Which failures Prefect retries: only those a second attempt can fix.

Tasks take `**transient_retries(n)`: `retry_if_transient` with exponential backoff and jitter,
so a deadlock, a database restart or a dropped connection is retried, while bad input fails at
once.
"""

from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import exponential_backoff

from tasks.errors import TargetError

BACKOFF_FACTOR = 2
JITTER = 0.5


def is_transient(error: BaseException) -> bool:
    """A database error that a retry may overcome."""
    return isinstance(error, TargetError) and error.transient


def retry_if_transient(task: Task[..., object], task_run: TaskRun, state: State[object]) -> bool:
    """Prefect `retry_condition_fn`: retry transient errors only."""
    del task, task_run
    error = state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and is_transient(error)


def transient_retries(retries: int) -> dict[str, Any]:
    """`@task` options: up to `retries` retries of transient errors, backing off with jitter."""
    return {
        "retries": retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=BACKOFF_FACTOR),
        "retry_jitter_factor": JITTER,
        "retry_condition_fn": retry_if_transient,
    }
