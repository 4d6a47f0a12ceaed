"""Which failures are retried: only those a second attempt can fix.

Tasks take `**transient_retries(n)`: `retry_if_transient` with exponential backoff and jitter,
so a deadlock, a database restart or a dropped connection is retried, while bad input fails at
once. Work done inside a task or flow without a task run of its own retries the same errors
through `transient_attempts`.
"""

from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import exponential_backoff
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

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


def transient_attempts(attempts: int) -> Retrying:
    """A tenacity loop of up to `attempts` tries that retries transient errors only, backing
    off from 0.1 s to 2 s with jitter: for one transaction that is not a task of its own."""
    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(multiplier=0.1, max=2.0, jitter=0.1),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )
