"""API routes: the deployment's health in detail."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from quantbeat.api.security import Reader
from quantbeat.services.health import Overall

router = APIRouter(tags=["health"])


@router.get(
    "/health/detail",
    summary="Every component's state, latency and reason",
    responses={503: {"description": "Unhealthy (the body is the same report)"}},
)
def health_detail(request: Request, _: Reader) -> JSONResponse:
    """The report of ``quantbeat health`` (cached 5 s): ``status``, ``reasons`` and per
    component its state, latency and a sentence naming why. 503 when unhealthy."""
    report = request.app.state.health.get()
    body: dict[str, Any] = report.as_dict()
    code = 503 if report.status is Overall.UNHEALTHY else 200
    return JSONResponse(body, status_code=code, headers={"Cache-Control": "no-store"})
