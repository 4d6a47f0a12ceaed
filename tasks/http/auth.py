"""Request headers: the caller's plain headers, plus the Authorization header from a Secret block.

Secrets never travel as flow parameters (they would show in the UI and in the run's record):
`auth_block` names a Prefect `Secret` block whose value becomes the `Authorization` header (sent
to the origin of `base_url` only, see `tasks.http.caller`), and plain `headers` whose name looks
like a credential (`Authorization`, `Cookie`, `Private-Token`, `X-Api-Key`, `X-Goog-Api-Key`,
anything with token, key, secret, auth, cookie, session, signature ...) are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from prefect.blocks.system import Secret

from tasks.errors import InputError
from tasks.http.redact import is_credential_name


def plain_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """`headers` checked to carry no credentials."""
    checked = dict(headers or {})
    secret = sorted(name for name in checked if is_credential_name(name))
    if secret:
        raise InputError(
            f"parameter 'headers': {', '.join(secret)} must not be a plain parameter; save the "
            "credential as a Prefect Secret block and pass its name as 'auth_block'"
        )
    return checked


def auth_headers(auth_block: str | None) -> dict[str, str]:
    """`{"Authorization": <secret value>}` from the Secret block named `auth_block`, or `{}`."""
    if not auth_block:
        return {}
    try:
        secret = cast("Secret[str]", Secret.load(auth_block))
    except ValueError as exc:
        raise InputError(
            f"parameter 'auth_block': no Secret block named {auth_block!r}; create one whose "
            "value is the whole Authorization header, e.g. 'Bearer <token>'"
        ) from exc
    value = secret.get()
    if not isinstance(value, str) or not value.strip():
        raise InputError(
            f"parameter 'auth_block': Secret block {auth_block!r} must hold the Authorization "
            "header as a non-empty string"
        )
    return {"Authorization": value.strip()}
