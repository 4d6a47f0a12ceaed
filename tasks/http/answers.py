"""What an answer means: success, or the `ApiError` that describes it; its body, safely read.

Every message names the request with its URL redacted (`tasks.http.redact`), and every body
excerpt has the request's own credentials masked, so an API that echoes request headers cannot
put a token into a log line, an error or a dead letter.
"""

from __future__ import annotations

from typing import Any

import httpx

from tasks.errors import ApiError, RateLimited, ServerError
from tasks.http.redact import Scrubber, is_credential_name, redact_url
from tasks.http.retry import RetryPolicy, parse_retry_after

EXCERPT_CHARS = 300


def error_of(response: httpx.Response, policy: RetryPolicy, has_auth: bool) -> ApiError | None:
    """None for a success (2xx), else the error that describes the answer.

    A redirect is an error here: the caller follows only the redirects it allows, and
    reports the others with their reason.
    """
    status = response.status_code
    if status < 300:
        return None
    where = describe(response.request)
    body = excerpt(response)
    if status < 400:
        target = redact_url(response.headers.get("Location", "no Location"))
        return ApiError(
            f"{where}: {status} {response.reason_phrase} to {target}: not followed",
            status=status,
            body=body,
        )
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if policy.asks_too_long(retry_after):
        message = (
            f"{where}: {status} with Retry-After {retry_after:.0f} s, more than "
            f"max_retry_after={policy.max_retry_after:g} s; not waiting that long "
            "(raise max_retry_after or run later)"
        )
    else:
        message = f"{where}: {status} {response.reason_phrase}: {body!r}"
    if status == 429:
        return RateLimited(message, retry_after=retry_after, body=body)
    if status >= 500:
        return ServerError(message, status=status, body=body, retry_after=retry_after)
    if status in (401, 403):
        message += (
            "; check the credentials in the Secret block named by 'auth_block'"
            if has_auth
            else "; the API wants credentials: pass 'auth_block', a Prefect Secret block"
        )
    return ApiError(message, status=status, body=body, retry_after=retry_after)


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON body, or an `ApiError` saying what came instead."""
    try:
        return response.json()
    except ValueError as exc:
        kind = response.headers.get("Content-Type", "no content type")
        raise ApiError(
            f"{describe(response.request)}: the response is not JSON ({kind}): "
            f"{excerpt(response)!r}",
            status=response.status_code,
            body=excerpt(response),
        ) from exc


def excerpt(response: httpx.Response) -> str:
    """The start of a response body, undecodable bytes replaced, the request's secrets masked."""
    raw = response.content[: EXCERPT_CHARS * 4]
    try:
        text = raw.decode(response.encoding or "utf-8", errors="replace")
    except LookupError:
        text = raw.decode("utf-8", errors="replace")
    text = text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"
    return scrubber_for(response.request)(text)


def describe(request: httpx.Request) -> str:
    """`METHOD url` of a request, for messages, its URL redacted."""
    return f"{request.method} {redact_url(str(request.url))}"


def scrubber_for(request: httpx.Request) -> Scrubber:
    """A scrubber of the credential-like header values this request carried."""
    return Scrubber(value for name, value in request.headers.items() if is_credential_name(name))
