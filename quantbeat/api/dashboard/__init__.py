"""The dashboard: server-rendered pages (Jinja2) over the same services as the API.

Pages: ``/`` (overview), ``/signals``, ``/closing-bet``, ``/track-record``, ``/backtests``
(and ``/backtests/{run_id}``), ``/data``, ``/login``, ``/logout``; static files under
``/static``. Charts are inline SVG drawn on the server; nothing is fetched from another
origin (the pages work offline). See :mod:`quantbeat.api.dashboard.pages`.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from quantbeat.api.dashboard.pages import STATIC, router


def include(app: FastAPI) -> None:
    """Mount the dashboard's pages and static files on ``app``."""
    app.mount("/static", StaticFiles(directory=STATIC), name="dashboard-static")
    app.include_router(router)
