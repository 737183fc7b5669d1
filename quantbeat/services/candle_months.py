"""Keeping the packed candle months (:mod:`db.candle_months`) up to date: after each daily
collection, every ten minutes from beat (``quantbeat.ops.pack_candles``, for writes made
elsewhere: imports, corrections), and on demand (``quantbeat db pack-candles``).

Packing is a cache's upkeep: it never fails a collection (a refused lock or a database error
is logged and left to the next pass) and is a no-op on SQLite (the embedded default)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from db import candle_months
from db.engine import session_scope

log = structlog.get_logger(__name__)


def pack(
    *, limit: int | None = None, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Pack the months written since they were last packed (at most ``limit``). Returns
    :meth:`db.candle_months.PackReport.as_dict`; ``busy`` when writers held the candles past
    the lock timeout (the rest waits for the next pass).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database failed (other than the lock timeout).
    """
    report = candle_months.pack(session_scope, limit=limit, progress=progress).as_dict()
    if report["listed"] or report["busy"]:
        log.info("candles.packed", **report)
    return report


def pack_after_write() -> dict[str, Any] | None:
    """:func:`pack` after a write of daily candles, never raising: its report, or ``None``
    when the database failed (logged; the next pass packs)."""
    try:
        return pack()
    except Exception as exc:  # a cache's upkeep never fails the write before it
        log.warning("candles.pack_failed", error=f"{type(exc).__name__}: {exc}")
        return None


def status() -> dict[str, Any]:
    """``{"supported", "stale"}``: whether the database keeps packed months, and how many wait."""
    with session_scope() as session:
        return {
            "supported": candle_months.supported(session),
            "stale": candle_months.stale_count(session),
        }
