"""Opaque cursors for paginated lists: base64url of a small JSON value."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from service.errors import bad_request

MAX_LIMIT = 500


def encode_cursor(position: Any) -> str:
    """A cursor for `position` (an offset or the last id seen)."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The position (an offset or an id) a cursor holds, None for the first page; 400 for a
    cursor this API never gave."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        position = None
    if not isinstance(position, int) or isinstance(position, bool) or position < 0:
        raise bad_request("cursor: not a cursor this API gave", {"cursor": "invalid cursor"})
    return position


def check_limit(limit: int) -> int:
    """A page size between 1 and MAX_LIMIT."""
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"limit: must be between 1 and {MAX_LIMIT}", {"limit": f"1..{MAX_LIMIT}"})
    return limit


def page(items: list[Any], limit: int, next_position: Any) -> dict[str, Any]:
    """`{"items", "nextCursor"}`: one item beyond `limit` was fetched to know if more exist."""
    more = len(items) > limit
    return {
        "items": items[:limit],
        "nextCursor": encode_cursor(next_position) if more else None,
    }
