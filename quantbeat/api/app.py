"""The HTTP API and dashboard application (FastAPI), over :mod:`quantbeat.services`.

``create_app()`` builds it; ``quantbeat api`` serves it with uvicorn. Every route under
``/api/v1`` needs an API key with the route's scope (:mod:`quantbeat.api.security`); the
dashboard (``/``) signs in with a key once and keeps it in an HttpOnly cookie. Errors are
RFC 9457 problems (:mod:`quantbeat.api.problems`); every response carries ``X-Request-ID``;
successful JSON GETs carry an ``ETag`` and ``Cache-Control`` (:mod:`quantbeat.api.middleware`);
bodies over 1 kB are gzip-compressed for clients that accept it.

Unauthenticated: ``/health/live`` (the process answers), ``/health`` (overall state only),
``/metrics`` (Prometheus) and the OpenAPI document (``/api/v1/openapi.json``, ``/api/docs``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict
from starlette.middleware.gzip import GZipMiddleware

from quantbeat.api import problems
from quantbeat.api.dashboard import include as include_dashboard
from quantbeat.api.middleware import ConditionalGet, RequestContext
from quantbeat.api.readcache import DEFAULT_TTL, ReadCache
from quantbeat.api.routes import include_all
from quantbeat.api.security import KeyRateLimiter
from quantbeat.infra.metrics import exposition_registry
from quantbeat.infra.settings import Settings, get_settings
from quantbeat.services.health import CachedHealth, Overall, check_health

API_PREFIX = "/api/v1"
VERSION = "1.0.0"

_TAGS = [
    {"name": "market", "description": "Market Gate and sector strength"},
    {"name": "signals", "description": "Scan signals, their outcomes and snapshot prices"},
    {"name": "scans", "description": "Universe scan runs: state, counts, progress (SSE)"},
    {"name": "closing-bet", "description": "The closing bet (종가베팅): preliminary and final"},
    {"name": "track-record", "description": "KPIs of every signal followed"},
    {"name": "portfolios", "description": "Paper portfolios, positions and equity"},
    {"name": "backtests", "description": "Submit, follow, cancel and read backtests"},
    {"name": "indicators", "description": "Technical indicators (one, or a batch of ≤ 10)"},
    {"name": "analyses", "description": "Gemini analyses and news"},
    {"name": "data", "description": "Freshness, gaps and recent jobs of the stored data"},
    {"name": "admin", "description": "Jobs, dead letters and alerts (scope admin)"},
    {"name": "health", "description": "Health of the deployment"},
]


def create_app(settings: Settings | None = None, *, address: str | None = None) -> FastAPI:
    """The application. ``address`` is where it will listen (open mode needs loopback;
    default: ``settings.listen_address("api")``)."""
    settings = settings or get_settings()
    listen = address if address is not None else settings.listen_address("api")
    app = FastAPI(
        title="quantbeat",
        version=VERSION,
        summary="Market Gate, signals, the closing bet, the track record and backtests.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_tags=_TAGS,
    )
    app.state.settings = settings
    app.state.open = settings.api_open_on(listen)
    app.state.limiter = KeyRateLimiter(settings.redis_url)
    app.state.reads = ReadCache(min(DEFAULT_TTL, float(settings.api_cache_seconds)))
    app.state.health = CachedHealth(lambda: check_health(settings), ttl=5.0)
    problems.install(app)

    # Outermost last: the request id wraps everything, gzip compresses what ConditionalGet
    # hashed.
    app.add_middleware(ConditionalGet, prefix=API_PREFIX, max_age=settings.api_cache_seconds)
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "X-Request-ID",
                "Idempotency-Key",
                "If-None-Match",
            ],
            expose_headers=["X-Request-ID", "ETag", "Retry-After", "Location"],
        )
    # Level 6: most of level 9's ratio at a third of its CPU time on JSON.
    app.add_middleware(GZipMiddleware, minimum_size=1000, compresslevel=6)
    app.add_middleware(RequestContext, prefix=API_PREFIX)

    _service_routes(app)
    include_all(app, API_PREFIX)
    include_dashboard(app)
    return app


class HealthSummary(BaseModel):
    """The deployment's overall state and when it was checked (UTC)."""

    model_config = ConfigDict(extra="allow")

    status: Literal["healthy", "degraded", "unhealthy"]
    checked_at: dt.datetime


def _service_routes(app: FastAPI) -> None:
    @app.get("/health/live", tags=["health"], summary="The API process answers")
    async def live() -> dict[str, str]:  # async: never waits for a worker thread
        return {"status": "alive"}

    @app.get(
        "/health",
        tags=["health"],
        summary="Overall state (no key needed; details at /api/v1/health/detail)",
        responses={
            200: {"model": HealthSummary, "description": "Healthy or degraded"},
            503: {"model": HealthSummary, "description": "Unhealthy"},
        },
    )
    def health() -> JSONResponse:
        report = app.state.health.get()
        code = 503 if report.status is Overall.UNHEALTHY else 200
        return JSONResponse(
            {"status": report.status.value, "checked_at": report.as_dict()["checked_at"]},
            status_code=code,
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        data: Any = generate_latest(exposition_registry())
        return Response(data, media_type=CONTENT_TYPE_LATEST)
