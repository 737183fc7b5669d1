"""Writes of the original system's migrated records (``quantbeat import original``).

Functions of a :class:`~sqlalchemy.orm.Session`; the service opens it and decides whether to
commit (a dry run rolls back). Every write is an upsert on the table's business key that
leaves identical rows untouched (:func:`db.store.upsert_rows`), so a re-import changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from db.models import AiAnalysis, InstitutionalTrendSnapshot, Instrument, Signal
from db.store import UpsertCounts, upsert_rows
from quant.migration.original import (
    AI_PROMPT_VERSION,
    TREND_WINDOWS,
    OriginalAnalysis,
    OriginalSignal,
    TrendSnapshot,
)

__all__ = [
    "KRX_MARKETS",
    "instruments_by_ticker",
    "upsert_original_analyses",
    "upsert_original_signals",
    "upsert_trend_snapshots",
]

#: Markets a ticker without a market is looked for in.
KRX_MARKETS: Final[tuple[str, ...]] = ("KOSPI", "KOSDAQ", "KONEX")

_SIGNAL_COMPARE: Final[tuple[str, ...]] = (
    "score",
    "grade",
    "entry_price",
    "status",
    "reasons",
    "inputs",
    "source",
)
_ANALYSIS_COMPARE: Final[tuple[str, ...]] = (
    "strategy",
    "analyzer",
    "status",
    "confidence",
    "catalyst",
    "news_count",
    "recommendation",
    "details",
)
_FIGURES: Final[tuple[str, ...]] = tuple(
    f"{group}_{w}d" for group in ("foreign_net", "institution_net", "volume") for w in TREND_WINDOWS
)
_SNAPSHOT_COMPARE: Final[tuple[str, ...]] = (
    "data_source",
    "total_days",
    *_FIGURES,
    "supply_demand_index",
    "details",
    "source",
)


def instruments_by_ticker(
    session: Session, tickers: Iterable[str], markets: Sequence[str] = KRX_MARKETS
) -> dict[str, list[tuple[str, int]]]:
    """``ticker → [(market, id), …]`` of the stored instruments of ``markets`` with those
    tickers (a ticker listed in two markets has two entries; one stored nowhere is absent)."""
    wanted = sorted(set(tickers))
    out: dict[str, list[tuple[str, int]]] = {}
    for start in range(0, len(wanted), 1000):
        rows = session.execute(
            select(Instrument.ticker, Instrument.market, Instrument.id).where(
                Instrument.ticker.in_(wanted[start : start + 1000]),
                Instrument.market.in_(list(markets)),
            )
        ).all()
        for ticker, market, ident in rows:
            out.setdefault(str(ticker), []).append((str(market), int(ident)))
    for entries in out.values():
        entries.sort()
    return out


def upsert_original_signals(
    session: Session, signals: Sequence[tuple[OriginalSignal, int]]
) -> UpsertCounts:
    """Upsert ``(signal, instrument id)`` pairs into ``signals`` by (trade date, strategy,
    phase ``final``, instrument). Keys must be unique within ``signals``."""
    rows: list[dict[str, Any]] = [
        {
            "trade_date": s.trade_date,
            "strategy": s.strategy,
            "phase": "final",
            "instrument_id": ident,
            "score": s.score,
            "grade": s.grade,
            "entry_price": s.entry_price,
            "status": s.status,
            "reasons": s.reasons,
            "inputs": s.inputs,
            "source": s.source,
        }
        for s, ident in signals
    ]
    return upsert_rows(
        session,
        cast(Table, Signal.__table__),
        rows,
        key=("trade_date", "strategy", "phase", "instrument_id"),
        compare=_SIGNAL_COMPARE,
    )


def upsert_original_analyses(
    session: Session, analyses: Sequence[tuple[OriginalAnalysis, int]]
) -> UpsertCounts:
    """Upsert ``(analysis, instrument id)`` pairs into ``ai_analyses`` by (instrument, trade
    date, model, prompt version :data:`AI_PROMPT_VERSION`), status ``succeeded``."""
    rows: list[dict[str, Any]] = [
        {
            "instrument_id": ident,
            "trade_date": a.trade_date,
            "model": a.model,
            "prompt_version": AI_PROMPT_VERSION,
            "strategy": a.strategy,
            "analyzer": a.analyzer,
            "status": "succeeded",
            "confidence": a.confidence,
            "catalyst": a.catalyst,
            "news_count": a.news_count,
            "recommendation": a.recommendation,
            "details": a.details or None,
        }
        for a, ident in analyses
    ]
    return upsert_rows(
        session,
        cast(Table, AiAnalysis.__table__),
        rows,
        key=("instrument_id", "trade_date", "model", "prompt_version"),
        compare=_ANALYSIS_COMPARE,
    )


def upsert_trend_snapshots(
    session: Session, snapshots: Sequence[tuple[TrendSnapshot, int]], *, source: str
) -> UpsertCounts:
    """Upsert ``(snapshot, instrument id)`` pairs into ``institutional_trend_snapshots`` by
    (instrument, scrape date); windows a snapshot lacks are stored NULL."""

    def figures(s: TrendSnapshot) -> Mapping[str, int | None]:
        out: dict[str, int | None] = {}
        for group, values in (
            ("foreign_net", s.foreign_net),
            ("institution_net", s.institution_net),
            ("volume", s.volume),
        ):
            for w in TREND_WINDOWS:
                out[f"{group}_{w}d"] = values.get(w)
        return out

    rows: list[dict[str, Any]] = [
        {
            "instrument_id": ident,
            "scrape_date": s.scrape_date,
            "data_source": s.data_source,
            "total_days": s.total_days,
            **figures(s),
            "supply_demand_index": s.supply_demand_index,
            "details": dict(s.details) or None,
            "source": source,
        }
        for s, ident in snapshots
    ]
    return upsert_rows(
        session,
        cast(Table, InstitutionalTrendSnapshot.__table__),
        rows,
        key=("instrument_id", "scrape_date"),
        compare=_SNAPSHOT_COMPARE,
    )
