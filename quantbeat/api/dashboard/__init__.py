"""The dashboard: server-rendered pages (Jinja2) over the same services as the API."""

from __future__ import annotations

from fastapi import FastAPI


def include(app: FastAPI) -> None:
    """Mount the dashboard's pages and static files on ``app``."""
