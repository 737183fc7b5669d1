"""The test worker app, plus a parent process that holds a pooled database connection before
the prefork pool forks — the situation in which sharing inherited connections breaks children.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init
from sqlalchemy import text

from tests.support.worker_app import app

__all__ = ["app"]


@worker_init.connect
def _open_a_connection_in_the_parent(**_: Any) -> None:
    from db.engine import get_engine

    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))  # returned to the pool, which the children inherit
