"""quant.backtest.strategies: the registry, parameter checks, the vectorized helpers, and the
promise every builder makes: a signal at bar t never changes when later bars change.

The look-ahead test builds, per strategy, a seeded market with enough structure to trade
(breakouts on volume, closing-bet days, hand-shaped VCP bases), then for several cut points
k replaces every bar after k with other random data (and, separately, drops them), and
checks that the signals at bars ≤ k, every fill at a bar ≤ k and the equity up to k are
exactly what the full run had.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest

from quant.backtest.engine import BacktestResult, Market, Signals, simulate
from quant.backtest.strategies import (
    STRATEGIES,
    crossed_above,
    flow_names,
    get,
    rolling_mean,
)
from quant.errors import ValidationError
from quant.indicators.candles import Candles
from quant.indicators.custom import rs_rating, rs_raw
from quant.scans.inputs import ScanInputs
from quant.scans.trend import TrendTemplateParams
from quant.scans.vcp import VcpParams, scan_vcp

NAN = math.nan
SIGNAL_FIELDS = ("entries", "exits", "stop", "level", "trail", "size_mult", "priority")


def _times(n: int) -> np.ndarray:
    return np.datetime64("2023-01-02", "D") + np.arange(n).astype("timedelta64[D]")


def _market(symbols: list[str], **columns: np.ndarray) -> Market:
    """KOSPI instruments from 2023-01-02 on: sells pay the dated tax of quant.costs."""
    return Market.from_arrays(_times(len(columns["close"])), symbols, markets="KOSPI", **columns)


# --------------------------------------------------------------------------------------------
# Synthetic markets, one per strategy (seeded)
# --------------------------------------------------------------------------------------------


def _walk(
    rng: np.random.Generator, n: int, m: int, *, vol: float, drift: float, start: float = 50_000
) -> dict[str, np.ndarray]:
    close = start * np.exp(np.cumsum(rng.normal(drift, vol, (n, m)), axis=0))
    prev = np.vstack([close[:1], close[:-1]])
    open_ = prev * np.exp(rng.normal(0.0, vol / 3, (n, m)))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, vol / 2, (n, m))))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, vol / 2, (n, m))))
    volume = rng.lognormal(math.log(1e6), 0.3, (n, m))
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def _rescale_from(cols: dict[str, np.ndarray], day: int, factor: np.ndarray) -> None:
    for name in ("open", "high", "low", "close"):
        cols[name][day:] *= factor


def sma_market(seed: int, n: int = 300, m: int = 2) -> Market:
    cols = _walk(np.random.default_rng(seed), n, m, vol=0.02, drift=0.0003)
    return _market([f"S{i}" for i in range(m)], **cols)


def breakout_market(seed: int, n: int = 400, m: int = 3) -> Market:
    """A drifting walk with a +4–8 % breakout day on 2.5–4× volume every 25–45 bars."""
    rng = np.random.default_rng(seed)
    cols = _walk(rng, n, m, vol=0.01, drift=0.0008)
    for c in range(m):
        for d in range(70, n, int(rng.integers(25, 45))):
            prev = cols["close"][d - 1, c]
            scale = 1 + rng.uniform(0.04, 0.08)
            cols["close"][d:, c] *= scale
            for name in ("open", "high", "low"):
                cols[name][d + 1 :, c] *= scale
            cols["open"][d, c] = prev * 1.002
            cols["high"][d, c] = cols["close"][d, c] * 1.002
            cols["low"][d, c] = prev * 0.998
            cols["volume"][d, c] *= rng.uniform(2.5, 4.0)
    cols["traded_value"] = cols["close"] * cols["volume"]
    return _market([f"Z{i}" for i in range(m)], **cols)


def closing_bet_market(seed: int, n: int = 160, m: int = 3) -> Market:
    """Closing-bet days: +7–20 % on 3–8× the 20-day volume, closing at the high, traded
    value ≥ 500억 KRW (≈ 1000억 on ordinary days)."""
    rng = np.random.default_rng(seed)
    cols = _walk(rng, n, m, vol=0.015, drift=0.0005)
    for c in range(m):
        for d in sorted(rng.choice(np.arange(30, n), size=6, replace=False)):
            prev = cols["close"][d - 1, c]
            close = prev * (1 + rng.uniform(0.07, 0.2))
            open_ = prev * (1 + rng.uniform(-0.01, 0.01))
            _rescale_from(cols, d + 1, close / cols["close"][d, c])
            cols["open"][d, c] = open_
            cols["close"][d, c] = close
            cols["high"][d, c] = close * (1 + rng.uniform(0.0, 0.005))
            cols["low"][d, c] = min(open_, close) * (1 - rng.uniform(0.0, 0.005))
            cols["volume"][d, c] = cols["volume"][d - 20 : d, c].mean() * rng.uniform(3, 8)
    cols["traded_value"] = cols["close"] * cols["volume"] * 2.0
    return _market([f"B{i}" for i in range(m)], **cols)


def closing_bet_flows(market: Market, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tv = market.column("traded_value")
    return {
        "foreign_net_krw": tv * rng.normal(0.0, 0.05, tv.shape),
        "institution_net_krw": tv * rng.normal(0.0, 0.05, tv.shape),
    }


W = 0.005  # half the bar range around the centre of the VCP paths


def _trough(peak: float, depth: float) -> float:
    return peak * (1 + W) * (1 - depth) / (1 - W)


def vcp_market(seed: int, n: int = 380, m: int = 2) -> Market:
    """Per instrument, a Stage-2 uptrend (30 → 100) into a three-contraction base (25 %,
    15 %, 8 %; pivot ≈ 95.5), a breakout bar on 2× volume, a run-up and a failure below the
    50-bar mean; shifted by a seeded offset and scaled by a seeded price level."""
    rng = np.random.default_rng(seed)
    centres, volumes = [], []
    for _ in range(m):
        offset = int(rng.integers(0, 30))
        t = 189 + offset
        knots = [(0, 30.0), (t, 100.0)]
        for k, (peak, depth, down, up) in enumerate(
            ((100.0, 0.25, 16, 20), (97.0, 0.15, 12, 13), (95.0, 0.08, 8, 12))
        ):
            t += down
            knots.append((t, _trough(peak, depth)))
            if k < 2:
                t += up
                knots.append((t, (97.0, 95.0)[k]))
        t += 10
        knots.append((t, 94.0))
        breakout = t + 1
        knots += [(breakout, 97.5), (breakout + 15, 110.0), (breakout + 45, 88.0), (n - 1, 92.0)]
        xs, ys = zip(*knots, strict=True)
        centres.append(np.interp(np.arange(n), xs, ys) * 1000 * rng.uniform(0.5, 2.0))
        v = np.full(n, 1_000_000.0)
        v[189 + offset : breakout] = np.linspace(900_000, 300_000, breakout - 189 - offset)
        v[breakout - 10 : breakout] = 250_000.0
        v[breakout] = 2_000_000.0
        volumes.append(v)
    centre = np.array(centres).T
    volume = np.array(volumes).T
    return _market(
        [f"V{i}" for i in range(m)],
        open=centre,
        high=centre * (1 + W),
        low=centre * (1 - W),
        close=centre,
        volume=volume,
        traded_value=centre * volume,
    )


def crypto_market(seed: int, n: int = 400, m: int = 2) -> Market:
    """UPBIT coins on a 24/7 calendar (every calendar day a bar), untaxed."""
    cols = _walk(np.random.default_rng(seed), n, m, vol=0.03, drift=0.0008, start=5e7)
    return Market.from_arrays(_times(n), [f"KRW-C{i}" for i in range(m)], markets="UPBIT", **cols)


MARKETS = {
    "sma_crossover": sma_market,
    "crypto_trend": crypto_market,
    "volume_zone_breakout": breakout_market,
    "vcp_breakout": vcp_market,
    "closing_bet": closing_bet_market,
}


# --------------------------------------------------------------------------------------------
# No look-ahead
# --------------------------------------------------------------------------------------------


def _events_until(result: BacktestResult, k: int) -> tuple[list[tuple[Any, ...]], ...]:
    """Entries filled at bars ≤ k (with their total units, partial rows summed) and every
    exit row at a bar ≤ k."""
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


def _with_other_bars_after(market: Market, k: int, other: Market) -> Market:
    """``market`` up to bar k, then ``other`` rescaled to continue from each close at k."""
    scale = market.close[k] / other.close[k]
    cols = {}
    for name in ("open", "high", "low", "close", "volume", "traded_value"):
        a = market.column(name).copy()
        b = other.column(name) * (scale if name in ("open", "high", "low", "close") else 1.0)
        a[k + 1 :] = b[k + 1 :]
        cols[name] = a
    return Market.from_arrays(market.times, market.symbols, markets=market.markets, **cols)


def _flows_until(flows: Mapping[str, np.ndarray] | None, k: int, seed: int) -> Any:
    if flows is None:
        return None, None
    rng = np.random.default_rng(seed)
    changed = {}
    for name, a in flows.items():
        b = a.copy()
        b[k + 1 :] = rng.normal(0.0, 1e10, b[k + 1 :].shape)
        changed[name] = b
    return changed, {name: a[: k + 1] for name, a in flows.items()}


def _assert_same_signals(a: Signals, b: Signals, k: int, label: str) -> None:
    for name in SIGNAL_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), (label, name)
        if x is not None:
            np.testing.assert_array_equal(x[: k + 1], y[: k + 1], err_msg=f"{label} {name}")


CASES = [
    pytest.param("sma_crossover", {}, 3, id="sma_crossover"),
    pytest.param("volume_zone_breakout", {}, 3, id="volume_zone_breakout"),
    pytest.param("vcp_breakout", {}, 2, id="vcp_breakout"),
    # the RS criterion applied: two instruments ranked against each other
    pytest.param(
        "vcp_breakout", {"min_universe": 2, "min_rs_rating": 1.0}, 2, id="vcp_breakout-ranked"
    ),
    pytest.param("closing_bet", {}, 3, id="closing_bet"),
    pytest.param("crypto_trend", {}, 3, id="crypto_trend"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize(("name", "params", "min_trades"), CASES)
def test_no_look_ahead(name, params, min_trades, seed):
    strategy = get(name)
    make = MARKETS[name]
    market = make(seed)
    flows = closing_bet_flows(market, seed) if strategy.needs_flows else None
    config = strategy.execution
    signals = strategy.signals(market, params, flows)
    full = simulate(market, signals, config)
    assert len(full.trades) >= min_trades, f"{name} traded {len(full.trades)} times"

    n = len(market.times)
    entry_bars = sorted({int(b) for b in full.trades.entry_bar})
    # around the first and a middle entry (the signal bar, the fill bar), plus fixed cuts
    picks = {entry_bars[0], entry_bars[len(entry_bars) // 2]}
    cuts = sorted({b + d for b in picks for d in (-2, -1, 0)} | {n // 3, n - 2})
    other = make(seed + 100)
    later_changed = False  # the replaced bars must matter somewhere, or the test is idle
    for k in cuts:
        alt_flows, cut_flows = _flows_until(flows, k, seed + k)
        runs = {
            "replaced": _with_other_bars_after(market, k, other),
            "truncated": market.slice(k + 1),
        }
        for label, changed in runs.items():
            sig = strategy.signals(changed, params, alt_flows if label == "replaced" else cut_flows)
            _assert_same_signals(signals, sig, k, f"{name} k={k} {label}")
            result = simulate(changed, sig, config)
            assert _events_until(result, k) == _events_until(full, k), (name, k, label)
            np.testing.assert_array_equal(
                result.equity[: k + 1], full.equity[: k + 1], err_msg=f"{name} k={k} {label}"
            )
            assert result.in_market[: k + 1].tolist() == full.in_market[: k + 1].tolist()
            if label == "replaced":
                later_changed |= not np.array_equal(
                    sig.entries[k + 1 :], signals.entries[k + 1 :]
                ) or _events_until(result, n) != _events_until(full, n)
    assert later_changed


# --------------------------------------------------------------------------------------------
# The registry and parameters
# --------------------------------------------------------------------------------------------


def test_registry():
    # integration tests register test_* strategies in the same process
    assert {n for n in STRATEGIES if not n.startswith("test_")} == {
        "sma_crossover",
        "volume_zone_breakout",
        "vcp_breakout",
        "closing_bet",
        "crypto_trend",
    }
    assert all(get(name).name == name for name in STRATEGIES)
    assert get("closing_bet").execution.fill == "close"
    assert {get(n).execution.fill for n in STRATEGIES if n != "closing_bet"} == {"next_open"}
    assert "foreign_net_krw" in flow_names()


def test_crypto_trend_trades_fractional_coins_untaxed_on_every_calendar_day():
    market = crypto_market(5)
    strategy = get("crypto_trend")
    result = simulate(market, strategy.signals(market), strategy.execution)
    t = result.trades
    assert len(t) >= 3
    units = np.asarray(t.units, dtype=float)
    assert (units % 1 != 0).any()  # fractional coins (lot 1e-8)
    assert np.allclose(np.round(units * 1e8), units * 1e8)
    assert t.tax is not None
    assert float(np.sum(t.tax)) == 0.0  # UPBIT pays no sell tax
    assert np.all(np.diff(market.times).astype(int) == 1)  # weekends included
    with pytest.raises(ValidationError, match="fast < slow"):
        strategy.params({"fast": 50, "slow": 20})


def test_unknown_strategy_lists_the_known_ones():
    with pytest.raises(ValidationError) as info:
        get("nope")
    assert info.value.field == "strategy"
    assert info.value.value == "nope"
    for name in STRATEGIES:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("name", "overrides", "field"),
    [
        ("sma_crossover", {"fats": 5}, "params.fats"),
        ("sma_crossover", {"fast": "10"}, "params.fast"),
        ("sma_crossover", {"fast": 10.0}, "params.fast"),  # an int parameter takes no float
        ("sma_crossover", {"fast": True}, "params.fast"),  # … and no bool
        ("sma_crossover", {"fast": 30}, "params.fast"),  # fast must be below slow
        ("sma_crossover", {"fast": 40, "slow": 30}, "params.fast"),
        ("sma_crossover", {"fast": 0}, "params.fast"),
        ("volume_zone_breakout", {"use_traded_value": 1}, "params.use_traded_value"),
        ("volume_zone_breakout", {"value_area": "0.7"}, "params.value_area"),
        ("volume_zone_breakout", {"volume_mult": None}, "params.volume_mult"),
        ("vcp_breakout", {"min_rs_rating": False}, "params.min_rs_rating"),
        ("closing_bet", {"grades": "S"}, "params.grades"),
    ],
)
def test_params_reject_bad_values_naming_them(name, overrides, field):
    with pytest.raises(ValidationError) as info:
        get(name).params(overrides)
    assert info.value.field == field
    assert field.split(".")[1] in str(info.value)
    assert name in str(info.value)


def test_params_merge_defaults_and_accept_int_for_float():
    p = get("volume_zone_breakout").params({"volume_mult": 2, "use_traded_value": True})
    assert p["volume_mult"] == 2
    assert p["use_traded_value"] is True
    assert p["profile_bars"] == 60
    assert get("sma_crossover").params({"fast": 5, "slow": 6}) == {"fast": 5, "slow": 6}
    assert get("sma_crossover").params() == {"fast": 10, "slow": 30}


def test_execution_with_overrides_and_rejects_unknown_settings():
    strategy = get("closing_bet")
    assert strategy.execution_with() is strategy.execution
    config = strategy.execution_with({"fees": 0.001, "take_profit": None})
    assert config.fees == 0.001
    assert math.isnan(config.take_profit)
    assert config.stop_loss == strategy.execution.stop_loss
    with pytest.raises(ValidationError) as info:
        strategy.execution_with({"feez": 0.001})
    assert info.value.field == "execution"
    assert "feez" in str(info.value)
    with pytest.raises(ValidationError) as info:
        strategy.execution_with({"fees": "0.001"})
    assert info.value.field == "fees"


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _with_nans(rng: np.random.Generator, shape: tuple[int, ...], share: float) -> np.ndarray:
    x = rng.normal(100.0, 10.0, shape)
    x[rng.random(shape) < share] = np.nan
    return x


@pytest.mark.parametrize("window", [1, 2, 5, 20])
@pytest.mark.parametrize("shape", [(60,), (60, 3)])
@pytest.mark.parametrize("share", [0.0, 0.05, 0.3])
def test_rolling_mean_equals_pandas(window, shape, share):
    x = _with_nans(np.random.default_rng(window), shape, share)
    got = rolling_mean(x, window)
    expected = pd.DataFrame(x).rolling(window).mean().to_numpy().reshape(shape)
    assert got.shape == shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)  # NaN where pandas has NaN


def test_rolling_mean_edge_cases():
    np.testing.assert_array_equal(rolling_mean(np.array([1.0, 2.0]), 3), [NAN, NAN])
    np.testing.assert_array_equal(rolling_mean(np.array([]), 2), np.array([]))
    # a NaN blanks exactly the windows that hold it
    got = rolling_mean(np.array([1.0, 2.0, NAN, 4.0, 6.0, 8.0]), 2)
    np.testing.assert_array_equal(got, [NAN, 1.5, NAN, NAN, 5.0, 7.0])
    # a wide swing in level does not leave residue in later windows
    x = np.concatenate([np.full(50, 1e12), np.full(10, 1.0)])
    assert rolling_mean(x, 5)[-1] == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("window", [0, -1, 2.0, True, "3"])
def test_rolling_mean_rejects_bad_windows(window):
    with pytest.raises(ValidationError) as info:
        rolling_mean(np.ones(5), window)
    assert info.value.field == "window"


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([1, 2, 3], [2, 2, 2], [False, False, False]),  # equal at t−1 is not below: no cross
        ([1, 3], [2, 2], [False, True]),
        ([1, 3, 1, 3], [2, 2, 2, 2], [False, True, False, True]),  # every strict crossing
        ([1, 2, 2, 3], [2, 2, 2, 2], [False, False, False, False]),  # touch, stay, leave
        ([3, 1, 3], [2, 2, 2], [False, False, True]),
        ([1, NAN, 3, 4], [2, 2, 2, 2], [False, False, False, False]),  # NaN compares False
        ([1, 3], [NAN, 2], [False, False]),
        ([5], [1], [False]),  # the first bar has no previous bar
    ],
)
def test_crossed_above(a, b, expected):
    got = crossed_above(np.array(a, dtype=float), np.array(b, dtype=float))
    assert got.dtype == np.bool_
    assert got.tolist() == expected


def test_crossed_above_two_dimensional_is_per_column():
    a = np.array([[1.0, 3.0], [3.0, 1.0]])
    b = np.full((2, 2), 2.0)
    assert crossed_above(a, b).tolist() == [[False, False], [True, False]]
    assert crossed_above(b, a).tolist() == [[False, False], [False, True]]


# --------------------------------------------------------------------------------------------
# The builders
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fast", "slow"), [(10, 30), (3, 7)])
def test_sma_crossover_signals_are_pandas_crossovers(fast, slow):
    market = sma_market(5)
    signals = get("sma_crossover").signals(market, {"fast": fast, "slow": slow})
    close = pd.DataFrame(market.close)
    f = close.rolling(fast).mean()
    s = close.rolling(slow).mean()
    up = (f.shift() < s.shift()) & (f > s)
    down = (s.shift() < f.shift()) & (s > f)
    np.testing.assert_array_equal(signals.entries, up.to_numpy())
    np.testing.assert_array_equal(signals.exits, down.to_numpy())
    assert signals.entries.any()
    assert signals.exits.any()
    assert not (signals.entries & signals.exits).any()


def test_volume_zone_breakout_levels():
    market = breakout_market(3)
    signals = get("volume_zone_breakout").signals(market)
    assert signals.entries.sum() >= 5
    assert signals.stop is not None
    assert signals.level is not None
    assert signals.trail is not None
    at = signals.entries
    close = market.close[at]
    vah = signals.level[at]
    # a close above the VAH (with the 0.5 % buffer), the stop at most 8 % below the close and
    # below the level, a positive trailing distance
    assert (close > vah * 1.005).all()
    assert (signals.stop[at] >= close * 0.92 - 1e-9).all()
    assert (signals.stop[at] < vah).all()
    assert (signals.trail[at] > 0).all()


def test_vcp_breakout_with_fewer_instruments_than_the_universe_minimum():
    # fewer than min_universe (10) instruments: the RS criterion is not applied (this used
    # to raise: "not applied" was a minimum rating of 0, which the Trend Template rejects)
    market = vcp_market(3)
    signals = get("vcp_breakout").signals(market)
    assert "rs_criterion" in signals.notes
    assert signals.entries.any(axis=0).all()  # every instrument breaks out
    assert signals.stop is not None
    assert signals.priority is not None
    at = signals.entries
    assert (signals.stop[at] < market.close[at]).all()
    assert (signals.priority[at] > 0).all()
    # ranked among themselves (ratings 1 and 99) the criterion applies
    ranked = get("vcp_breakout").signals(market, {"min_universe": 2, "min_rs_rating": 1.0})
    assert "rs_criterion" not in ranked.notes
    np.testing.assert_array_equal(ranked.entries, signals.entries)
    none = get("vcp_breakout").signals(market, {"min_universe": 2, "min_rs_rating": 100.0})
    assert not none.entries.any()


def _drop_bar(market: Market, bar: int) -> Market:
    """``market`` with ``bar`` missing (NaN in every column) for every instrument."""
    cols = {}
    for name in ("open", "high", "low", "close", "volume", "traded_value"):
        a = market.column(name).copy()
        a[bar] = np.nan
        cols[name] = a
    return Market.from_arrays(market.times, market.symbols, markets=market.markets, **cols)


def test_vcp_breakout_after_a_missing_bar():
    # a missing bar in the 50 bars before a breakout: the scan skips it, so must the
    # prefilter (its 50-bar mean volume used to turn NaN and drop every such breakout)
    market = vcp_market(3, m=1)
    signals = get("vcp_breakout").signals(market)
    bars = np.flatnonzero(signals.entries[:, 0])
    assert len(bars)
    gappy = get("vcp_breakout").signals(_drop_bar(market, int(bars[0]) - 3))
    np.testing.assert_array_equal(np.flatnonzero(gappy.entries[:, 0]), bars)


def _vcp_reference(market: Market, ranked: bool, min_rs: float) -> tuple[Any, Any, Any]:
    """The VCP scan (scan_vcp) on every bar of every instrument, each instrument's series
    computed from its own candles by the scan: what vcp_breakout's entries, stops and
    priorities must equal, however it gets there."""
    n, m = market.shape
    raw = np.column_stack([rs_raw(np.ascontiguousarray(market.close[:, c])) for c in range(m)])
    ratings = np.array([rs_rating(raw[t]) for t in range(n)]) if ranked else np.ones((n, m))
    trend = TrendTemplateParams(min_rs_rating=min_rs if ranked else 1.0)
    entries = np.zeros((n, m), dtype=bool)
    stop = np.full((n, m), NAN)
    priority = np.zeros((n, m))
    for c in range(m):
        candles = Candles(
            time=market.times,
            **{
                name: np.ascontiguousarray(market.column(name)[:, c])
                for name in ("open", "high", "low", "close", "volume", "traded_value")
            },
        )
        for t in range(n):
            rating = float(ratings[t, c])
            inputs = ScanInputs(instrument="X", candles=candles.head(t + 1), rs_rating=rating)
            result = scan_vcp(inputs, trend, VcpParams())
            pattern = result.pattern
            if result.is_candidate and pattern.breakout and not pattern.extended:
                entries[t, c] = True
                stop[t, c] = pattern.stop
                priority[t, c] = result.score.total
    return entries, stop, priority


@pytest.mark.parametrize("ranked", [False, True])
@pytest.mark.parametrize("gap", [False, True])
def test_vcp_breakout_is_the_scan_on_every_bar(ranked, gap):
    # the prefilters over every bar of every instrument at once, the series computed for
    # all instruments together, the pattern found before the scoring: none of it may change
    # an entry, a stop or a priority against the plain per-bar scan
    market = vcp_market(5, m=3)
    if gap:
        market = _drop_bar(market, 250)
    params = {"min_universe": 2, "min_rs_rating": 1.0} if ranked else {}
    signals = get("vcp_breakout").signals(market, params)
    entries, stop, priority = _vcp_reference(market, ranked, 1.0)
    assert entries.any()
    np.testing.assert_array_equal(signals.entries, entries)
    assert signals.stop is not None
    assert signals.priority is not None
    np.testing.assert_array_equal(signals.stop[entries], stop[entries])
    np.testing.assert_array_equal(signals.priority, priority)


@pytest.mark.parametrize("before", [1, 5])
def test_closing_bet_after_a_missing_bar(before):
    # the scan measures the change from the last present close and the volume ratio over
    # traded days; the prefilter used to drop candidates within 20 bars after a missing bar
    market = closing_bet_market(0, m=1)
    bars = np.flatnonzero(get("closing_bet").signals(market).entries[:, 0])
    assert len(bars) >= 4
    gap = int(bars[2]) - before
    gappy = get("closing_bet").signals(_drop_bar(market, gap))
    assert set(bars) - {gap} <= set(np.flatnonzero(gappy.entries[:, 0]))


def test_closing_bet_grades_weights_and_filter():
    market = closing_bet_market(3)
    flows = closing_bet_flows(market, 3)
    signals = get("closing_bet").signals(market, None, flows)
    assert signals.size_mult is not None
    assert signals.priority is not None
    at = signals.entries
    assert at.sum() >= 5
    assert set(np.unique(signals.size_mult[at])) <= {1.5, 1.0, 0.5}
    assert (signals.size_mult[~at] == 0).all()
    assert not signals.exits.any()
    # a +7 % day or more on ≥ 3× volume, at the close: ≥ 5 %, ≥ 2× the 20-day volume
    prev = np.vstack([np.full((1, 3), NAN), market.close[:-1]])
    assert (market.close[at] / prev[at] - 1 >= 0.05).all()
    only_a = get("closing_bet").signals(market, {"grades": ["A"]}, flows)
    assert (only_a.entries <= at).all()
    assert only_a.size_mult is not None
    assert set(np.unique(only_a.size_mult[only_a.entries])) <= {1.0}
    none = get("closing_bet").signals(market, {"min_change": 0.5}, flows)
    assert not none.entries.any()


#: The production strategies (test apps register more in the same registry when a fault or
#: integration module imports them in this process).
PRODUCTION = sorted(name for name in STRATEGIES if not name.startswith("test_"))


@pytest.mark.parametrize("name", PRODUCTION)
def test_builders_report_progress_per_instrument(name):
    market = MARKETS[name](3)
    calls: list[tuple[int, int]] = []
    signals = get(name).signals(market, None, None, lambda done, total: calls.append((done, total)))
    n, m = market.shape
    for field in SIGNAL_FIELDS:
        value = getattr(signals, field)
        if value is not None:
            assert value.shape == (n, m), field
    assert signals.entries.dtype == np.bool_
    assert signals.exits.dtype == np.bool_
    if name != "sma_crossover":
        assert calls == [(c + 1, m) for c in range(m)]


def test_a_raising_progress_callback_stops_the_build():
    def cancel(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        get("volume_zone_breakout").signals(breakout_market(3), None, None, cancel)
