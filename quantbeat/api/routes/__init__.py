"""The ``/api/v1`` routes, one module per area, each exposing ``router``."""

from __future__ import annotations

from importlib import import_module

from fastapi import FastAPI

from quantbeat.api.problems import PROBLEM_RESPONSES

#: Route modules under ``quantbeat.api.routes``, in the order the OpenAPI document lists them.
MODULES = (
    "market",
    "signals",
    "scans",
    "closing",
    "track",
    "portfolios",
    "backtests",
    "indicators",
    "analyses",
    "data",
    "admin",
    "health",
)


def include_all(app: FastAPI, prefix: str) -> None:
    """Mount every area's router under ``prefix``."""
    for name in MODULES:
        module = import_module(f"quantbeat.api.routes.{name}")
        app.include_router(module.router, prefix=prefix, responses=PROBLEM_RESPONSES)
