"""The FastAPI application: routes, shared services, and error bodies that never leak.

Every error reads `{"error": {"code", "message", "fields"?}}`; stack traces, database URLs and
secrets stay in the service's own log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from starlette.exceptions import HTTPException

from service import routes_admin, routes_jobs
from service.catalog import Catalog, deployment_names
from service.context import Services
from service.errors import ServiceError, not_found
from service.ratelimit import KeyRateLimiter
from service.settings import Settings, load_settings
from service.tables import service_engine

log = logging.getLogger("batchflows.service")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(ServiceError(status, code, message).body(), status_code=status)


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = {
        ".".join(str(p) for p in error["loc"] if p not in ("query", "path", "body"))
        or "request": str(error["msg"])
        for error in exc.errors()
    }
    body = ServiceError(400, "invalid_request", "invalid request", fields).body()
    return JSONResponse(body, status_code=400)


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _error(exc.status_code, code, str(exc.detail))


async def _missing(_request: Request, _exc: Exception) -> JSONResponse:
    error = not_found()
    return JSONResponse(error.body(), status_code=error.status)


async def _upstream(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("Prefect API error: %s", type(exc).__name__)
    return _error(502, "upstream_error", "the Prefect API did not accept or answer the request")


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return _error(500, "internal_error", "the service failed; the operator can find why in its log")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service, its Prefect client and database opened for the app's lifetime."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = service_engine(settings.database)
        async with get_client() as client:
            app.state.services = Services(
                settings=settings,
                engine=engine,
                client=client,
                catalog=Catalog(client, deployment_names()),
                limiter=KeyRateLimiter(settings.rate_limit_per_minute),
            )
            yield

    app = FastAPI(
        title="batchflows jobs",
        description="Batch jobs over Prefect: submit, follow, page results, cancel.",
        version="1",
        lifespan=lifespan,
    )
    app.include_router(routes_jobs.router)
    app.include_router(routes_admin.router)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(ObjectNotFound, _missing)
    app.add_exception_handler(httpx.HTTPError, _upstream)
    app.add_exception_handler(Exception, _unexpected)
    return app
