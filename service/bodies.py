"""Request bodies read with a size limit, so a JSON body never grows past it in memory."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from service.errors import bad_request
from service.uploads import too_large


async def read_json(request: Request, limit: int) -> Any:
    """The JSON body; 413 past `limit` bytes, 400 when it is not JSON."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise too_large(limit)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("the body is not valid JSON", {"body": "invalid JSON"}) from None
