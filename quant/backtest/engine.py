"""The backtest engine: long-only, vectorized inputs, one compiled event loop.

A strategy turns candles into signal arrays, shape ``(bars, instruments)``, using only what is
known at each bar's close (see :mod:`quant.backtest.strategies`). The engine then walks the
bars once, in a numba kernel, filling orders and applying stops. Everything a strategy can ask
for is in :class:`ExecutionConfig`; every array is float64 or bool, C-contiguous.

Timing of a bar ``t`` (prices in the instrument's currency; fractions are not percents):

1. **Open.** Exits decided at ``t-1`` for the next open fill at ``open[t]``. A position whose
   stop, trailing stop or target was gapped through fills at ``open[t]`` (worse than the
   level). The one-off rules for the first open after entry (``open_stop_loss``,
   ``open_take_profit``: the closing-bet gap rules) apply here. Then entries signalled at
   ``t-1`` fill at ``open[t]`` (``fill="next_open"``).
2. **Intrabar** (daily high/low, order unknown, so pessimistic): the stop or trailing stop is
   checked first (``low <= level`` fills at the level), then the partial target, then the
   target (``high >= level``).
3. **Close.** Exits signalled at ``t`` (and level breaks) fill at ``close[t]`` with
   ``fill="close"``, or at ``open[t+1]`` otherwise, and so does a time stop; the trailing
   stop ratchets up with ``high[t]``; entries signalled at ``t`` fill at ``close[t]``
   (``fill="close"``) or are queued for ``open[t+1]``.

The initial stop and the target are bracket orders, live from the entry fill; the partial
target is placed once the fill is known, so it is live from the bar after the entry; like
the target, it is a limit sell, so an open above its level fills at the open. An
entry whose stop is at or above its own fill is skipped.

Fills pay ``slippage`` (buys at ``price·(1+s)``, sells at ``price·(1−s)``) and ``fees`` on
the notional of each side. Sells also pay the dated sell-side transaction tax
(``sell_tax="table"``, the default): ``units · fill · rate`` where ``rate`` is the tax table's
(:mod:`quant.costs`, domain notes §8) for the column's market (:attr:`Market.markets`) on the
sell's bar date — so a backtest charges what the track record charges. ``sell_tax="none"``
charges no tax (e.g. to compare with a reference engine that has none).

A bar with a NaN price is a halt: nothing fills on it and equity keeps the last close. A
position still open after the last bar is reported as an open trade valued at the last close
(no exit fee, no tax: it is only valued).

Sizing (``units`` floored to ``lot``, ``lot=0`` for fractional units, never more than the
account's cash):

* ``"fraction"``: ``equity · fraction · size_mult / (fill · (1 + fees))``;
* ``"risk"`` (risk unit R): ``equity · risk · size_mult / (fill − stop)``, capped at the
  ``fraction`` budget; an entry without a stop below its fill is skipped.

Accounts: ``"shared"`` is one portfolio over all instruments (``initial_cash`` in total,
``max_positions`` concurrent positions, entries on one bar taken by descending ``priority``);
``"per_instrument"`` gives every instrument its own ``initial_cash`` (vectorbt's default for
many columns) and the total equity is their sum.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

from quant.costs import DEFAULT_TAX, TaxTable
from quant.errors import ValidationError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

#: Why a trade (or part of one) was closed, by the code the kernel records.
EXIT_REASONS: tuple[str, ...] = (
    "signal",
    "stop_loss",
    "take_profit",
    "trailing_stop",
    "time_stop",
    "level_break",
    "partial",
    "open",
)
_SIGNAL, _STOP, _TARGET, _TRAIL, _TIME, _LEVEL, _PARTIAL, _OPEN = range(8)

Fill = Literal["next_open", "close"]
Sizing = Literal["fraction", "risk"]
SellTax = Literal["table", "none"]
Accounts = Literal["shared", "per_instrument"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _jit(func: _F) -> _F:
    """``numba.njit(cache=True, nogil=True)``: compiled once per process, cached on disk."""
    return cast(_F, numba.njit(cache=True, nogil=True)(func))


def _nan_or_positive(name: str, value: float) -> None:
    if not (math.isnan(value) or (math.isfinite(value) and value > 0)):
        raise ValidationError(f"{name} must be > 0 or unset (NaN), got {value!r}", field=name)


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    """How orders fill and positions exit; every fraction is of a price or of equity.

    Unset optional rules are NaN (or 0 for counts). Raises
    :class:`quant.errors.ValidationError` naming the first bad field.
    """

    fill: Fill = "next_open"
    fees: float = 0.0
    slippage: float = 0.0
    stop_loss: float = math.nan
    take_profit: float = math.nan
    take_profit_r: float = math.nan
    open_stop_loss: float = math.nan
    open_take_profit: float = math.nan
    trailing: float = math.nan
    trail_after_partial: bool = False
    max_bars: int = 0
    time_stop_below_r: float = math.nan
    partial_r: float = math.nan
    partial_fraction: float = 0.5
    level_closes: int = 0
    signal_exits_after_partial: bool = False
    sizing: Sizing = "fraction"
    fraction: float = 1.0
    risk: float = 0.005
    lot: float = 1.0
    accounts: Accounts = "shared"
    max_positions: int = 0
    sell_tax: SellTax = "table"

    def __post_init__(self) -> None:
        # Fix: a value of the wrong type (e.g. a JSON string through ``from_dict``) raised a
        # bare TypeError from the range checks below (or, for the flags, reached the kernel);
        # it is bad input like any other, so it is a ValidationError naming the field.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(f.default, bool):
                if not isinstance(value, bool | np.bool_):
                    raise ValidationError(
                        f"{f.name} must be true or false, got {value!r}", field=f.name
                    )
            elif isinstance(f.default, float) and (
                isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real)
            ):
                raise ValidationError(f"{f.name} must be a number, got {value!r}", field=f.name)
        if self.fill not in ("next_open", "close"):
            raise ValidationError(
                f"fill must be 'next_open' or 'close', got {self.fill!r}", field="fill"
            )
        if self.sizing not in ("fraction", "risk"):
            raise ValidationError(
                f"sizing must be 'fraction' or 'risk', got {self.sizing!r}", field="sizing"
            )
        if self.sell_tax not in ("table", "none"):
            raise ValidationError(
                f"sell_tax must be 'table' or 'none', got {self.sell_tax!r}", field="sell_tax"
            )
        if self.accounts not in ("shared", "per_instrument"):
            raise ValidationError(
                f"accounts must be 'shared' or 'per_instrument', got {self.accounts!r}",
                field="accounts",
            )
        for name in ("fees", "slippage"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value < 0.1):
                raise ValidationError(f"{name} must be in [0, 0.1), got {value!r}", field=name)
        for name in (
            "stop_loss",
            "take_profit",
            "take_profit_r",
            "open_stop_loss",
            "open_take_profit",
            "trailing",
            "partial_r",
            "time_stop_below_r",
        ):
            _nan_or_positive(name, getattr(self, name))
        for name in ("stop_loss", "open_stop_loss", "trailing"):
            if getattr(self, name) >= 1:
                raise ValidationError(  # Fix: name the field, like every other check
                    f"{name} must be below 1, got {getattr(self, name)!r}", field=name
                )
        if not (0 < self.partial_fraction < 1):
            raise ValidationError(
                f"partial_fraction must be in (0, 1), got {self.partial_fraction!r}",
                field="partial_fraction",
            )
        if not (0 < self.fraction <= 1):
            raise ValidationError(
                f"fraction must be in (0, 1], got {self.fraction!r}", field="fraction"
            )
        if not (0 < self.risk <= 0.2):
            raise ValidationError(f"risk must be in (0, 0.2], got {self.risk!r}", field="risk")
        if not (math.isfinite(self.lot) and self.lot >= 0):
            raise ValidationError(f"lot must be >= 0, got {self.lot!r}", field="lot")
        for name in ("max_bars", "level_closes", "max_positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValidationError(f"{name} must be an integer >= 0, got {value!r}", field=name)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe fields (NaN → None)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = None if isinstance(value, float) and math.isnan(value) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutionConfig:
        """Inverse of :meth:`as_dict`; unknown keys raise ValidationError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(
                f"unknown execution setting(s): {', '.join(unknown)}", field="execution"
            )
        kwargs: dict[str, Any] = {k: (math.nan if v is None else v) for k, v in data.items()}
        return cls(**kwargs)


@dataclass(frozen=True, eq=False)
class Market:
    """Aligned bars of one or more instruments: arrays of shape ``(bars, instruments)``.

    A missing bar (instrument not listed yet, halted) is NaN in every price column.
    ``markets``: each instrument's market code (``KOSPI``, ``KOSDAQ``, ``UPBIT`` …), which
    the sell tax needs; None when unknown (then only ``sell_tax="none"`` can simulate).
    """

    times: npt.NDArray[np.datetime64]
    symbols: tuple[str, ...]
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    traded_value: FloatArray | None = None
    markets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        shape = (len(self.times), len(self.symbols))
        if self.traded_value is None:
            object.__setattr__(self, "traded_value", np.full(shape, np.nan))
        if self.markets is not None:
            markets = tuple(self.markets)
            if len(markets) != shape[1] or not all(isinstance(m, str) and m for m in markets):
                raise ValidationError(
                    f"market codes must be one non-empty string per instrument ({shape[1]}), "
                    f"got {self.markets!r}",
                    field="markets",
                )
            object.__setattr__(self, "markets", markets)
        for name in ("open", "high", "low", "close", "volume", "traded_value"):
            array = getattr(self, name)
            if array.shape != shape or array.dtype != np.float64:
                raise ValidationError(
                    f"market column {name} must be float64 of shape {shape}, got "
                    f"{array.dtype} {array.shape}",
                    field=name,
                )
        if len(self.times) > 1 and not (np.diff(self.times.astype(np.int64)) > 0).all():
            raise ValidationError("market times must be strictly increasing", field="times")

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.times), len(self.symbols))

    @classmethod
    def from_arrays(
        cls,
        times: npt.ArrayLike,
        symbols: Sequence[str],
        markets: Sequence[str] | str | None = None,
        **columns: npt.ArrayLike,
    ) -> Market:
        """Build from array-likes (1-D for one instrument, 2-D ``(bars, instruments)``);
        a missing ``volume`` is NaN; ``markets``: one code per instrument, or one for all.
        Raises ValidationError on shapes that do not fit."""
        t = np.asarray(times)
        if not np.issubdtype(t.dtype, np.datetime64):
            t = t.astype("datetime64[D]")
        n, m = len(t), len(symbols)
        arrays: dict[str, FloatArray] = {}
        for name in ("open", "high", "low", "close", "volume", "traded_value"):
            if name not in columns:
                if name in ("volume", "traded_value"):
                    arrays[name] = np.full((n, m), np.nan)
                    continue
                raise ValidationError(f"market column {name} is missing", field=name)
            a = np.asarray(columns[name], dtype=np.float64)
            if a.ndim == 1:
                a = a.reshape(-1, 1)
            if a.shape != (n, m):
                raise ValidationError(
                    f"market column {name} has shape {a.shape}, expected {(n, m)}", field=name
                )
            arrays[name] = np.ascontiguousarray(a)
        codes = (markets,) * m if isinstance(markets, str) else markets
        return cls(
            times=t,
            symbols=tuple(symbols),
            markets=None if codes is None else tuple(codes),
            **arrays,
        )

    def column(self, name: str) -> FloatArray:
        """One price/volume column, shape ``(bars, instruments)``."""
        value: FloatArray = getattr(self, name)
        return value

    def slice(self, stop: int) -> Market:
        """The first ``stop`` bars (what was known at bar ``stop - 1``)."""
        return Market(
            times=self.times[:stop],
            symbols=self.symbols,
            open=self.open[:stop],
            high=self.high[:stop],
            low=self.low[:stop],
            close=self.close[:stop],
            volume=self.volume[:stop],
            traded_value=self.column("traded_value")[:stop],
            markets=self.markets,
        )


@dataclass(frozen=True, eq=False)
class Signals:
    """What a strategy decided at each bar's close, shape ``(bars, instruments)``.

    ``stop``: absolute initial stop price for an entry signalled on that bar (NaN: none).
    ``level``: the trade's reference level (e.g. the breakout's VAH) for ``level_closes``.
    ``trail``: absolute trailing distance below the highest high since entry (e.g. 3·ATR).
    ``size_mult``: multiplier of the position budget (grade weights; 0 skips the entry).
    ``priority``: higher is taken first when entries compete for cash or slots.
    """

    entries: BoolArray
    exits: BoolArray
    stop: FloatArray | None = None
    level: FloatArray | None = None
    trail: FloatArray | None = None
    size_mult: FloatArray | None = None
    priority: FloatArray | None = None
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Trades:
    """One row per exit (a partial exit is its own row), in exit order.

    ``exit_bar`` is -1 and ``reason`` ``"open"`` for a position open at the end (valued at
    the last close). Prices are fill prices (slippage included); ``fees`` is both sides'
    fees of that row's units plus the sell tax; ``tax`` is the sell tax alone (part of
    ``fees``); ``pnl`` is net of fees and tax, in currency units.
    """

    column: IntArray
    entry_bar: IntArray
    exit_bar: IntArray
    entry_price: FloatArray
    exit_price: FloatArray
    units: FloatArray
    fees: FloatArray
    pnl: FloatArray
    reason: IntArray
    tax: FloatArray | None = None

    def __post_init__(self) -> None:
        if self.tax is None:
            object.__setattr__(self, "tax", np.zeros(len(self.column)))

    @property
    def tax_paid(self) -> FloatArray:
        """The sell tax of each row (currency units; 0 for an open row)."""
        result: FloatArray = self.tax if self.tax is not None else np.zeros(len(self.column))
        return result

    def __len__(self) -> int:
        return len(self.column)

    @property
    def closed(self) -> BoolArray:
        result: BoolArray = self.exit_bar >= 0
        return result

    @property
    def return_pct(self) -> FloatArray:
        """Net return of each row as a fraction of its entry cost."""
        cost = self.entry_price * self.units
        with np.errstate(divide="ignore", invalid="ignore"):
            result: FloatArray = np.where(cost > 0, self.pnl / cost, np.nan)
        return result

    def reasons(self) -> list[str]:
        return [EXIT_REASONS[int(r)] for r in self.reason]


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Trades and daily equity of one simulation.

    ``equity`` is the total portfolio value at each bar's close; ``accounts`` has one
    column per account (1 when shared); ``in_market`` counts open positions per bar.
    """

    times: npt.NDArray[np.datetime64]
    symbols: tuple[str, ...]
    equity: FloatArray
    accounts: FloatArray
    in_market: IntArray
    trades: Trades
    initial_cash: float
    config: ExecutionConfig

    @property
    def final_equity(self) -> float:
        return float(self.equity[-1]) if len(self.equity) else self.initial_cash

    def returns(self) -> FloatArray:
        """Per-bar simple returns of the total equity; the first against the initial cash."""
        if not len(self.equity):
            return np.empty(0)
        prev = np.concatenate(([self.initial_cash], self.equity[:-1]))
        result: FloatArray = self.equity / prev - 1.0
        return result

    def trade_rows(self) -> list[dict[str, Any]]:
        """Trades as JSON-friendly dicts (dates ISO strings; an open trade has no exit)."""
        t = self.trades
        times = self.times.astype("datetime64[D]").astype(str)
        ret = t.return_pct
        rows: list[dict[str, Any]] = []
        for i in range(len(t)):
            closed = t.exit_bar[i] >= 0
            rows.append(
                {
                    "symbol": self.symbols[int(t.column[i])],
                    "entry_time": str(times[t.entry_bar[i]]),
                    "exit_time": str(times[t.exit_bar[i]]) if closed else None,
                    "entry_price": float(t.entry_price[i]),
                    "exit_price": float(t.exit_price[i]),
                    "quantity": float(t.units[i]),
                    "fees": float(t.fees[i]),
                    "tax": float(t.tax_paid[i]),
                    "pnl": float(t.pnl[i]),
                    "return_pct": float(ret[i]),
                    "exit_reason": EXIT_REASONS[int(t.reason[i])],
                }
            )
        return rows


# --------------------------------------------------------------------------------------------
# The kernel
# --------------------------------------------------------------------------------------------


@_jit
def _floor_units(units: float, lot: float) -> float:
    if lot > 0.0:
        return float(np.floor(units / lot + 1e-9)) * lot  # math.floor is int64 in numba
    return units


@_jit
def _record(
    trades: tuple[
        IntArray,
        IntArray,
        IntArray,
        FloatArray,
        FloatArray,
        FloatArray,
        FloatArray,
        FloatArray,
        IntArray,
        FloatArray,
    ],
    k: int,
    column: int,
    entry_bar: int,
    exit_bar: int,
    entry_price: float,
    fill: float,
    units: float,
    entry_fee_per_unit: float,
    fees: float,
    tax: float,
    reason: int,
) -> float:
    """Write trade row ``k`` (``units`` sold at ``fill``, paying ``fees`` and the sell tax
    ``tax`` on the notional) and return the sale's net proceeds for the account's cash."""
    col, entry, exit_, entry_px, exit_px, units_out, fees_out, pnl, reasons, tax_out = trades
    fee_out = units * fill * fees
    tax_paid = units * fill * tax
    col[k] = column
    entry[k] = entry_bar
    exit_[k] = exit_bar
    entry_px[k] = entry_price
    exit_px[k] = fill
    units_out[k] = units
    fees_out[k] = fee_out + tax_paid + units * entry_fee_per_unit
    tax_out[k] = tax_paid
    pnl[k] = units * (fill - entry_price) - fees_out[k]
    reasons[k] = reason
    return units * fill - fee_out - tax_paid


@_jit
def _tax_at(tax_rates: FloatArray, tax_code: IntArray, t: int, c: int) -> float:
    """The sell tax of column ``c`` on bar ``t`` (0 without a tax table: ``tax_code[c] < 0``).
    A NaN rate (no rate for that market and date) is returned as NaN; :func:`simulate`
    rejects the run."""
    code = tax_code[c]
    if code < 0:
        return 0.0
    rate: float = tax_rates[t, code]
    return rate


@_jit
def _stop_for(fill: float, signal_stop: float, stop_loss: float) -> float:
    """The initial stop: the signal's stop, raised to ``fill·(1 − stop_loss)`` if higher."""
    level = signal_stop
    if not math.isnan(stop_loss):
        by_pct = fill * (1.0 - stop_loss)
        if math.isnan(level) or by_pct > level:
            level = by_pct
    return level


@_jit
def _units_for(
    fill: float,
    stop_level: float,
    equity: float,
    cash: float,
    weight: float,
    sizing_risk: bool,
    fraction: float,
    risk: float,
    fees: float,
    lot: float,
) -> float:
    """Units to buy at ``fill`` (0: skip the entry), as the module docstring's sizing says."""
    if stop_level >= fill:
        return 0.0  # would be stopped out at its own fill
    unit_cost = fill * (1.0 + fees)
    budget = equity * fraction * weight
    if sizing_risk:
        if math.isnan(stop_level):
            return 0.0
        size = min(equity * risk * weight / (fill - stop_level), budget / unit_cost)
    else:
        size = budget / unit_cost
    return _floor_units(min(size, cash / unit_cost), lot)


@_jit
def _targets(
    fill: float, stop_level: float, take_profit: float, take_profit_r: float, partial_r: float
) -> tuple[float, float, float]:
    """``(R per unit, target, partial target)`` of a new position (NaN where unset)."""
    r = fill - stop_level if stop_level < fill else np.nan
    target = np.nan
    if not math.isnan(take_profit):
        target = fill * (1.0 + take_profit)
    if not math.isnan(take_profit_r) and not math.isnan(r):
        by_r = fill + take_profit_r * r
        if math.isnan(target) or by_r < target:
            target = by_r
    partial = fill + partial_r * r if not math.isnan(partial_r) else np.nan
    return r, target, partial


@_jit
def _simulate(
    open_: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    entries: BoolArray,
    exits: BoolArray,
    stop: FloatArray,
    level: FloatArray,
    trail: FloatArray,
    mult: FloatArray,
    priority: FloatArray,
    flags: IntArray,
    params: FloatArray,
    initial_cash: float,
    tax_rates: FloatArray,
    tax_code: IntArray,
) -> tuple[FloatArray, IntArray, IntArray, IntArray, IntArray, FloatArray, FloatArray,
           FloatArray, FloatArray, FloatArray, IntArray, FloatArray, int]:  # fmt: skip
    n, m = close.shape
    has_stop = flags[0] != 0
    has_level = flags[1] != 0
    has_trail = flags[2] != 0
    has_mult = flags[3] != 0
    has_priority = flags[4] != 0
    fill_close = flags[5] != 0
    sizing_risk = flags[6] != 0
    shared = flags[7] != 0
    max_bars = flags[8]
    level_closes = flags[9]
    trail_after_partial = flags[10] != 0
    exits_after_partial = flags[11] != 0
    max_positions = flags[12]

    fees = params[0]
    slip = params[1]
    sl = params[2]
    tp = params[3]
    tp_r = params[4]
    open_sl = params[5]
    open_tp = params[6]
    trailing = params[7]
    time_below_r = params[8]
    partial_r = params[9]
    partial_frac = params[10]
    fraction = params[11]
    risk = params[12]
    lot = params[13]

    n_acc = 1 if shared else m
    cash = np.full(n_acc, initial_cash)
    n_open = np.zeros(n_acc, dtype=np.int64)
    acc_equity = np.zeros(n_acc)
    equity = np.empty((n, n_acc))
    in_market = np.zeros(n, dtype=np.int64)

    units = np.zeros(m)
    entry_px = np.zeros(m)
    entry_fee_unit = np.zeros(m)
    entry_bar = np.full(m, -1, dtype=np.int64)
    stop_px = np.full(m, np.nan)
    target_px = np.full(m, np.nan)
    partial_px = np.full(m, np.nan)
    trail_px = np.full(m, np.nan)
    high_since = np.zeros(m)
    r_unit = np.full(m, np.nan)
    ref_level = np.full(m, np.nan)
    below = np.zeros(m, dtype=np.int64)
    partial_done = np.zeros(m, dtype=np.bool_)
    first_open = np.zeros(m, dtype=np.bool_)  # a close-fill entry not yet past an open
    last_close = np.full(m, np.nan)
    pending_exit = np.zeros(m, dtype=np.bool_)
    pending_reason = np.zeros(m, dtype=np.int64)
    pending_entry = np.zeros(m, dtype=np.bool_)
    pend_stop = np.full(m, np.nan)
    pend_level = np.full(m, np.nan)
    pend_mult = np.ones(m)
    pend_priority = np.zeros(m)

    cap = 2 * int(entries.sum()) + m + 1
    t_col = np.empty(cap, dtype=np.int64)
    t_entry = np.empty(cap, dtype=np.int64)
    t_exit = np.empty(cap, dtype=np.int64)
    t_entry_px = np.empty(cap)
    t_exit_px = np.empty(cap)
    t_units = np.empty(cap)
    t_fees = np.empty(cap)
    t_pnl = np.empty(cap)
    t_reason = np.empty(cap, dtype=np.int64)
    t_tax = np.empty(cap)
    trades = (
        t_col, t_entry, t_exit, t_entry_px, t_exit_px, t_units, t_fees, t_pnl, t_reason, t_tax,
    )  # fmt: skip
    k = 0

    order = np.empty(m, dtype=np.int64)
    keys = np.empty(m)

    for t in range(n):
        # ---- 1. the open: pending exits, gap stops, then queued entries -------------------
        for c in range(m):
            o = open_[t, c]
            if units[c] > 0.0 and not math.isnan(o):
                px = np.nan
                reason = 0
                # Fix: the open rules apply at the first *traded* open after a close-fill
                # entry (``first_open``), not only at bar entry+1: after a halted bar the
                # next open is still the first one the position sees.
                first = first_open[c]
                first_open[c] = False
                if pending_exit[c]:
                    px = o
                    reason = pending_reason[c]
                elif first and not math.isnan(open_sl) and o <= entry_px[c] * (1.0 - open_sl):
                    px = o
                    reason = _STOP
                elif first and not math.isnan(open_tp) and o >= entry_px[c] * (1.0 + open_tp):
                    px = o
                    reason = _TARGET
                elif o <= stop_px[c] or o <= trail_px[c]:
                    px = o
                    # Fix: an unset (NaN) fixed stop must not label a trailing gap "stop_loss".
                    trail_hit = math.isnan(stop_px[c]) or trail_px[c] > stop_px[c]
                    reason = _TRAIL if trail_hit else _STOP
                elif o >= target_px[c]:
                    px = o
                    reason = _TARGET
                if not math.isnan(px):
                    a = 0 if shared else c
                    fill = px * (1.0 - slip)
                    cash[a] += _record(
                        trades,
                        k,
                        c,
                        entry_bar[c],
                        t,
                        entry_px[c],
                        fill,
                        units[c],
                        entry_fee_unit[c],
                        fees,
                        _tax_at(tax_rates, tax_code, t, c),
                        reason,
                    )
                    k += 1
                    units[c] = 0.0
                    n_open[a] -= 1
            if units[c] == 0.0:
                pending_exit[c] = False

        if not fill_close:
            # account equity at this open, for sizing
            for a in range(n_acc):
                acc_equity[a] = cash[a]
            for c in range(m):
                if units[c] > 0.0:
                    a = 0 if shared else c
                    o = open_[t, c]
                    acc_equity[a] += units[c] * (last_close[c] if math.isnan(o) else o)
            n_cand = 0
            for c in range(m):
                if pending_entry[c]:
                    order[n_cand] = c
                    keys[n_cand] = -pend_priority[c]
                    n_cand += 1
            if shared and has_priority and n_cand > 1:
                idx = np.argsort(keys[:n_cand], kind="mergesort")
                sorted_cols = order[:n_cand][idx].copy()
                order[:n_cand] = sorted_cols
            for j in range(n_cand):
                c = order[j]
                pending_entry[c] = False
                o = open_[t, c]
                if units[c] > 0.0 or math.isnan(o):
                    continue
                a = 0 if shared else c
                if max_positions > 0 and n_open[a] >= max_positions:
                    continue
                fill = o * (1.0 + slip)
                stop_level = _stop_for(fill, pend_stop[c], sl)
                size = _units_for(
                    fill, stop_level, acc_equity[a], cash[a], pend_mult[c],
                    sizing_risk, fraction, risk, fees, lot,
                )  # fmt: skip
                if not size > 0.0:
                    continue
                fee_in = size * fill * fees
                cash[a] -= size * fill + fee_in
                n_open[a] += 1
                units[c] = size
                entry_px[c] = fill
                entry_fee_unit[c] = fee_in / size
                entry_bar[c] = t
                stop_px[c] = stop_level
                r_unit[c], target_px[c], partial_px[c] = _targets(
                    fill, stop_level, tp, tp_r, partial_r
                )
                partial_done[c] = False
                first_open[c] = False
                trail_px[c] = np.nan
                high_since[c] = o
                ref_level[c] = pend_level[c]
                below[c] = 0

        # ---- 2. intrabar: stop first (pessimistic), then partial, then target ------------
        for c in range(m):
            if units[c] <= 0.0:
                continue
            lo = low[t, c]
            hi = high[t, c]
            if math.isnan(lo) or math.isnan(hi):
                continue
            if fill_close and entry_bar[c] == t:
                continue  # bought at this close: the bar's range is already past
            px = np.nan
            reason = 0
            if lo <= stop_px[c] or lo <= trail_px[c]:
                # the higher of the two levels is hit first on the way down. Fix: with no
                # fixed stop (NaN) the trailing level is the one hit; comparing with NaN
                # picked the NaN stop and the trailing stop never filled intrabar.
                if math.isnan(stop_px[c]) or trail_px[c] > stop_px[c]:
                    px = trail_px[c]
                    reason = _TRAIL
                else:
                    px = stop_px[c]
                    reason = _STOP
                px = min(px, open_[t, c]) if not math.isnan(open_[t, c]) else px
            a = 0 if shared else c
            if math.isnan(px) and not partial_done[c] and entry_bar[c] < t and hi >= partial_px[c]:
                part = _floor_units(units[c] * partial_frac, lot)
                if part > 0.0 and part < units[c]:
                    # a limit sell: a gap above the level fills at the (better) open
                    level_p = partial_px[c]
                    o = open_[t, c]
                    if not math.isnan(o) and o > level_p:
                        level_p = o
                    fill = level_p * (1.0 - slip)
                    cash[a] += _record(
                        trades,
                        k,
                        c,
                        entry_bar[c],
                        t,
                        entry_px[c],
                        fill,
                        part,
                        entry_fee_unit[c],
                        fees,
                        _tax_at(tax_rates, tax_code, t, c),
                        _PARTIAL,
                    )
                    k += 1
                    units[c] -= part
                partial_done[c] = True
            if math.isnan(px) and hi >= target_px[c]:
                px = target_px[c]
                reason = _TARGET
            if not math.isnan(px):
                fill = px * (1.0 - slip)
                cash[a] += _record(
                    trades,
                    k,
                    c,
                    entry_bar[c],
                    t,
                    entry_px[c],
                    fill,
                    units[c],
                    entry_fee_unit[c],
                    fees,
                    _tax_at(tax_rates, tax_code, t, c),
                    reason,
                )
                k += 1
                units[c] = 0.0
                n_open[a] -= 1
                pending_exit[c] = False

        # ---- 3. the close: signal/level/time exits, trailing update, entries -------------
        for c in range(m):
            cl = close[t, c]
            if math.isnan(cl):
                continue
            last_close[c] = cl
            if units[c] <= 0.0:
                continue
            if fill_close and entry_bar[c] == t:
                continue
            close_now = False
            reason = 0
            if has_level and level_closes > 0 and not math.isnan(ref_level[c]):
                if cl < ref_level[c]:
                    below[c] += 1
                else:
                    below[c] = 0
                if below[c] >= level_closes:
                    if fill_close:
                        close_now = True
                        reason = _LEVEL
                    else:
                        pending_exit[c] = True
                        pending_reason[c] = _LEVEL
            if exits[t, c] and (not exits_after_partial or partial_done[c]):
                if fill_close:
                    close_now = True
                    reason = _SIGNAL
                else:
                    pending_exit[c] = True
                    pending_reason[c] = _SIGNAL
            if (
                not close_now
                and not pending_exit[c]
                and max_bars > 0
                and t - entry_bar[c] >= max_bars
                and (
                    math.isnan(time_below_r)
                    or math.isnan(r_unit[c])
                    or cl < entry_px[c] + time_below_r * r_unit[c]
                )
            ):
                if fill_close:
                    close_now = True
                    reason = _TIME
                else:
                    pending_exit[c] = True
                    pending_reason[c] = _TIME
            if close_now:
                a = 0 if shared else c
                fill = cl * (1.0 - slip)
                cash[a] += _record(
                    trades,
                    k,
                    c,
                    entry_bar[c],
                    t,
                    entry_px[c],
                    fill,
                    units[c],
                    entry_fee_unit[c],
                    fees,
                    _tax_at(tax_rates, tax_code, t, c),
                    reason,
                )
                k += 1
                units[c] = 0.0
                n_open[a] -= 1
                pending_exit[c] = False
                continue
            hi = high[t, c]
            if not math.isnan(hi) and hi > high_since[c]:
                high_since[c] = hi
            if not trail_after_partial or partial_done[c]:
                if not math.isnan(trailing):
                    level_t = high_since[c] * (1.0 - trailing)
                    if math.isnan(trail_px[c]) or level_t > trail_px[c]:
                        trail_px[c] = level_t
                if has_trail and not math.isnan(trail[t, c]):
                    level_t = high_since[c] - trail[t, c]
                    if math.isnan(trail_px[c]) or level_t > trail_px[c]:
                        trail_px[c] = level_t

        if fill_close:
            for a in range(n_acc):
                acc_equity[a] = cash[a]
            for c in range(m):
                if units[c] > 0.0:
                    a = 0 if shared else c
                    acc_equity[a] += units[c] * last_close[c]
        n_cand = 0
        for c in range(m):
            if entries[t, c] and (units[c] == 0.0 or pending_exit[c]):
                if has_mult and not mult[t, c] > 0.0:
                    continue
                order[n_cand] = c
                keys[n_cand] = -priority[t, c] if has_priority else 0.0
                n_cand += 1
        if fill_close and shared and has_priority and n_cand > 1:
            idx = np.argsort(keys[:n_cand], kind="mergesort")
            sorted_cols = order[:n_cand][idx].copy()
            order[:n_cand] = sorted_cols
        for j in range(n_cand):
            c = order[j]
            if not fill_close:
                pending_entry[c] = True
                pend_stop[c] = stop[t, c] if has_stop else np.nan
                pend_level[c] = level[t, c] if has_level else np.nan
                pend_mult[c] = mult[t, c] if has_mult else 1.0
                pend_priority[c] = priority[t, c] if has_priority else 0.0
                continue
            cl = close[t, c]
            if units[c] > 0.0 or math.isnan(cl):
                continue
            a = 0 if shared else c
            if max_positions > 0 and n_open[a] >= max_positions:
                continue
            fill = cl * (1.0 + slip)
            stop_level = _stop_for(fill, stop[t, c] if has_stop else np.nan, sl)
            size = _units_for(
                fill, stop_level, acc_equity[a], cash[a], mult[t, c] if has_mult else 1.0,
                sizing_risk, fraction, risk, fees, lot,
            )  # fmt: skip
            if not size > 0.0:
                continue
            fee_in = size * fill * fees
            cash[a] -= size * fill + fee_in
            n_open[a] += 1
            units[c] = size
            entry_px[c] = fill
            entry_fee_unit[c] = fee_in / size
            entry_bar[c] = t
            stop_px[c] = stop_level
            r_unit[c], target_px[c], partial_px[c] = _targets(fill, stop_level, tp, tp_r, partial_r)
            partial_done[c] = False
            first_open[c] = True  # the open rules wait for the next traded open
            trail_px[c] = np.nan
            high_since[c] = cl
            ref_level[c] = level[t, c] if has_level else np.nan
            below[c] = 0

        # ---- equity at the close ---------------------------------------------------------
        for a in range(n_acc):
            equity[t, a] = cash[a]
        count = 0
        for c in range(m):
            if units[c] > 0.0:
                a = 0 if shared else c
                equity[t, a] += units[c] * last_close[c]
                count += 1
        in_market[t] = count

    # positions still open: one row each, valued at the last close
    for c in range(m):
        if units[c] > 0.0:
            # no exit fee: the position is only valued, not sold
            _record(
                trades, k, c, entry_bar[c], -1, entry_px[c], last_close[c], units[c],
                entry_fee_unit[c], 0.0, 0.0, _OPEN,
            )  # fmt: skip
            k += 1
    return (
        equity,
        in_market,
        t_col,
        t_entry,
        t_exit,
        t_entry_px,
        t_exit_px,
        t_units,
        t_fees,
        t_pnl,
        t_reason,
        t_tax,
        k,
    )


def _matrix(name: str, array: npt.ArrayLike | None, shape: tuple[int, int], dtype: Any) -> Any:
    if array is None:
        return np.zeros((1, 1), dtype=dtype)
    a = np.asarray(array)
    if a.ndim == 1 and shape[1] == 1:
        a = a.reshape(-1, 1)
    if a.shape != shape:
        raise ValidationError(f"signal {name} has shape {a.shape}, expected {shape}", field=name)
    if dtype is np.bool_ and a.dtype != np.bool_:
        raise ValidationError(f"signal {name} must be boolean, got {a.dtype}", field=name)
    return np.ascontiguousarray(a, dtype=dtype)


def sell_tax_rates(
    times: npt.NDArray[np.datetime64],
    markets: Sequence[str],
    table: TaxTable = DEFAULT_TAX,
    *,
    symbols: Sequence[str] | None = None,
) -> tuple[FloatArray, IntArray]:
    """The sell tax of every bar and instrument, for the kernel: ``(rates, codes)`` where
    ``rates[t, codes[c]]`` is the fraction of the sell notional an instrument ``c`` of
    ``markets[c]`` pays on the date of bar ``t`` (``rates`` is ``(bars, distinct markets)``,
    so a wide universe costs a few columns, not one per instrument). A date before the
    table's first rate for a market is NaN: :func:`simulate` rejects a sell on it.

    Raises:
        quant.errors.ValidationError: a market the table does not know (and not untaxed),
            naming the instrument (from ``symbols``) and the market.
    """
    days = np.asarray(times).astype("datetime64[D]")
    distinct = sorted(set(markets))
    rates = np.zeros((len(days), max(len(distinct), 1)))
    for j, code in enumerate(distinct):
        if code in table.untaxed:
            continue
        changes = list(table.changes(code))
        if not changes:
            first = list(markets).index(code)
            who = f"instrument {symbols[first]!r}" if symbols is not None else "an instrument"
            raise ValidationError(
                f"no sell-tax rate for market {code!r} of {who} (the tax table knows "
                f"{', '.join(table.markets)}; untaxed: {', '.join(sorted(table.untaxed))}); "
                "set the execution setting sell_tax=none to backtest without the tax",
                field="markets",
                value=code,
            )
        starts = np.array([np.datetime64(start, "D") for start, _ in changes])
        values = np.array([rate for _, rate in changes], dtype=np.float64)
        idx = np.searchsorted(starts, days, side="right") - 1
        rates[:, j] = np.where(idx >= 0, values[np.maximum(idx, 0)], np.nan)
    index = {code: j for j, code in enumerate(distinct)}
    codes = np.array([index[code] for code in markets], dtype=np.int64)
    return np.ascontiguousarray(rates), codes


def simulate(
    market: Market,
    signals: Signals,
    config: ExecutionConfig,
    *,
    initial_cash: float = 10_000_000.0,
    tax: TaxTable = DEFAULT_TAX,
) -> BacktestResult:
    """Run the long-only simulation described in the module docstring.

    ``initial_cash`` is per account (see ``config.accounts``), in currency units. With
    ``config.sell_tax == "table"`` every sell pays the rate of ``tax`` (default: the dated
    table of :mod:`quant.costs`) for its column's market on its bar's date.

    Raises:
        quant.errors.ValidationError: signal arrays of the wrong shape or dtype, a
            non-positive ``initial_cash``; with the tax on: a market without market codes
            or with a market the table does not know, or a sell on a date the table has no
            rate for (naming the instrument, market and date).
    """
    if not (math.isfinite(initial_cash) and initial_cash > 0):
        raise ValidationError(
            f"initial_cash must be > 0, got {initial_cash!r}", field="initial_cash"
        )
    shape = market.shape
    entries = _matrix("entries", signals.entries, shape, np.bool_)
    exits = _matrix("exits", signals.exits, shape, np.bool_)
    stop = _matrix("stop", signals.stop, shape, np.float64)
    level = _matrix("level", signals.level, shape, np.float64)
    trail = _matrix("trail", signals.trail, shape, np.float64)
    mult = _matrix("size_mult", signals.size_mult, shape, np.float64)
    priority = _matrix("priority", signals.priority, shape, np.float64)
    c = config
    if c.sell_tax == "table":
        if market.markets is None:
            raise ValidationError(
                "the sell tax (execution setting sell_tax='table') needs each instrument's "
                "market: build the Market with markets=..., or set sell_tax='none'",
                field="markets",
            )
        tax_rates, tax_code = sell_tax_rates(
            market.times, market.markets, tax, symbols=market.symbols
        )
    else:
        tax_rates = np.zeros((1, 1))
        tax_code = np.full(shape[1], -1, dtype=np.int64)
    flags = np.array(
        [
            signals.stop is not None,
            signals.level is not None,
            signals.trail is not None,
            signals.size_mult is not None,
            signals.priority is not None,
            c.fill == "close",
            c.sizing == "risk",
            c.accounts == "shared",
            c.max_bars,
            c.level_closes,
            c.trail_after_partial,
            c.signal_exits_after_partial,
            c.max_positions,
        ],
        dtype=np.int64,
    )
    params = np.array(
        [
            c.fees,
            c.slippage,
            c.stop_loss,
            c.take_profit,
            c.take_profit_r,
            c.open_stop_loss,
            c.open_take_profit,
            c.trailing,
            c.time_stop_below_r,
            c.partial_r,
            c.partial_fraction,
            c.fraction,
            c.risk,
            c.lot,
        ],
        dtype=np.float64,
    )
    out = _simulate(
        _contig(market.open),
        _contig(market.high),
        _contig(market.low),
        _contig(market.close),
        entries,
        exits,
        stop,
        level,
        trail,
        mult,
        priority,
        flags,
        params,
        float(initial_cash),
        tax_rates,
        tax_code,
    )
    equity_acc, in_market, col, e_bar, x_bar, e_px, x_px, units, fees, pnl, reason, taxes, k = out
    untaxable = np.flatnonzero(np.isnan(taxes[:k]))
    if len(untaxable):
        i = int(untaxable[0])
        column = int(col[i])
        code = market.markets[column] if market.markets is not None else "?"
        day = str(market.times[int(x_bar[i])].astype("datetime64[D]"))
        raise ValidationError(
            f"no sell-tax rate for {code} on {day} (a sell of {market.symbols[column]!r}; the "
            f"tax table's rates of {code} start {next(iter(tax.changes(code)))[0]}): limit the "
            "backtest to dates the table covers or set the execution setting sell_tax=none",
            field="sell_tax",
            value=day,
        )
    # rows in exit order; open positions (exit -1) last
    trades = Trades(
        column=col[:k],
        entry_bar=e_bar[:k],
        exit_bar=x_bar[:k],
        entry_price=e_px[:k],
        exit_price=x_px[:k],
        units=units[:k],
        fees=fees[:k],
        pnl=pnl[:k],
        reason=reason[:k],
        tax=taxes[:k],
    )
    return BacktestResult(
        times=market.times,
        symbols=market.symbols,
        equity=equity_acc.sum(axis=1),
        accounts=equity_acc,
        in_market=in_market,
        trades=trades,
        initial_cash=float(initial_cash) * equity_acc.shape[1],
        config=config,
    )


def _contig(a: FloatArray) -> FloatArray:
    return np.ascontiguousarray(a, dtype=np.float64)


def warm_up() -> None:
    """Compile (or load from the on-disk cache) the kernel for the argument types
    :func:`simulate` passes, so a worker process pays for it once, at start."""
    n = 4
    price = np.linspace(10.0, 13.0, n).reshape(-1, 1)
    market = Market.from_arrays(
        np.arange(n).astype("datetime64[D]"),
        ["warm"],
        open=price,
        high=price,
        low=price,
        close=price,
    )
    entries = np.zeros((n, 1), dtype=np.bool_)
    entries[0, 0] = True
    simulate(
        market,
        Signals(entries=entries, exits=np.zeros_like(entries)),
        ExecutionConfig(sell_tax="none"),
    )
