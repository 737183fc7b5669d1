"""Data gaps: the sessions (or crypto bars) each listed instrument is missing, and the backfill
that fills them (:mod:`quant.market.gaps` finds them; this module reads the stored dates and
queues the collection tasks)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from db.engine import session_scope
from db.store import stored_bar_starts, stored_dates
from quant.errors import ValidationError
from quant.market.gaps import Gap, covering_ranges, find_gaps, without_rows
from quant.market.types import Market
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import krx_calendar, latest_krx_session
from quantbeat.services.backfill import DEFAULT_CHUNK_SESSIONS, plan_backfill, send_plan
from quantbeat.services.collect import (
    Dataset,
    floor_to_interval,
    interval_minutes,
    last_sessions,
)
from quantbeat.services.dispatch import TaskCall, send

#: The window a KRX gap report looks at by default: this many sessions up to its end.
DEFAULT_WINDOW_SESSIONS = 260
#: The window a crypto gap report looks at by default, up to the last closed bar.
DEFAULT_CRYPTO_WINDOW = dt.timedelta(days=7)


@dataclass
class KrxGaps:
    """Missing sessions of ``dataset`` per listed instrument of ``markets`` in the window
    ``start``..``end`` (its KRX ``sessions``):
    ``gaps`` (runs of missing sessions), ``listed`` (instruments judged), and ``empty``
    (listed instruments with no row in the window: new listings or old imports, not judged)."""

    dataset: Dataset
    markets: tuple[Market, ...]
    start: dt.date
    end: dt.date
    sessions: list[dt.date]
    listed: int
    gaps: list[Gap]
    empty: list[tuple[str, str]]

    @property
    def missing(self) -> int:
        """Missing instrument-sessions in all."""
        return sum(g.sessions for g in self.gaps)


def krx_gaps(
    dataset: Dataset,
    markets: tuple[Market, ...],
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> KrxGaps:
    """The gaps of ``dataset`` for ``markets`` in the KRX sessions of ``[start, end]``
    (default end: the latest closed session; default start: :data:`DEFAULT_WINDOW_SESSIONS`
    sessions before it).

    Raises:
        quant.errors.ValidationError: ``start`` after ``end``, or a date the calendar does not
            know.
    """
    last = end if end is not None else latest_krx_session(get_settings())
    first = start if start is not None else last_sessions(last, DEFAULT_WINDOW_SESSIONS)[0]
    sessions = krx_calendar().sessions(first, last)
    with session_scope() as session:
        stored = stored_dates(session, dataset.table, [m.value for m in markets], first, last)
    return KrxGaps(
        dataset=dataset,
        markets=markets,
        start=first,
        end=last,
        sessions=sessions,
        listed=len(stored),
        gaps=find_gaps(stored, sessions),
        empty=without_rows(stored, sessions),
    )


def krx_gaps_dict(report: KrxGaps, *, limit: int = 30) -> dict[str, Any]:
    """``report`` JSON-ready, as ``quantbeat data gaps`` prints it: the window, sessions,
    listed instruments, how many gaps and missing instrument-sessions, the listed instruments
    without a row in the window (``empty``: count and the first ten), and the first ``limit``
    gaps (by market, ticker, first missing session)."""
    return {
        "dataset": report.dataset.name,
        "markets": [m.value for m in report.markets],
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        "sessions": len(report.sessions),
        "listed": report.listed,
        "gap_count": len(report.gaps),
        "missing": report.missing,
        "empty": len(report.empty),
        "empty_examples": [f"{m}:{t}" for m, t in report.empty[:10]],
        "gaps": [_gap_dict(g) for g in report.gaps[:limit]],
    }


def _gap_dict(gap: Gap) -> dict[str, Any]:
    return {
        "instrument": f"{gap.market}:{gap.ticker}",
        "first": gap.first.isoformat(),
        "last": gap.last.isoformat(),
        "missing": gap.sessions,
    }


def backfill_krx_gaps(report: KrxGaps, *, market: Market | None = None) -> int:
    """Queue the ``quantbeat.collect.daily_range`` tasks that fill ``report``'s gaps (the
    fewest covering session ranges, split by :func:`quantbeat.services.backfill.plan_backfill`)
    for ``market`` (``None``: both KRX markets); returns how many were queued."""
    index = {d: i for i, d in enumerate(report.sessions)}
    calls = [
        call
        for first, last in covering_ranges(report.gaps, report.sessions)
        for call in plan_backfill(
            report.sessions[index[first] : index[last] + 1],
            chunk_sessions=DEFAULT_CHUNK_SESSIONS,
            datasets=(report.dataset.name,),
            market=market.value if market else None,
        )
    ]
    return len(send_plan(calls))


@dataclass
class CryptoGaps:
    """Missing ``interval`` bars per listed crypto market between ``start`` and ``end`` (bar
    starts, UTC, inclusive): ``points`` are the expected bar starts, ``listed`` the markets
    judged, ``gaps`` the runs of missing bars (:attr:`Gap.sessions` counts bars)."""

    interval: str
    start: dt.datetime
    end: dt.datetime
    points: list[dt.datetime]
    listed: int
    gaps: list[Gap]

    @property
    def missing(self) -> int:
        """Missing bars in all."""
        return sum(g.sessions for g in self.gaps)


def crypto_gaps(interval: str, start: dt.datetime, end: dt.datetime) -> CryptoGaps:
    """Gaps in stored crypto bars of ``interval`` between the bar starts ``start`` and
    ``end`` (UTC, inclusive; see :func:`crypto_window` for the default window): every step,
    24/7, from each market's first stored bar in the window. Upbit emits no bar for a minute
    without trades, so thin markets show short gaps that a backfill cannot fill.

    Raises:
        quant.errors.ValidationError: ``start`` after ``end``.
    """
    if start > end:
        raise ValidationError(f"start {start} is after end {end}", field="start", value=start)
    step = dt.timedelta(minutes=interval_minutes(interval))
    points = [start + i * step for i in range(int((end - start) / step) + 1)]
    with session_scope() as session:
        stored = stored_bar_starts(session, Market.UPBIT.value, interval, start, end)
    return CryptoGaps(
        interval=interval,
        start=start,
        end=end,
        points=points,
        listed=len(stored),
        gaps=find_gaps(stored, points),
    )


def crypto_gaps_dict(report: CryptoGaps, *, limit: int = 30) -> dict[str, Any]:
    """``report`` JSON-ready, as ``quantbeat data gaps --dataset crypto-<interval>`` prints
    it: the window (bar starts, UTC), expected bars, listed markets, how many gaps and
    missing bars, and the first ``limit`` gaps (``missing`` counts bars)."""
    return {
        "dataset": f"crypto-{report.interval}",
        "interval": report.interval,
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        "bars": len(report.points),
        "listed": report.listed,
        "gap_count": len(report.gaps),
        "missing": report.missing,
        "gaps": [_gap_dict(g) for g in report.gaps[:limit]],
    }


def crypto_window(
    interval: str, start: dt.datetime | None = None, end: dt.datetime | None = None
) -> tuple[dt.datetime, dt.datetime]:
    """The window of a crypto gap report: ``end`` defaults to the start of the last closed
    ``interval`` bar, ``start`` to :data:`DEFAULT_CRYPTO_WINDOW` before ``end``."""
    minutes = interval_minutes(interval)
    last = end
    if last is None:
        last = floor_to_interval(dt.datetime.now(dt.UTC), minutes) - dt.timedelta(minutes=minutes)
    return (start if start is not None else last - DEFAULT_CRYPTO_WINDOW), last


def backfill_crypto_gaps(report: CryptoGaps) -> int:
    """Queue one ``quantbeat.collect.crypto_candles`` task per covering range of ``report``'s
    gaps, for the markets that have gaps; returns how many were queued."""
    step = dt.timedelta(minutes=interval_minutes(report.interval))
    tickers = sorted({g.ticker for g in report.gaps})
    ranges = covering_ranges(report.gaps, report.points)
    for first, last in ranges:
        send(
            TaskCall(
                "quantbeat.collect.crypto_candles",
                {
                    "interval": report.interval,
                    "start": first.isoformat(),
                    "end": (last + step).isoformat(),
                    "tickers": tickers,
                },
            )
        )
    return len(ranges)
