"""Reading the stored signals (the HTTP API and the dashboard): each strategy's latest scan
decision ranked as the scan ranks it, every signal newest first a page at a time, and one
signal with where it went (its track-record outcome) and its latest intraday price.

Every item says whether it is ``simulated`` (:func:`quantbeat.services.announce.is_simulated`:
the instrument is on the simulated market, or this deployment's market source is the
simulated one). Filters are checked here and errors name the field the caller passes
(``query.grade`` for the API).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from db.engine import session_scope
from db.models import Instrument, ScanRun, Signal
from db.notify import analysis_catalysts
from db.outcomes import stored_outcomes
from db.scans import latest_completed_run, run_phase, signal_page, signal_with_instrument
from db.snapshots import instrument_snapshot
from db.store import iso_utc
from quant.errors import NotFound, ValidationError
from quantbeat.services.announce import is_simulated, levels
from quantbeat.services.args import parse_grade, parse_krx_markets, parse_strategy
from quantbeat.services.closing_window import PHASES
from quantbeat.services.scans import Candidate, ranked_candidates
from quantbeat.services.strategies import scan_strategy, scan_strategy_names

#: The most signals one page holds.
MAX_PAGE = 500


def _reasons(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(r) for r in value]
    return [] if value is None else [str(value)]


def signal_item(signal: Signal, instrument: Instrument) -> dict[str, Any]:
    """A stored signal as JSON-safe data (its ``inputs`` left out: see
    :func:`signal_detail`)."""
    return {
        "id": int(signal.id),
        "trade_date": signal.trade_date.isoformat(),
        "strategy": signal.strategy,
        "phase": signal.phase,
        "instrument": f"{instrument.market}:{instrument.ticker}",
        "market": instrument.market,
        "ticker": instrument.ticker,
        "name": instrument.name,
        "score": signal.score,
        "grade": signal.grade,
        "entry_price": signal.entry_price,
        "status": signal.status,
        "volume_ratio": signal.volume_ratio,
        "reasons": _reasons(signal.reasons),
        "gate": signal.gate,
        "source": signal.source,
        "simulated": is_simulated([instrument.source]),
    }


def _candidate_item(
    c: Candidate, *, strategy: str, trade_date: dt.date, phase: str
) -> dict[str, Any]:
    market, _, ticker = c.instrument.partition(":")
    return {
        "id": c.signal_id,
        "trade_date": trade_date.isoformat(),
        "strategy": strategy,
        "phase": phase,
        "market": market,
        "ticker": ticker,
        **c.summary(),
        "simulated": is_simulated([c.instrument_source or ""]),
    }


def at_least(grade: str | None, minimum: str, ladder: Sequence[str]) -> bool:
    """Whether ``grade`` is ``minimum`` or better on ``ladder`` (best first); a grade off
    the ladder (or none) is not."""
    if grade not in ladder or minimum not in ladder:
        return False
    return ladder.index(grade) <= ladder.index(minimum)


def _strategy(value: str, field_prefix: str) -> str:
    return parse_strategy(value, field=f"{field_prefix}strategy", exact=True)


def _market(value: str | None, field: str) -> str | None:
    return None if value is None else parse_krx_markets(value, field=field)[0].value


def _phase(value: str, field_prefix: str) -> str:
    if value not in PHASES:
        raise ValidationError(
            f"{field_prefix}phase must be final or preliminary, got {value!r}",
            field=f"{field_prefix}phase",
            value=value,
        )
    return value


def _decision(
    session: Any,
    name: str,
    run: ScanRun | None,
    *,
    trade_date: dt.date | None = None,
    phase: str = "final",
    market: str | None = None,
    min_grade: str | None = None,
) -> dict[str, Any]:
    """Strategy ``name``'s decision of ``run`` (when ``None``: the signals stored for
    ``trade_date`` and ``phase``, if a day is given) as :func:`latest_signals` lists it."""
    found = scan_strategy(name)
    entry: dict[str, Any] = {
        "strategy": name,
        "label": found.label,
        "run_id": None,
        "trade_date": None,
        "phase": None,
        "finished_at": None,
        "simulated": is_simulated(),
        "count": 0,
        "signals": [],
    }
    day = trade_date if run is None else run.trade_date
    if day is None:
        return entry
    decided = phase if run is None else run_phase(run)
    ladder = found.grade_ladder()
    items = [
        _candidate_item(c, strategy=name, trade_date=day, phase=decided)
        for _ident, c in ranked_candidates(session, name, day, phase=decided)
    ]
    items = [
        i
        for i in items
        if (market is None or i["market"] == market)
        and (min_grade is None or at_least(i["grade"], min_grade, ladder))
    ]
    entry.update(
        run_id=None if run is None else int(run.id),
        trade_date=day.isoformat(),
        phase=decided,
        finished_at=None if run is None else iso_utc(run.finished_at),
        simulated=entry["simulated"] or any(i["simulated"] for i in items),
        count=len(items),
        signals=items,
    )
    return entry


def latest_signals(
    *,
    strategy: str | None = None,
    market: str | None = None,
    min_grade: str | None = None,
    field_prefix: str = "",
) -> dict[str, Any]:
    """The latest completed scan run of every registered strategy (or ``strategy``, its
    exact name) with its candidates ranked as the scan ranks them
    (:func:`quantbeat.services.scans.ranked_candidates`), of one KRX ``market`` and at
    least ``min_grade`` when given: a grade counts on its own strategy's ladder
    (:meth:`~quantbeat.services.strategies.ScanStrategy.grade_ladder`), so ``min_grade=A``
    keeps closing-bet S and A and no VCP signal. Errors name ``field_prefix + name``.

    Returns ``{"simulated", "strategies": [{"strategy", "label", "run_id", "trade_date",
    "phase", "finished_at", "simulated", "count", "signals"}]}`` in registration order;
    a strategy without a completed run has ``run_id`` ``None`` and no signals.

    Raises:
        quant.errors.ValidationError: an unknown strategy, a market other than KOSPI or
            KOSDAQ, or a grade no registered strategy gives.
    """
    names = scan_strategy_names() if strategy is None else (_strategy(strategy, field_prefix),)
    chosen_market = _market(market, f"{field_prefix}market")
    if min_grade is not None:
        parse_grade(min_grade, field=f"{field_prefix}min_grade")
    with session_scope() as session:
        out = [
            _decision(
                session,
                name,
                latest_completed_run(session, name),
                market=chosen_market,
                min_grade=min_grade,
            )
            for name in names
        ]
    return {"simulated": any(e["simulated"] for e in out), "strategies": out}


def list_signals(
    *,
    after: tuple[dt.date, int] | None = None,
    limit: int = 50,
    trade_date: dt.date | None = None,
    strategy: str | None = None,
    grade: str | None = None,
    market: str | None = None,
    phase: str | None = None,
    field_prefix: str = "",
) -> tuple[list[dict[str, Any]], bool]:
    """One page of stored signals, newest first (trade date, then id, descending), after
    the key ``after`` (the previous page's last ``(trade_date, id)``): ``(items, more)`` —
    ``more`` whether another page follows. Filters: a registered ``strategy`` (its exact
    name), a ``grade`` some registered strategy gives (exactly), a KRX ``market``, a
    ``phase``. Errors name ``field_prefix + name`` (``query.grade``).

    Raises:
        quant.errors.ValidationError: a bad filter, or ``limit`` outside 1…:data:`MAX_PAGE`.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValidationError(
            f"{field_prefix}limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}",
            field=f"{field_prefix}limit",
            value=limit,
        )
    name = None if strategy is None else _strategy(strategy, field_prefix)
    if grade is not None:
        parse_grade(grade, field=f"{field_prefix}grade")
    chosen_market = _market(market, f"{field_prefix}market")
    if phase is not None:
        _phase(phase, field_prefix)
    with session_scope() as session:
        rows = signal_page(
            session,
            after=after,
            limit=limit + 1,
            trade_date=trade_date,
            strategy=name,
            grade=grade,
            market=chosen_market,
            phase=phase,
        )
        items = [signal_item(s, i) for s, i in rows[:limit]]
    return items, len(rows) > limit


def day_signals(
    strategy: str, trade_date: dt.date, *, phase: str = "final", field_prefix: str = ""
) -> dict[str, Any]:
    """The signals of ``strategy`` (its exact name) stored for ``trade_date`` and ``phase``,
    ranked as the scan ranks them, with the newest completed scan run of that day and phase:
    one entry of :func:`latest_signals` (``run_id`` and ``finished_at`` ``None`` when no
    completed run of that day is stored — imported history — and its signals are still
    listed; ``count`` 0 when none is stored). Errors name ``field_prefix + name``.

    Raises:
        quant.errors.ValidationError: an unknown strategy, or a phase other than ``final``
            and ``preliminary``.
    """
    name = _strategy(strategy, field_prefix)
    _phase(phase, field_prefix)
    with session_scope() as session:
        run = latest_completed_run(session, name, trade_date=trade_date, phase=phase)
        return _decision(session, name, run, trade_date=trade_date, phase=phase)


def signal_detail(signal_id: int) -> dict[str, Any]:
    """Signal ``signal_id`` with its ``inputs``, the ``stop`` and ``target`` of its
    strategy's exit plan from its entry (:func:`quantbeat.services.announce.levels`), the
    AI analysis's news catalyst of its day (``news``), its track-record ``outcome`` (``None``:
    not followed yet) and the instrument's latest intraday ``snapshot`` (``None``: none
    stored) with the last price against the entry (``vs_entry``, a fraction).

    Raises:
        quant.errors.NotFound: no such signal.
    """
    with session_scope() as session:
        found = signal_with_instrument(session, signal_id)
        if found is None:
            raise NotFound(f"no signal {signal_id}")
        signal, instrument = found
        out = signal_item(signal, instrument)
        stop, target = levels(signal.strategy, signal.entry_price)
        news = analysis_catalysts(
            session, signal.trade_date, signal.strategy, [int(instrument.id)]
        ).get(int(instrument.id))
        outcome = stored_outcomes(session, [int(signal.id)]).get(int(signal.id))
        snap = instrument_snapshot(session, int(instrument.id))
        out.update(
            inputs=signal.inputs if isinstance(signal.inputs, dict) else None,
            stop=stop,
            target=target,
            news=news,
            outcome=None if outcome is None else _outcome(outcome),
            snapshot=None if snap is None else _snapshot(snap, signal.entry_price),
        )
        if snap is not None and snap.simulated:
            out["simulated"] = True
        return out


def _outcome(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (iso_utc(v) if isinstance(v, dt.date) else v) for k, v in row.items()}


def _snapshot(snap: Any, entry: float | None) -> dict[str, Any]:
    last = float(snap.close)
    return {
        "trade_date": snap.trade_date.isoformat(),
        "taken_at": iso_utc(snap.taken_at),
        "open": snap.open,
        "high": snap.high,
        "low": snap.low,
        "last": last,
        "volume": snap.volume,
        "value": snap.value,
        "vs_entry": last / entry - 1.0 if entry else None,
        "simulated": bool(snap.simulated),
    }
