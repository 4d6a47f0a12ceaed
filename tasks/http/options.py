"""The HTTP parameters every API flow takes, described once.

The flows take them as flat keyword parameters (so the Prefect UI renders a plain form) and
gather them into `HttpOptions`. Their descriptions live here, on the model's fields, and
`documents_http_parameters` appends them to a flow's `Args:` docstring section, from which
Prefect builds the form's help texts.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.errors import InputError
from tasks.http.retry import RetryPolicy

MAX_CONCURRENCY = 32

Fn = TypeVar("Fn", bound=Callable[..., Any])


class HttpOptions(BaseModel):
    """How a run talks to the API: limits, credentials, timeouts, retries, circuit breaker."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    headers: dict[str, str] | None = Field(
        default=None, description="Extra request headers; never credentials (use auth_block)."
    )
    auth_block: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block whose value is sent as the Authorization "
        "header.",
    )
    rate_limit_per_second: float = Field(
        default=10.0, gt=0, description="Never more requests than this in any one-second window."
    )
    max_concurrency: int = Field(
        default=5,
        ge=1,
        le=MAX_CONCURRENCY,
        description=f"Requests in flight at once, and the largest burst (1 to {MAX_CONCURRENCY}).",
    )
    global_limit: str | None = Field(
        default=None,
        description="Name of a Prefect global concurrency limit with slot decay, used as a rate "
        "limit shared by every run and worker, on top of rate_limit_per_second.",
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="Timeout of each request (connect at most 10 s)."
    )
    max_retries: int = Field(
        default=5, ge=0, description="Retries of a request after transport errors, 408, 429, 5xx."
    )
    backoff_seconds: float = Field(
        default=0.5, gt=0, description="First retry pause; doubles on each retry, with jitter."
    )
    max_retry_after: float = Field(
        default=60.0,
        ge=0,
        description="Longest Retry-After honoured; a longer one fails the request at once "
        "(a push dead-letters it).",
    )
    breaker_failures: int = Field(
        default=5, ge=1, description="Consecutive failures after which requests pause."
    )
    breaker_pause_seconds: float = Field(
        default=30.0, ge=0, description="How long requests pause when the circuit opens."
    )

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, object]) -> HttpOptions:
        """The HTTP options among a flow's parameters; a bad value names its parameter."""
        try:
            return cls.model_validate(parameters)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(part) for part in first["loc"])
            raise InputError(f"parameter {name!r}: {first['msg']}") from exc

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy these options describe."""
        return RetryPolicy(
            max_retries=self.max_retries,
            backoff_seconds=self.backoff_seconds,
            max_retry_after=self.max_retry_after,
        )


def documents_http_parameters(fn: Fn) -> Fn:
    """Append the descriptions of the HTTP parameters `fn` takes to its `Args:` section.

    Apply it under `@flow`, so Prefect reads the completed docstring.
    """
    taken = inspect.signature(fn).parameters
    entries = [
        textwrap.fill(
            f"{name}: {field.description}",
            width=92,
            initial_indent=" " * 8,
            subsequent_indent=" " * 12,
        )
        for name, field in HttpOptions.model_fields.items()
        if name in taken
    ]
    fn.__doc__ = (fn.__doc__ or "").rstrip() + "\n" + "\n".join(entries) + "\n    "
    return fn


def api_task_runner() -> TaskRunner[PrefectFuture[Any]]:
    """Threads for a run's tasks: enough for the largest `max_concurrency` plus writers."""
    # ThreadPoolTaskRunner is a TaskRunner of concurrent futures, which mypy cannot widen.
    return cast(
        "TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner(max_workers=2 * MAX_CONCURRENCY)
    )
