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
from typing import Annotated, Any, TypeVar, cast

from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.errors import InputError
from tasks.http.retry import RetryPolicy

MAX_CONCURRENCY = 32
MAX_RETRIES = 20

Fn = TypeVar("Fn", bound=Callable[..., Any])


PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
RatePerSecond = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Concurrency = Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)]
Retries = Annotated[int, Field(ge=0, le=MAX_RETRIES)]
Failures = Annotated[int, Field(ge=1)]


class HttpOptions(BaseModel):
    """How a run talks to the API: limits, credentials, timeouts, retries, circuit breaker.

    The flows declare the same parameters with the same constrained types (above), so the
    Prefect form refuses a bad value before a run is created.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    headers: dict[str, str] | None = Field(
        default=None, description="Extra request headers; never credentials (use auth_block)."
    )
    auth_block: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block whose value is sent as the Authorization "
        "header, only to the origin of base_url.",
    )
    rate_limit_per_second: RatePerSecond = Field(
        default=10.0, description="Never more requests than this in any one-second window."
    )
    max_concurrency: Concurrency = Field(
        default=5,
        description=f"Requests in flight at once, and the largest burst (1 to {MAX_CONCURRENCY}).",
    )
    global_limit: str | None = Field(
        default=None,
        description="Name of a Prefect global concurrency limit with slot decay, used as a rate "
        "limit shared by every run and worker, on top of rate_limit_per_second.",
    )
    request_timeout_seconds: PositiveSeconds = Field(
        default=30.0,
        description="Longest time one request may take as a whole, answer included (connect at "
        "most 10 s).",
    )
    max_retries: Retries = Field(
        default=5, description="Retries of a request after transport errors, 408, 429, 5xx."
    )
    backoff_seconds: PositiveSeconds = Field(
        default=0.5, description="First retry pause; doubles on each retry, with jitter."
    )
    max_retry_after: Seconds = Field(
        default=60.0,
        description="Longest Retry-After honoured; a longer one fails the request at once "
        "(a push dead-letters it).",
    )
    breaker_failures: Failures = Field(
        default=5,
        description="Consecutive failures after which the circuit opens: requests fail at once "
        "(a push dead-letters them, a pull fails).",
    )
    breaker_pause_seconds: Seconds = Field(
        default=30.0,
        description="How long the circuit stays open before one probe request may close it.",
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

    @classmethod
    def of(cls, **parameters: object) -> HttpOptions:
        """The options from a flow's HTTP parameters, by name; a bad value names its parameter."""
        return cls.from_parameters(parameters)

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
