"""Recipient addresses and header values: checked before they reach a message.

A value with CR or LF in it could end a header and start another (`Bcc:` injection), so it is
refused everywhere a header is built; an address must be one plain `local@domain`.
"""

from __future__ import annotations

import re

from tasks.errors import InputError

# One plain address: no display name, no comments, no spaces; a dotted domain.
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
MAX_ADDRESS = 254


class InvalidAddress(InputError):
    """An address that no message may be sent to; the campaign records it as failed."""


def check_header(value: str, name: str) -> str:
    """`value` if it is safe as the header `name`: no CR, LF or NUL (header injection)."""
    if any(char in value for char in "\r\n\x00"):
        raise InputError(f"header {name}: {value!r} contains a line break; refused (injection)")
    return value


def normalize_address(value: object, where: str = "address") -> str:
    """The address in the form the ledger keys on (trimmed, lower case), or InvalidAddress."""
    if not isinstance(value, str):
        raise InvalidAddress(f"{where}: {value!r} is not an e-mail address")
    check = value.strip()
    if any(char in check for char in "\r\n\x00"):
        raise InvalidAddress(f"{where}: {value!r} contains a line break; refused (injection)")
    if len(check) > MAX_ADDRESS or not _ADDRESS.match(check):
        raise InvalidAddress(f"{where}: {value!r} is not a plain address like name@example.com")
    return check.lower()
