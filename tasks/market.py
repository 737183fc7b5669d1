"""The market's state (``io`` queue): the Market Gate and sector strength of a session
(see :mod:`quantbeat.services.market`)."""

from __future__ import annotations

from typing import Any

from quantbeat.services.args import parse_date, parse_moment
from quantbeat.services.market import collect_reference, compute_gate, is_krx_session
from quantbeat.services.snapshots import take_snapshot
from workers.app import app


@app.task(name="quantbeat.market.collect_reference")
def collect_reference_bars(start: str | None = None, end: str | None = None) -> dict[str, Any]:
    """Collect the daily bars of the KRX indices, the sector ETFs (``QUANTBEAT_SECTOR_ETFS``)
    and USD/KRW for ``[start, end]`` (ISO dates; default: incremental up to the latest closed
    session). Idempotent (upserts). Returns ``{"start", "end", "series", "bars": {"inserted",
    "updated", "unchanged"}, "rejected", "source", "simulated"}``. Raises ValidationError for a
    malformed date or ``start`` after ``end``."""
    return collect_reference(
        None if start is None else parse_date(start, field="start"),
        None if end is None else parse_date(end, field="end"),
    )


@app.task(name="quantbeat.market.gate")
def gate(trade_date: str | None = None) -> dict[str, Any]:
    """Compute and store the Market Gate, sector ranking and KODEX 200 status of
    ``trade_date`` (ISO date; default: the latest closed session) as of its close; a colour
    change records a ``gate.changed`` event. Idempotent (the gate of one moment is replaced).
    Returns the stored gate; a day that is not a KRX session has none (``{"trade_date",
    "skipped": why}``, as the day's collection finds nothing). Raises ValidationError for a
    malformed date."""
    day = None if trade_date is None else parse_date(trade_date, field="trade_date")
    if day is not None and not is_krx_session(day):
        return {"trade_date": day.isoformat(), "skipped": "not a KRX session: no gate"}
    return compute_gate(day)


@app.task(name="quantbeat.market.snapshot")
def snapshot(at: str | None = None) -> dict[str, Any]:
    """Take the intraday snapshot (the day so far) of every listed KRX instrument and index
    as of ``at`` (ISO datetime with offset; default: now); outside a KRX session nothing is
    taken (``{"skipped": why}``). Idempotent (a moment already stored is kept). Returns the
    counts. Raises ValidationError for a malformed or naive ``at``."""
    return take_snapshot(None if at is None else parse_moment(at, field="at"))
