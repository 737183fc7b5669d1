"""The crypto paper portfolio's order sync (issue 23): signals → paper orders → fills from
the next bar → the book, reconciled with its ledger every run. No live order is ever sent
(:mod:`quant.crypto.exchange`).

:func:`sync_orders` (beat ``crypto-order-sync-hourly``, after the signal), in one
transaction holding the book's row lock (two syncs of a portfolio run one after the other):

1. fills the pending orders whose next bar has closed, oldest first (a BUY's KRW must still
   be in cash, else it is rejected ``cash``); an order whose next bar never came within a
   day is rejected ``no bar``;
2. turns every BUY/SELL signal without an order into one — sized against the book at that
   moment, or rejected with the rule named (:func:`quant.crypto.paper.size_order`,
   ``confidence``, ``order pending``, ``late signal``: older than the ledger's last fill) —
   and fills it at once when its bar is already stored (a catch-up after an outage trades
   in the order the signals came);
3. replays the ledger (every filled order) into a book, compares the stored book with it
   (:func:`quant.crypto.paper.reconcile`: any difference is logged and kept in ``drift``),
   marks the positions at the last hourly close and stores the replay.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog
from sqlalchemy import select

from db.crypto import (
    book,
    ensure_book,
    filled_orders,
    first_bar_from,
    last_close,
    orders,
    signals_without_order,
)
from db.engine import session_scope
from db.models import CryptoBook, CryptoOrder, Instrument
from quant.crypto.exchange import upbit_order_body
from quant.crypto.paper import (
    Book,
    Fill,
    PaperRules,
    Position,
    apply,
    fill_order,
    reconcile,
    replay,
    size_order,
)
from quant.errors import ValidationError
from quantbeat.infra.settings import get_settings
from quantbeat.services.collect import floor_to_interval

log = structlog.get_logger("quantbeat.services.crypto_paper")

#: The crypto paper portfolio's name.
PORTFOLIO = "crypto-paper"
#: How long an order waits for its next bar before it is rejected.
FILL_WITHIN = dt.timedelta(hours=24)


def sync_orders(
    at: dt.datetime | None = None, portfolio: str = PORTFOLIO, rules: PaperRules | None = None
) -> dict[str, Any]:
    """Run the order sync of ``portfolio`` up to ``at`` (default now, floored to the hour;
    see the module docstring). Returns ``{"portfolio", "at", "placed", "filled",
    "rejected", "pending", "capital", "cash", "equity", "realized", "fees", "positions",
    "drift", "simulated"}`` (KRW; ``drift`` the differences found — the stored book against
    its ledger before the run, then the run's own bookkeeping against the ledger it wrote —
    empty when both agreed; the stored book is the ledger's replay either way).

    Raises:
        quant.errors.ValidationError: ``at`` naive.
    """
    if at is not None and at.tzinfo is None:
        raise ValidationError(f"at must be timezone-aware, got {at!r}", field="at")
    when = floor_to_interval(at or dt.datetime.now(dt.UTC), 60)
    chosen = rules or PaperRules(capital=get_settings().crypto_paper_capital)
    counts = {"placed": 0, "filled": 0, "rejected": 0}
    with session_scope() as session:
        ensure_book(session, portfolio, chosen.capital)
        stored = book(session, portfolio, lock=True)
        assert stored is not None
        ledger = filled_orders(session, portfolio)
        current = replay(stored.capital, [_fill_of(o, m) for o, m in ledger])
        # the stored book against its ledger, before this run adds to either
        drift = reconcile(_stored_book(stored), current)
        markets = {o.instrument_id: m for o, m in ledger}
        marks: dict[str, float] = {}
        # the ledger's latest fill: a signal older than it came late (see below)
        last_fill = max((_utc(o.filled_at) for o, _ in ledger if o.filled_at), default=None)
        waiting: set[int] = set()  # instruments with an order still pending

        def try_fill(order: CryptoOrder, market: str) -> None:
            nonlocal last_fill
            requested = _utc(order.requested_at)
            bar = first_bar_from(session, order.instrument_id, requested, FILL_WITHIN)
            if bar is None or bar[0] + dt.timedelta(hours=1) > when:
                if requested + FILL_WITHIN + dt.timedelta(hours=1) <= when:
                    _reject(order, "no bar")
                    counts["rejected"] += 1
                else:
                    waiting.add(order.instrument_id)
                return
            amount = order.krw if order.side == "buy" else order.volume
            assert amount is not None
            fill = fill_order(market, order.side, amount, bar[1], chosen)
            if fill.side == "buy" and fill.volume * fill.price + fill.fee > current.cash + 1e-6:
                _reject(order, "cash")
                counts["rejected"] += 1
                return
            apply(current, fill)
            last_fill = bar[0] if last_fill is None else max(last_fill, bar[0])
            order.state = "filled"
            order.fill_price = fill.price
            order.filled_volume = fill.volume
            order.fee = fill.fee
            order.filled_at = bar[0]
            counts["filled"] += 1

        for order in orders(session, portfolio, state="pending"):
            market = markets.get(order.instrument_id) or _market_of(order)
            markets[order.instrument_id] = market
            try_fill(order, market)

        for signal, market in signals_without_order(session, portfolio, when, ("BUY", "SELL")):
            markets[signal.instrument_id] = market
            side = "buy" if signal.action == "BUY" else "sell"
            order = CryptoOrder(
                portfolio=portfolio,
                signal_id=signal.id,
                instrument_id=signal.instrument_id,
                side=side,
                requested_at=_utc(signal.at),
                state="pending",
            )
            session.add(order)
            counts["placed"] += 1
            marks[market] = signal.price
            amount: float | None
            why: str | None
            if signal.confidence < chosen.min_confidence:
                amount, why = None, "confidence"
            elif last_fill is not None and _utc(signal.at) < last_fill:
                # stored after later bars already filled orders: sized now it would see them
                amount, why = None, "late signal"
            elif signal.instrument_id in waiting:
                amount, why = None, "order pending"
            else:
                amount, why = size_order(current, market, side, signal.price, chosen, marks)
            if amount is None:
                _reject(order, why or "rejected")
                counts["rejected"] += 1
                continue
            if side == "buy":
                order.krw = amount
            else:
                order.volume = amount
            order.body = upbit_order_body(
                market,
                side,
                krw=order.krw,
                volume=order.volume,
                identifier=f"quantbeat-{portfolio}-{signal.id}",
            )
            session.flush()
            try_fill(order, market)

        session.flush()
        replayed = replay(
            stored.capital, [_fill_of(o, m) for o, m in filled_orders(session, portfolio)]
        )
        # the run's own bookkeeping against the ledger it wrote
        drift += [f"after this run: {d}" for d in reconcile(current, replayed)]
        for ident, market in markets.items():
            close = last_close(session, ident, when)
            if close is not None:
                marks[market] = close
        _store(stored, replayed, marks, drift, when)
        pending_left = len(orders(session, portfolio, state="pending"))
        summary = _book_summary(stored)
    if drift:
        log.warning("crypto.book_drift", portfolio=portfolio, differences=drift[:10])
    log.info("crypto.order_sync", portfolio=portfolio, at=when.isoformat(), **counts,
             pending=pending_left, equity=round(summary["equity"], 2))  # fmt: skip
    return {
        "portfolio": portfolio,
        "at": when.isoformat(),
        **counts,
        "pending": pending_left,
        **summary,
        "drift": drift,
        "simulated": get_settings().crypto_source == "simulated",
    }


def book_view(portfolio: str = PORTFOLIO, orders_shown: int = 10) -> dict[str, Any] | None:
    """``portfolio``'s stored book (cash, equity, positions, drift, KRW) with its latest
    ``orders_shown`` orders, newest first; ``None`` before its first sync."""
    with session_scope() as session:
        row = book(session, portfolio)
        if row is None:
            return None
        recent = session.execute(
            select(CryptoOrder, Instrument.ticker)
            .join(Instrument, Instrument.id == CryptoOrder.instrument_id)
            .where(CryptoOrder.portfolio == portfolio)
            .order_by(CryptoOrder.id.desc())
            .limit(orders_shown)
        ).all()
        return {
            "portfolio": row.portfolio,
            **_book_summary(row),
            "drift": list(row.drift or []),
            "reconciled_at": None if row.reconciled_at is None else row.reconciled_at.isoformat(),
            "orders": [
                {
                    "market": ticker,
                    "side": o.side,
                    "requested_at": _utc(o.requested_at).isoformat(),
                    "state": o.state,
                    "reason": o.reason,
                    "fill_price": o.fill_price,
                    "volume": o.filled_volume,
                    "fee": o.fee,
                }
                for o, ticker in recent
            ],
        }


def _market_of(order: CryptoOrder) -> str:
    body = order.body or {}
    market = body.get("market") if isinstance(body, dict) else None
    if not market:
        raise ValidationError(
            f"paper order {order.id} has no market in its body", field="body", value=order.id
        )
    return str(market)


def _reject(order: CryptoOrder, reason: str) -> None:
    order.state = "rejected"
    order.reason = reason


def _fill_of(order: CryptoOrder, market: str) -> Fill:
    assert order.fill_price is not None
    assert order.filled_volume is not None
    return Fill(market, order.side, order.filled_volume, order.fill_price, order.fee or 0.0)


def _stored_book(row: CryptoBook) -> Book:
    positions = {
        m: Position(float(p["volume"]), float(p["cost"]), float(p.get("realized", 0.0)))
        for m, p in (row.positions or {}).items()
    }
    return Book(cash=row.cash, positions=positions, fees=row.fees, realized=row.realized)


def _store(
    row: CryptoBook, replayed: Book, marks: dict[str, float], drift: list[str], when: dt.datetime
) -> None:
    row.cash = replayed.cash
    row.fees = replayed.fees
    row.realized = replayed.realized
    row.equity = replayed.equity(marks)
    row.positions = {
        m: {"volume": p.volume, "cost": p.cost, "realized": p.realized, "price": marks.get(m)}
        for m, p in sorted(replayed.positions.items())
    }
    row.drift = drift
    row.marked_at = when
    row.reconciled_at = when


def _book_summary(row: CryptoBook) -> dict[str, Any]:
    return {
        "capital": row.capital,
        "cash": row.cash,
        "equity": row.equity,
        "realized": row.realized,
        "fees": row.fees,
        "positions": dict(row.positions or {}),
    }


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
