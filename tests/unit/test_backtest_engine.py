"""quant.backtest.engine: fills, stops, sizing and accounts on hand-built bars.

Every expected fill below is worked out by hand from the module docstring (the contract):
prices are tiny series where each bar's open/high/low/close is chosen so that exactly one
rule fires, and units, fees and pnl are recomputed in the test with the documented formulas.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from quant.backtest.engine import (
    EXIT_REASONS,
    BacktestResult,
    ExecutionConfig,
    Market,
    Signals,
    simulate,
)
from quant.backtest.strategies import get
from quant.costs import DEFAULT_TAX
from quant.errors import ValidationError

CASH = 1_000_000.0
NAN = math.nan
Bar = tuple[float, float, float, float]  # open, high, low, close


def _times(n: int) -> np.ndarray:
    return np.datetime64("2024-01-02", "D") + np.arange(n).astype("timedelta64[D]")


def _market(bars: Sequence[Bar]) -> Market:
    """One instrument "A" from (open, high, low, close) rows; a row of NaN is a halt."""
    a = np.array(bars, dtype=np.float64).reshape(-1, 4)
    return Market.from_arrays(
        _times(len(a)), ["A"], open=a[:, 0], high=a[:, 1], low=a[:, 2], close=a[:, 3]
    )


def _flat(price: float) -> Bar:
    return (price, price, price, price)


def _signals(
    n: int,
    entries: Sequence[int] = (),
    exits: Sequence[int] = (),
    **arrays: Any,
) -> Signals:
    """One-instrument signals: entries/exits at the given bars; every other keyword is a
    scalar (the same on every bar) or a sequence of per-bar values."""
    e = np.zeros((n, 1), dtype=np.bool_)
    x = np.zeros((n, 1), dtype=np.bool_)
    e[list(entries), 0] = True
    x[list(exits), 0] = True
    extra: dict[str, Any] = {
        name: np.broadcast_to(np.asarray(value, dtype=np.float64).reshape(-1, 1), (n, 1)).copy()
        for name, value in arrays.items()
    }
    return Signals(entries=e, exits=x, **extra)


def _run(market: Market, signals: Signals, cash: float = CASH, **config: Any) -> BacktestResult:
    """Simulate with ``config``; the hand-worked expectations here pay no sell tax, so the
    tax is off unless ``config`` says otherwise (the tax has its own tests below)."""
    config = {"sell_tax": "none", **config}
    return simulate(market, signals, ExecutionConfig(**config), initial_cash=cash)


def _rows(result: BacktestResult) -> list[dict[str, Any]]:
    t = result.trades
    return [
        {
            "column": int(t.column[i]),
            "entry_bar": int(t.entry_bar[i]),
            "exit_bar": int(t.exit_bar[i]),
            "entry_price": float(t.entry_price[i]),
            "exit_price": float(t.exit_price[i]),
            "units": float(t.units[i]),
            "fees": float(t.fees[i]),
            "pnl": float(t.pnl[i]),
            "reason": EXIT_REASONS[int(t.reason[i])],
        }
        for i in range(len(t))
    ]


def _assert_identity(result: BacktestResult) -> None:
    """Final equity = initial cash + every row's pnl (open rows included); each row's pnl is
    its price difference net of both sides' fees."""
    t = result.trades
    assert result.final_equity == pytest.approx(result.initial_cash + float(t.pnl.sum()), abs=1e-6)
    np.testing.assert_allclose(
        t.pnl, t.units * (t.exit_price - t.entry_price) - t.fees, rtol=0, atol=1e-6
    )


def _one(result: BacktestResult) -> dict[str, Any]:
    rows = _rows(result)
    assert len(rows) == 1, rows
    return rows[0]


# --------------------------------------------------------------------------------------------
# Fill timing, fees, slippage
# --------------------------------------------------------------------------------------------

# opens 100, 102 … and closes 101, 103 …: every fill price names its bar and its side
RAMP: list[Bar] = [(100.0 + 2 * i, 102.0 + 2 * i, 99.0 + 2 * i, 101.0 + 2 * i) for i in range(6)]


@pytest.mark.parametrize(
    ("fill", "entry_bar", "entry_px", "exit_bar", "exit_px"),
    [
        ("next_open", 2, 104.0, 4, 108.0),  # signals at 1 and 3 fill at the next opens
        ("close", 1, 103.0, 3, 107.0),  # … or at their own closes
    ],
)
def test_fill_timing(fill, entry_bar, entry_px, exit_bar, exit_px):
    market = _market(RAMP)
    result = _run(market, _signals(6, entries=[1], exits=[3]), fill=fill)
    units = math.floor(CASH / entry_px)
    row = _one(result)
    assert row == {
        "column": 0,
        "entry_bar": entry_bar,
        "exit_bar": exit_bar,
        "entry_price": entry_px,
        "exit_price": exit_px,
        "units": units,
        "fees": 0.0,
        "pnl": units * (exit_px - entry_px),
        "reason": "signal",
    }
    left = CASH - units * entry_px
    close = market.close[:, 0]
    expected = [
        CASH if t < entry_bar else left + units * (close[t] if t < exit_bar else exit_px)
        for t in range(6)
    ]
    np.testing.assert_allclose(result.equity, expected, rtol=0, atol=1e-9)
    assert result.in_market.tolist() == [int(entry_bar <= t < exit_bar) for t in range(6)]
    _assert_identity(result)


@pytest.mark.parametrize(
    ("fees", "slippage"), [(0.0, 0.0), (0.001, 0.0), (0.0, 0.002), (0.0015, 0.003)]
)
def test_fees_and_slippage_on_both_sides(fees, slippage):
    result = _run(_market(RAMP), _signals(6, entries=[1], exits=[3]), fees=fees, slippage=slippage)
    buy = 104.0 * (1 + slippage)  # buys pay up …
    sell = 108.0 * (1 - slippage)  # … sells receive less
    units = math.floor(CASH / (buy * (1 + fees)))
    fee_total = units * buy * fees + units * sell * fees
    row = _one(result)
    assert row["entry_price"] == pytest.approx(buy, rel=1e-12)
    assert row["exit_price"] == pytest.approx(sell, rel=1e-12)
    assert row["units"] == units
    assert row["fees"] == pytest.approx(fee_total, rel=1e-12, abs=1e-9)
    assert row["pnl"] == pytest.approx(units * (sell - buy) - fee_total, rel=1e-12)
    assert result.final_equity == pytest.approx(CASH + row["pnl"], rel=1e-12)
    assert result.trades.return_pct[0] == pytest.approx(row["pnl"] / (buy * units))
    _assert_identity(result)


# --------------------------------------------------------------------------------------------
# Sizing
# --------------------------------------------------------------------------------------------

FILL = 104.0  # next-open fill of a signal at bar 1 on RAMP
FEE = 0.001


def _floor(x: float, lot: float) -> float:
    return math.floor(x / lot) * lot if lot > 0 else x


@pytest.mark.parametrize(
    ("config", "mult", "expected"),
    [
        ({"fraction": 1.0}, None, _floor(CASH / (FILL * (1 + FEE)), 1)),
        ({"fraction": 0.5}, None, _floor(0.5 * CASH / (FILL * (1 + FEE)), 1)),
        ({"fraction": 0.5, "lot": 10.0}, None, _floor(0.5 * CASH / (FILL * (1 + FEE)), 10)),
        ({"fraction": 0.5, "lot": 0.0}, None, 0.5 * CASH / (FILL * (1 + FEE))),  # fractional
        ({"fraction": 0.5, "lot": 0.25}, None, _floor(0.5 * CASH / (FILL * (1 + FEE)), 0.25)),
        ({"fraction": 1.0}, 0.5, _floor(0.5 * CASH / (FILL * (1 + FEE)), 1)),
        ({"fraction": 0.4}, 2.0, _floor(0.8 * CASH / (FILL * (1 + FEE)), 1)),
        # a budget above the cash is capped by the cash
        ({"fraction": 0.5}, 3.0, _floor(CASH / (FILL * (1 + FEE)), 1)),
        ({"fraction": 1.0}, 0.0, None),  # size_mult 0 skips the entry
        ({"fraction": 1.0, "lot": 20_000.0}, None, None),  # less than one lot: no trade
    ],
)
def test_fraction_sizing(config, mult, expected):
    extra = {} if mult is None else {"size_mult": mult}
    result = _run(_market(RAMP), _signals(6, entries=[1], **extra), fees=FEE, **config)
    if expected is None:
        assert len(result.trades) == 0
        np.testing.assert_array_equal(result.equity, CASH)
        return
    row = _one(result)
    assert row["units"] == pytest.approx(expected, rel=1e-12)
    assert row["reason"] == "open"
    assert row["exit_bar"] == -1
    assert row["entry_price"] * row["units"] * (1 + FEE) <= CASH + 1e-6


@pytest.mark.parametrize(
    ("config", "extra", "expected"),
    [
        # units = equity · risk · mult / (fill − stop) …
        ({"risk": 0.01}, {"stop": 100.0}, CASH * 0.01 / 4.0),
        ({"risk": 0.02}, {"stop": 100.0, "size_mult": 1.5}, CASH * 0.02 * 1.5 / 4.0),
        ({"risk": 0.01, "stop_loss": 0.05}, {}, _floor(CASH * 0.01 / (FILL * 0.05), 1)),
        # the higher of the signal's stop and the percentage stop is the stop
        ({"risk": 0.01, "stop_loss": 0.02}, {"stop": 100.0}, _floor(CASH * 0.01 / 2.08, 1)),
        # … capped by the fraction budget …
        ({"risk": 0.01, "fraction": 0.5}, {"stop": 103.0}, _floor(0.5 * CASH / FILL, 1)),
        ({"risk": 0.01, "fraction": 0.5, "fees": 0.001}, {"stop": 103.0},
         _floor(0.5 * CASH / (FILL * 1.001), 1)),
        # … and by the cash (here the whole equity; see the shared-account case below)
        ({"risk": 0.2, "fraction": 1.0}, {"stop": 103.0}, _floor(CASH / FILL, 1)),
        # no stop below the fill: skipped
        ({"risk": 0.01}, {}, None),
        ({"risk": 0.01}, {"stop": 104.0}, None),
        ({"risk": 0.01}, {"stop": 110.0}, None),
    ],
)  # fmt: skip
def test_risk_unit_sizing(config, extra, expected):
    result = _run(_market(RAMP), _signals(6, entries=[1], **extra), sizing="risk", **config)
    if expected is None:
        assert len(result.trades) == 0
        return
    assert _one(result)["units"] == pytest.approx(_floor(expected, 1), rel=1e-12)


def _markets(*columns: Sequence[Bar]) -> Market:
    """Several instruments, one list of (open, high, low, close) rows each."""
    a = np.array(columns, dtype=np.float64)  # (instruments, bars, 4)
    names = [chr(ord("A") + i) for i in range(len(columns))]
    ohlc: dict[str, Any] = {
        k: np.ascontiguousarray(a[:, :, i].T)
        for i, k in enumerate(("open", "high", "low", "close"))
    }
    return Market.from_arrays(_times(a.shape[1]), names, **ohlc)


def test_risk_sizing_is_capped_by_the_cash_left_in_a_shared_account():
    # risk 20 % over R = 1 asks for 200,000 units of each; A (signal at 0) gets its budget,
    # 0.8 · 1,000,000 / 100 = 8,000 units; B (signal at 1) gets the cash left,
    # 200,000 / 50 = 4,000 units, not its 16,000-unit budget.
    n = 4
    market = _markets([_flat(100.0)] * n, [_flat(50.0)] * n)
    entries = np.zeros((n, 2), dtype=np.bool_)
    entries[0, 0] = True
    entries[1, 1] = True
    stop = np.full((n, 2), NAN)
    stop[0, 0] = 99.0
    stop[1, 1] = 49.0
    result = simulate(
        market,
        Signals(entries=entries, exits=np.zeros_like(entries), stop=stop),
        ExecutionConfig(sizing="risk", risk=0.2, fraction=0.8, sell_tax="none"),
        initial_cash=CASH,
    )
    units = {
        int(c): float(u) for c, u in zip(result.trades.column, result.trades.units, strict=True)
    }
    assert units == {0: 8_000.0, 1: 4_000.0}
    np.testing.assert_allclose(result.equity, CASH)
    _assert_identity(result)


# --------------------------------------------------------------------------------------------
# Stops, targets, trailing, time stops (next-open entry at bar 1, open 100)
# --------------------------------------------------------------------------------------------

SIGNAL_BAR: Bar = _flat(100.0)
ENTRY_BAR: Bar = (100.0, 101.0, 99.0, 100.0)
# a trend for the trailing stop: highs 101 → 110 → 120, each bar's low above the last level
TREND: list[Bar] = [(102.0, 110.0, 101.0, 109.0), (109.0, 120.0, 108.5, 118.0)]


@pytest.mark.parametrize(
    ("config", "extra", "after", "exit_bar", "exit_px", "reason"),
    [
        pytest.param(
            {"stop_loss": 0.05}, {}, [(99.0, 100.0, 94.0, 96.0)], 2, 95.0, "stop_loss",
            id="stop-intrabar-at-the-level",
        ),
        pytest.param(
            {"stop_loss": 0.05}, {}, [(90.0, 92.0, 89.0, 91.0)], 2, 90.0, "stop_loss",
            id="gap-below-stop-fills-at-open",
        ),
        pytest.param(
            {}, {"stop": 96.0}, [(99.0, 100.0, 95.0, 96.0)], 2, 96.0, "stop_loss",
            id="signal-stop",
        ),
        pytest.param(
            {"take_profit": 0.1}, {}, [(101.0, 112.0, 100.0, 111.0)], 2, 110.0, "take_profit",
            id="target-intrabar",
        ),
        pytest.param(
            {"take_profit": 0.1}, {}, [(115.0, 116.0, 113.0, 114.0)], 2, 115.0, "take_profit",
            id="gap-above-target-fills-at-open",
        ),
        pytest.param(
            {"stop_loss": 0.05, "take_profit": 0.1}, {}, [(100.0, 111.0, 94.0, 105.0)],
            2, 95.0, "stop_loss",
            id="stop-and-target-same-bar-stop-first",
        ),
        pytest.param(
            {"take_profit_r": 2.0}, {"stop": 96.0}, [(101.0, 109.0, 100.0, 108.0)],
            2, 108.0, "take_profit",
            id="target-in-R",
        ),
        pytest.param(
            {"take_profit_r": 2.0, "take_profit": 0.05}, {"stop": 96.0},
            [(101.0, 109.0, 100.0, 108.0)], 2, 105.0, "take_profit",
            id="nearer-of-two-targets",
        ),
        pytest.param(
            {"trailing": 0.1}, {}, [*TREND, (117.0, 118.0, 107.0, 110.0)],
            4, 108.0, "trailing_stop",
            id="trailing-ratchets-and-fills-without-fixed-stop",
        ),
        pytest.param(
            {"trailing": 0.1}, {}, [*TREND, (105.0, 106.0, 100.0, 101.0)],
            4, 105.0, "trailing_stop",
            id="gap-below-trailing-fills-at-open",
        ),
        pytest.param(
            {"trailing": 0.1, "stop_loss": 0.05}, {}, [(100.0, 102.0, 94.0, 96.0)],
            2, 95.0, "stop_loss",
            id="fixed-stop-above-trailing",
        ),
        pytest.param(
            {"trailing": 0.1, "stop_loss": 0.05}, {}, [*TREND, (117.0, 118.0, 107.0, 110.0)],
            4, 108.0, "trailing_stop",
            id="trailing-above-fixed-stop",
        ),
        pytest.param(
            # absolute trailing distance 5 below the highest high: 101−5, 110−5, 112−5 = 107
            {}, {"trail": 5.0},
            [(102.0, 110.0, 106.0, 109.0), (109.0, 112.0, 106.0, 110.0),
             (110.0, 111.0, 106.0, 108.0)],
            4, 107.0, "trailing_stop",
            id="trail-signal-distance",
        ),
    ],
)  # fmt: skip
def test_stops_and_targets(config, extra, after, exit_bar, exit_px, reason):
    bars = [SIGNAL_BAR, ENTRY_BAR, *after, _flat(after[-1][3])]
    result = _run(_market(bars), _signals(len(bars), entries=[0], **extra), **config)
    row = _one(result)
    assert (row["entry_bar"], row["entry_price"]) == (1, 100.0)
    assert (row["exit_bar"], row["reason"]) == (exit_bar, reason)
    assert row["exit_price"] == pytest.approx(exit_px, rel=1e-12)
    _assert_identity(result)


def test_trailing_stop_never_loosens():
    # distance 5 on the first bars, then 20: the level stays at 110 − 5 = 105
    bars = [SIGNAL_BAR, ENTRY_BAR, (102.0, 110.0, 106.0, 109.0), (109.0, 109.5, 105.5, 106.0),
            (106.0, 107.0, 104.0, 105.0), _flat(105.0)]  # fmt: skip
    trail = [5.0, 5.0, 5.0, 20.0, 20.0, 20.0]
    result = _run(_market(bars), _signals(6, entries=[0], trail=trail))
    row = _one(result)
    assert (row["exit_bar"], row["exit_price"], row["reason"]) == (4, 105.0, "trailing_stop")


def test_stop_with_slippage_sells_below_the_level():
    bars = [SIGNAL_BAR, ENTRY_BAR, (99.0, 100.0, 94.0, 96.0), _flat(96.0)]
    result = _run(_market(bars), _signals(4, entries=[0]), stop_loss=0.05, slippage=0.01)
    row = _one(result)
    assert row["entry_price"] == pytest.approx(101.0)
    assert row["exit_price"] == pytest.approx(101.0 * 0.95 * 0.99)  # the stop is off the fill


@pytest.mark.parametrize(
    ("fill", "signal_bar", "exit_bar", "exit_px"),
    [
        # entry at open 1; at the close of bar 3 it has been held 2 bars: out at open 4
        ("next_open", 0, 4, 108.0),
        # entry at close 1; out at the close of bar 3
        ("close", 1, 3, 105.5),
    ],
)
def test_time_stop(fill, signal_bar, exit_bar, exit_px):
    bars = [(100.0 + 2 * i, 101.0 + 2 * i, 99.0 + 2 * i, 99.5 + 2 * i) for i in range(6)]
    result = _run(_market(bars), _signals(6, entries=[signal_bar]), fill=fill, max_bars=2)
    row = _one(result)
    assert row["entry_bar"] == 1
    assert (row["exit_bar"], row["exit_price"], row["reason"]) == (exit_bar, exit_px, "time_stop")


@pytest.mark.parametrize(
    ("closes", "exit_bar"),
    [
        ([100.0, 101.0, 103.0, 103.0, 103.0], 4),  # under +1R (104) at bar 3: out at open 4
        ([100.0, 101.0, 105.0, 103.0, 103.0], 5),  # above at bar 3, under at bar 4: open 5
        ([100.0, 101.0, 105.0, 106.0, 107.0], -1),  # never under: still open
    ],
)
def test_time_stop_only_below_x_r(closes, exit_bar):
    # entry at open 1 = 100 with a stop at 96: R = 4, +1R = 104; max_bars 2
    bars = [SIGNAL_BAR] + [(c, c + 0.5, 97.0, c) for c in closes]
    bars[1] = (100.0, 101.0, 99.0, closes[0])
    result = _run(
        _market(bars), _signals(6, entries=[0], stop=96.0), max_bars=2, time_stop_below_r=1.0
    )
    row = _one(result)
    assert row["exit_bar"] == exit_bar
    assert row["reason"] == ("open" if exit_bar < 0 else "time_stop")


# --------------------------------------------------------------------------------------------
# Partial exits, level breaks
# --------------------------------------------------------------------------------------------

# entry at open 1 = 100 with a stop at 96: R = 4, the partial (+1R) at 104
PARTIAL_BARS: list[Bar] = [
    SIGNAL_BAR,
    (100.0, 106.0, 99.0, 101.0),  # entry bar: reaches 104, but the partial is not live yet
    (101.0, 105.0, 100.0, 103.0),  # partial at 104
    (103.0, 103.5, 102.0, 103.0),
    (102.0, 103.0, 101.0, 102.0),
    _flat(102.0),
]


@pytest.mark.parametrize(("lot", "units", "part"), [(1.0, 10_000, 5_000), (3.0, 9_999, 4_998)])
def test_partial_exit_is_its_own_row_and_the_rest_continues(lot, units, part):
    result = _run(
        _market(PARTIAL_BARS),
        _signals(6, entries=[0], exits=[3], stop=96.0),
        partial_r=1.0,
        partial_fraction=0.5,
        lot=lot,
    )
    rows = _rows(result)
    assert [(r["exit_bar"], r["reason"], r["units"], r["exit_price"]) for r in rows] == [
        (2, "partial", part, 104.0),
        (4, "signal", units - part, 102.0),
    ]
    assert all(r["entry_bar"] == 1 and r["entry_price"] == 100.0 for r in rows)
    _assert_identity(result)


@pytest.mark.parametrize(
    ("trail_after_partial", "exit_bar", "exit_px"),
    [
        (False, 2, 101.0 * 0.98),  # the trailing stop is live at once: out at bar 2
        (True, 4, 105.0 * 0.98),  # only after the partial (bar 3): out at bar 4
    ],
)
def test_trail_after_partial(trail_after_partial, exit_bar, exit_px):
    bars = [
        SIGNAL_BAR,
        ENTRY_BAR,  # high 101: trailing level 98.98
        (100.0, 103.0, 97.0, 98.0),  # low 97 < 98.98
        (98.0, 105.0, 97.5, 104.0),  # partial at 104; high 105: level 102.9
        (104.0, 104.5, 102.0, 103.0),  # low 102 < 102.9
        _flat(103.0),
    ]
    result = _run(
        _market(bars),
        _signals(6, entries=[0], stop=96.0),
        partial_r=1.0,
        trailing=0.02,
        trail_after_partial=trail_after_partial,
    )
    last = _rows(result)[-1]
    assert (last["exit_bar"], last["reason"]) == (exit_bar, "trailing_stop")
    assert last["exit_price"] == pytest.approx(exit_px, rel=1e-12)
    assert [r["reason"] for r in _rows(result)][:-1] == (["partial"] if trail_after_partial else [])


@pytest.mark.parametrize(
    ("after_partial", "exit_bar"),
    [(False, 3), (True, 5)],  # exit signals at 2 and 4; the partial fills at bar 3
)
def test_signal_exits_after_partial(after_partial, exit_bar):
    bars = [
        SIGNAL_BAR,
        ENTRY_BAR,
        (100.0, 102.0, 99.0, 101.0),
        (101.0, 105.0, 100.0, 104.0),  # partial at 104
        (104.0, 104.5, 103.0, 104.0),
        _flat(104.0),
        _flat(104.0),
    ]
    result = _run(
        _market(bars),
        _signals(7, entries=[0], exits=[2, 4], stop=96.0),
        partial_r=1.0,
        signal_exits_after_partial=after_partial,
    )
    last = _rows(result)[-1]
    assert (last["exit_bar"], last["reason"]) == (exit_bar, "signal")


@pytest.mark.parametrize(
    ("fill", "exit_bar", "exit_px"), [("next_open", 6, 97.0), ("close", 5, 98.0)]
)
def test_level_closes(fill, exit_bar, exit_px):
    # level 100 from the signal bar; closes 101, 99 (1), 101 (reset), 99 (1), 98 (2): out
    closes = [100.0, 101.0, 99.0, 101.0, 99.0, 98.0, 97.0, 97.0]
    bars = [(c, c + 0.5, c - 0.5, c) for c in closes]
    bars[6] = (97.0, 97.5, 96.5, 97.0)
    level = [100.0] + [200.0] * 7  # only the signal bar's level is the trade's level
    result = _run(_market(bars), _signals(8, entries=[0], level=level), fill=fill, level_closes=2)
    row = _one(result)
    assert (row["exit_bar"], row["exit_price"], row["reason"]) == (exit_bar, exit_px, "level_break")


# --------------------------------------------------------------------------------------------
# Closing-bet open rules (close-fill entry at bar 0, close 100)
# --------------------------------------------------------------------------------------------

BET: dict[str, Any] = {
    "fill": "close",
    "stop_loss": 0.03,
    "take_profit": 0.05,
    "open_stop_loss": 0.02,
    "open_take_profit": 0.03,
    "max_bars": 1,
}


@pytest.mark.parametrize(
    ("next_bar", "exit_px", "reason"),
    [
        ((103.5, 104.0, 103.0, 103.8), 103.5, "take_profit"),  # gap up ≥ 3 %: sold at the open
        ((97.5, 99.0, 97.2, 98.0), 97.5, "stop_loss"),  # gap down ≤ −2 %: sold at the open
        ((99.0, 100.0, 96.5, 97.5), 97.0, "stop_loss"),  # −3 % stop intrabar
        ((101.0, 105.5, 100.0, 105.0), 105.0, "take_profit"),  # +5 % target intrabar
        ((101.0, 104.0, 99.0, 102.0), 102.0, "time_stop"),  # else out at that close
        ((98.5, 102.9, 97.1, 99.0), 99.0, "time_stop"),  # −1.5 % open: no gap rule
    ],
)
def test_closing_bet_next_session(next_bar, exit_px, reason):
    result = _run(_market([_flat(100.0), next_bar, _flat(50.0)]), _signals(3, entries=[0]), **BET)
    row = _one(result)
    assert (row["entry_bar"], row["entry_price"]) == (0, 100.0)
    assert (row["exit_bar"], row["exit_price"], row["reason"]) == (1, exit_px, reason)


def test_open_rules_apply_only_at_the_first_open():
    # held (no time stop): a −2.5 % open on the second session is above the −3 % stop
    bars = [_flat(100.0), _flat(100.0), (97.5, 98.0, 97.2, 97.5), _flat(97.5)]
    result = _run(_market(bars), _signals(4, entries=[0]), **{**BET, "max_bars": 0})
    assert _one(result)["reason"] == "open"


def test_open_rules_wait_for_the_first_traded_open_after_a_halt():
    bars = [_flat(100.0), (NAN,) * 4, (97.5, 99.0, 97.2, 98.0), _flat(98.0)]
    result = _run(_market(bars), _signals(4, entries=[0]), **BET)
    row = _one(result)
    assert (row["exit_bar"], row["exit_price"], row["reason"]) == (2, 97.5, "stop_loss")
    np.testing.assert_allclose(result.equity[:2], CASH)  # halted: equity at the last close


def test_open_rules_do_not_apply_to_next_open_entries():
    bars = [SIGNAL_BAR, ENTRY_BAR, (97.5, 98.0, 97.2, 97.5), _flat(97.5)]
    config = {**BET, "fill": "next_open", "max_bars": 0}
    assert _one(_run(_market(bars), _signals(4, entries=[0]), **config))["reason"] == "open"


# --------------------------------------------------------------------------------------------
# Skipped entries, halts, open positions at the end
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fill", "stop", "entered"),
    [
        ("next_open", 101.0, False),  # the open (100) is already below the stop
        ("next_open", 100.0, False),  # at the fill: skipped
        ("next_open", 99.0, True),
        ("close", 100.0, False),  # close fill at 100
        ("close", 99.9, True),
    ],
)
def test_entry_skipped_when_stop_at_or_above_fill(fill, stop, entered):
    bars = [_flat(100.0), (100.0, 101.0, 99.5, 100.0), _flat(100.0)]
    result = _run(_market(bars), _signals(3, entries=[0], stop=stop), fill=fill)
    assert len(result.trades) == int(entered)


def test_halted_bar_fills_nothing_and_equity_holds_the_last_close():
    bars = [
        SIGNAL_BAR,
        ENTRY_BAR,  # entry at 100: 10,000 units
        (NAN,) * 4,  # halt: the stop (95) cannot fill, the exit signal at 1 waits
        (96.0, 97.0, 94.0, 95.5),  # the pending exit fills at this open
        _flat(95.5),
    ]
    result = _run(_market(bars), _signals(5, entries=[0], exits=[1]), stop_loss=0.05)
    row = _one(result)
    assert (row["exit_bar"], row["exit_price"], row["reason"]) == (3, 96.0, "signal")
    np.testing.assert_allclose(result.equity, [CASH, CASH, CASH, CASH - 40_000, CASH - 40_000])
    assert result.in_market.tolist() == [0, 1, 1, 0, 0]


def test_gap_through_the_stop_after_a_halt_fills_at_the_next_open():
    bars = [SIGNAL_BAR, ENTRY_BAR, (NAN,) * 4, (90.0, 91.0, 89.0, 90.5), _flat(90.5)]
    row = _one(_run(_market(bars), _signals(5, entries=[0]), stop_loss=0.05))
    assert (row["exit_bar"], row["exit_price"], row["reason"]) == (3, 90.0, "stop_loss")


def test_entry_queued_for_a_halted_open_does_not_fill_there():
    bars = [SIGNAL_BAR, (NAN,) * 4, _flat(100.0), _flat(100.0)]
    result = _run(_market(bars), _signals(4, entries=[0]))
    # nothing fills on the halted bar; the queued order is dropped, not carried over
    assert len(result.trades) == 0
    np.testing.assert_allclose(result.equity, CASH)


@pytest.mark.parametrize("last", [_flat(107.0), (NAN,) * 4])
def test_open_position_at_the_end(last):
    bars = [SIGNAL_BAR, ENTRY_BAR, (101.0, 106.0, 100.0, 105.0), last]
    result = _run(_market(bars), _signals(4, entries=[0]), fees=0.001)
    row = _one(result)
    mark = 105.0 if math.isnan(last[3]) else 107.0  # the last close seen
    units = math.floor(CASH / (100.0 * 1.001))
    assert (row["exit_bar"], row["reason"], row["exit_price"]) == (-1, "open", mark)
    assert row["fees"] == pytest.approx(units * 100.0 * 0.001)  # the entry side only
    assert row["pnl"] == pytest.approx(units * (mark - 100.0) - units * 0.1)
    assert result.trades.closed.tolist() == [False]
    assert result.trade_rows()[0]["exit_time"] is None
    _assert_identity(result)


# --------------------------------------------------------------------------------------------
# The dated sell-side tax (quant.costs, domain notes §8)
# --------------------------------------------------------------------------------------------

# A KRX year-end: the KOSPI/KOSDAQ sell tax is 0.15 % through 2025-12-30 and 0.20 % from the
# first session of 2026 (2026-01-02); Upbit (crypto) pays none.
YEAR_END = np.array(["2025-12-29", "2025-12-30", "2026-01-02", "2026-01-05"], dtype="datetime64[D]")


def _year_end_market(markets: Sequence[str] | None) -> Market:
    """Four instruments with the same bars: closes 100, 110, 120, 130."""
    close = np.repeat(np.array([[100.0], [110.0], [120.0], [130.0]]), 4, axis=1)
    return Market.from_arrays(
        YEAR_END,
        ["K1", "K2", "Q1", "C1"],
        markets=markets,
        open=close,
        high=close,
        low=close,
        close=close,
    )


def test_sells_pay_the_tax_of_their_market_on_their_trade_date():
    market = _year_end_market(["KOSPI", "KOSPI", "KOSDAQ", "UPBIT"])
    entries = np.zeros((4, 4), dtype=np.bool_)
    entries[0] = True  # every instrument bought at the 2025-12-29 close (100)
    exits = np.zeros((4, 4), dtype=np.bool_)
    exits[1, 0] = True  # K1 sold at the 2025-12-30 close (110)
    exits[2, 1:] = True  # K2, Q1 and C1 sold at the 2026-01-02 close (120)
    config = ExecutionConfig(fill="close", fees=0.00015, accounts="per_instrument")
    result = simulate(market, Signals(entries=entries, exits=exits), config, initial_cash=CASH)
    rows = sorted(result.trade_rows(), key=lambda r: r["symbol"])
    assert [(r["symbol"], r["exit_time"]) for r in rows] == [
        ("C1", "2026-01-02"),
        ("K1", "2025-12-30"),
        ("K2", "2026-01-02"),
        ("Q1", "2026-01-02"),
    ]
    units = math.floor(CASH / (100.0 * 1.00015))
    expected_rate = {"K1": 0.0015, "K2": 0.0020, "Q1": 0.0020, "C1": 0.0}
    for row in rows:
        assert row["quantity"] == units
        exit_px = row["exit_price"]
        tax = units * exit_px * expected_rate[row["symbol"]]
        fees = units * 100.0 * 0.00015 + units * exit_px * 0.00015
        assert row["tax"] == pytest.approx(tax, rel=1e-12, abs=1e-9)
        assert row["fees"] == pytest.approx(fees + tax, rel=1e-12)
        assert row["pnl"] == pytest.approx(units * (exit_px - 100.0) - fees - tax, rel=1e-12)
    by = {r["symbol"]: r for r in rows}
    # the same KOSPI trade pays 0.15 % of its sale on 2025-12-30 and 0.20 % on 2026-01-02
    assert by["K1"]["tax"] / (units * 110.0) == pytest.approx(0.0015)
    assert by["K2"]["tax"] / (units * 120.0) == pytest.approx(0.0020)
    assert by["C1"]["tax"] == 0.0
    _assert_identity(result)
    # the tax leaves the account: each account's cash is its sale net of fees and tax
    final = result.accounts[-1]
    for c, symbol in enumerate(market.symbols):
        assert final[c] == pytest.approx(CASH + by[symbol]["pnl"], rel=1e-12)


def test_no_tax_with_sell_tax_none_and_the_same_trades_otherwise():
    market = _year_end_market(["KOSPI", "KOSPI", "KOSDAQ", "UPBIT"])
    entries = np.zeros((4, 4), dtype=np.bool_)
    entries[0] = True
    exits = np.zeros((4, 4), dtype=np.bool_)
    exits[2] = True
    signals = Signals(entries=entries, exits=exits)
    taxed = simulate(market, signals, ExecutionConfig(fill="close", accounts="per_instrument"))
    free = simulate(
        market, signals, ExecutionConfig(fill="close", accounts="per_instrument", sell_tax="none")
    )
    assert (free.trades.tax_paid == 0).all()
    np.testing.assert_array_equal(taxed.trades.units, free.trades.units)
    np.testing.assert_allclose(
        free.trades.pnl - taxed.trades.pnl, taxed.trades.tax_paid, rtol=1e-12
    )
    assert taxed.trades.tax_paid.sum() > 0


def test_an_open_position_pays_no_tax_it_is_only_valued():
    market = _year_end_market(["KOSPI"] * 4)
    entries = np.zeros((4, 4), dtype=np.bool_)
    entries[0] = True
    result = simulate(
        market,
        Signals(entries=entries, exits=np.zeros_like(entries)),
        ExecutionConfig(fill="close", accounts="per_instrument"),
    )
    assert (~result.trades.closed).all()
    assert (result.trades.tax_paid == 0).all()


def test_the_tax_needs_market_codes_and_known_markets():
    entries = np.zeros((4, 4), dtype=np.bool_)
    entries[0] = True
    signals = Signals(entries=entries, exits=np.zeros_like(entries))
    with pytest.raises(ValidationError, match="needs each instrument's market") as info:
        simulate(_year_end_market(None), signals, ExecutionConfig())
    assert info.value.field == "markets"
    with pytest.raises(ValidationError, match="'NYSE' of instrument 'C1'") as info:
        simulate(_year_end_market(["KOSPI", "KOSPI", "KOSDAQ", "NYSE"]), signals, ExecutionConfig())
    assert info.value.field == "markets"
    with pytest.raises(ValidationError, match="one non-empty string per instrument"):
        _year_end_market(["KOSPI"])
    # without the tax, neither is needed
    simulate(_year_end_market(None), signals, ExecutionConfig(sell_tax="none"))


def test_a_sell_on_a_date_the_table_does_not_cover_is_rejected_naming_it():
    times = np.array(["1999-12-29", "1999-12-30", "2000-01-04"], dtype="datetime64[D]")
    price = np.array([100.0, 101.0, 102.0])
    market = Market.from_arrays(
        times, ["A"], markets="KOSPI", open=price, high=price, low=price, close=price
    )
    exits_early = _signals(3, entries=[0], exits=[1])
    with pytest.raises(ValidationError, match="no sell-tax rate for KOSPI on 1999-12-30") as info:
        simulate(market, exits_early, ExecutionConfig(fill="close"))
    assert info.value.field == "sell_tax"
    # bars before the table are fine as long as nothing is sold on them
    result = simulate(market, _signals(3, entries=[0], exits=[2]), ExecutionConfig(fill="close"))
    assert _one(result)["exit_bar"] == 2
    assert float(result.trades.tax_paid[0]) == pytest.approx(
        float(result.trades.units[0]) * 102.0 * 0.0030  # the 2000 rate
    )


def test_execution_config_sell_tax_values():
    assert ExecutionConfig().sell_tax == "table"
    with pytest.raises(ValidationError) as info:
        ExecutionConfig(sell_tax="yes")  # type: ignore[arg-type]
    assert info.value.field == "sell_tax"
    assert ExecutionConfig.from_dict(ExecutionConfig(sell_tax="none").as_dict()).sell_tax == "none"


# --------------------------------------------------------------------------------------------
# Accounts
# --------------------------------------------------------------------------------------------


def _three(n: int = 4) -> Market:
    return _markets([_flat(100.0)] * n, [_flat(50.0)] * n, [_flat(20.0)] * n)


def _together(n: int, m: int, bar: int, **arrays: Sequence[float]) -> Signals:
    """Every instrument signals an entry at ``bar``; per-instrument values of ``arrays``."""
    entries = np.zeros((n, m), dtype=np.bool_)
    entries[bar] = True
    extra: dict[str, Any] = {
        k: np.tile(np.asarray(v, dtype=np.float64), (n, 1)) for k, v in arrays.items()
    }
    return Signals(entries=entries, exits=np.zeros_like(entries), **extra)


@pytest.mark.parametrize("fill", ["next_open", "close"])
@pytest.mark.parametrize(
    ("max_positions", "priority", "taken"),
    [
        (1, [1.0, 3.0, 2.0], [1]),
        (2, [1.0, 3.0, 2.0], [1, 2]),
        (2, [5.0, 5.0, 5.0], [0, 1]),  # ties: column order
        (1, None, [0]),  # no priority: column order
        (0, [1.0, 3.0, 2.0], [1, 2, 0]),  # no limit: all, by priority, until the cash ends
    ],
)
def test_shared_account_slots_go_by_priority(fill, max_positions, priority, taken):
    extra = {} if priority is None else {"priority": priority}
    result = simulate(
        _three(),
        _together(4, 3, 0, **extra),
        ExecutionConfig(fill=fill, fraction=0.4, max_positions=max_positions, sell_tax="none"),
        initial_cash=CASH,
    )
    t = result.trades
    assert t.column.tolist() == sorted(taken)
    assert result.accounts.shape == (4, 1)
    assert result.in_market.max() == len(taken)
    # each takes 40 % of equity while the cash lasts: 400,000, 400,000, then 200,000
    spent = dict(zip(t.column.tolist(), (t.units * t.entry_price).tolist(), strict=True))
    budgets = iter([400_000.0, 400_000.0, 200_000.0])
    assert {c: spent[c] for c in taken} == {c: next(budgets) for c in taken}


def test_size_mult_scales_the_budget_in_a_shared_account():
    result = simulate(
        _three(),
        _together(4, 3, 0, size_mult=[1.5, 1.0, 0.0]),
        ExecutionConfig(fraction=0.2, sell_tax="none"),
        initial_cash=CASH,
    )
    t = result.trades
    assert t.column.tolist() == [0, 1]  # multiplier 0 skips the third
    assert (t.units * t.entry_price).tolist() == [300_000.0, 200_000.0]


def test_per_instrument_accounts_each_start_with_the_initial_cash():
    n = 5
    up = [_flat(100.0), _flat(100.0), _flat(110.0), _flat(120.0), _flat(120.0)]
    down = [_flat(50.0), _flat(50.0), _flat(45.0), _flat(40.0), _flat(40.0)]
    market = _markets(up, down)
    result = simulate(
        market,
        _together(n, 2, 0, priority=[1.0, 2.0]),
        ExecutionConfig(accounts="per_instrument", max_positions=1, sell_tax="none"),
        initial_cash=CASH,
    )
    assert result.initial_cash == 2 * CASH
    assert result.accounts.shape == (n, 2)
    # each account buys with its own cash: 10,000 units of A, 20,000 of B
    assert result.trades.units.tolist() == [10_000.0, 20_000.0]
    np.testing.assert_allclose(
        result.accounts[:, 0], [CASH, CASH, 1.1 * CASH, 1.2 * CASH, 1.2 * CASH]
    )
    np.testing.assert_allclose(
        result.accounts[:, 1], [CASH, CASH, 0.9 * CASH, 0.8 * CASH, 0.8 * CASH]
    )
    np.testing.assert_allclose(result.equity, result.accounts.sum(axis=1))
    assert result.returns()[0] == 0.0
    _assert_identity(result)


# --------------------------------------------------------------------------------------------
# The equity identity on random runs with every rule switched on
# --------------------------------------------------------------------------------------------


def _random_market(rng: np.random.Generator, n: int, m: int, halts: bool = True) -> Market:
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (n, m)), axis=0))
    prev = np.vstack([close[:1], close[:-1]])
    open_ = prev * np.exp(rng.normal(0.0, 0.01, (n, m)))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, 0.01, (n, m))))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, 0.01, (n, m))))
    volume = rng.lognormal(13.0, 0.4, (n, m))
    if halts:
        gone = rng.random((n, m)) < 0.03
        for a in (open_, high, low, close, volume):
            a[gone] = np.nan
    return Market.from_arrays(
        _times(n),
        [f"R{i}" for i in range(m)],
        markets="KOSPI",  # the dated sell tax applies (2024: 0.18 %, 2025: 0.15 %)
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
    )


def _random_signals(rng: np.random.Generator, market: Market) -> Signals:
    n, m = market.shape
    close = market.close
    return Signals(
        entries=rng.random((n, m)) < 0.08,
        exits=rng.random((n, m)) < 0.04,
        stop=close * rng.uniform(0.9, 0.99, (n, m)),
        level=close * rng.uniform(0.97, 1.0, (n, m)),
        trail=close * rng.uniform(0.02, 0.08, (n, m)),
        size_mult=rng.choice([0.0, 0.5, 1.0, 1.5], (n, m)),
        priority=rng.integers(0, 4, (n, m)).astype(np.float64),
    )


RANDOM_CONFIGS: list[dict[str, Any]] = [
    {},
    {"fees": 0.001, "slippage": 0.002, "lot": 0.0},
    {"fill": "close", "fees": 0.00015, "stop_loss": 0.03, "take_profit": 0.05,
     "open_stop_loss": 0.02, "open_take_profit": 0.03, "max_bars": 1, "sizing": "risk",
     "fraction": 0.5},
    {"fees": 0.00015, "level_closes": 2, "partial_r": 2.0, "trail_after_partial": True,
     "signal_exits_after_partial": True, "max_bars": 20, "time_stop_below_r": 1.0},
    {"fees": 0.0005, "stop_loss": 0.08, "sizing": "risk", "risk": 0.01, "fraction": 0.25,
     "max_positions": 3, "trailing": 0.1, "take_profit_r": 3.0, "lot": 10.0},
    {"fill": "close", "accounts": "per_instrument", "partial_r": 1.0, "trailing": 0.05,
     "level_closes": 1, "slippage": 0.001, "fees": 0.001},
    {"accounts": "per_instrument", "sizing": "risk", "risk": 0.2, "partial_r": 0.5,
     "partial_fraction": 0.3, "take_profit": 0.08, "max_bars": 5},
]  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("config", RANDOM_CONFIGS)
def test_equity_identity_on_random_runs(seed, config):
    rng = np.random.default_rng(seed)
    market = _random_market(rng, 250, 4)
    result = simulate(market, _random_signals(rng, market), ExecutionConfig(**config))
    t = result.trades
    assert len(t) > 5
    _assert_identity(result)
    assert (t.units > 0).all()
    assert (t.fees >= 0).all()
    closed = t.closed
    assert (t.exit_bar[closed] >= t.entry_bar[closed]).all()
    # a closed row's exit is at a bar with prices; an open row is marked at the last close
    assert not np.isnan(t.exit_price).any()
    # positions never exceed the limit, rows are in exit order with open ones last
    if config.get("max_positions"):
        assert result.in_market.max() <= config["max_positions"]
    order = np.where(closed, t.exit_bar, len(market.times))
    assert (np.diff(order) >= 0).all()
    # equity is finite and positive, and holds on a bar where every instrument is halted
    assert np.isfinite(result.equity).all()
    assert (result.equity > 0).all()


# --------------------------------------------------------------------------------------------
# No look-ahead in the kernel: what happened up to bar k does not depend on later bars
# --------------------------------------------------------------------------------------------


SIGNAL_FIELDS = ("entries", "exits", "stop", "level", "trail", "size_mult", "priority")


def _events_until(result: BacktestResult, k: int) -> tuple[list[tuple[Any, ...]], ...]:
    """Entries filled at bars ≤ k (with their total units) and exit rows at bars ≤ k."""
    t = result.trades
    opened: dict[tuple[int, int], list[float]] = {}
    for i in range(len(t)):
        if t.entry_bar[i] <= k:
            key = (int(t.column[i]), int(t.entry_bar[i]))
            held = opened.setdefault(key, [float(t.entry_price[i]), 0.0])
            held[1] += float(t.units[i])
    entries = sorted((*key, price, round(units, 9)) for key, (price, units) in opened.items())
    exits = sorted(
        (int(t.column[i]), int(t.entry_bar[i]), int(t.exit_bar[i]), float(t.exit_price[i]),
         float(t.units[i]), float(t.pnl[i]), int(t.reason[i]))
        for i in range(len(t))
        if 0 <= t.exit_bar[i] <= k
    )  # fmt: skip
    return entries, exits


def _replace_after(market: Market, k: int, rng: np.random.Generator) -> Market:
    other = _random_market(rng, len(market.times), len(market.symbols), halts=False)
    cols = {}
    for name in ("open", "high", "low", "close", "volume", "traded_value"):
        a = market.column(name).copy()
        a[k + 1 :] = other.column(name)[k + 1 :]
        cols[name] = a
    return Market.from_arrays(market.times, market.symbols, markets=market.markets, **cols)


@pytest.mark.parametrize("config", RANDOM_CONFIGS[2:5])
def test_kernel_fills_up_to_k_ignore_later_bars(config):
    rng = np.random.default_rng(11)
    market = _random_market(rng, 200, 3)
    signals = _random_signals(rng, market)
    cfg = ExecutionConfig(**config)
    full = simulate(market, signals, cfg)
    for k in (30, 77, 120, 198):
        alt = simulate(_replace_after(market, k, rng), signals, cfg)
        cut = simulate(
            market.slice(k + 1),
            Signals(**{f: getattr(signals, f)[: k + 1] for f in SIGNAL_FIELDS}),
            cfg,
        )  # fmt: skip
        for other in (alt, cut):
            assert _events_until(other, k) == _events_until(full, k)
            np.testing.assert_array_equal(other.equity[: k + 1], full.equity[: k + 1])


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"fill": "open"}, "fill"),
        ({"sizing": "kelly"}, "sizing"),
        ({"accounts": "joint"}, "accounts"),
        ({"fees": -0.001}, "fees"),
        ({"fees": 0.1}, "fees"),
        ({"fees": "0.001"}, "fees"),
        ({"slippage": NAN}, "slippage"),
        ({"stop_loss": 0.0}, "stop_loss"),
        ({"stop_loss": 1.0}, "stop_loss"),
        ({"stop_loss": None}, "stop_loss"),
        ({"open_stop_loss": 1.5}, "open_stop_loss"),
        ({"trailing": 1.0}, "trailing"),
        ({"take_profit": -0.1}, "take_profit"),
        ({"take_profit": math.inf}, "take_profit"),
        ({"take_profit_r": 0.0}, "take_profit_r"),
        ({"open_take_profit": -1.0}, "open_take_profit"),
        ({"partial_r": -1.0}, "partial_r"),
        ({"time_stop_below_r": 0.0}, "time_stop_below_r"),
        ({"partial_fraction": 1.0}, "partial_fraction"),
        ({"partial_fraction": 0.0}, "partial_fraction"),
        ({"fraction": 0.0}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"risk": 0.0}, "risk"),
        ({"risk": 0.3}, "risk"),
        ({"lot": -1.0}, "lot"),
        ({"lot": math.inf}, "lot"),
        ({"lot": "1"}, "lot"),
        ({"max_bars": -1}, "max_bars"),
        ({"max_bars": 1.5}, "max_bars"),
        ({"max_bars": True}, "max_bars"),
        ({"level_closes": -2}, "level_closes"),
        ({"max_positions": 2.0}, "max_positions"),
        ({"trail_after_partial": "yes"}, "trail_after_partial"),
        ({"signal_exits_after_partial": 1}, "signal_exits_after_partial"),
    ],
)
def test_execution_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValidationError) as info:
        ExecutionConfig(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)


def test_execution_config_round_trips_and_rejects_unknown_keys():
    config = ExecutionConfig(fill="close", stop_loss=0.03, max_bars=1, lot=0.0)
    data = config.as_dict()
    assert data["take_profit"] is None  # NaN → None
    assert ExecutionConfig.from_dict(data) == config
    with pytest.raises(ValidationError, match="bogus") as info:
        ExecutionConfig.from_dict({**data, "bogus": 1})
    assert info.value.field == "execution"


def test_market_rejects_bad_shapes_and_times():
    t = _times(3)
    ok = np.ones(3)
    with pytest.raises(ValidationError) as info:
        Market.from_arrays(t, ["A"], open=ok, high=ok, low=ok, close=np.ones(2))
    assert info.value.field == "close"
    with pytest.raises(ValidationError) as info:
        Market.from_arrays(t, ["A", "B"], open=ok, high=ok, low=ok, close=ok)
    assert info.value.field == "open"
    with pytest.raises(ValidationError) as info:
        Market.from_arrays(t, ["A"], open=ok, high=ok, close=ok)
    assert info.value.field == "low"
    with pytest.raises(ValidationError) as info:
        Market.from_arrays(t[::-1], ["A"], open=ok, high=ok, low=ok, close=ok)
    assert info.value.field == "times"
    grid = np.ones((3, 1))
    with pytest.raises(ValidationError) as info:
        Market(t, ("A",), grid, grid, grid, grid.astype(np.int64), grid)
    assert info.value.field == "close"


@pytest.mark.parametrize(
    ("signals", "field"),
    [
        (lambda n: Signals(np.zeros((n - 1, 1), bool), np.zeros((n, 1), bool)), "entries"),
        (lambda n: Signals(np.zeros((n, 1), bool), np.zeros((n, 2), bool)), "exits"),
        (lambda n: Signals(np.zeros((n, 1)), np.zeros((n, 1), bool)), "entries"),  # type: ignore[arg-type]
        (lambda n: Signals(np.zeros((n, 1), bool), np.zeros((n, 1), bool),
                           stop=np.zeros((n + 1, 1))), "stop"),
        (lambda n: Signals(np.zeros((n, 1), bool), np.zeros((n, 1), bool),
                           priority=np.zeros(n - 1)), "priority"),
    ],
)  # fmt: skip
def test_simulate_rejects_wrong_signals(signals, field):
    with pytest.raises(ValidationError) as info:
        simulate(_market(RAMP), signals(6), ExecutionConfig(sell_tax="none"))
    assert info.value.field == field


def test_simulate_accepts_one_dimensional_signals_for_one_instrument():
    entries = np.zeros(6, dtype=np.bool_)
    entries[1] = True
    signals = Signals(entries, np.zeros(6, bool))
    result = simulate(_market(RAMP), signals, ExecutionConfig(sell_tax="none"))
    assert _one(result)["entry_bar"] == 2


@pytest.mark.parametrize("cash", [0.0, -1.0, NAN, math.inf])
def test_simulate_rejects_bad_initial_cash(cash):
    with pytest.raises(ValidationError) as info:
        simulate(_market(RAMP), _signals(6), ExecutionConfig(sell_tax="none"), initial_cash=cash)
    assert info.value.field == "initial_cash"


# --------------------------------------------------------------------------------------------
# The reference: backtesting.py's SMA crossover
# --------------------------------------------------------------------------------------------


def _ohlc(seed: int, n: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 50_000.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, n)))
    prev = np.concatenate(([close[0]], close[:-1]))
    open_ = prev * np.exp(rng.normal(0.0, 0.007, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, 0.01, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, 0.01, n)))
    volume = rng.lognormal(13.0, 0.3, n)
    return pd.DataFrame(
        {"Open": open_, "High": high, "Low": low, "Close": close, "Volume": volume},
        index=pd.DatetimeIndex(_times(n)),
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("commission", [0.0, 0.001, 0.0025])
def test_sma_crossover_matches_backtesting_py(seed, commission, monkeypatch):
    backtesting = pytest.importorskip("backtesting")
    from backtesting.lib import crossover

    monkeypatch.setattr(backtesting.backtesting, "_tqdm", lambda seq, **_: seq)

    def sma(values: Any, k: int) -> pd.Series:
        return pd.Series(values).rolling(k).mean()

    def init(self: Any) -> None:
        self.a = self.I(sma, self.data.Close, self.n1)
        self.b = self.I(sma, self.data.Close, self.n2)

    def next_bar(self: Any) -> None:
        if crossover(self.a, self.b):
            if not self.position:
                self.buy(size=0.9999999)
        elif crossover(self.b, self.a):
            self.position.close()

    sma_cross = type(
        "SmaCross", (backtesting.Strategy,), {"n1": 10, "n2": 30, "init": init, "next": next_bar}
    )

    df = _ohlc(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = backtesting.Backtest(
            df, sma_cross, cash=10_000_000, commission=commission, finalize_trades=False
        ).run()
    reference = stats._trades

    market = Market.from_arrays(
        df.index.values.astype("datetime64[D]"),
        ["X"],
        open=df["Open"].to_numpy(),
        high=df["High"].to_numpy(),
        low=df["Low"].to_numpy(),
        close=df["Close"].to_numpy(),
        volume=df["Volume"].to_numpy(),
    )
    strategy = get("sma_crossover")
    result = simulate(
        market,
        strategy.signals(market, {"fast": 10, "slow": 30}),
        # backtesting.py has no sell tax: compare without it
        strategy.execution_with({"fees": commission, "fraction": 0.9999999, "sell_tax": "none"}),
        initial_cash=10_000_000,
    )
    t = result.trades
    closed = t.closed
    assert len(reference) >= 5
    assert t.entry_bar[closed].tolist() == reference.EntryBar.tolist()
    assert t.exit_bar[closed].tolist() == reference.ExitBar.tolist()
    assert t.units[closed].tolist() == reference.Size.astype(float).tolist()
    np.testing.assert_allclose(t.entry_price[closed], reference.EntryPrice, rtol=1e-12)
    np.testing.assert_allclose(t.exit_price[closed], reference.ExitPrice, rtol=1e-12)
    np.testing.assert_allclose(t.pnl[closed], reference.PnL, rtol=0, atol=1e-6)
    assert result.final_equity == pytest.approx(stats["Equity Final [$]"], abs=1e-6)
    np.testing.assert_allclose(result.equity, stats._equity_curve.Equity, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# A second reading of the contract: a plain-Python simulator of one instrument
# --------------------------------------------------------------------------------------------


def _reference(market: Market, signals: Signals, cfg: ExecutionConfig, cash: float) -> Any:
    """The module docstring, line by line, for one instrument; returns (rows, equity)."""
    o_, h_, l_, c_ = (market.column(k)[:, 0] for k in ("open", "high", "low", "close"))
    n = len(c_)

    def col(a: Any, default: float) -> np.ndarray:
        return np.full(n, default) if a is None else np.asarray(a, dtype=float).reshape(n)

    entries, exits = signals.entries.reshape(n), signals.exits.reshape(n)
    stop_s, level_s, trail_s = (
        col(signals.stop, NAN),
        col(signals.level, NAN),
        col(signals.trail, NAN),
    )
    mult_s = col(signals.size_mult, 1.0)
    s, f = cfg.slippage, cfg.fees
    days = market.times.astype("datetime64[D]").astype(object)

    def tax_rate(t: int) -> float:
        if cfg.sell_tax == "none":
            return 0.0
        assert market.markets is not None
        return DEFAULT_TAX.rate(market.markets[0], days[t])

    def top(*xs: float) -> float:
        known = [x for x in xs if not math.isnan(x)]
        return max(known) if known else NAN

    rows: list[tuple[Any, ...]] = []
    equity: list[float] = []
    pos: dict[str, Any] | None = None
    queued: dict[str, float] | None = None
    last = NAN

    def close_out(t: int, price: float, reason: str, units: float | None = None) -> None:
        nonlocal cash, pos
        assert pos is not None
        u = pos["units"] if units is None else units
        fill = price * (1 - s)
        fee = u * fill * f
        tax = u * fill * tax_rate(t)
        cash += u * fill - fee - tax
        fees = fee + tax + u * pos["fee_unit"]
        rows.append((pos["bar"], t, pos["px"], fill, u, u * (fill - pos["px"]) - fees, reason))
        if units is None:
            pos = None
        else:
            pos["units"] -= u

    def enter(t: int, price: float, stop: float, level: float, mult: float, eq: float) -> None:
        nonlocal cash, pos
        fill = price * (1 + s)
        stop = top(stop, fill * (1 - cfg.stop_loss))
        if stop >= fill or (cfg.sizing == "risk" and math.isnan(stop)):
            return
        budget = eq * cfg.fraction * mult / (fill * (1 + f))
        if cfg.sizing == "risk":
            budget = min(eq * cfg.risk * mult / (fill - stop), budget)
        size = min(budget, cash / (fill * (1 + f)))
        if cfg.lot > 0:
            size = math.floor(size / cfg.lot + 1e-9) * cfg.lot
        if not size > 0:
            return
        cash -= size * fill * (1 + f)
        r = fill - stop if stop < fill else NAN
        target = fill * (1 + cfg.take_profit)
        if not math.isnan(r * cfg.take_profit_r):
            target = min(x for x in (target, fill + cfg.take_profit_r * r) if not math.isnan(x))
        pos = {
            "units": size, "px": fill, "fee_unit": fill * f, "bar": t, "stop": stop,
            "target": target, "partial": fill + cfg.partial_r * r, "partial_done": False,
            "trail": NAN, "high": price, "r": r, "level": level, "below": 0,
            "pending": None, "first_open": cfg.fill == "close",
        }  # fmt: skip

    for t in range(n):
        o, h, lo, c = o_[t], h_[t], l_[t], c_[t]
        # 1. the open
        if pos is not None and not math.isnan(o):
            first, pos["first_open"] = pos["first_open"], False
            if pos["pending"]:
                close_out(t, o, pos["pending"])
            elif first and o <= pos["px"] * (1 - cfg.open_stop_loss):
                close_out(t, o, "stop_loss")
            elif first and o >= pos["px"] * (1 + cfg.open_take_profit):
                close_out(t, o, "take_profit")
            elif o <= top(pos["stop"], pos["trail"]):
                trail_first = math.isnan(pos["stop"]) or pos["trail"] > pos["stop"]
                close_out(t, o, "trailing_stop" if trail_first else "stop_loss")
            elif o >= pos["target"]:
                close_out(t, o, "take_profit")
        if queued is not None:
            if not math.isnan(o) and pos is None:
                eq = cash
                enter(t, o, queued["stop"], queued["level"], queued["mult"], eq)
            queued = None
        # 2. intrabar
        if pos is not None and not (math.isnan(h) or math.isnan(lo)):
            floor_level = top(pos["stop"], pos["trail"])
            if lo <= floor_level:
                trail_first = math.isnan(pos["stop"]) or pos["trail"] > pos["stop"]
                close_out(t, min(floor_level, o), "trailing_stop" if trail_first else "stop_loss")
            else:
                if not pos["partial_done"] and pos["bar"] < t and h >= pos["partial"]:
                    part = pos["units"] * cfg.partial_fraction
                    if cfg.lot > 0:
                        part = math.floor(part / cfg.lot + 1e-9) * cfg.lot
                    if 0 < part < pos["units"]:
                        # a limit sell: a gap above the level fills at the open
                        close_out(t, max(pos["partial"], o), "partial", part)
                    pos["partial_done"] = True
                if h >= pos["target"]:
                    close_out(t, pos["target"], "take_profit")
        # 3. the close
        if not math.isnan(c):
            last = c
            if pos is not None:
                reason = None
                if cfg.level_closes and not math.isnan(pos["level"]):
                    pos["below"] = pos["below"] + 1 if c < pos["level"] else 0
                    if pos["below"] >= cfg.level_closes:
                        reason = "level_break"
                if exits[t] and (not cfg.signal_exits_after_partial or pos["partial_done"]):
                    reason = "signal"
                if (
                    reason is None
                    and pos["pending"] is None
                    and cfg.max_bars
                    and t - pos["bar"] >= cfg.max_bars
                    and not c >= pos["px"] + cfg.time_stop_below_r * pos["r"]
                ):
                    reason = "time_stop"
                if reason and cfg.fill == "close":
                    close_out(t, c, reason)
                elif reason:
                    pos["pending"] = reason
            if pos is not None:
                pos["high"] = max(pos["high"], h) if not math.isnan(h) else pos["high"]
                if not cfg.trail_after_partial or pos["partial_done"]:
                    pos["trail"] = top(pos["trail"], pos["high"] * (1 - cfg.trailing),
                                       pos["high"] - trail_s[t])  # fmt: skip
        if entries[t] and (pos is None or pos["pending"]) and mult_s[t] > 0:
            if cfg.fill == "close":
                if pos is None and not math.isnan(c):
                    enter(t, c, stop_s[t], level_s[t], mult_s[t], cash)
            else:
                queued = {"stop": stop_s[t], "level": level_s[t], "mult": mult_s[t]}
        equity.append(cash + (pos["units"] * last if pos else 0.0))
    if pos is not None:
        fees = pos["units"] * pos["fee_unit"]
        rows.append((pos["bar"], -1, pos["px"], last, pos["units"],
                     pos["units"] * (last - pos["px"]) - fees, "open"))  # fmt: skip
    return rows, np.array(equity)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("config", RANDOM_CONFIGS)
def test_kernel_agrees_with_a_plain_reading_of_the_contract(seed, config):
    if config.get("accounts") == "per_instrument":
        config = {**config, "accounts": "shared"}  # one instrument: the same thing
    cfg = ExecutionConfig(**config)
    rng = np.random.default_rng(100 + seed)
    market = _random_market(rng, 300, 1)
    signals = _random_signals(rng, market)
    if seed % 2 and cfg.sizing == "fraction":
        # no signal stop: trailing stops and percentage stops on their own
        signals = Signals(**{f: getattr(signals, f) for f in SIGNAL_FIELDS if f != "stop"})
    result = simulate(market, signals, cfg, initial_cash=CASH)
    rows, equity = _reference(market, signals, cfg, CASH)
    got = [
        (r["entry_bar"], r["exit_bar"], r["entry_price"], r["exit_price"], r["units"], r["pnl"],
         r["reason"])
        for r in _rows(result)
    ]  # fmt: skip
    assert len(got) == len(rows) > 3
    for mine, theirs in zip(got, rows, strict=True):
        assert mine[:2] == theirs[:2], (mine, theirs)
        assert mine[6] == theirs[6], (mine, theirs)
        assert mine[2:6] == pytest.approx(theirs[2:6], rel=1e-9, abs=1e-6), (mine, theirs)
    np.testing.assert_allclose(result.equity, equity, rtol=1e-9)
