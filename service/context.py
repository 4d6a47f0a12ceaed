"""What every request handler shares: settings, database, Prefect client, catalog, limiter."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from prefect.client.orchestration import PrefectClient
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from service.catalog import Catalog
from service.errors import ServiceError
from service.keys import ApiKey, hash_key, verify_key
from service.ratelimit import KeyRateLimiter
from service.settings import Settings


@dataclass
class Services:
    """Created once by the app's lifespan."""

    settings: Settings
    engine: Engine
    client: PrefectClient
    catalog: Catalog
    limiter: KeyRateLimiter
    results: dict[str, Any] = field(default_factory=dict)  # finished runs' summaries
    estimates: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    keys: dict[str, tuple[float, ApiKey]] = field(default_factory=dict)  # hash -> (until, key)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


KEY_CACHE_SECONDS = 5.0
MAX_CACHED_KEYS = 10_000
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="Your batchflows key")


Ctx = Annotated[Services, Depends(services)]


async def caller(key: Annotated[str | None, Depends(_api_key)], ctx: Ctx) -> ApiKey:
    """The verified key of the request; 401 when missing, unknown or revoked.

    A verified key is remembered for KEY_CACHE_SECONDS (by its hash, never the key itself),
    which saves a database read per poll; a revocation takes effect within that time.
    """
    digest = hash_key(key) if key else ""
    cached = ctx.keys.get(digest)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    found = await run_in_threadpool(verify_key, ctx.engine, key) if key else None
    if found is None:
        raise ServiceError(401, "unauthorized", "a valid X-API-Key header is required")
    if len(ctx.keys) >= MAX_CACHED_KEYS:
        ctx.keys.clear()
    ctx.keys[digest] = (time.monotonic() + KEY_CACHE_SECONDS, found)
    return found


Key = Annotated[ApiKey, Depends(caller)]


def admin(key: ApiKey) -> None:
    """403 unless the key has the admin scope."""
    if not key.admin:
        raise ServiceError(403, "forbidden", "this needs a key with the admin scope")


def rate_limit(ctx: Services, key: ApiKey) -> None:
    """429 with Retry-After once the key used its submissions for the last minute."""
    wait = ctx.limiter.acquire(key.key_id)
    if wait is not None:
        raise ServiceError(
            429,
            "rate_limited",
            f"at most {ctx.limiter.per_minute} submissions per minute per key; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )
