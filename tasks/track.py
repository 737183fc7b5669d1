"""Track-record tasks (``cpu`` queue): follow the stored signals to their exits
(:mod:`quantbeat.services.track_record`). Both are idempotent: the rules are pure and only
changed outcomes are written, so a re-run (or a redelivery) writes nothing."""

from __future__ import annotations

from typing import Any

from quant.errors import ValidationError
from quantbeat.services import signal_history, track_record
from quantbeat.services.args import parse_date
from workers.app import app


def _strategy(value: object) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise ValidationError(
        f"strategy must be a strategy name or null, got {value!r}", field="strategy", value=value
    )


@app.task(name="quantbeat.track.update")
def update(as_of: str | None = None, strategy: str | None = None) -> dict[str, Any]:
    """Follow every signal up to ``as_of`` (ISO date; default today in
    ``QUANTBEAT_TIMEZONE``) whose outcome is missing, unfinished or of older rules, on the
    bars through ``as_of`` (:func:`quantbeat.services.track_record.update`). Returns
    ``{"as_of", "followed", "inserted", "updated", "unchanged", "states", "rules",
    "seconds"}``."""
    day = None if as_of is None else parse_date(as_of, field="as_of")
    return track_record.update(day, strategy=_strategy(strategy))


@app.task(name="quantbeat.track.recompute")
def recompute(as_of: str | None = None, strategy: str | None = None) -> dict[str, Any]:
    """Follow every stored signal (of ``strategy`` when given) from scratch under the current
    rules and costs (:func:`quantbeat.services.track_record.recompute`); rows that come out
    the same are not rewritten. Returns what :func:`update` returns."""
    day = None if as_of is None else parse_date(as_of, field="as_of")
    return track_record.recompute(day, strategy=_strategy(strategy))


@app.task(name="quantbeat.track.backfill")
def backfill(
    since: str | None = None, until: str | None = None, strategy: str | None = None
) -> dict[str, Any]:
    """Write the scheduled strategies' (or ``strategy``'s) past daily signals from ``since``
    to ``until`` (ISO dates; default: the stored bars' range), replayed without look-ahead by
    their backtest strategies (:func:`quantbeat.services.signal_history.backfill`); stored
    rows and scanned days are left alone, so a re-run inserts nothing."""
    return signal_history.backfill(
        None if since is None else parse_date(since, field="since"),
        None if until is None else parse_date(until, field="until"),
        strategy=_strategy(strategy),
    )
