"""The closing bet decided inside the buy window (domain notes §3, §8).

The closing-price bet buys between 15:00 and 15:20 KST, before the closing auction; a signal
published after 15:20 can no longer be traded that day. :func:`preliminary_scan` therefore
decides from the day so far: each instrument's bars through the previous session plus its
latest intraday snapshot taken at or before the decision time (``QUANTBEAT_CLOSING_BET_AT``,
default 15:10) as the scan day's bar, investor flows through the previous session (today's
are final only after the close), and the news scores analysed so far. Its signals are stored
as the day's ``preliminary`` ones, with the snapshot's last price as the entry and the Market
Gate of that moment; the evening scan on the final bar and flows stores the ``final`` ones
beside them, so the difference stays visible (:func:`compare_phases`).

Instruments without a snapshot at the decision time are not evaluated and are counted
(``missing``); indicators are computed from the bars themselves (the cache holds the
previous session's), which is why this runs as one task rather than the chunked chord of
the evening scan.

:func:`closing_bet_dates` and :func:`closing_bet_decision` read the stored decisions back
(the API's grade cards): each day's phases, and a phase's ranked candidates with their
stop, target, news and the gate of the moment they were decided.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import structlog

from db.ai import news_scores
from db.candles import load_daily_universe, universe
from db.engine import session_scope
from db.models import ScanRun
from db.notify import analysis_catalysts
from db.reference import latest_gate
from db.scans import (
    add_chunk_result,
    latest_completed_run,
    replace_signals,
    run_days,
    run_phase,
)
from db.scans import finish_run as record_run_end
from db.scans import start_run as record_run_start
from db.snapshots import snapshot_bars
from db.store import as_utc
from quant.errors import NotFound, ValidationError
from quant.indicators import SCAN_BARS
from quant.indicators.candles import with_partial_bar
from quant.market.types import KRX_MARKETS
from quant.scans.inputs import ScanInputs
from quantbeat.infra.settings import Settings, get_settings
from quantbeat.infra.sources import krx_calendar
from quantbeat.services.announce import is_simulated, levels
from quantbeat.services.announce import signals as announce_signals
from quantbeat.services.market import gate_row_dict
from quantbeat.services.scans import attach_flows, candidates, evaluate, ranked_candidates
from quantbeat.services.settings_store import strategy_overrides
from quantbeat.services.strategies import build_params, configured, scan_strategy

log = structlog.get_logger(__name__)

PRELIMINARY = "preliminary"
#: The closing auction starts at 15:20 KST: a decision after it cannot be traded that day.
AUCTION_STARTS = dt.time(15, 20)


def decision_time(day: dt.date, settings: Settings | None = None) -> dt.datetime:
    """The buy-window decision moment of ``day``: ``QUANTBEAT_CLOSING_BET_AT`` in KST."""
    s = settings or get_settings()
    hour, minute = (int(part) for part in s.closing_bet_at.split(":"))
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZoneInfo(s.timezone))


def preliminary_scan(
    strategy_name: str = "closing_bet",
    day: dt.date | None = None,
    *,
    as_of: dt.datetime | None = None,
    announce: bool = False,
) -> dict[str, Any]:
    """Decide ``strategy_name`` on ``day`` (default: the session of ``as_of``) from the
    snapshots taken at or before ``as_of`` (default: the day's decision time) and store its
    ``preliminary`` signals (see the module). Returns ``{"run_id", "strategy",
    "trade_date", "as_of", "phase", "total", "scanned", "failed", "candidates", "missing",
    "gate", "tradeable", "duration_ms"}`` — ``tradeable`` is whether ``as_of`` is before the
    closing auction (15:20 KST). With ``announce`` the decision is the window's last one:
    its ``signals.published`` event is recorded in the same transaction (once per day).

    Raises:
        quant.errors.ValidationError: unknown strategy, a day that is not a KRX session,
            ``as_of`` naive or not on ``day``, or invalid stored parameter overrides.
    """
    t0 = time.perf_counter()
    settings = get_settings()
    zone = ZoneInfo(settings.timezone)
    name = scan_strategy(strategy_name).name
    if as_of is not None and as_of.tzinfo is None:
        raise ValidationError("as_of must be timezone-aware", field="as_of", value=str(as_of))
    if day is None:
        day = (as_of or dt.datetime.now(zone)).astimezone(zone).date()
    calendar = krx_calendar()
    if not calendar.is_session(day):
        raise ValidationError(
            f"{day.isoformat()} is not a KRX session", field="trade_date", value=day.isoformat()
        )
    moment = (as_of or decision_time(day, settings)).astimezone(zone)
    if moment.date() != day:
        raise ValidationError(
            f"as_of {moment.isoformat()} is not on {day.isoformat()}",
            field="as_of",
            value=moment.isoformat(),
        )
    overrides = strategy_overrides(name) if scan_strategy(name).params else {}
    if overrides:
        build_params(name, overrides)
    evaluator = configured(name, overrides or None)
    previous = calendar.previous_session(day - dt.timedelta(days=1))
    markets = [m.value for m in KRX_MARKETS]
    with session_scope() as session:
        members = universe(session, markets)
        bars = snapshot_bars(session, day, moment)
        with_snapshot = [(i, n) for i, n in members if i in bars]
        history = load_daily_universe(
            session, [i for i, _ in with_snapshot], end=previous, bars=SCAN_BARS - 1
        )
        scores = news_scores(session, day, [i for i, _ in with_snapshot])
        newest = max((b[0] for b in bars.values()), default=None)
        run_id = record_run_start(
            session,
            strategy=name,
            trade_date=day,
            params={
                "phase": PRELIMINARY,
                "as_of": moment.isoformat(),
                "markets": markets,
                "overrides": overrides,
            },
            total=len(members),
            chunks=1,
            data_version=None if newest is None else f"snapshot={newest.isoformat()}",
        )
    when = np.datetime64(day, "D")
    inputs: dict[int, ScanInputs] = {}
    for ident, label in with_snapshot:
        past = history.get(ident)
        if past is None:
            continue
        _taken, o, h, lo, c, v, val = bars[ident]
        inputs[ident] = ScanInputs(
            instrument=label,
            candles=with_partial_bar(past, when, (o, h, lo, c, v, val)),
            news_score=scores.get(ident),
        )
    if evaluator.flows:
        attach_flows(inputs, list(inputs))
    rows, scanned, failed = evaluate(evaluator, inputs)
    with session_scope() as session:
        gate = latest_gate(session, day, at_or_before=moment)
        colour = None if gate is None else gate.color
        for row in rows:
            row["gate"] = colour
        replace_signals(
            session,
            trade_date=day,
            strategy=name,
            covered=[i for i, _ in members],
            rows=rows,
            phase=PRELIMINARY,
        )
        add_chunk_result(session, run_id, scanned=scanned, failed=len(failed),
                         candidates=len(rows))  # fmt: skip
        record_run_end(session, run_id, state="completed")
        if announce:
            session.flush()
            announce_signals(
                session,
                strategy=name,
                trade_date=day,
                phase=PRELIMINARY,
                ranked=ranked_candidates(session, name, day, phase=PRELIMINARY),
                run_id=run_id,
                gate=colour,
                tradeable=moment.time() < AUCTION_STARTS,
            )
    summary = {
        "run_id": run_id,
        "strategy": name,
        "trade_date": day.isoformat(),
        "as_of": moment.isoformat(),
        "phase": PRELIMINARY,
        "total": len(members),
        "scanned": scanned,
        "failed": len(failed),
        "candidates": len(rows),
        "missing": len(members) - len(inputs),
        "gate": colour,
        "tradeable": moment.time() < AUCTION_STARTS,
        "duration_ms": round((time.perf_counter() - t0) * 1000.0, 1),
    }
    log.info("scan.preliminary", **summary)
    return summary


def compare_phases(strategy_name: str, day: dt.date) -> dict[str, Any]:
    """The day's ``preliminary`` and ``final`` candidates side by side: those kept (with
    their grade in each), added by the final decision, and lost from the preliminary one.
    Returns ``{"strategy", "trade_date", "preliminary", "final", "kept": [{"instrument",
    "preliminary", "final"}], "added": [...], "lost": [...]}`` (grades by instrument)."""
    name = scan_strategy(strategy_name).name
    early = {c.instrument: c.grade for c in candidates(name, day, phase=PRELIMINARY)}
    late = {c.instrument: c.grade for c in candidates(name, day)}
    return {
        "strategy": name,
        "trade_date": day.isoformat(),
        "preliminary": len(early),
        "final": len(late),
        "kept": [
            {"instrument": i, "preliminary": early[i], "final": late[i]} for i in early if i in late
        ],
        "added": [{"instrument": i, "final": late[i]} for i in late if i not in early],
        "lost": [{"instrument": i, "preliminary": early[i]} for i in early if i not in late],
    }


# --- reading the decisions (the API's grade cards) -------------------------------------------
#: The closing bet's strategy name.
CLOSING_BET = "closing_bet"
#: The phases of a day's closing-bet decision.
PHASES = ("final", PRELIMINARY)
#: What a decision shows of the Market Gate it was decided under.
_GATE_FIELDS = ("trade_date", "as_of", "phase", "color", "score", "reason", "usdkrw",
                "fx_warning", "simulated")  # fmt: skip


def closing_bet_dates(limit: int = 365) -> list[dict[str, Any]]:
    """The ``limit`` latest trade dates holding a completed closing-bet decision, newest
    first: ``[{"trade_date", "phases"}]`` (``phases``: ``final`` and/or ``preliminary``).

    Raises:
        quant.errors.ValidationError: ``limit`` is not an integer from 1 to 5000.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 5000:
        raise ValidationError(
            f"limit must be an integer from 1 to 5000, got {limit!r}", field="limit", value=limit
        )
    with session_scope() as session:
        days = run_days(session, CLOSING_BET, limit=limit)
    return [{"trade_date": day.isoformat(), "phases": phases} for day, phases in days]


def _decision_moment(run: ScanRun, zone: ZoneInfo) -> dt.datetime:
    """When a run decided: a buy-window run's ``as_of``, else when it finished."""
    params = run.params if isinstance(run.params, dict) else {}
    stated = params.get("as_of")
    if isinstance(stated, str):
        try:
            moment = dt.datetime.fromisoformat(stated)
            if moment.tzinfo is not None:
                return moment.astimezone(zone)
        except ValueError:
            pass
    return as_utc(run.finished_at or run.started_at).astimezone(zone)


def closing_bet_decision(
    day: dt.date | None = None, phase: str | None = None, *, field_prefix: str = ""
) -> dict[str, Any]:
    """The closing bet's grade cards of ``day`` (default: the latest day decided) and
    ``phase`` (default: ``final`` when that day has one, else ``preliminary``): the latest
    completed run of that phase and its candidates ranked as the scan ranks them, each with
    grade, score, entry, the exit plan's stop and target
    (:func:`quantbeat.services.announce.levels`), reasons, the AI analysis's news catalyst
    (``news``), the gate colour it was decided under and its inputs; beside them the stored
    Market Gate as of the decision (``gate``, ``None`` when none was computed) and whether
    it was decided in time to buy (``tradeable``: on the day, before the 15:20 auction).

    Returns ``{"strategy", "trade_date", "phase", "phases", "run_id", "decided_at",
    "tradeable", "total", "scanned", "count", "gate", "simulated", "cards"}``.

    Raises:
        quant.errors.ValidationError: ``phase`` is not ``final`` or ``preliminary`` (the
            error names ``field_prefix + "phase"``).
        quant.errors.NotFound: no such decision is stored (not collected yet).
    """
    if phase is not None and phase not in PHASES:
        raise ValidationError(
            f"{field_prefix}phase must be final or preliminary, got {phase!r}",
            field=f"{field_prefix}phase",
            value=phase,
        )
    zone = ZoneInfo(get_settings().timezone)
    with session_scope() as session:
        run = _decision_run(session, day, phase)
        if run is None:
            where = f" of {day.isoformat()}" if day is not None else ""
            which = f"{phase} " if phase is not None else ""
            raise NotFound(
                f"no {which}closing-bet decision{where} stored: not collected yet (the "
                "buy-window pipeline decides the preliminary one at "
                f"{get_settings().closing_bet_at} KST, the evening scan the final one)"
            )
        decided = run_phase(run)
        moment = _decision_moment(run, zone)
        ranked = ranked_candidates(session, CLOSING_BET, run.trade_date, phase=decided)
        ids = [ident for ident, _ in ranked]
        news = analysis_catalysts(session, run.trade_date, CLOSING_BET, ids)
        gate = latest_gate(session, run.trade_date, at_or_before=moment)
        cards = []
        for ident, c in ranked:
            market, _, ticker = c.instrument.partition(":")
            stop, target = levels(CLOSING_BET, c.entry_price)
            cards.append(
                {
                    "rank": c.rank,
                    "signal_id": c.signal_id,
                    "instrument": c.instrument,
                    "market": market,
                    "ticker": ticker,
                    "name": c.name,
                    "grade": c.grade,
                    "score": c.score,
                    "entry": c.entry_price,
                    "stop": stop,
                    "target": target,
                    "reasons": list(c.reasons),
                    "news": news.get(ident),
                    "gate": c.gate,
                    "status": c.status,
                    "inputs": dict(c.inputs) if isinstance(c.inputs, Mapping) else None,
                    "simulated": is_simulated([c.instrument_source or ""]),
                }
            )
        gate_data = None
        if gate is not None:
            row = gate_row_dict(gate)
            gate_data = {k: row[k] for k in _GATE_FIELDS}
        ((_, phases),) = run_days(session, CLOSING_BET, limit=1, trade_date=run.trade_date)
        return {
            "strategy": CLOSING_BET,
            "trade_date": run.trade_date.isoformat(),
            "phase": decided,
            "phases": phases,
            "run_id": int(run.id),
            "decided_at": moment.isoformat(),
            "tradeable": moment.date() == run.trade_date and moment.time() < AUCTION_STARTS,
            "total": run.total,
            "scanned": run.scanned,
            "count": len(cards),
            "gate": gate_data,
            "simulated": is_simulated()
            or any(c["simulated"] for c in cards)
            or bool(gate_data and gate_data["simulated"]),
            "cards": cards,
        }


def _decision_run(session: Any, day: dt.date | None, phase: str | None) -> ScanRun | None:
    """The run whose decision is shown: of ``phase`` when given, else the final one of the
    day (the latest day decided when ``day`` is ``None``), else its preliminary one."""
    if phase is not None:
        return latest_completed_run(session, CLOSING_BET, trade_date=day, phase=phase)
    if day is None:
        newest = latest_completed_run(session, CLOSING_BET)
        if newest is None:
            return None
        day = newest.trade_date
    return latest_completed_run(
        session, CLOSING_BET, trade_date=day, phase="final"
    ) or latest_completed_run(session, CLOSING_BET, trade_date=day, phase=PRELIMINARY)
