"""The signal history backfill: each scheduled strategy's own daily signals over the stored
bars, written as ``signals`` rows of their days (source ``backfill``), so the track record and
the paper portfolios have a past to follow.

The signals come from the backtest strategy that replays each scan
(:attr:`quantbeat.services.strategies.ScanStrategy.backtest`, :mod:`quant.backtest.strategies`),
evaluated once over the whole universe and range: an entry on bar ``t`` reads only the bars
(and flows) through ``t`` — the strategies are causal, which the look-ahead tests check — so a
backfilled signal of day ``d`` is what the strategy said on ``d``'s close, never informed by
later bars. It is **not** the full scan: no news scores, no AI analysis, no buy-window
(preliminary) decision, and the VCP replay keeps only confirmed, not extended breakouts (no
``forming`` or ``unconfirmed`` candidates). Each row's ``reasons`` say so.

What a row holds: ``phase`` ``final``; ``entry_price`` the bar's close (both strategies'
decision price: the closing bet buys at the close, and a VCP breakout stored as confirmed
enters at its session's close, :mod:`quant.outcomes`); ``score`` the strategy's priority (the
closing-bet V2 total, the VCP composite score); ``grade`` S/A/B from the closing bet's size
multiplier (1.5/1.0/0.5) or the VCP rating of its score (:func:`quant.scans.vcp.vcp_rating`);
``status`` ``breakout`` for VCP; ``inputs`` the plan's ``stop`` when the strategy gives one;
``gate`` the colour of the day's latest stored Market Gate (``NULL`` without one).

Never overwrites: a day that holds a signal of the strategy from another source (a scan, an
import) is skipped whole — the scan decided that day — and an instrument-day already stored is
left as it is (insert … on conflict do nothing). A re-run inserts nothing.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import numpy as np
import structlog

from db.candles import universe
from db.engine import session_scope
from db.signal_history import candle_range, existing_signals, gate_colors, insert_new_signals
from quant.backtest.strategies import get as backtest_strategy
from quant.errors import ValidationError
from quant.market.types import KRX_MARKETS
from quant.scans.vcp import vcp_rating
from quantbeat.services.backtests import load_market
from quantbeat.services.strategies import canonical_strategy, scan_strategy, scan_strategy_names

log = structlog.get_logger(__name__)

#: The ``source`` of the rows this module writes.
SOURCE = "backfill"
#: Closing-bet grade by the strategy's size multiplier (domain notes §10 weights).
_BET_GRADES = {1.5: "S", 1.0: "A", 0.5: "B"}


def _strategies(strategy: str | None) -> list[tuple[str, str]]:
    """``(scan name, backtest name)`` of the scheduled strategies that have a backtest
    counterpart, or of ``strategy`` alone."""
    if strategy is not None:
        name = canonical_strategy(strategy)
        scan = scan_strategy(name)
        if scan.backtest is None:
            raise ValidationError(
                f"strategy {name!r} has no backtest strategy to replay its signals",
                field="strategy",
                value=strategy,
            )
        return [(name, scan.backtest)]
    out = []
    for name in scan_strategy_names():
        scan = scan_strategy(name)
        if scan.scheduled and scan.backtest is not None:
            out.append((name, scan.backtest))
    return out


def _grade(scan: str, size_mult: float | None, score: float) -> str | None:
    if scan == "closing_bet" and size_mult is not None:
        return _BET_GRADES.get(round(size_mult, 2))
    if scan == "vcp":
        return vcp_rating(score, True)
    return None


def _finite(value: Any) -> float | None:
    v = float(value)
    return v if np.isfinite(v) else None


def backfill(
    since: dt.date | None = None,
    until: dt.date | None = None,
    *,
    strategy: str | None = None,
) -> dict[str, Any]:
    """Write the signals each scheduled strategy (or ``strategy``) gave on every session from
    ``since`` to ``until`` (defaults: the first and last stored KRX daily bar) over the listed
    KOSPI and KOSDAQ instruments, as described in the module docstring.

    Returns ``{"since", "until", "instruments", "strategies": {scan name: {"signals",
    "inserted", "skipped_days", "skipped_stored"}}, "seconds"}`` (``signals``: what the
    strategy gave in the range; ``skipped_days``: scanned days left alone; ``skipped_stored``:
    instrument-days already stored). ``since``/``until`` are ``None`` when no bar is stored.

    Raises:
        quant.errors.ValidationError: an unknown strategy, one without a backtest
            counterpart, or ``since`` after ``until``.
    """
    t0 = time.perf_counter()
    chosen = _strategies(strategy)
    markets = [m.value for m in KRX_MARKETS]
    with session_scope() as session:
        members = universe(session, markets)
        stored = candle_range(session, markets)
    if stored is None or not members:
        return {"since": None, "until": None, "instruments": len(members), "strategies": {},
                "seconds": round(time.perf_counter() - t0, 3)}  # fmt: skip
    start = since or stored[0]
    end = until or stored[1]
    if start > end:
        raise ValidationError(
            f"since {start.isoformat()} is after until {end.isoformat()}", field="since"
        )
    needs_flows = any(backtest_strategy(b).needs_flows for _, b in chosen)
    loaded = load_market(members, start, end, flows=needs_flows)
    market = loaded.market
    days = market.times.astype("datetime64[D]")
    last = int(np.searchsorted(days, np.datetime64(end, "D"), side="right"))
    first = loaded.start_index
    ids = [ident for ident, _ in members]
    with session_scope() as session:
        gates = gate_colors(session, start, end)
    summary: dict[str, Any] = {}
    for scan_name, backtest in chosen:
        spec = backtest_strategy(backtest)
        signals = spec.signals(market, None, loaded.flows if spec.needs_flows else None)
        entries = np.asarray(signals.entries)[first:last]
        with session_scope() as session:
            scanned, keys = existing_signals(session, scan_name, "final", start, end)
        rows: list[dict[str, Any]] = []
        skipped_days = set()
        skipped_stored = 0
        bars, cols = np.nonzero(entries)
        for b, c in zip(bars.tolist(), cols.tolist(), strict=True):
            t = first + b
            day = days[t].astype(dt.date)
            iid = ids[c]
            if day in scanned:
                skipped_days.add(day)
                continue
            if (day, iid) in keys:
                skipped_stored += 1
                continue
            close = _finite(market.close[t, c])
            score = _finite(signals.priority[t, c]) if signals.priority is not None else None
            mult = _finite(signals.size_mult[t, c]) if signals.size_mult is not None else None
            stop = _finite(signals.stop[t, c]) if signals.stop is not None else None
            inputs: dict[str, Any] = {"backfill": backtest}
            if stop is not None:
                inputs["stop"] = stop
            if scan_name == "vcp":
                inputs["breakout"] = True
            if mult is not None:
                inputs["size_mult"] = mult
            rows.append(
                {
                    "trade_date": day,
                    "strategy": scan_name,
                    "instrument_id": iid,
                    "score": score,
                    "grade": _grade(scan_name, mult, score or 0.0),
                    "entry_price": close,
                    "status": "breakout" if scan_name == "vcp" else None,
                    "reasons": [
                        f"backfilled: the {backtest} backtest strategy's signal on the daily "
                        f"bars through {day.isoformat()} (no later bar read)",
                        "not the full scan: no news scores, no AI analysis",
                    ],
                    "inputs": inputs,
                    "source": SOURCE,
                    "gate": gates.get(day),
                    "phase": "final",
                    "volume_ratio": None,
                }
            )
        with session_scope() as session:
            inserted = insert_new_signals(session, rows)
        summary[scan_name] = {
            "signals": int(entries.sum()),
            "inserted": inserted,
            "skipped_days": len(skipped_days),
            "skipped_stored": skipped_stored,
        }
    result = {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "instruments": len(members),
        "strategies": summary,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    log.info("signals.backfilled", **result)
    return result
