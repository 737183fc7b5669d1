"""The market's state: reference series (KRX indices, sector ETFs, USD/KRW) and the Market
Gate with sector strength (domain notes §7).

* :func:`collect_reference` fetches the daily bars of the configured series from the
  reference source (:func:`quantbeat.infra.sources.reference_source`), checks them
  (:func:`quant.market.quality.check_reference_bars`: rows that cannot be facts go to
  ``data_rejections``, the rest is stored) and upserts them — incremental from the latest
  stored session, or ``QUANTBEAT_REFERENCE_BACKFILL_DAYS`` back on a first run.
* :func:`compute_gate` reads a year of those bars aligned on KRX sessions, computes the gate,
  the sector ranking and KODEX 200's status (:mod:`quant.gate`), stores them with their
  inputs and parameters (``market_gates``), and records a ``gate.changed`` event
  (notifications) when the colour differs from the previous stored gate.
* :func:`gate_report` / :func:`sectors_report` read what is stored, for the CLI and the API.

USD/KRW trades on days KRX does not (and the other way round): the gate uses the latest rate
at or before the session, at most :data:`FX_STALE_SESSIONS` sessions old, and says which day
it is from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import structlog

from db.engine import session_scope
from db.models import MarketGateRow
from db.reference import (
    any_simulated,
    ensure_series,
    gate_before,
    gate_history,
    latest_bar_date,
    latest_gate,
    load_bars,
    series_names,
    store_gate,
    upsert_bars,
)
from db.snapshots import series_snapshots
from db.store import as_utc, record_rejections
from quant.errors import NotFound, ValidationError
from quant.gate import (
    KODEX_200,
    UNKNOWN,
    GateParams,
    Series,
    kodex_status,
    market_gate,
    sector_strength,
)
from quant.gate_config import parse_sector_etfs
from quant.market.quality import check_reference_bars
from quant.market.types import (
    KRX_INDICES,
    USDKRW,
    ReferenceKind,
    ReferenceSeries,
)
from quantbeat.infra.settings import Settings, get_settings
from quantbeat.infra.sources import krx_calendar, latest_krx_session, reference_source
from quantbeat.services import notify

log = structlog.get_logger(__name__)

KOSPI, KOSDAQ, KOSPI200 = "1001", "2001", "1028"
#: Sessions of history the gate reads (a year: KODEX 200's MA200 needs 200).
GATE_SESSIONS = 260
#: The latest USD/KRW rate may be this many KRX sessions older than the gate's session.
FX_STALE_SESSIONS = 3
#: When the daily gate is taken: the session's close (KST).
CLOSE = dt.time(15, 30)


def is_krx_session(day: dt.date) -> bool:
    """Whether ``day`` is a KRX trading session (the XKRX calendar)."""
    return krx_calendar().is_session(day)


def configured_series(settings: Settings | None = None) -> list[ReferenceSeries]:
    """The series collected: the three KRX indices, the sector ETFs of
    ``QUANTBEAT_SECTOR_ETFS`` and USD/KRW."""
    s = settings or get_settings()
    return [
        *(ReferenceSeries(code, ReferenceKind.INDEX, name) for code, name in KRX_INDICES.items()),
        *(
            ReferenceSeries(code, ReferenceKind.ETF, name)
            for code, name in parse_sector_etfs(s.sector_etfs).items()
        ),
        ReferenceSeries(USDKRW, ReferenceKind.FX, "USD/KRW"),
    ]


def collect_reference(start: dt.date | None = None, end: dt.date | None = None) -> dict[str, Any]:
    """Collect the configured series' daily bars for ``[start, end]`` (default: from the day
    after the oldest latest stored bar — or ``QUANTBEAT_REFERENCE_BACKFILL_DAYS`` back when a
    series has none — to the latest closed KRX session). Returns ``{"start", "end",
    "series", "bars": {"inserted", "updated", "unchanged"}, "rejected", "source",
    "simulated"}``.

    Raises:
        quant.errors.ValidationError: ``start`` after ``end``.
        quant.errors.ConfigError: the market source provides no reference bars.
        quant.errors.TransientError: the provider failed in a way worth retrying.
    """
    settings = get_settings()
    series = configured_series(settings)
    source = reference_source(settings)
    last = end or latest_krx_session(settings)
    if start is not None and start > last:
        raise ValidationError(
            f"start {start.isoformat()} is after end {last.isoformat()}",
            field="start",
            value=start.isoformat(),
        )
    if start is None:
        with session_scope() as session:
            latest = latest_bar_date(session, [s.code for s in series])
        start = (
            latest + dt.timedelta(days=1)
            if latest is not None
            else last - dt.timedelta(days=settings.reference_backfill_days)
        )
    if start > last:  # incremental and up to date
        return _collected(start, last, series, None, 0, source.name, source.simulated)
    frame = source.reference_bars(start, last, series)
    kept, rejections = check_reference_bars(frame)
    known = {s.code for s in series}
    stray = ~kept["code"].astype(str).isin(known)
    if stray.any():  # a provider answering a series it was not asked for: not stored
        kept = kept.loc[~stray].reset_index(drop=True)
    with session_scope() as session:
        ids = ensure_series(session, series, source=source.name, simulated=source.simulated)
        counts = upsert_bars(session, kept, ids, source=source.name)
        record_rejections(session, rejections, source=source.name, seen_at=dt.datetime.now(dt.UTC))
    if rejections:
        log.warning("reference.rejected", rows=len(rejections), first=rejections[0].detail)
    return _collected(
        start, last, series, asdict(counts), len(rejections), source.name, source.simulated
    )


def _collected(
    start: dt.date,
    end: dt.date,
    series: list[ReferenceSeries],
    counts: Mapping[str, int] | None,
    rejected: int,
    source: str,
    simulated: bool,
) -> dict[str, Any]:
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "series": len(series),
        "bars": dict(counts or {"inserted": 0, "updated": 0, "unchanged": 0}),
        "rejected": rejected,
        "source": source,
        "simulated": simulated,
    }


def _series(found: Mapping[str, tuple[np.ndarray, np.ndarray]], code: str) -> Series | None:
    """The aligned series of ``code``, or ``None`` when it has no bar on the last session."""
    if code not in found:
        return None
    close, volume = found[code]
    if np.isnan(close[-1]):
        return None
    has_volume = bool(np.isfinite(volume).any())
    return Series(close, volume if has_volume else None)


def _fx(
    found: Mapping[str, tuple[np.ndarray, np.ndarray]], sessions: list[dt.date]
) -> tuple[np.ndarray | None, str | None]:
    """USD/KRW closes with the latest rate carried to the gate's session when it is at most
    :data:`FX_STALE_SESSIONS` sessions old; and the day of that rate."""
    if USDKRW not in found:
        return None, None
    close = found[USDKRW][0].copy()
    present = np.flatnonzero(np.isfinite(close))
    if not len(present) or len(close) - 1 - int(present[-1]) > FX_STALE_SESSIONS:
        return None, None
    at = int(present[-1])
    close[at:] = close[at]
    return close, sessions[at].isoformat()


def _as_of(trade_date: dt.date, settings: Settings) -> dt.datetime:
    return dt.datetime.combine(trade_date, CLOSE, tzinfo=ZoneInfo(settings.timezone))


def compute_gate(
    trade_date: dt.date | None = None,
    *,
    as_of: dt.datetime | None = None,
    phase: str = "daily",
    params: GateParams | None = None,
) -> dict[str, Any]:
    """Compute, store and return the Market Gate of ``trade_date`` (default: the latest closed
    KRX session) as of ``as_of`` (default: that session's close, 15:30 KST), with the sector
    ranking and KODEX 200's status (see the module). With ``phase="snapshot"`` the session's
    bar of each index and ETF is its latest intraday snapshot at or before ``as_of`` (the day
    so far: the last price, the volume traded until then). A colour different from the
    previous stored gate records a ``gate.changed`` event (notifications). Missing inputs
    give an ``UNKNOWN`` gate with the reason — stored too, so the gap is visible. Returns
    :func:`gate_row_dict` of the row.

    Raises:
        quant.errors.ValidationError: ``trade_date`` is not a KRX session, ``as_of`` is naive.
    """
    settings = get_settings()
    calendar = krx_calendar()
    day = trade_date or latest_krx_session(settings)
    if not calendar.is_session(day):
        raise ValidationError(
            f"{day.isoformat()} is not a KRX session", field="trade_date", value=day.isoformat()
        )
    moment = as_of or _as_of(day, settings)
    if moment.tzinfo is None:
        raise ValidationError("as_of must be timezone-aware", field="as_of", value=str(moment))
    chosen = params or GateParams()
    sessions = calendar.sessions(day - dt.timedelta(days=GATE_SESSIONS * 2), day)[-GATE_SESSIONS:]
    etfs = parse_sector_etfs(settings.sector_etfs)
    codes = [KOSPI, KOSDAQ, KOSPI200, USDKRW, KODEX_200, *etfs]
    with session_scope() as session:
        found = load_bars(session, codes, sessions)
        names = {**series_names(session), **etfs}
        simulated = any_simulated(session, codes)
        partial = series_snapshots(session, day, moment) if phase == "snapshot" else {}
    for code, (_taken, last, volume) in partial.items():
        # the day so far as the session's bar: the last price, the volume traded until now
        if code not in found:
            found[code] = (np.full(len(sessions), np.nan), np.full(len(sessions), np.nan))
        found[code][0][-1] = last
        found[code][1][-1] = np.nan if volume is None else volume
    kospi, kodex = _series(found, KOSPI), _series(found, KODEX_200)
    fx, fx_day = _fx(found, sessions)
    gate = market_gate(
        kospi=kospi,
        kosdaq=_series(found, KOSDAQ),
        usdkrw=fx,
        kodex200=kodex,
        params=chosen,
    )
    sectors = sector_strength(
        {code: _series(found, code) for code in etfs}, names, kospi or kodex, chosen
    )
    status, status_reason = (
        kodex_status(found[KODEX_200][0], chosen)
        if KODEX_200 in found
        else (UNKNOWN, "no KODEX 200 bars")
    )
    components = {**gate.components, "usdkrw_date": fx_day, "kodex200_status": status_reason}
    fields = {
        "phase": phase,
        "color": gate.color,
        "score": gate.score,
        "reason": gate.reason,
        "usdkrw": gate.usdkrw,
        "fx_warning": gate.fx_warning,
        "components": components,
        "sectors": sectors.as_dict(),
        "kodex_status": status,
        "params": chosen.as_dict(),
        "simulated": simulated,
    }
    with session_scope() as session:
        previous = gate_before(session, moment)
        row = store_gate(session, trade_date=day, as_of=moment, fields=fields)
        changed = previous is not None and previous.color != gate.color
        if changed:
            assert previous is not None
            notify.record(
                session,
                "gate.changed",
                key=f"gate_changed:{moment.isoformat()}",
                payload={
                    "previous": previous.color,
                    "current": gate.color,
                    "previous_as_of": as_utc(previous.as_of).astimezone(moment.tzinfo).isoformat(),
                    "as_of": moment.isoformat(),
                    "score": gate.score,
                    "reason": gate.reason,
                },
                at=moment,
                trade_date=day,
                simulated=simulated,
            )
        out = gate_row_dict(row)
    log.info("gate.computed", trade_date=day.isoformat(), color=gate.color, score=gate.score,
             changed=changed)  # fmt: skip
    return out


def gate_row_dict(row: MarketGateRow) -> dict[str, Any]:
    """A stored gate as JSON-safe data."""
    return {
        "trade_date": row.trade_date.isoformat(),
        "as_of": as_utc(row.as_of).isoformat(),
        "phase": row.phase,
        "color": row.color,
        "score": None if row.score is None else round(row.score, 2),
        "reason": row.reason,
        "usdkrw": row.usdkrw,
        "fx_warning": row.fx_warning,
        "components": row.components,
        "sectors": row.sectors,
        "kodex_status": row.kodex_status,
        "params": row.params,
        "simulated": row.simulated,
    }


def gate_report(trade_date: dt.date | None = None) -> dict[str, Any]:
    """The latest stored gate of ``trade_date`` (default: of any session).

    Raises:
        quant.errors.NotFound: no gate is stored (for that session).
    """
    with session_scope() as session:
        row = latest_gate(session, trade_date)
        if row is None:
            where = f" for {trade_date.isoformat()}" if trade_date else ""
            raise NotFound(
                f"no Market Gate stored{where}: collect the reference series and compute it "
                "(quantbeat gate --compute)"
            )
        return gate_row_dict(row)


def gate_history_report(limit: int = 30) -> list[dict[str, Any]]:
    """The ``limit`` latest stored gates (one per session and phase), newest first."""
    with session_scope() as session:
        return [gate_row_dict(r) for r in gate_history(session, limit=limit)]
