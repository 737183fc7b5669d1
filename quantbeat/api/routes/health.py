"""API routes: the deployment's health in detail."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from quantbeat.api.problems import PROBLEM_MEDIA_TYPE
from quantbeat.api.security import Reader
from quantbeat.services.health import Overall

router = APIRouter(tags=["health"])

OverallState = Literal["healthy", "degraded", "unhealthy"]


class ComponentState(BaseModel):
    """One component's state: its status, whether the deployment needs it, how long the
    check took (ms) and a sentence naming why."""

    model_config = ConfigDict(extra="allow")

    status: str
    critical: bool
    latency_ms: float | None
    message: str
    details: dict[str, Any]


class HealthDetail(BaseModel):
    """The report of ``quantbeat health``: the overall state, its exit code, when it was
    checked (UTC) and how long it took (ms), the reasons and every component."""

    model_config = ConfigDict(extra="allow")

    status: OverallState
    exit_code: int = Field(description="quantbeat health's exit code: 0, 1 degraded, 2 unhealthy")
    checked_at: dt.datetime
    duration_ms: float
    reasons: list[str]
    components: dict[str, ComponentState]


@router.get(
    "/health/detail",
    summary="Every component's state, latency and reason",
    responses={
        200: {"model": HealthDetail, "description": "Healthy or degraded"},
        503: {
            "model": HealthDetail,
            "description": "Unhealthy (the body is the same report); or, as a problem, the "
            "API key could not be checked",
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
    },
)
def health_detail(request: Request, _: Reader) -> JSONResponse:
    """The report of ``quantbeat health`` (cached 5 s): ``status``, ``reasons`` and per
    component its state, latency and a sentence naming why. 503 when unhealthy."""
    report = request.app.state.health.get()
    body: dict[str, Any] = report.as_dict()
    code = 503 if report.status is Overall.UNHEALTHY else 200
    return JSONResponse(body, status_code=code, headers={"Cache-Control": "no-store"})
