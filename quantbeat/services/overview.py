"""Read models of what is stored, shaped for a reader that shows a whole page at once (the
dashboard; any other reader may use them): a scan day's signals with their instruments and
simulated flags, the days that have signals, the closing bet of a day with its exit plan,
news and gate, the latest reference series values, today's counts, the track record by
strategy and grade, and a backtest's equity curve.

Every function opens its own session, reads only, and returns JSON-safe data (dates and times
ISO 8601). A row is ``simulated`` when its instrument (or series) comes from the simulated
source; a whole answer is ``simulated`` when any row is, or when this deployment's market
source is the simulated one (:func:`quantbeat.services.announce.is_simulated`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from db.backtests import get_run, load_equity
from db.engine import session_scope
from db.models import (
    AiAnalysis,
    Instrument,
    JobRun,
    NewsItem,
    NewsMention,
    PortfolioPosition,
    ReferenceBar,
    ReferenceSeriesRow,
    ScanRun,
    Signal,
)
from db.outcomes import track_rows
from db.reference import latest_gate
from quant.errors import ValidationError
from quant.kpi import Record, summarize
from quantbeat.infra.settings import get_settings
from quantbeat.services.announce import is_simulated
from quantbeat.services.closing_window import PRELIMINARY, decision_time
from quantbeat.services.jobs import FAILED_STATES
from quantbeat.services.market import gate_row_dict
from quantbeat.services.scans import ranked_candidates
from quantbeat.services.strategies import scan_strategy

#: The source of the simulated market's instruments.
SIMULATED_SOURCE = "simulated"
#: The phases a signal is decided in.
PHASES = ("final", PRELIMINARY)
#: News titles shown per closing-bet candidate.
NEWS_TITLES = 3


def check_phase(phase: str, *, field: str = "phase") -> str:
    """``phase`` when it is ``final`` or ``preliminary``.

    Raises:
        quant.errors.ValidationError: any other value (named).
    """
    if phase not in PHASES:
        raise ValidationError(
            f"{field} must be final or preliminary, got {phase!r}", field=field, value=phase
        )
    return phase


def signal_dates(strategy: str, *, phase: str | None = None, limit: int = 60) -> list[str]:
    """The trading days (ISO, newest first, at most ``limit``) with stored signals or scan
    runs of ``strategy`` (of ``phase`` when given; a run's phase is its ``params.phase``,
    ``final`` when absent).

    Raises:
        quant.errors.ValidationError: unknown strategy or phase.
    """
    name = scan_strategy(strategy).name
    if phase is not None:
        check_phase(phase)
    with session_scope() as session:
        query = select(Signal.trade_date).where(Signal.strategy == name)
        if phase is not None:
            query = query.where(Signal.phase == phase)
        days = set(session.execute(query.distinct()).scalars())
        runs = session.execute(
            select(ScanRun.trade_date, ScanRun.params).where(ScanRun.strategy == name)
        ).all()
    for day, params in runs:
        if phase is None or _run_phase(params) == phase:
            days.add(day)
    return [d.isoformat() for d in sorted(days, reverse=True)[:limit]]


def _run_phase(params: Any) -> str:
    found = params.get("phase") if isinstance(params, dict) else None
    return str(found) if found else "final"


def _latest_signal_day(session: Any, strategy: str, phase: str) -> dt.date | None:
    day: dt.date | None = session.execute(
        select(func.max(Signal.trade_date)).where(
            Signal.strategy == strategy, Signal.phase == phase
        )
    ).scalar()
    run_day: dt.date | None = None
    for found, params in session.execute(
        select(ScanRun.trade_date, ScanRun.params)
        .where(ScanRun.strategy == strategy)
        .order_by(ScanRun.trade_date.desc())
        .limit(20)
    ).all():
        if _run_phase(params) == phase:
            run_day = found
            break
    candidates = [d for d in (day, run_day) if d is not None]
    return max(candidates) if candidates else None


def _run_dict(session: Any, strategy: str, day: dt.date, phase: str) -> dict[str, Any] | None:
    """The newest scan run of ``strategy`` on ``day`` in ``phase``."""
    for run in session.execute(
        select(ScanRun)
        .where(ScanRun.strategy == strategy, ScanRun.trade_date == day)
        .order_by(ScanRun.started_at.desc())
    ).scalars():
        if _run_phase(run.params) != phase:
            continue
        return {
            "run_id": int(run.id),
            "state": run.state,
            "total": run.total,
            "scanned": run.scanned,
            "failed": run.failed,
            "candidates": run.candidates,
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "duration_ms": run.duration_ms,
            "error": run.error,
        }
    return None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if number == number and abs(number) != float("inf") else None


def _plan(inputs: Any) -> tuple[float | None, float | None]:
    """The (stop, target) prices a signal's inputs name: a closing bet's exit plan, or a
    VCP's pattern stop."""
    if not isinstance(inputs, dict):
        return None, None
    plan = inputs.get("exit_plan")
    if isinstance(plan, dict):
        return _finite(plan.get("stop_loss")), _finite(plan.get("take_profit"))
    return _finite(inputs.get("stop")), _finite(inputs.get("target"))


def signal_table(
    strategy: str,
    trade_date: dt.date | None = None,
    *,
    phase: str = "final",
    limit: int | None = 500,
) -> dict[str, Any]:
    """The signals of ``strategy`` on ``trade_date`` (default: the latest day with signals or
    a scan run of that phase), ranked as the strategy ranks them (at most ``limit``).

    Returns ``{"strategy", "phase", "trade_date" (ISO or None when nothing is stored),
    "run" (the newest scan run of that day and phase, or None), "items", "simulated"}``;
    each item ``{"rank", "signal_id", "instrument", "name", "grade", "score",
    "entry_price", "stop", "target", "status", "volume_ratio", "rs_rating", "gate",
    "reasons", "inputs", "simulated"}``.

    Raises:
        quant.errors.ValidationError: unknown strategy or phase.
    """
    name = scan_strategy(strategy).name
    check_phase(phase)
    with session_scope() as session:
        day = trade_date or _latest_signal_day(session, name, phase)
        if day is None:
            return {
                "strategy": name,
                "phase": phase,
                "trade_date": None,
                "run": None,
                "items": [],
                "simulated": is_simulated(),
            }
        ranked = ranked_candidates(session, name, day, limit=limit, phase=phase)
        ids = {
            int(i): (int(sid), str(src))
            for i, sid, src in session.execute(
                select(Signal.instrument_id, Signal.id, Instrument.source)
                .join(Instrument, Instrument.id == Signal.instrument_id)
                .where(Signal.trade_date == day, Signal.strategy == name, Signal.phase == phase)
            ).all()
        }
        run = _run_dict(session, name, day, phase)
    items = []
    for ident, c in ranked:
        signal_id, source = ids.get(ident, (None, ""))
        stop, target = _plan(c.inputs)
        rs = c.inputs.get("rs_rating") if isinstance(c.inputs, dict) else None
        items.append(
            {
                "rank": c.rank,
                "signal_id": signal_id,
                "instrument": c.instrument,
                "name": c.name,
                "grade": c.grade,
                "score": c.score,
                "entry_price": c.entry_price,
                "stop": stop,
                "target": target,
                "status": c.status,
                "volume_ratio": c.volume_ratio,
                "rs_rating": _finite(rs),
                "gate": c.gate,
                "reasons": list(c.reasons),
                "inputs": dict(c.inputs),
                "simulated": source == SIMULATED_SOURCE,
            }
        )
    sources = [SIMULATED_SOURCE for i in items if i["simulated"]]
    return {
        "strategy": name,
        "phase": phase,
        "trade_date": day.isoformat(),
        "run": run,
        "items": items,
        "simulated": is_simulated(sources),
    }


def _news(
    session: Any, day: dt.date, instrument_ids: list[int], zone: ZoneInfo
) -> dict[int, dict[str, Any]]:
    """Per instrument: its latest succeeded AI analysis of ``day`` (catalyst, sentiment,
    news score, news count, analyzer) and up to :data:`NEWS_TITLES` titles of the news
    mentioning it published on ``day`` (local) or the evening before."""
    if not instrument_ids:
        return {}
    out: dict[int, dict[str, Any]] = defaultdict(dict)
    for row in session.execute(
        select(AiAnalysis)
        .where(
            AiAnalysis.trade_date == day,
            AiAnalysis.status == "succeeded",
            AiAnalysis.instrument_id.in_(instrument_ids),
        )
        .order_by(AiAnalysis.updated_at, AiAnalysis.id)
    ).scalars():
        out[int(row.instrument_id)]["analysis"] = {
            "catalyst": row.catalyst,
            "sentiment": row.sentiment,
            "news_score": row.news_score,
            "news_count": row.news_count,
            "analyzer": row.analyzer,
        }
    since = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(15, 30), tzinfo=zone)
    until = dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=zone)
    rows = session.execute(
        select(NewsMention.instrument_id, NewsItem.title, NewsItem.source, NewsItem.simulated)
        .join(NewsItem, NewsItem.id == NewsMention.news_id)
        .where(
            NewsMention.instrument_id.in_(instrument_ids),
            NewsItem.published_at >= since,
            NewsItem.published_at <= until,
        )
        .order_by(NewsItem.published_at.desc(), NewsItem.id.desc())
    ).all()
    for ident, title, source, simulated in rows:
        titles = out[int(ident)].setdefault("titles", [])
        if len(titles) < NEWS_TITLES:
            titles.append({"title": title, "source": source, "simulated": bool(simulated)})
    return dict(out)


def closing_bet(trade_date: dt.date | None = None, *, phase: str = "final") -> dict[str, Any]:
    """The closing bet of ``trade_date`` (default: the latest day with one of ``phase``):
    :func:`signal_table` of ``closing_bet``, each item with its ``news`` (``{"analysis":
    {...} | None, "titles": [...]}``, see :func:`_news`), plus ``gate`` — the Market Gate
    the decision was taken under (for the preliminary phase the latest gate at or before
    the day's decision time, else the day's latest; ``None`` when none is stored) — and
    ``phases``: how many candidates each phase holds that day.

    Raises:
        quant.errors.ValidationError: unknown phase.
    """
    table = signal_table("closing_bet", trade_date, phase=phase)
    table["gate"] = None
    table["phases"] = {p: 0 for p in PHASES}
    if table["trade_date"] is None:
        return table
    day = dt.date.fromisoformat(table["trade_date"])
    settings = get_settings()
    zone = ZoneInfo(settings.timezone)
    with session_scope() as session:
        at = decision_time(day, settings) if phase == PRELIMINARY else None
        gate = latest_gate(session, day, at_or_before=at)
        table["gate"] = None if gate is None else gate_row_dict(gate)
        counts = session.execute(
            select(Signal.phase, func.count())
            .where(Signal.trade_date == day, Signal.strategy == "closing_bet")
            .group_by(Signal.phase)
        ).all()
        ids = dict(
            session.execute(
                select(Signal.id, Signal.instrument_id).where(
                    Signal.id.in_([i["signal_id"] for i in table["items"] if i["signal_id"]])
                )
            ).all()
        )
        news = _news(session, day, [int(v) for v in ids.values()], zone)
    for found_phase, n in counts:
        table["phases"][str(found_phase)] = int(n)
    for item in table["items"]:
        ident = ids.get(item["signal_id"])
        found = news.get(int(ident), {}) if ident is not None else {}
        item["news"] = {"analysis": found.get("analysis"), "titles": found.get("titles", [])}
    if table["gate"] is not None and table["gate"]["simulated"]:
        table["simulated"] = True
    return table


def reference_latest(kinds: tuple[str, ...] = ("index", "fx")) -> list[dict[str, Any]]:
    """The latest stored close of every reference series of ``kinds`` (``index``, ``etf``,
    ``fx``) with its change from the previous stored session: ``[{"code", "name", "kind",
    "trade_date", "close", "change_pct" (percent, None without a previous bar),
    "simulated"}]`` ordered by kind then code; empty when nothing is stored."""
    with session_scope() as session:
        latest = (
            select(ReferenceBar.series_id, func.max(ReferenceBar.trade_date).label("last"))
            .group_by(ReferenceBar.series_id)
            .subquery()
        )
        heads = session.execute(
            select(ReferenceSeriesRow, latest.c.last)
            .join(latest, latest.c.series_id == ReferenceSeriesRow.id)
            .where(ReferenceSeriesRow.kind.in_(list(kinds)))
            .order_by(ReferenceSeriesRow.kind, ReferenceSeriesRow.code)
        ).all()
        out = []
        for series, last in heads:
            bars = session.execute(
                select(ReferenceBar.trade_date, ReferenceBar.close)
                .where(ReferenceBar.series_id == series.id, ReferenceBar.trade_date <= last)
                .order_by(ReferenceBar.trade_date.desc())
                .limit(2)
            ).all()
            close = float(bars[0][1])
            previous = float(bars[1][1]) if len(bars) > 1 else None
            out.append(
                {
                    "code": series.code,
                    "name": series.name,
                    "kind": series.kind,
                    "trade_date": bars[0][0].isoformat(),
                    "close": close,
                    "change_pct": (close / previous - 1.0) * 100.0 if previous else None,
                    "simulated": bool(series.simulated),
                }
            )
    return out


def today_counts(now: dt.datetime | None = None) -> dict[str, Any]:
    """What happened lately: the signals per strategy (and phase) of the latest day that has
    any (``signals_date``), the open paper positions over every portfolio, and the jobs that
    failed (``failed``, ``timed_out``, ``lost``) since local midnight of ``now`` (default:
    the current time; ``QUANTBEAT_TIMEZONE``). Returns ``{"signals_date", "signals":
    {label: n}, "open_positions", "jobs_failed", "since"}``."""
    zone = ZoneInfo(get_settings().timezone)
    moment = (now or dt.datetime.now(zone)).astimezone(zone)
    midnight = dt.datetime.combine(moment.date(), dt.time(0), tzinfo=zone)
    with session_scope() as session:
        day = session.execute(select(func.max(Signal.trade_date))).scalar()
        per: dict[str, int] = {}
        if day is not None:
            for strategy, phase, n in session.execute(
                select(Signal.strategy, Signal.phase, func.count())
                .where(Signal.trade_date == day)
                .group_by(Signal.strategy, Signal.phase)
                .order_by(Signal.strategy, Signal.phase)
            ).all():
                label = strategy if phase == "final" else f"{strategy} ({phase})"
                per[label] = int(n)
        open_positions = session.execute(
            select(func.count()).where(PortfolioPosition.state == "open")
        ).scalar_one()
        failed = session.execute(
            select(func.count()).where(
                JobRun.state.in_(list(FAILED_STATES)), JobRun.started_at >= midnight
            )
        ).scalar_one()
    return {
        "signals_date": None if day is None else day.isoformat(),
        "signals": per,
        "open_positions": int(open_positions),
        "jobs_failed": int(failed),
        "since": midnight.isoformat(),
    }


def _label(strategy: str, phase: str | None) -> str:
    # the grouping of quantbeat.services.track_record.report: a preliminary closing bet is
    # its own strategy group (the same trade is not counted twice)
    return strategy if phase in (None, "final") else f"{strategy} ({phase})"


def track_record_by_grade() -> dict[str, Any]:
    """The track record's KPIs (:func:`quant.kpi.summarize`) per strategy group (as
    :func:`quantbeat.services.track_record.report` groups them) and, within each, per grade:
    ``{"strategies": {label: {"all": KPIs, "grades": {grade: KPIs}}}, "simulated"}``."""
    with session_scope() as session:
        rows = track_rows(session)
    by_strategy: dict[str, list[Record]] = defaultdict(list)
    for r in rows:
        label = _label(str(r[1]), r[11])
        by_strategy[label].append(
            Record(
                signal_id=int(r[0]),
                strategy=label,
                trade_date=r[2],
                state=str(r[3]),
                net_return=r[4],
                exit_date=r[5],
                grade=r[6],
                market=r[7],
                gate=r[8],
            )
        )
    out = {
        label: {
            "all": summarize(records)["all"].as_dict(),
            "grades": {k: v.as_dict() for k, v in summarize(records, "grade").items()},
        }
        for label, records in sorted(by_strategy.items())
    }
    return {
        "strategies": out,
        "simulated": is_simulated([str(r[9]) for r in rows if r[9] == SIMULATED_SOURCE]),
    }


def backtest_equity(run_id: str) -> list[tuple[str, float]]:
    """A backtest run's stored equity curve ``[(ISO day, equity)]``, oldest first (empty
    until the run completed).

    Raises:
        quant.errors.NotFound: no such run.
    """
    with session_scope() as session:
        get_run(session, run_id)
        return [(day.isoformat(), equity) for day, equity, _ in load_equity(session, run_id)]
