"""The one error the service raises on purpose; app.py turns it into `{"error": {...}}`."""

from __future__ import annotations


class ServiceError(Exception):
    """An HTTP error with a stable code and a message safe to show to any client."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers

    def body(self) -> dict[str, object]:
        """The JSON error body."""
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        return {"error": error}


def not_found(what: str = "job") -> ServiceError:
    """The same 404 for a job that does not exist and another owner's job."""
    return ServiceError(404, "not_found", f"no such {what}")


def bad_request(message: str, fields: dict[str, str] | None = None) -> ServiceError:
    """400: the request itself is wrong."""
    return ServiceError(400, "invalid_request", message, fields)


def forbidden(message: str, fields: dict[str, str] | None = None) -> ServiceError:
    """403: the key lacks a scope, or a parameter reaches outside what its owner may touch."""
    return ServiceError(403, "forbidden", message, fields)
