"""The track record: every stored signal followed to its exit (``docs/domain.md`` §9).

:func:`update` follows each signal whose outcome is missing, not finished, or computed under
older rules (:mod:`quant.outcomes`: versioned per strategy, the version covering thresholds
and costs) on the daily bars after it — and, for the closing bet, the morning snapshot at the
time exit — and writes the outcomes that changed. It is idempotent: the rules are pure, so a
re-run computes the same rows and writes none (``updated_at`` stays). :func:`recompute`
follows every signal from scratch (after a rules or cost change; rows of an older version are
also picked up by :func:`update`). :func:`report` gives the KPIs (:mod:`quant.kpi`).

Reads are bulk: the signals in one query, then instruments by chunks of
:data:`CHUNK_INSTRUMENTS`, each chunk's bars in one query (from its earliest signal, minus
:data:`HISTORY_DAYS` for VCP's 50-session averages), the sessions of each market once.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from db.engine import session_scope
from db.outcomes import (
    FollowedSignal,
    count_outcomes,
    load_bars,
    market_sessions,
    signals_to_follow,
    snapshot_days,
    stored_outcomes,
    track_rows,
    write_outcomes,
)
from db.snapshots import snapshot_bars
from db.store import UpsertCounts
from quant.errors import ValidationError
from quant.kpi import GROUPS, Record, summarize
from quant.market.types import SIMULATED_SOURCE
from quant.outcomes import (
    DEFAULT_RULES,
    FINISHED,
    Bars,
    Morning,
    Rules,
    SignalView,
    follow,
)
from quantbeat.infra.settings import get_settings
from quantbeat.services.backtests import latest_expectations
from quantbeat.services.strategies import scan_strategy

#: Instruments whose bars are read and followed per chunk (bounds memory on a recompute).
CHUNK_INSTRUMENTS = 600
#: Calendar days of bars read before a VCP signal: its 50-session SMA and volume mean need 50
#: sessions (about 72 calendar days; holidays and halts included with room).
HISTORY_DAYS = 110


def current_versions(rules: Rules = DEFAULT_RULES) -> dict[str, str]:
    """The rules version of each exit plan the rules hold (``closing_bet``, ``vcp``,
    ``generic``)."""
    return {plan: rules.version(plan) for plan in rules.plan_names()}


def _today() -> dt.date:
    return dt.datetime.now(ZoneInfo(get_settings().timezone)).date()


def update(
    as_of: dt.date | None = None,
    *,
    strategy: str | None = None,
    everything: bool = False,
    rules: Rules = DEFAULT_RULES,
) -> dict[str, Any]:
    """Follow the signals of sessions up to ``as_of`` (default: today in
    ``QUANTBEAT_TIMEZONE``) whose outcome is missing, unfinished or of older rules (every
    signal with ``everything``), optionally of one ``strategy``, on the bars through
    ``as_of``; write the outcomes that changed.

    Returns ``{"as_of", "followed", "inserted", "updated", "unchanged", "states", "rules",
    "seconds"}`` (``states``: the followed signals' new states).

    Raises:
        quant.errors.ValidationError: a signal's market has no tax rate for an exit date.
    """
    t0 = time.perf_counter()
    day = as_of or _today()
    versions = current_versions(rules)
    with session_scope() as session:
        signals = signals_to_follow(
            session,
            through=day,
            current_rules=set(versions.values()),
            finished=FINISHED,
            everything=everything,
            strategy=strategy,
        )
    counts = UpsertCounts()
    states: dict[str, int] = defaultdict(int)
    if signals:
        by_instrument: dict[int, list[FollowedSignal]] = defaultdict(list)
        for s in signals:
            by_instrument[s.instrument_id].append(s)
        starts = {iid: _start(group) for iid, group in by_instrument.items()}
        markets = {s.market for s in signals}
        with session_scope() as session:
            sessions = market_sessions(session, markets, min(starts.values()), day)
            mornings = _mornings(session, signals, sessions, rules)
        ids = sorted(by_instrument)
        for at in range(0, len(ids), CHUNK_INSTRUMENTS):
            part = ids[at : at + CHUNK_INSTRUMENTS]
            with session_scope() as session:
                loaded = load_bars(session, {i: starts[i] for i in part}, day)
                rows = []
                for iid in part:
                    group = by_instrument[iid]
                    bars = _bars(sessions[group[0].market], starts[iid], loaded.get(iid))
                    own = mornings.get(iid, {})
                    for s in group:
                        outcome = follow(_view(s), bars, through=day, rules=rules, mornings=own)
                        rows.append(outcome.as_row())
                        states[outcome.state] += 1
                stored = stored_outcomes(session, [int(r["signal_id"]) for r in rows])
                counts = counts + write_outcomes(session, rows, stored)
    return {
        "as_of": day.isoformat(),
        "followed": len(signals),
        **counts.as_dict(),
        "states": dict(sorted(states.items())),
        "rules": versions,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def recompute(
    as_of: dt.date | None = None, *, strategy: str | None = None, rules: Rules = DEFAULT_RULES
) -> dict[str, Any]:
    """Follow every stored signal (of ``strategy`` when given) from scratch under the current
    rules and costs; as :func:`update` otherwise (rows that come out the same are not
    rewritten)."""
    return update(as_of, strategy=strategy, everything=True, rules=rules)


def _start(group: Sequence[FollowedSignal]) -> dt.date:
    return min(
        s.trade_date - dt.timedelta(days=HISTORY_DAYS) if s.strategy == "vcp" else s.trade_date
        for s in group
    )


def _view(s: FollowedSignal) -> SignalView:
    return SignalView(
        signal_id=s.signal_id,
        strategy=s.strategy,
        trade_date=s.trade_date,
        entry_price=s.entry_price,
        market=s.market,
        phase=s.phase,
        status=s.status,
        inputs=s.inputs if isinstance(s.inputs, dict) else None,
        listing_status=s.listing_status,
    )


def _bars(sessions: np.ndarray[Any, Any], start: dt.date, loaded: Any) -> Bars:
    """An instrument's bars on its market's sessions from ``start`` (NaN: no bar)."""
    own = sessions[sessions >= np.datetime64(start, "D")]
    data = np.full((5, len(own)), np.nan)
    if loaded is not None and len(own):
        dates, values = loaded
        pos = np.searchsorted(own, dates)
        ok = pos < len(own)
        ok[ok] = own[pos[ok]] == dates[ok]  # a bar written after the sessions were read
        data[:, pos[ok]] = values[ok].T
    return Bars(own, data[0], data[1], data[2], data[3], data[4])


def _mornings(
    session: Any,
    signals: Sequence[FollowedSignal],
    sessions: dict[str, np.ndarray[Any, Any]],
    rules: Rules,
) -> dict[int, dict[dt.date, Morning]]:
    """The time-exit snapshots (at or before the closing bet's ``time_exit``) of each
    closing-bet signal's next session, by instrument and day."""
    wanted: dict[dt.date, set[int]] = defaultdict(set)
    for s in signals:
        if s.strategy != "closing_bet":
            continue
        days = sessions.get(s.market)
        if days is None:
            continue
        i = int(np.searchsorted(days, np.datetime64(s.trade_date, "D"), side="right"))
        if i < len(days):
            wanted[days[i].astype(dt.date)].add(s.instrument_id)
    out: dict[int, dict[dt.date, Morning]] = defaultdict(dict)
    zone = ZoneInfo(get_settings().timezone)
    at = rules.closing_bet.time_exit_at
    for day in snapshot_days(session, wanted):
        found = snapshot_bars(session, day, dt.datetime.combine(day, at, tzinfo=zone))
        for iid in wanted[day]:
            if iid in found:
                _, o, h, lo, last, _, _ = found[iid]
                out[iid][day] = Morning(open=o, high=h, low=lo, last=last)
    return out


def _label(strategy: str, phase: str | None) -> str:
    return strategy if phase in (None, "final") else f"{strategy} ({phase})"


def report(
    *,
    strategy: str | None = None,
    since: dt.date | None = None,
    by: str | None = "strategy",
    grades: bool = False,
) -> dict[str, Any]:
    """The track record's KPIs (:func:`quant.kpi.summarize`) over the stored outcomes, of one
    ``strategy`` and of signals from ``since`` on when given, grouped ``by`` one of
    :data:`quant.kpi.GROUPS` (``None``: one group ``all``). Preliminary closing-bet signals
    form their own strategy group (``closing_bet (preliminary)``): the same trade decided at
    15:10 and at the close is not counted twice.

    Returns ``{"by", "groups": {name: KPIs}, "total": KPIs, "states", "reasons",
    "simulated", "rules"}``; ``simulated`` is true when any followed signal is on a
    simulated instrument. With ``grades`` also ``"grades": {strategy group: {grade: KPIs}}``
    (``unknown``: signals without a grade).

    Raises:
        quant.errors.ValidationError: ``by`` is not a group.
    """
    if by is not None and by not in GROUPS:
        summarize([], by)  # raises, naming the groups
    with session_scope() as session:
        rows = track_rows(session, strategy=strategy, since=since)
    records = [
        Record(
            signal_id=int(r[0]),
            strategy=_label(str(r[1]), r[11]),
            trade_date=r[2],
            state=str(r[3]),
            net_return=r[4],
            exit_date=r[5],
            grade=r[6],
            market=r[7],
            gate=r[8],
        )
        for r in rows
    ]
    states: dict[str, int] = defaultdict(int)
    reasons: dict[str, int] = defaultdict(int)
    for r in rows:
        states[str(r[3])] += 1
        if r[10]:
            reasons[f"{r[3]}:{r[10]}"] += 1
    extra: dict[str, Any] = {}
    if grades:
        by_strategy: dict[str, list[Record]] = defaultdict(list)
        for record in records:
            by_strategy[record.strategy].append(record)
        extra["grades"] = {
            name: {k: v.as_dict() for k, v in summarize(members, "grade").items()}
            for name, members in sorted(by_strategy.items())
        }
    return {
        **extra,
        "by": by,
        "groups": {k: v.as_dict() for k, v in summarize(records, by).items()},
        "total": summarize(records)["all"].as_dict() if records else None,
        "states": dict(sorted(states.items())),
        "reasons": dict(sorted(reasons.items())),
        "simulated": any(r[9] == SIMULATED_SOURCE for r in rows),
        "rules": current_versions(),
        "strategy": strategy,
        "since": since.isoformat() if since else None,
        "expected": expected({str(r[1]) for r in rows}),
    }


def expected(strategies: set[str]) -> dict[str, Any]:
    """What the newest nightly walk-forward backtest of each scan strategy expects, in the
    same KPI terms (the *expected* column beside the *realized* track record):
    ``{scan strategy: {"backtest", "run_id", "start", "end", "kpis"} | None}`` — ``None``
    when the strategy has no backtest counterpart or no completed nightly run yet."""
    out: dict[str, Any] = {}
    for name in sorted(strategies):
        try:
            counterpart = scan_strategy(name).backtest
        except ValidationError:  # a legacy or imported strategy the registry does not know
            counterpart = None
        found = latest_expectations(counterpart) if counterpart else None
        out[name] = None if found is None else {"backtest": counterpart, **found}
    return out


def stored_states() -> dict[str, int]:
    """Stored outcomes by state."""
    with session_scope() as session:
        return count_outcomes(session)
