"""Keeping the packed candle months (:mod:`db.candle_months`) up to date: after each daily
collection, every ten minutes from beat (``quantbeat.ops.pack_candles``, for writes made
elsewhere: imports, corrections), and on demand (``quantbeat db pack-candles``).

Packing is a cache's upkeep: it never fails a collection (a database error is logged and
left to the next pass; a pass already running elsewhere is left to finish), and it is a
no-op on SQLite (the embedded default)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from db import candle_months
from db.engine import session_scope

log = structlog.get_logger(__name__)


def pack(
    *, limit: int | None = None, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Pack the months written since they were last packed (at most ``limit``). Returns
    :meth:`db.candle_months.PackReport.as_dict`; ``busy`` when another pass was running
    (the rest is left to it).

    Raises:
        ValueError: ``limit`` below 1.
        sqlalchemy.exc.SQLAlchemyError: the database failed.
    """
    report = candle_months.pack(session_scope, limit=limit, progress=progress).as_dict()
    if report["listed"] or report["busy"]:
        log.info("candles.packed", **report)
    return report


#: Months a collection packs after its write (a day is 2,500; beat packs what is left after
#: a larger write, such as an import, in the background).
AFTER_WRITE_LIMIT = 2 * candle_months.BATCH


def pack_after_write() -> dict[str, Any] | None:
    """:func:`pack` (at most :data:`AFTER_WRITE_LIMIT` months) after a write of daily
    candles: its report, or ``None`` when the database failed (logged; the next pass packs).
    Other errors — a task's soft time limit among them — propagate."""
    try:
        return pack(limit=AFTER_WRITE_LIMIT)
    except SQLAlchemyError as exc:  # a cache's upkeep never fails the write before it
        log.warning("candles.pack_failed", error=f"{type(exc).__name__}: {exc}")
        return None


def status() -> dict[str, Any]:
    """``{"supported", "stale"}``: whether the database keeps packed months, and how many wait."""
    with session_scope() as session:
        return {
            "supported": candle_months.supported(session),
            "stale": candle_months.stale_count(session),
        }
