"""Intraday snapshots: during a KRX session, the day so far of every listed instrument, the
KRX indices and the sector ETFs, stored with the moment it was taken (``intraday_snapshots``),
as history — the day's final bar replaces none of them — followed by the Market Gate of that
moment. Beat takes one every ``QUANTBEAT_SNAPSHOT_EVERY`` minutes from 09:00 to 15:30 KST
(entry ``market-snapshots``); the closing-bet decision takes its own at its decision time.

Rows are checked like reference bars (:func:`quant.market.quality.check_reference_bars`: a
price that is not finite and positive, high below low, an open or last price outside the
range, negative volume): a bad row is recorded in ``data_rejections`` (dataset
``intraday_snapshots``) and the rest stored. Tickers the database does not list are not
stored and are counted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import structlog

from db.engine import session_scope
from db.reference import ensure_series
from db.snapshots import latest_snapshot, store_snapshots, tickers_to_ids
from db.store import record_rejections
from quant.errors import ValidationError
from quant.market.quality import Rejection, check_reference_bars
from quant.market.types import (
    KRX_MARKETS,
    REFERENCE_BAR_COLUMNS,
    SNAPSHOT_COLUMNS,
    ReferenceKind,
)
from quantbeat.infra.settings import Settings, get_settings
from quantbeat.infra.sources import krx_calendar, snapshot_source
from quantbeat.services.market import compute_gate, configured_series

log = structlog.get_logger(__name__)

#: The regular KRX session (KST).
SESSION_OPEN, SESSION_CLOSE = dt.time(9, 0), dt.time(15, 30)


def session_moment(at: dt.datetime, settings: Settings) -> tuple[dt.date, dt.datetime] | None:
    """``(session day, at in KST)`` when ``at`` falls inside a KRX session (09:00–15:30 on a
    session day), else ``None``.

    Raises:
        quant.errors.ValidationError: ``at`` is naive.
    """
    if at.tzinfo is None:
        raise ValidationError("at must be timezone-aware", field="at", value=str(at))
    local = at.astimezone(ZoneInfo(settings.timezone))
    if not krx_calendar().is_session(local.date()):
        return None
    if not SESSION_OPEN <= local.time() <= SESSION_CLOSE:
        return None
    return local.date(), local


def _checked(
    frame: pd.DataFrame, day: dt.date, dataset: str
) -> tuple[pd.DataFrame, list[Rejection]]:
    missing = [c for c in SNAPSHOT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"snapshot frame lacks columns {missing} (has {list(frame.columns)})",
            field="columns",
            value=missing,
        )
    bars = frame.rename(columns={"ticker": "code"}).assign(trade_date=day)
    kept, rejections = check_reference_bars(bars.loc[:, list(REFERENCE_BAR_COLUMNS)])
    return kept, [replace(r, dataset=dataset) for r in rejections]


def _optional(value: Any) -> float | None:
    number = float(value)
    return None if number != number else number  # NaN → None


def take_snapshot(at: dt.datetime | None = None) -> dict[str, Any]:
    """Take and store the snapshot of every listed KRX instrument, index and sector ETF as of
    ``at`` (aware; default: now), then the Market Gate of that moment
    (:func:`quantbeat.services.market.compute_gate` with ``phase="snapshot"``: a colour
    change records its event). Outside a session nothing is taken (``{"skipped": why}``).
    Returns ``{"trade_date", "taken_at", "instruments", "indices" (indices and ETFs),
    "gate", "new", "rejected", "unknown_tickers", "source", "simulated"}``.

    Raises:
        quant.errors.ValidationError: ``at`` is naive, or the source answered a frame
            without the snapshot columns.
        quant.errors.ConfigError: the market source provides no snapshots.
        quant.errors.TransientError: the provider failed in a way worth retrying.
    """
    settings = get_settings()
    moment = at or dt.datetime.now(dt.UTC)
    found = session_moment(moment, settings)
    if found is None:
        local = moment.astimezone(ZoneInfo(settings.timezone))
        return {"skipped": f"{local:%Y-%m-%d %H:%M} KST is outside a KRX session"}
    day, local = found
    source = snapshot_source(settings)
    stocks, bad_stocks = _checked(source.market_snapshot(day, local), day, "intraday_snapshots")
    # the indices and the sector ETFs the Market Gate reads (USD/KRW keeps its daily rate)
    series = [s for s in configured_series(settings) if s.kind != ReferenceKind.FX]
    indices, bad_indices = _checked(
        source.index_snapshot(day, local, [s.code for s in series]), day, "intraday_snapshots"
    )
    taken_at = local.astimezone(dt.UTC).replace(microsecond=0)
    common = {"trade_date": day, "taken_at": taken_at, "source": source.name,
              "simulated": bool(source.simulated)}  # fmt: skip
    with session_scope() as session:
        ids = tickers_to_ids(session, [m.value for m in KRX_MARKETS])
        series_ids = ensure_series(session, series, source=source.name,
                                   simulated=bool(source.simulated))  # fmt: skip
        rows: list[dict[str, Any]] = []
        unknown = 0
        targets = ((stocks, "instrument_id", ids), (indices, "series_id", series_ids))
        for frame, key, lookup in targets:
            for code, o, h, lo, c, v, val in frame[
                ["code", "open", "high", "low", "close", "volume", "value"]
            ].itertuples(index=False, name=None):
                ident = lookup.get(str(code))
                if ident is None:
                    unknown += 1
                    continue
                rows.append({**common, key: ident, "open": float(o), "high": float(h),
                             "low": float(lo), "close": float(c), "volume": _optional(v),
                             "value": _optional(val)})  # fmt: skip
        new = store_snapshots(session, rows)
        record_rejections(
            session, [*bad_stocks, *bad_indices], source=source.name,
            seen_at=dt.datetime.now(dt.UTC),
        )  # fmt: skip
    gate = compute_gate(day, as_of=taken_at, phase="snapshot")
    result = {
        "trade_date": day.isoformat(),
        "taken_at": taken_at.isoformat(),
        "instruments": len(stocks),
        "indices": len(indices),
        "gate": gate["color"],
        "new": new,
        "rejected": len(bad_stocks) + len(bad_indices),
        "unknown_tickers": unknown,
        "source": source.name,
        "simulated": bool(source.simulated),
    }
    log.info("snapshot.taken", **result)
    return result


def snapshot_age(now: dt.datetime | None = None) -> tuple[bool, dt.datetime | None]:
    """(whether a KRX session is open at ``now``, when the latest snapshot was taken) — what
    ``health`` judges freshness from.

    Raises:
        sqlalchemy errors: the database is unreachable.
    """
    settings = get_settings()
    moment = now or dt.datetime.now(dt.UTC)
    open_now = session_moment(moment, settings) is not None
    with session_scope() as session:
        return open_now, latest_snapshot(session)
