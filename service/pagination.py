"""Opaque cursors for paginated lists: base64url of a small JSON value."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple

from service.errors import ServiceError, bad_request

MAX_LIMIT = 500
MAX_SEEN = 200  # ids in a keyset cursor: about 10 kB of URL


class Keyset(NamedTuple):
    """Where the next page of a list newest first starts: at or before `before`, leaving out
    the items of that very time already listed (`seen`), so new items never shift pages."""

    before: datetime
    seen: list[str]


def encode_cursor(position: Any) -> str:
    """A cursor for `position` (an offset, the last id seen or a Keyset)."""
    if isinstance(position, Keyset):
        position = {"before": position.before.isoformat(), "seen": position.seen}
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The position (an offset or an id) a cursor holds, None for the first page; 400 for a
    cursor this API never gave."""
    if not cursor:
        return None
    position = _decoded(cursor)
    if not isinstance(position, int) or isinstance(position, bool) or position < 0:
        raise _not_ours()
    return position


def decode_keyset(cursor: str | None) -> Keyset | None:
    """The keyset a cursor holds, None for the first page; 400 for a cursor this API never
    gave (a time without its zone, ids that are not UUIDs, more than MAX_SEEN of them)."""
    if not cursor:
        return None
    value = _decoded(cursor)
    try:
        if not isinstance(value, dict) or set(value) != {"before", "seen"}:
            raise ValueError(value)
        before = datetime.fromisoformat(value["before"])
        seen = value["seen"]
        if before.tzinfo is None or not isinstance(seen, list) or len(seen) > MAX_SEEN:
            raise ValueError(value)
        return Keyset(before.astimezone(UTC), [str(uuid.UUID(item)) for item in seen])
    except (TypeError, ValueError, AttributeError, OverflowError) as error:
        raise _not_ours() from error


def _decoded(cursor: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def _not_ours() -> ServiceError:
    return bad_request("cursor: not a cursor this API gave", {"cursor": "invalid cursor"})


def check_limit(limit: int) -> int:
    """A page size between 1 and MAX_LIMIT."""
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"limit: must be between 1 and {MAX_LIMIT}", {"limit": f"1..{MAX_LIMIT}"})
    return limit


def page(items: list[Any], limit: int, next_position: Any) -> dict[str, Any]:
    """`{"items", "nextCursor"}`: one item beyond `limit` was fetched to know if more exist."""
    more = len(items) > limit and next_position is not None
    return {
        "items": items[:limit],
        "nextCursor": encode_cursor(next_position) if more else None,
    }
