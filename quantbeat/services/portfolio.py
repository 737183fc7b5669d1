"""Paper portfolios (seed 004 Task 3.3; rules in :mod:`quant.portfolio`): a named portfolio
with starting capital and rules takes new signals at their outcome's entry, exits them at the
outcome's exit (so a portfolio and the track record follow the same exit plans), marks its
positions to market at every close, and stores orders, fills, positions, cash and daily
equity and P&L.

A portfolio is updated session by session from the day after its last stored day through the
requested day. Each portfolio-day is one transaction: a crash leaves every earlier day intact
and the interrupted day absent, so the next update redoes it. A stored day is never stepped
again: re-running an update changes nothing. :func:`rebuild` replays a portfolio from its
start (after the outcome rules or its own rules changed).

Signals are followed by the track record first (``signal_outcomes``); a day whose outcomes
are not computed yet simply has no entries or exits, so the pipeline updates the track record
before the portfolios.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import structlog

from db import portfolios as store
from db.engine import session_scope
from db.models import Portfolio
from quant.costs import DEFAULT_TAX
from quant.errors import NotFound, ValidationError
from quant.portfolio import PortfolioRules, step_day
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import krx_calendar
from quantbeat.services import announce

log = structlog.get_logger(__name__)

#: A portfolio's name: what the CLI and the API address it by.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValidationError(
            f"portfolio name {name!r} must be 1-64 letters, digits, '_', '.' or '-' "
            "(starting with a letter or digit)",
            field="name",
            value=name,
        )
    return name


def create(
    name: str,
    *,
    capital: float,
    start_date: dt.date,
    rules: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create portfolio ``name`` with ``capital`` KRW from ``start_date`` under ``rules``
    (JSON of :class:`quant.portfolio.PortfolioRules`; missing keys take the defaults).

    Returns the portfolio as :func:`describe` does.

    Raises:
        quant.errors.ValidationError: a bad name, capital or rule (named), or the name is
            taken.
    """
    _check_name(name)
    if not (isinstance(capital, int | float) and 1_000 <= capital <= 1e15):
        raise ValidationError(
            f"capital {capital!r} must be between 1,000 and 1e15 KRW", field="capital"
        )
    parsed = PortfolioRules.from_json(rules or {}, where=f"portfolio {name}")
    with session_scope() as session:
        if store.by_name(session, name) is not None:
            raise ValidationError(f"portfolio {name!r} exists already", field="name", value=name)
        row = store.create(
            session,
            name=name,
            capital=float(capital),
            start_date=start_date,
            rules=parsed.to_json(),
        )
        return describe_row(row, None, simulated=_simulated(session, row.id))


def _get(session: Any, name: str) -> Portfolio:
    row = store.by_name(session, name)
    if row is None:
        raise NotFound(f"no portfolio named {name!r} (quantbeat portfolio list)")
    return row


def _simulated(session: Any, portfolio_id: int) -> bool:
    """Whether the portfolio trades simulated data: a position in a simulated instrument, or
    (no position yet) this deployment's market source is the simulated one."""
    return store.simulated(session, portfolio_id) or get_settings().market_source == "simulated"


def describe_row(row: Portfolio, last: Any, *, simulated: bool = False) -> dict[str, Any]:
    """A portfolio and its latest day as JSON (``simulated``: it trades simulated data)."""
    equity = last.equity if last is not None else row.capital
    return {
        "name": row.name,
        "simulated": simulated,
        "capital": row.capital,
        "start_date": row.start_date.isoformat(),
        "state": row.state,
        "rules": row.rules,
        "through": last.trade_date.isoformat() if last is not None else None,
        "cash": last.cash if last is not None else row.capital,
        "market_value": last.market_value if last is not None else 0.0,
        "equity": equity,
        "return": equity / row.capital - 1.0,
        "positions": last.positions if last is not None else 0,
    }


def list_portfolios() -> list[dict[str, Any]]:
    """Every portfolio with its latest day."""
    with session_scope() as session:
        return [
            describe_row(
                row, store.last_day(session, row.id), simulated=_simulated(session, row.id)
            )
            for row in store.all_portfolios(session)
        ]


def describe(name: str) -> dict[str, Any]:
    """Portfolio ``name`` with its latest day, its open positions and its statistics
    (days, entries, exits, realized P&L, maximum drawdown of daily equity).

    Raises:
        quant.errors.NotFound: no such portfolio.
    """
    with session_scope() as session:
        row = _get(session, name)
        history = store.days(session, row.id)
        out = describe_row(
            row, history[-1] if history else None, simulated=_simulated(session, row.id)
        )
        out["open"] = [
            _position(p, i, s) for p, i, s in store.position_rows(session, row.id, state="open")
        ]
        orders = store.orders_of(session, row.id)
        out["entries"] = sum(1 for o, _ in orders if o.side == "buy" and o.state == "filled")
        out["refused"] = sum(1 for o, _ in orders if o.side == "buy" and o.state == "rejected")
        out["exits"] = sum(1 for o, _ in orders if o.side == "sell")
        out["realized"] = sum(d.realized for d in history)
        out["fees"] = sum(f.fees for _, f in orders if f is not None)
        out["tax"] = sum(f.tax for _, f in orders if f is not None)
        peak, drawdown = row.capital, 0.0
        for day in history:
            peak = max(peak, day.equity)
            drawdown = min(drawdown, day.equity / peak - 1.0)
        out["max_drawdown"] = drawdown
        out["days"] = len(history)
        return out


def _position(p: Any, instrument: Any, signal: Any) -> dict[str, Any]:
    last = p.last_price if p.last_price is not None else p.entry_price
    return {
        "signal_id": p.signal_id,
        "market": instrument.market,
        "ticker": instrument.ticker,
        "name": instrument.name,
        "strategy": signal.strategy,
        "phase": signal.phase,
        "grade": signal.grade,
        "state": p.state,
        "quantity": p.quantity,
        "opened_on": p.opened_on.isoformat(),
        "entry_price": p.entry_price,
        "stop": p.stop,
        "last_price": last,
        "closed_on": p.closed_on.isoformat() if p.closed_on else None,
        "exit_price": p.exit_price,
        "exit_reason": p.exit_reason,
        "realized_pnl": p.realized_pnl,
        "unrealized_pnl": None if p.state != "open" else (last - p.entry_price) * p.quantity,
    }


def positions(name: str, *, state: str | None = None) -> list[dict[str, Any]]:
    """Portfolio ``name``'s positions (``state`` ``open``/``closed``; all by default).

    Raises:
        quant.errors.NotFound: no such portfolio.
        quant.errors.ValidationError: an unknown state.
    """
    if state not in (None, "open", "closed"):
        raise ValidationError(f"position state {state!r} is not open or closed", field="state")
    with session_scope() as session:
        row = _get(session, name)
        return [_position(p, i, s) for p, i, s in store.position_rows(session, row.id, state=state)]


def history(name: str, *, since: dt.date | None = None) -> list[dict[str, Any]]:
    """Portfolio ``name``'s days (cash, market value, equity, P&L, realized, open positions,
    why entries were blocked), oldest first.

    Raises:
        quant.errors.NotFound: no such portfolio.
    """
    with session_scope() as session:
        row = _get(session, name)
        return [
            {
                "trade_date": d.trade_date.isoformat(),
                "cash": d.cash,
                "market_value": d.market_value,
                "equity": d.equity,
                "pnl": d.pnl,
                "realized": d.realized,
                "positions": d.positions,
                "blocked": d.blocked,
            }
            for d in store.days(session, row.id, since)
        ]


def set_state(name: str, state: str) -> dict[str, Any]:
    """Pause (no new entries; exits and marks go on) or resume portfolio ``name``.

    Raises:
        quant.errors.NotFound: no such portfolio.
        quant.errors.ValidationError: ``state`` is not ``active`` or ``paused``.
    """
    if state not in ("active", "paused"):
        raise ValidationError(f"portfolio state {state!r} is not active or paused", field="state")
    with session_scope() as session:
        row = _get(session, name)
        row.state = state
        return describe_row(
            row, store.last_day(session, row.id), simulated=_simulated(session, row.id)
        )


def update(through: dt.date | None, *, name: str | None = None) -> dict[str, Any]:
    """Step every portfolio (or ``name``) session by session through ``through`` — never
    past the latest day whose bars and signal outcomes are stored (``None``: that day).

    Returns ``{"through", "portfolios": {name: {"days", "entries", "refused", "exits",
    "equity"}}}`` — ``days`` stepped now (0 when everything was stored already);
    ``through`` is ``None`` when no bar is stored at all.

    Raises:
        quant.errors.NotFound: ``name`` names no portfolio.
        quant.errors.ValidationError: a stored rule or an outcome's price is invalid (named).
    """
    with session_scope() as session:
        rows = [_get(session, name)] if name else store.all_portfolios(session)
        targets = [(r.id, r.name) for r in rows]
        ready = store.latest_ready_day(session)
    if ready is None:
        return {"through": None, "portfolios": {n: _nothing() for _, n in targets}}
    day = ready if through is None else min(through, ready)
    summary: dict[str, Any] = {}
    for portfolio_id, portfolio_name in targets:
        summary[portfolio_name] = _update_one(portfolio_id, day)
    return {"through": day.isoformat(), "portfolios": summary}


def _nothing() -> dict[str, Any]:
    return {"days": 0, "entries": 0, "refused": 0, "exits": 0, "equity": None}


def _update_one(portfolio_id: int, through: dt.date) -> dict[str, Any]:
    with session_scope() as session:
        row = session.get(Portfolio, portfolio_id)
        assert row is not None
        rules = PortfolioRules.from_json(row.rules, where=f"portfolio {row.name}")
        last = store.last_day(session, portfolio_id)
        first = row.start_date if last is None else last.trade_date + dt.timedelta(days=1)
        name = row.name
    counts = _nothing()
    if first > through:
        return counts
    phases = [(s, rules.phase(s)) for s in rules.strategies]
    for day in krx_calendar().sessions(first, through):
        # One transaction per portfolio-day: all of it is stored, or none of it.
        with session_scope() as session:
            row = session.get(Portfolio, portfolio_id)
            assert row is not None
            if store.has_day(session, portfolio_id, day):
                continue
            previous = store.last_day(session, portfolio_id)
            cash = previous.cash if previous is not None else row.capital
            equity = previous.equity if previous is not None else row.capital
            held = store.open_positions(session, portfolio_id)
            candidates = store.entries_on(session, day, phases)
            exits = store.exits_on(session, day, [p.signal_id for p in held])
            instruments = {p.instrument_id for p in held} | {c.instrument_id for c in candidates}
            result = step_day(
                rules,
                day,
                cash=cash,
                positions=held,
                previous_equity=equity,
                week_realized=store.week_realized(session, portfolio_id, day),
                exits=exits,
                candidates=candidates,
                closes=store.closes_on(session, day, sorted(instruments)),
                tax_rate=DEFAULT_TAX.rate,
                accepting=row.state == "active",
            )
            store.write_day(session, portfolio_id, result)
            if day == through:
                # the day being brought up to date is announced; a catch-up over past days
                # (a new or rebuilt portfolio) tells nobody about its history
                announce.positions(session, name, result)
        counts["days"] += 1
        counts["entries"] += len(result.opened)
        counts["refused"] += sum(1 for o in result.orders if o.state == "rejected")
        counts["exits"] += len(result.closed)
        counts["equity"] = result.equity
    log.info("portfolio.updated", portfolio=name, through=through.isoformat(), **counts)
    return counts


def rebuild(name: str, *, through: dt.date | None) -> dict[str, Any]:
    """Delete what portfolio ``name`` traded and replay it from its start through
    ``through`` (after the outcome rules or the portfolio's rules changed).

    Raises:
        quant.errors.NotFound: no such portfolio.
    """
    with session_scope() as session:
        row = _get(session, name)
        store.reset(session, row.id)
    return update(through, name=name)


def is_simulated(name: str) -> bool:
    """Whether portfolio ``name`` trades simulated data (see :func:`describe_row`).

    Raises:
        quant.errors.NotFound: no such portfolio.
    """
    with session_scope() as session:
        return _simulated(session, _get(session, name).id)
