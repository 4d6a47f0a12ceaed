"""batchflows errors.

BatchflowsError
├── InputError             bad parameters or input: never retried, shown to the user
│   ├── CsvFormatError     file, line, column, what was expected
│   ├── SchemaError        table or column missing, type mismatch, no unique key
│   ├── ConflictError      on_conflict="error" met a key that already exists
│   └── ErrorRateExceeded  rejected/processed went over max_error_rate
├── TargetError            the database refused: retried when `transient`
└── ApiError               HTTP failures, carrying the status and a body excerpt
    ├── RateLimited        429, carries retry_after
    └── ServerError        5xx, retried

A message names the thing and the fix: `users.csv line 20418: column "age": "12.5" is not an
integer`. Flows let these propagate, so the Prefect UI shows the message as the failure reason.
"""

from __future__ import annotations


class BatchflowsError(Exception):
    """Root of every error batchflows raises on purpose."""


class InputError(BatchflowsError):
    """The caller's parameters or input file are wrong; retrying cannot help."""


class CsvFormatError(InputError):
    """A CSV file is malformed in a way that stops the whole import."""

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path} line {line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class SchemaError(InputError):
    """The target table does not fit the request (missing table, column or unique key)."""


class ConflictError(InputError):
    """A record's key already exists and on_conflict='error' forbids touching it."""


class ErrorRateExceeded(InputError):
    """Too many rows were rejected; the import stops before writing more."""


class TargetError(BatchflowsError):
    """The database refused an operation; `transient` says whether a retry may succeed."""

    def __init__(self, message: str, *, transient: bool) -> None:
        self.transient = transient
        super().__init__(message)


class ApiError(BatchflowsError):
    """An HTTP request failed for good, or was refused by the API.

    `retry_after` is the pause in seconds the API asked for (`Retry-After`), if it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.retry_after = retry_after
        super().__init__(message)


class RateLimited(ApiError):
    """The API answered 429; `retry_after` is its requested pause in seconds, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None, body: str = "") -> None:
        super().__init__(message, status=429, body=body, retry_after=retry_after)


class ServerError(ApiError):
    """The API answered 5xx (a 503 may carry `retry_after`); worth retrying with backoff."""
