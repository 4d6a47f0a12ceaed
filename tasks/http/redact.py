"""Secrets out of text: URLs without their credentials, messages without the run's secrets.

Every URL is passed through `redact_url` before it is logged, shown in an error or stored: the
userinfo (`user:password@`) becomes `***@` and the value of a query parameter whose name looks
like a credential (`api_key=`, `access_token=`, `signature=` ...) becomes `***`. A `Scrubber`
also removes the values of the run's own secrets (the Authorization header from the Secret
block) wherever an API echoes them back, e.g. in an error body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
CREDENTIAL_NAME = re.compile(
    r"token|key|secret|passw|pwd|auth|cookie|session|signature|credential", re.IGNORECASE
)
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s?#@]*@")
_QUERY_VALUE = re.compile(r"(?P<name>[?&;][^=&#\s;]+)=(?P<value>[^&#\s;]*)")
MIN_SECRET_CHARS = 4


def is_credential_name(name: str) -> bool:
    """Whether a header or query parameter name looks like it carries a credential."""
    return CREDENTIAL_NAME.search(name) is not None


def redact_url(text: str) -> str:
    """`text` with every URL's userinfo and credential-like query values masked."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _QUERY_VALUE.sub(
        lambda m: f"{m['name']}={MASK}" if is_credential_name(m["name"]) else m[0], text
    )


class Scrubber:
    """Masks the given secret values (and their parts after a scheme like `Bearer`) in text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        parts: set[str] = set()
        for secret in secrets:
            parts.add(secret)
            parts.update(secret.split()[1:])
        self._secrets = sorted((p for p in parts if len(p) >= MIN_SECRET_CHARS), key=len)[::-1]

    def __call__(self, text: str) -> str:
        """`text` with the secrets and URL credentials masked."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return redact_url(text)
