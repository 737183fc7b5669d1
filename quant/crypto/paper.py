"""The crypto paper portfolio (issue 23): orders from signals, fills from the next bar, a
book replayed from its fills.

Orders are shaped as Upbit's (see :mod:`quant.crypto.exchange`): a BUY is a market buy of a
KRW amount (``ord_type=price``), a SELL a market sell of a volume of coins
(``ord_type=market``). A signal decided at the end of hour ``H`` becomes an order at ``H``;
it fills at the **open of the first bar starting at or after** ``H`` (the next bar: the
signal never trades on the bar it was decided from) moved against the order by
``slippage`` (a fraction), and pays ``fee_rate`` of the traded KRW (Upbit's KRW market:
0.05 %). Volumes are rounded down to 8 decimals (Upbit's precision).

Sizing (:class:`PaperRules`), when the signal arrives: a BUY spends ``order_fraction`` of
the equity — its market marked at the signal's price, other positions at the prices of the
signals seen in the same sync, else at cost — at most the cash less the fee; a SELL sells
the whole position. A BUY while holding the market, a SELL without a position, an order
below ``min_order_krw`` (Upbit: 5,000 KRW), a signal below ``min_confidence``, a signal
while the market has an order pending and a signal older than the ledger's last fill (it
came late: sizing it now would use later fills) are rejected with the rule named.

:func:`replay` rebuilds the book (cash, positions, realized P&L, fees) from the filled
orders alone; :func:`reconcile` compares a stored book with it — the sync stores the replay
and reports every difference, so a book can never drift from its ledger unnoticed.

Pure: values in, values out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from quant.errors import ValidationError

#: Coin volumes are kept to 8 decimals, as Upbit does.
VOLUME_DECIMALS = 8


@dataclass(frozen=True)
class PaperRules:
    """How the crypto paper portfolio trades: ``capital`` KRW to start, ``order_fraction``
    of equity per BUY, ``fee_rate`` and ``slippage`` as fractions, ``min_order_krw`` the
    smallest order (KRW), ``min_confidence`` the least confidence of a signal it takes.

    Raises:
        quant.errors.ValidationError: a value outside its range.
    """

    capital: float = 10_000_000.0
    order_fraction: float = 0.25
    fee_rate: float = 0.0005
    slippage: float = 0.0005
    min_order_krw: float = 5_000.0
    min_confidence: float = 0.55

    def __post_init__(self) -> None:
        checks = {
            "capital": self.capital > 0,
            "order_fraction": 0 < self.order_fraction <= 1,
            "fee_rate": 0 <= self.fee_rate < 0.1,
            "slippage": 0 <= self.slippage < 0.1,
            "min_order_krw": self.min_order_krw >= 0,
            "min_confidence": 0 <= self.min_confidence <= 1,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and ok):
                raise ValidationError(
                    f"crypto paper rule {name} is out of range: {value!r}", field=name, value=value
                )


@dataclass(frozen=True)
class Fill:
    """A filled order: ``side`` ``buy``/``sell`` of ``volume`` coins of ``market`` at
    ``price`` (KRW per coin, slippage included), ``fee`` KRW."""

    market: str
    side: str
    volume: float
    price: float
    fee: float


@dataclass
class Position:
    """Coins held of one market: ``volume``, ``cost`` (KRW paid, fees included) and the
    ``realized`` P&L of its sales (KRW, after fees)."""

    volume: float = 0.0
    cost: float = 0.0
    realized: float = 0.0


@dataclass
class Book:
    """A portfolio's state: ``cash`` KRW, positions by market, ``fees`` paid and the
    ``realized`` P&L, both KRW."""

    cash: float
    positions: dict[str, Position] = field(default_factory=dict)
    fees: float = 0.0
    realized: float = 0.0

    def equity(self, prices: Mapping[str, float]) -> float:
        """Cash plus the positions marked at ``prices`` (KRW per coin; a market without a
        price is marked at cost)."""
        held = 0.0
        for market, p in self.positions.items():
            price = prices.get(market)
            held += p.cost if price is None else p.volume * price
        return self.cash + held


def fill_price(side: str, open_price: float, rules: PaperRules) -> float:
    """The fill of a market order at a bar opening at ``open_price``: up by the slippage
    for a buy, down for a sell.

    Raises:
        quant.errors.ValidationError: an unknown side or a non-positive price.
    """
    if side not in ("buy", "sell"):
        raise ValidationError(f"order side must be buy or sell, got {side!r}", field="side")
    if not (math.isfinite(open_price) and open_price > 0):
        raise ValidationError(
            f"a fill needs a positive open price, got {open_price!r}", field="open"
        )
    return open_price * (1 + rules.slippage if side == "buy" else 1 - rules.slippage)


def floor_volume(volume: float) -> float:
    """``volume`` rounded down to :data:`VOLUME_DECIMALS`."""
    scale = float(10**VOLUME_DECIMALS)
    return math.floor(volume * scale + 1e-6) / scale


def size_order(
    book: Book,
    market: str,
    side: str,
    price: float,
    rules: PaperRules,
    prices: Mapping[str, float],
) -> tuple[float | None, str | None]:
    """Size an order of ``side`` on ``market`` when its signal arrives, ``price`` the
    signal's (KRW per coin): a buy's KRW amount (``order_fraction`` of the equity, at most the
    cash less the fee), a sell's volume (the whole position). Returns ``(amount, None)`` or
    ``(None, rule)`` naming why it is rejected (``holding``, ``no position``, ``min
    order``)."""
    held = book.positions.get(market)
    if side == "buy":
        if held is not None and held.volume > 0:
            return None, "holding"
        marks = {**prices, market: price}
        krw = min(book.equity(marks) * rules.order_fraction, book.cash / (1 + rules.fee_rate))
        krw = math.floor(krw)
        if krw < rules.min_order_krw or krw <= 0:
            return None, "min order"
        return float(krw), None
    if side != "sell":
        raise ValidationError(f"order side must be buy or sell, got {side!r}", field="side")
    if held is None or held.volume <= 0:
        return None, "no position"
    if held.volume * price < rules.min_order_krw:
        return None, "min order"
    return held.volume, None


def fill_order(market: str, side: str, amount: float, open_price: float, rules: PaperRules) -> Fill:
    """The fill of a sized order at a bar opening at ``open_price``: a buy of ``amount`` KRW
    gets ``floor(amount / fill price)`` coins and pays the fee on top (Upbit's market buy);
    a sell of ``amount`` coins gets their KRW less the fee.

    Raises:
        quant.errors.ValidationError: an unknown side, a non-positive price or amount.
    """
    price = fill_price(side, open_price, rules)
    if not (math.isfinite(amount) and amount > 0):
        raise ValidationError(f"an order amount must be positive, got {amount!r}", field="amount")
    if side == "buy":
        volume = floor_volume(amount / price)
        return Fill(market, side, volume, price, volume * price * rules.fee_rate)
    return Fill(market, side, amount, price, amount * price * rules.fee_rate)


def apply(book: Book, fill: Fill) -> None:
    """Book ``fill``: cash, the position, fees and realized P&L.

    Raises:
        quant.errors.ValidationError: a fill that spends more cash than the book has, or
            sells more than it holds (a ledger that cannot be).
    """
    notional = fill.volume * fill.price
    position = book.positions.setdefault(fill.market, Position())
    book.fees += fill.fee
    if fill.side == "buy":
        spent = notional + fill.fee
        if spent > book.cash + 1e-6:
            raise ValidationError(
                f"a buy of {fill.volume} {fill.market} spends {spent:,.2f} KRW with "
                f"{book.cash:,.2f} KRW in cash",
                field="volume",
                value=fill.volume,
            )
        book.cash -= spent
        position.volume = round(position.volume + fill.volume, VOLUME_DECIMALS)
        position.cost += spent
        return
    if fill.volume > position.volume + 10**-VOLUME_DECIMALS:
        raise ValidationError(
            f"a sell of {fill.volume} {fill.market} exceeds the {position.volume} held",
            field="volume",
            value=fill.volume,
        )
    share = fill.volume / position.volume
    cost = position.cost * share
    proceeds = notional - fill.fee
    pnl = proceeds - cost
    book.cash += proceeds
    book.realized += pnl
    position.realized += pnl
    position.cost -= cost
    position.volume = round(position.volume - fill.volume, VOLUME_DECIMALS)
    if position.volume <= 0:
        position.volume = 0.0
        position.cost = 0.0


def replay(capital: float, fills: Iterable[Fill]) -> Book:
    """The book after ``fills`` (in order) from ``capital`` KRW of cash.

    Raises:
        quant.errors.ValidationError: see :func:`apply`.
    """
    book = Book(cash=capital)
    for f in fills:
        apply(book, f)
    return book


def reconcile(stored: Book, replayed: Book, tolerance: float = 0.01) -> list[str]:
    """The differences between a stored book and its replay, each a sentence naming the
    figure and both values; empty when they agree within ``tolerance`` (KRW, and coins ×
    1e-8 for volumes)."""
    out: list[str] = []
    for name in ("cash", "fees", "realized"):
        a, b = getattr(stored, name), getattr(replayed, name)
        if abs(a - b) > tolerance:
            out.append(f"{name}: stored {a:,.2f} KRW, ledger {b:,.2f} KRW")
    for market in sorted(set(stored.positions) | set(replayed.positions)):
        s = stored.positions.get(market, Position())
        r = replayed.positions.get(market, Position())
        if abs(s.volume - r.volume) > 10**-VOLUME_DECIMALS:
            out.append(f"{market} volume: stored {s.volume:.8f}, ledger {r.volume:.8f}")
        if abs(s.cost - r.cost) > tolerance:
            out.append(f"{market} cost: stored {s.cost:,.2f} KRW, ledger {r.cost:,.2f} KRW")
        if abs(s.realized - r.realized) > tolerance:
            out.append(
                f"{market} realized: stored {s.realized:,.2f} KRW, ledger {r.realized:,.2f} KRW"
            )
    return out
