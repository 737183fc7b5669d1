"""Paper portfolios: which signals a portfolio takes, how much of each (the sizer of domain
notes §10), and one trading day of the book — pure functions over plain data.

A portfolio trades the *outcomes* of signals (``quant.outcomes`` via the track record): a
signal is bought on its outcome's entry session at the entry price and sold on its exit
session at the exit price, so the portfolio and the track record follow one exit plan each.
What the portfolio adds is the money: whether it takes the signal (strategy, phase, grade, the
gate, the loss limits, free slots and cash), how many shares, what it pays (slippage,
commission, the dated sell tax of §8) and its cash and equity every day.

**Sizer** (§10): R = ``risk_per_trade`` (0.5 %) of the equity at the previous close; the risk
of a trade = R × the grade's weight (S 1.5, A 1.0, B 0.5, C 0; VCP's Textbook 1.5, Strong 1.0,
Good 0.5, weaker 0) × the gate's size multiplier (GREEN 1, YELLOW 0.5, RED 0, UNKNOWN 0.5);
position value = risk / stop distance (the signal's own stop when it has one, else 3 %),
capped at ``max_position_fraction`` (50 %) of equity and by the cash left after fees;
quantity = floor(value / fill price). **Loss limits**: once the realized loss of the day
reaches 2R, or of the ISO week 4R, no new entries until the next day / week.

Prices are KRW per share; amounts KRW; fractions are fractions of notional or equity.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from quant.errors import ValidationError

#: Defaults of the grade weights (§10 for S/A/B/C; VCP's ratings mapped onto the same scale).
DEFAULT_GRADE_WEIGHTS: dict[str, float] = {
    "S": 1.5,
    "A": 1.0,
    "B": 0.5,
    "C": 0.0,
    "Textbook": 1.5,
    "Strong": 1.0,
    "Good": 0.5,
    "Developing": 0.0,
    "Weak": 0.0,
}
#: Size multiplier by the gate colour the signal was decided under (§10: RED no new entries,
#: YELLOW half size). ``UNKNOWN`` (an input was missing) and no gate at all are treated as
#: YELLOW: neither a full position nor a silent refusal.
DEFAULT_GATE_SIZE: dict[str, float] = {"GREEN": 1.0, "YELLOW": 0.5, "RED": 0.0, "UNKNOWN": 0.5}
#: Which phase of each strategy a portfolio trades by default: the closing bet's 15:10
#: decision (the one that can still be bought before the 15:20 auction), VCP's end of day.
DEFAULT_PHASES: dict[str, str] = {"closing_bet": "preliminary", "vcp": "final"}


@dataclass(frozen=True)
class PortfolioRules:
    """What a portfolio takes and how it sizes (see the module docstring for the rules).

    ``strategies`` it trades, each at ``phases[strategy]`` (default ``final``);
    ``min_grade_weight``: signals whose grade weighs less are not taken (0 takes every graded
    signal, though weight 0 still sizes to nothing); ``max_positions`` open at once;
    ``commission`` and ``slippage`` per side (fractions); the sell tax comes from
    ``quant.costs``.
    """

    strategies: tuple[str, ...] = ("closing_bet", "vcp")
    phases: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PHASES))
    grade_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_GRADE_WEIGHTS))
    min_grade_weight: float = 0.5
    gate_size: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_GATE_SIZE))
    risk_per_trade: float = 0.005
    default_stop_distance: float = 0.03
    max_position_fraction: float = 0.5
    max_positions: int = 10
    daily_loss_limit_r: float = 2.0
    weekly_loss_limit_r: float = 4.0
    commission: float = 0.00015
    slippage: float = 0.0005

    def __post_init__(self) -> None:
        checks: list[tuple[str, float, float, float]] = [
            ("risk_per_trade", self.risk_per_trade, 0.0, 0.1),
            ("default_stop_distance", self.default_stop_distance, 1e-4, 0.5),
            ("max_position_fraction", self.max_position_fraction, 1e-4, 1.0),
            ("daily_loss_limit_r", self.daily_loss_limit_r, 0.0, 1e6),
            ("weekly_loss_limit_r", self.weekly_loss_limit_r, 0.0, 1e6),
            ("commission", self.commission, 0.0, 0.05),
            ("slippage", self.slippage, 0.0, 0.05),
            ("min_grade_weight", self.min_grade_weight, 0.0, 10.0),
        ]
        for name, value, lo, hi in checks:
            if not (isinstance(value, int | float) and lo <= value <= hi):
                raise ValidationError(
                    f"portfolio rule {name}={value!r} is outside [{lo:g}, {hi:g}]",
                    field=name,
                    value=value,
                )
        if not (isinstance(self.max_positions, int) and 1 <= self.max_positions <= 1000):
            raise ValidationError(
                f"portfolio rule max_positions={self.max_positions!r} is not an integer in "
                "[1, 1000]",
                field="max_positions",
                value=self.max_positions,
            )
        if not self.strategies:
            raise ValidationError("a portfolio needs at least one strategy", field="strategies")
        for colour, size in self.gate_size.items():
            if not 0.0 <= size <= 1.0:
                raise ValidationError(
                    f"gate_size[{colour}]={size!r} is outside [0, 1]", field="gate_size"
                )
        for grade, weight in self.grade_weights.items():
            if not 0.0 <= weight <= 10.0:
                raise ValidationError(
                    f"grade_weights[{grade}]={weight!r} is outside [0, 10]", field="grade_weights"
                )

    def phase(self, strategy: str) -> str:
        """The phase of ``strategy``'s signals the portfolio trades."""
        return self.phases.get(strategy, "final")

    def to_json(self) -> dict[str, Any]:
        """The rules as JSON (stored with the portfolio)."""
        data = asdict(self)
        data["strategies"] = list(self.strategies)
        data["phases"] = dict(self.phases)
        data["grade_weights"] = dict(self.grade_weights)
        data["gate_size"] = dict(self.gate_size)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "portfolio rules") -> PortfolioRules:
        """Rules from JSON (:meth:`to_json`); missing keys take their defaults.

        Raises:
            quant.errors.ValidationError: an unknown key or a bad value, named with ``where``.
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(
                f"{where}: unknown rule(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})",
                field=unknown[0],
            )
        values = dict(data)
        if "strategies" in values:
            values["strategies"] = tuple(values["strategies"])
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ValidationError(f"{where}: {exc}", field=exc.field, value=exc.value) from None
        except TypeError as exc:
            raise ValidationError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class Candidate:
    """A signal whose outcome entered on the day being stepped: the portfolio may buy it at
    ``entry_price`` (quoted). ``stop`` is the signal's stop price (``None``: the default stop
    distance); ``gate`` the colour it was decided under; ``exit`` its exit on the same day,
    if any (a same-session round trip)."""

    signal_id: int
    instrument_id: int
    market: str
    strategy: str
    grade: str | None
    score: float | None
    gate: str | None
    entry_price: float
    stop: float | None = None
    exit: Exit | None = None


@dataclass(frozen=True)
class Exit:
    """A held signal's outcome exit on the day: sold at ``price`` (quoted) for ``reason``."""

    signal_id: int
    price: float
    reason: str


@dataclass(frozen=True)
class Position:
    """An open paper position: ``quantity`` shares filled at ``entry_fill`` (slippage
    included) on ``opened_on``; ``cost`` = what the buy took from cash (fill × quantity +
    commission); ``last_price`` the close it is marked at."""

    signal_id: int
    instrument_id: int
    market: str
    quantity: int
    opened_on: dt.date
    entry_fill: float
    cost: float
    stop: float | None
    last_price: float


@dataclass(frozen=True)
class Order:
    """An order of the day: ``side`` buy/sell, ``state`` filled/rejected (``reason`` says
    why a buy was refused); a filled order has a fill price, ``fees`` and ``tax`` (KRW)."""

    signal_id: int
    side: str
    quantity: int
    state: str
    reason: str | None = None
    price: float | None = None
    fees: float = 0.0
    tax: float = 0.0


@dataclass(frozen=True)
class Closed:
    """A position closed on the day: sold at ``exit_fill`` for ``reason``; ``realized`` =
    proceeds after commission and tax − the buy's cost (KRW)."""

    position: Position
    exit_fill: float
    reason: str
    realized: float


@dataclass(frozen=True)
class Day:
    """The book at the end of a day (see :func:`step_day`)."""

    trade_date: dt.date
    cash: float
    positions: tuple[Position, ...]
    market_value: float
    equity: float
    pnl: float
    realized: float
    orders: tuple[Order, ...]
    opened: tuple[Position, ...]
    closed: tuple[Closed, ...]
    blocked: str | None


def grade_weight(rules: PortfolioRules, grade: str | None) -> float:
    """The sizer's weight of ``grade`` (0 for no grade or one the rules do not know)."""
    return float(rules.grade_weights.get(grade or "", 0.0))


def gate_multiplier(rules: PortfolioRules, gate: str | None) -> float:
    """The size multiplier of the gate colour (no gate: as ``UNKNOWN``)."""
    return float(rules.gate_size.get(gate or "UNKNOWN", rules.gate_size.get("UNKNOWN", 0.5)))


def size(
    rules: PortfolioRules,
    *,
    equity: float,
    cash: float,
    price: float,
    stop: float | None,
    grade: str | None,
    gate: str | None,
) -> tuple[int, str | None]:
    """``(quantity, reason)``: the shares to buy at ``price`` (quoted) under the sizer, and
    why none when the quantity is 0 (grade weight 0, gate RED, a cap or the cash).

    Raises:
        quant.errors.ValidationError: ``price`` is not positive.
    """
    if not price > 0:
        raise ValidationError(f"entry price {price!r} is not positive", field="entry_price")
    weight = grade_weight(rules, grade)
    if weight <= 0:
        return 0, f"grade {grade or 'none'} has sizer weight 0"
    gate_mult = gate_multiplier(rules, gate)
    if gate_mult <= 0:
        return 0, f"gate {gate or 'UNKNOWN'}: no new entries"
    distance = rules.default_stop_distance
    if stop is not None and 0 < stop < price:
        distance = max(1.0 - stop / price, 1e-4)
    risk = equity * rules.risk_per_trade * weight * gate_mult
    value = min(risk / distance, equity * rules.max_position_fraction)
    fill = price * (1.0 + rules.slippage)
    affordable = cash / (fill * (1.0 + rules.commission))
    quantity = math.floor(min(value / fill, affordable))
    if quantity <= 0:
        if affordable < 1:
            return 0, f"cash {cash:,.0f} buys no share at {fill:,.0f}"
        return 0, f"position value {value:,.0f} buys no share at {fill:,.0f}"
    return quantity, None


def _sell(
    rules: PortfolioRules, position: Position, price: float, tax_rate: float
) -> tuple[float, float, float, float]:
    """``(fill, fees, tax, proceeds)`` of selling ``position`` at ``price`` (quoted)."""
    fill = price * (1.0 - rules.slippage)
    notional = fill * position.quantity
    fees = notional * rules.commission
    tax = notional * tax_rate
    return fill, fees, tax, notional - fees - tax


def step_day(
    rules: PortfolioRules,
    trade_date: dt.date,
    *,
    cash: float,
    positions: Sequence[Position],
    previous_equity: float,
    week_realized: float,
    exits: Mapping[int, Exit],
    candidates: Sequence[Candidate],
    closes: Mapping[int, float],
    tax_rate: Callable[[str, dt.date], float],
    accepting: bool = True,
) -> Day:
    """One trading day of a portfolio: sell the held signals whose outcome exits today, buy
    today's entries the rules take (best grade weight, then score, first), sell same-day
    round trips, then mark every open position at today's close (``closes`` by instrument;
    a missing close — a halt — keeps the last mark).

    ``previous_equity`` is the equity at the previous close (R is a fraction of it);
    ``week_realized`` the realized P&L of the ISO week's earlier days (KRW); ``accepting``
    False (a paused portfolio) takes no new entries. ``tax_rate(market, date)`` is the sell
    tax (``quant.costs``).

    Invariant: ``equity == cash + market_value``, and ``market_value`` is the sum of the
    open positions' ``quantity × last_price``.

    Raises:
        quant.errors.ValidationError: a candidate's entry price or an exit price is not
            positive, or ``tax_rate`` refuses a market/date (its error).
    """
    held = {p.signal_id: p for p in positions}
    orders: list[Order] = []
    closed: list[Closed] = []
    realized = 0.0

    def close(position: Position, exit_: Exit) -> None:
        nonlocal cash, realized
        if not exit_.price > 0:
            raise ValidationError(
                f"exit price {exit_.price!r} of signal {exit_.signal_id} is not positive",
                field="exit_price",
            )
        fill, fees, tax, proceeds = _sell(
            rules, position, exit_.price, tax_rate(position.market, trade_date)
        )
        cash += proceeds
        gain = proceeds - position.cost
        realized += gain
        orders.append(
            Order(position.signal_id, "sell", position.quantity, "filled", exit_.reason, fill,
                  fees, tax)
        )  # fmt: skip
        closed.append(Closed(position, fill, exit_.reason, gain))
        del held[position.signal_id]

    for signal_id in sorted(exits):
        if signal_id in held:
            close(held[signal_id], exits[signal_id])

    r_value = previous_equity * rules.risk_per_trade
    blocked: str | None = None
    if not accepting:
        blocked = "portfolio paused: no new entries"
    elif rules.daily_loss_limit_r > 0 and realized <= -rules.daily_loss_limit_r * r_value:
        blocked = (
            f"daily loss limit: realized {realized:,.0f} today ≤ −{rules.daily_loss_limit_r:g}R "
            f"({-rules.daily_loss_limit_r * r_value:,.0f})"
        )
    elif (
        rules.weekly_loss_limit_r > 0
        and week_realized + realized <= -rules.weekly_loss_limit_r * r_value
    ):
        blocked = (
            f"weekly loss limit: realized {week_realized + realized:,.0f} this week ≤ "
            f"−{rules.weekly_loss_limit_r:g}R ({-rules.weekly_loss_limit_r * r_value:,.0f})"
        )

    ordered = sorted(
        (c for c in candidates if c.signal_id not in held),
        key=lambda c: (-grade_weight(rules, c.grade), -(c.score or 0.0), c.signal_id),
    )
    opened: list[Position] = []
    for cand in ordered:
        if not cand.entry_price > 0:
            raise ValidationError(
                f"entry price {cand.entry_price!r} of signal {cand.signal_id} is not positive",
                field="entry_price",
            )
        if blocked is not None:
            orders.append(Order(cand.signal_id, "buy", 0, "rejected", blocked))
            continue
        if len(held) >= rules.max_positions:
            orders.append(
                Order(cand.signal_id, "buy", 0, "rejected",
                      f"max positions ({rules.max_positions}) held")
            )  # fmt: skip
            continue
        quantity, why = size(
            rules,
            equity=previous_equity,
            cash=cash,
            price=cand.entry_price,
            stop=cand.stop,
            grade=cand.grade,
            gate=cand.gate,
        )
        if quantity == 0:
            orders.append(Order(cand.signal_id, "buy", 0, "rejected", why))
            continue
        fill = cand.entry_price * (1.0 + rules.slippage)
        fees = fill * quantity * rules.commission
        cost = fill * quantity + fees
        cash -= cost
        position = Position(
            signal_id=cand.signal_id,
            instrument_id=cand.instrument_id,
            market=cand.market,
            quantity=quantity,
            opened_on=trade_date,
            entry_fill=fill,
            cost=cost,
            stop=cand.stop,
            last_price=cand.entry_price,
        )
        held[cand.signal_id] = position
        opened.append(position)
        orders.append(Order(cand.signal_id, "buy", quantity, "filled", None, fill, fees, 0.0))
        if cand.exit is not None:
            close(position, cand.exit)

    marked = []
    for position in held.values():
        close_price = closes.get(position.instrument_id)
        if close_price is not None and close_price > 0:
            position = replace(position, last_price=float(close_price))
        marked.append(position)
    marked.sort(key=lambda p: p.signal_id)
    market_value = sum(p.quantity * p.last_price for p in marked)
    equity = cash + market_value
    return Day(
        trade_date=trade_date,
        cash=cash,
        positions=tuple(marked),
        market_value=market_value,
        equity=equity,
        pnl=equity - previous_equity,
        realized=realized,
        orders=tuple(orders),
        opened=tuple(opened),
        closed=tuple(closed),
        blocked=blocked,
    )
