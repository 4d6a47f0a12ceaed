"""Signed download links: HMAC-SHA256 of the job id and expiry, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode


def sign(secret: bytes, job_id: str, expires: int) -> str:
    """The signature of a link to `job_id`'s export valid until the Unix time `expires`."""
    return hmac.new(secret, f"export:{job_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def download_path(secret: bytes, job_id: str, expires: int) -> str:
    """The signed path a client follows without an API key."""
    query = urlencode({"expires": expires, "signature": sign(secret, job_id, expires)})
    return f"/api/batch/exports/{job_id}/download?{query}"


def check(secret: bytes, job_id: str, expires: int, signature: str, now: float) -> str | None:
    """None if the link is good; "forged" for a bad signature, "expired" once past its time.

    The signature is checked first, so a forged link never learns whether it expired; it is
    compared as bytes, so a non-ASCII one is simply forged (a str compare would raise).
    """
    if not hmac.compare_digest(sign(secret, job_id, expires).encode(), signature.encode()):
        return "forged"
    if now >= expires:
        return "expired"
    return None
