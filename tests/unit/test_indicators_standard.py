"""quant.indicators.standard (the TA-Lib wrappers) against slow, independent references written
from the textbook formulas in plain Python loops, on seeded random walks around 50,000 KRW with
and without NaN gaps, plus edge cases (flat prices, zero volume, short and empty series) and
validation errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from quant.errors import ValidationError
from quant.indicators import standard
from quant.indicators.standard import atr, bbands, ema, macd, obv, rsi, sma

NAN = math.nan

# TA-Lib and the references add the same numbers in a different order (running sums against
# fresh sums per window), so they agree to rounding: far inside 1e-9 relative. ``atol`` only
# matters where a value is near zero (MACD crossing zero, a flat Bollinger width): 1e-6 KRW.
RTOL = 1e-9
ATOL = 1e-6


def _close(actual: object, expected: object, *, atol: float = ATOL) -> None:
    np.testing.assert_allclose(
        np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), rtol=RTOL, atol=atol
    )


def _walk(
    seed: int, n: int, *, whole_won: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """high, low, close, volume of a daily random walk around 50,000 KRW (whole won when asked,
    so that closes tie and OBV meets unchanged bars); some volumes are zero."""
    rng = np.random.default_rng(seed)
    close = 50_000 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    high = close * (1 + np.abs(rng.normal(0, 0.012, n)))
    low = close * (1 - np.abs(rng.normal(0, 0.012, n)))
    if whole_won:
        close, high, low = np.round(close), np.round(high), np.round(low)
    volume = rng.integers(0, 2_000_000, n).astype(float)
    volume[rng.random(n) < 0.05] = 0.0
    return high, low, close, volume


def _holes(n: int, seed: int) -> np.ndarray:
    """A mask of missing bars: scattered ones plus a run of 6 (a halt) and the first bar."""
    rng = np.random.default_rng(seed)
    holes = rng.random(n) < 0.06
    holes[n // 3 : n // 3 + 6] = True
    holes[0] = True
    return holes


def _punch(x: np.ndarray, holes: np.ndarray) -> np.ndarray:
    y = x.copy()
    y[holes] = NAN
    return y


def _scatter(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.full(len(mask), NAN)
    out[mask] = values
    return out


# ---------------------------------------------------------------------------------------------
# References (plain Python, from the definitions)
# ---------------------------------------------------------------------------------------------


def ref_sma(x: list[float], n: int) -> list[float]:
    return [NAN if t < n - 1 else math.fsum(x[t - n + 1 : t + 1]) / n for t in range(len(x))]


def ref_ema(x: list[float], n: int, seed_at: int | None = None) -> list[float]:
    """α = 2/(n+1), seeded at bar ``seed_at`` (default n−1) with the mean of the n bars
    ending there; NaN before the seed."""
    seed_at = n - 1 if seed_at is None else seed_at
    out = [NAN] * len(x)
    if len(x) <= seed_at:
        return out
    alpha = 2 / (n + 1)
    value = math.fsum(x[seed_at - n + 1 : seed_at + 1]) / n
    out[seed_at] = value
    for t in range(seed_at + 1, len(x)):
        value = alpha * x[t] + (1 - alpha) * value
        out[t] = value
    return out


def ref_rsi(x: list[float], n: int) -> list[float]:
    """Wilder: the first average gain/loss is the mean of the first n changes, then
    avg = (avg·(n−1) + change)/n. RSI = 100 − 100/(1 + gain/loss); 100 without losses, 50
    when the price has not moved at all (0/0, the wrapper's documented choice)."""

    def value(gain: float, loss: float) -> float:
        if gain == 0 and loss == 0:
            return 50.0
        if loss == 0:
            return 100.0
        return 100 - 100 / (1 + gain / loss)

    out = [NAN] * len(x)
    if len(x) <= n:
        return out
    changes = [x[t] - x[t - 1] for t in range(1, len(x))]
    gain = math.fsum(max(c, 0.0) for c in changes[:n]) / n
    loss = math.fsum(max(-c, 0.0) for c in changes[:n]) / n
    out[n] = value(gain, loss)
    for t in range(n + 1, len(x)):
        c = changes[t - 1]
        gain = (gain * (n - 1) + max(c, 0.0)) / n
        loss = (loss * (n - 1) + max(-c, 0.0)) / n
        out[t] = value(gain, loss)
    return out


def ref_macd(
    x: list[float], fast: int, slow: int, signal: int
) -> tuple[list[float], list[float], list[float]]:
    """TA-Lib's conventions: both EMAs start at bar slow−1 (the fast one is seeded there with
    the mean of the *last* ``fast`` bars up to it, not at bar fast−1), the signal is an EMA of
    the MACD line seeded with the mean of its first ``signal`` values, and every output is
    NaN until the signal exists (bar slow+signal−2)."""
    fast_ema = ref_ema(x, fast, seed_at=slow - 1)
    slow_ema = ref_ema(x, slow)
    line = [f - s for f, s in zip(fast_ema, slow_ema, strict=True)]
    sig = [NAN] * len(x)
    if len(x) >= slow:
        sig[slow - 1 :] = ref_ema(line[slow - 1 :], signal)
    first = slow + signal - 2
    line = [NAN if t < first else v for t, v in enumerate(line)]
    hist = [m - s for m, s in zip(line, sig, strict=True)]
    return line, sig, hist


def ref_bbands(x: list[float], n: int, k: float) -> tuple[list[float], list[float], list[float]]:
    """SMA ± k × the population standard deviation of the same window."""
    upper, middle, lower = [], [], []
    for t in range(len(x)):
        if t < n - 1:
            upper.append(NAN)
            middle.append(NAN)
            lower.append(NAN)
            continue
        window = x[t - n + 1 : t + 1]
        mean = math.fsum(window) / n
        sd = math.sqrt(math.fsum((v - mean) ** 2 for v in window) / n)
        upper.append(mean + k * sd)
        middle.append(mean)
        lower.append(mean - k * sd)
    return upper, middle, lower


def ref_atr(h: list[float], lo: list[float], c: list[float], n: int) -> list[float]:
    """Wilder ATR. The true range needs the previous close, so the first bar has none (TA-Lib
    skips it): the seed, at bar n, is the mean of the true ranges of bars 1..n, then
    ATR = (ATR·(n−1) + TR)/n."""
    out = [NAN] * len(c)
    if len(c) <= n:
        return out
    tr = [NAN] + [
        max(h[t] - lo[t], abs(h[t] - c[t - 1]), abs(lo[t] - c[t - 1])) for t in range(1, len(c))
    ]
    value = math.fsum(tr[1 : n + 1]) / n
    out[n] = value
    for t in range(n + 1, len(c)):
        value = (value * (n - 1) + tr[t]) / n
        out[t] = value
    return out


def ref_obv(c: list[float], v: list[float]) -> list[float]:
    """First bar: its volume; then + volume on an up close, − on a down close, 0 unchanged."""
    out: list[float] = []
    for t in range(len(c)):
        if t == 0:
            total = v[0]
        elif c[t] > c[t - 1]:
            total += v[t]
        elif c[t] < c[t - 1]:
            total -= v[t]
        out.append(total)
    return out


def _on_present(ref: Callable[..., Any], arrays: list[np.ndarray], *args: Any) -> Any:
    """The missing-bar policy applied to a reference: compute on the present bars, put the
    values back, NaN at the missing bars."""
    mask = np.ones(len(arrays[0]), dtype=bool)
    for a in arrays:
        mask &= ~np.isnan(a)
    result = ref(*[[float(v) for v in a[mask]] for a in arrays], *args)
    if isinstance(result, tuple):
        return tuple(_scatter(mask, np.array(r, dtype=float)) for r in result)
    return _scatter(mask, np.array(result, dtype=float))


# ---------------------------------------------------------------------------------------------
# Cross-checks against the references (clean series and series with missing bars)
# ---------------------------------------------------------------------------------------------

N = 700


@pytest.fixture(params=[False, True], ids=["clean", "gaps"])
def bars(request) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    high, low, close, volume = _walk(11, N, whole_won=False)
    if request.param:
        holes = _holes(N, 12)
        # A bar may be missing in one input only: that is enough to make it absent.
        parts = np.array_split(np.flatnonzero(holes), 4)
        high, low = _punch(high, parts[0]), _punch(low, parts[1])
        close, volume = _punch(close, parts[2]), _punch(volume, parts[3])
    return high, low, close, volume


@pytest.mark.parametrize("period", [1, 2, 5, 20, 200])
def test_sma_matches_reference(bars, period):
    _, _, close, _ = bars
    _close(sma(close, period), _on_present(ref_sma, [close], period))


@pytest.mark.parametrize("period", [1, 2, 12, 50])
def test_ema_matches_reference(bars, period):
    _, _, close, _ = bars
    _close(ema(close, period), _on_present(ref_ema, [close], period))


@pytest.mark.parametrize("period", [2, 14, 30])
def test_rsi_matches_reference(bars, period):
    _, _, close, _ = bars
    _close(rsi(close, period), _on_present(ref_rsi, [close], period))


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (2, 3, 1)])
def test_macd_matches_reference(bars, fast, slow, signal):
    _, _, close, _ = bars
    got = macd(close, fast, slow, signal)
    want = _on_present(ref_macd, [close], fast, slow, signal)
    # The MACD line is a difference of two ~50,000 numbers, so it crosses zero: absolute
    # agreement (1e-6 KRW) is what matters there, relative elsewhere.
    for g, w in zip(got, want, strict=True):
        _close(g, w)


def test_macd_fast_ema_is_aligned_with_the_slow_one():
    """TA-Lib seeds the fast EMA at bar slow−1 (mean of the last ``fast`` bars), not at bar
    fast−1: a reference seeded the textbook way differs measurably on a short series."""
    _, _, close, _ = _walk(3, 60)
    x = [float(v) for v in close]
    textbook = np.array(ref_ema(x, 12)) - np.array(ref_ema(x, 26))
    got = macd(close).macd
    _close(got, ref_macd(x, 12, 26, 9)[0])
    assert np.nanmax(np.abs(got - textbook)) > 1e-3  # the convention is visible


@pytest.mark.parametrize(("period", "stddev"), [(2, 1.0), (5, 0.5), (20, 2.0), (50, 2.5)])
def test_bbands_matches_reference(bars, period, stddev):
    _, _, close, _ = bars
    got = bbands(close, period, stddev)
    want = _on_present(ref_bbands, [close], period, stddev)
    for g, w in zip(got, want, strict=True):
        _close(g, w)
    # The band width, a small difference of large numbers, also agrees. TA-Lib takes the
    # variance as mean(x²) − mean(x)² over running sums, which loses about eps·x²/σ² of it:
    # 1e-6 KRW is two orders of magnitude above what that costs here.
    _close(got.upper - got.middle, want[0] - want[1], atol=1e-6)


@pytest.mark.parametrize("period", [1, 2, 14, 30])
def test_atr_matches_reference(bars, period):
    high, low, close, _ = bars
    _close(atr(high, low, close, period), _on_present(ref_atr, [high, low, close], period))


def test_obv_matches_reference(bars):
    _, _, close, volume = bars
    np.testing.assert_array_equal(obv(close, volume), _on_present(ref_obv, [close, volume]))


def test_obv_on_whole_won_prices_with_unchanged_closes():
    _, _, close, volume = _walk(5, 400, whole_won=True)
    close[50:60] = close[49]  # ten unchanged closes
    got = obv(close, volume)
    np.testing.assert_array_equal(got, ref_obv(list(close), list(volume)))
    assert (got[49:60] == got[49]).all()


def test_hand_worked_values():
    np.testing.assert_array_equal(sma([1.0, 2.0, 3.0, 4.0], 2), [NAN, 1.5, 2.5, 3.5])
    # EMA(3), α = 0.5, seed = mean(1, 2, 3) = 2; then 0.5·10 + 0.5·2 = 6.
    np.testing.assert_array_equal(ema([1.0, 2.0, 3.0, 10.0], 3), [NAN, NAN, 2.0, 6.0])
    # RSI(2): changes +2, −1 → gain 1, loss 0.5 → RS 2 → 66.67; then +1: gain (1+1)/2 = 1,
    # loss 0.25 → RS 4 → 80.
    _close(rsi([10.0, 12.0, 11.0, 12.0], 2), [NAN, NAN, 200 / 3, 80.0])
    # TR of bar 1 = max(H−L, |H−Cprev|, |L−Cprev|) = max(2, 3, 1) = 3 (a gap up), of bar 2
    # max(2, 0, 2) = 2 → ATR(2) = 2.5; bar 0 has no previous close.
    _close(atr([10.0, 13.0, 12.0], [9.0, 11.0, 10.0], [10.0, 12.0, 11.0], 2), [NAN, NAN, 2.5])
    np.testing.assert_array_equal(
        obv([1.0, 2.0, 2.0, 1.0], [10.0, 20.0, 30.0, 40.0]), [10.0, 30.0, 30.0, -10.0]
    )
    # Population standard deviation of (1, 3) is 1.
    upper, middle, lower = bbands([1.0, 3.0], 2, 2.0)
    np.testing.assert_array_equal([upper[1], middle[1], lower[1]], [4.0, 2.0, 0.0])


# ---------------------------------------------------------------------------------------------
# Shape, dtype, warm-up, short and empty input
# ---------------------------------------------------------------------------------------------


def _all(high: object, low: object, close: object, volume: object) -> dict[str, list[np.ndarray]]:
    """Every indicator's outputs with small parameters, by name."""
    return {
        "sma": [sma(close, 5)],
        "ema": [ema(close, 5)],
        "rsi": [rsi(close, 5)],
        "macd": list(macd(close, 3, 6, 4)),
        "bbands": list(bbands(close, 5, 2.0)),
        "atr": [atr(high, low, close, 5)],
        "obv": [obv(close, volume)],
    }


# First bar with a value for the parameters of ``_all``.
WARM_UP = {"sma": 4, "ema": 4, "rsi": 5, "macd": 6 + 4 - 2, "bbands": 4, "atr": 5, "obv": 0}


def test_outputs_are_float64_of_the_input_length_with_the_documented_warm_up():
    high, low, close, volume = _walk(1, 40)
    # Lists, ints and float32 are all accepted and come back float64.
    outs = _all(
        list(high), low.astype(np.float32), close.astype(int).tolist(), volume.astype(np.int64)
    )
    assert set(outs) == set(WARM_UP)
    for name, arrays in outs.items():
        for out in arrays:
            assert isinstance(out, np.ndarray)
            assert out.dtype == np.float64, name
            assert out.shape == (40,), name
            assert np.isnan(out[: WARM_UP[name]]).all(), name
            assert not np.isnan(out[WARM_UP[name] :]).any(), name


@pytest.mark.parametrize("short", [1, 2, 3])
def test_fewer_bars_than_the_warm_up_give_all_nan(short):
    high, low, close, volume = _walk(2, 40)
    for name in WARM_UP:
        n = WARM_UP[name] - short
        if n < 0:
            continue
        cut = _all(high[:n], low[:n], close[:n], volume[:n])[name]
        for out in cut:
            assert out.dtype == np.float64
            assert out.shape == (n,)
            assert np.isnan(out).all(), name
    # One more bar than the warm-up gives exactly one value.
    for name, arrays in _all(high, low, close, volume).items():
        n = WARM_UP[name] + 1
        for out, full in zip(
            _all(high[:n], low[:n], close[:n], volume[:n])[name], arrays, strict=True
        ):
            assert np.isnan(out).sum() == n - 1
            assert out[-1] == pytest.approx(full[n - 1], rel=1e-12)


@pytest.mark.parametrize("period", [20, 5_000])
def test_a_window_longer_than_the_series_is_not_an_error(period):
    _, _, close, _ = _walk(3, 10)
    assert np.isnan(sma(close, period)).all()
    assert np.isnan(ema(close, period)).all()
    assert np.isnan(rsi(close, period)).all()
    assert np.isnan(bbands(close, period).middle).all()
    assert np.isnan(atr(close, close, close, period)).all()
    assert np.isnan(macd(close, 2, period).signal).all()


def test_empty_input_gives_empty_output():
    for name, arrays in _all([], [], [], []).items():
        for out in arrays:
            assert out.dtype == np.float64, name
            assert out.shape == (0,), name


def test_all_missing_input_gives_all_nan():
    gone = [NAN] * 30
    fine = list(_walk(4, 30)[2])
    for name, arrays in _all(gone, fine, gone, fine).items():
        for out in arrays:
            assert out.shape == (30,), name
            assert np.isnan(out).all(), name


def test_inputs_are_not_modified():
    high, low, close, volume = _walk(6, 50)
    close[10] = NAN
    copies = [a.copy() for a in (high, low, close, volume)]
    _all(high, low, close, volume)
    for a, b in zip((high, low, close, volume), copies, strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# Missing bars
# ---------------------------------------------------------------------------------------------


def test_missing_bars_come_back_nan_and_the_rest_equals_the_series_without_them():
    high, low, close, volume = _walk(7, 300)
    holes = _holes(300, 8)
    holed = _all(high, low, _punch(close, holes), volume)
    squeezed = _all(high[~holes], low[~holes], close[~holes], volume[~holes])
    for name, arrays in holed.items():
        for out, compact in zip(arrays, squeezed[name], strict=True):
            assert np.isnan(out[holes]).all(), name
            # Bit-for-bit: the same TA-Lib call on the same present bars.
            np.testing.assert_array_equal(out[~holes], compact, err_msg=name)
            # The gap costs only its own bars: after the warm-up every present bar has a value.
            assert not np.isnan(out[~holes][WARM_UP[name] :]).any(), name


def test_a_nan_in_any_input_makes_the_bar_missing():
    high, low, close, volume = _walk(9, 120)
    for hole_in in ("high", "low", "close"):
        arrays = {"high": high.copy(), "low": low.copy(), "close": close.copy()}
        arrays[hole_in][60] = NAN
        out = atr(**arrays, period=14)
        keep = np.arange(120) != 60
        assert math.isnan(out[60])
        np.testing.assert_array_equal(
            out[keep], atr(high[keep], low[keep], close[keep], 14), err_msg=hole_in
        )
    v = volume.copy()
    v[60] = NAN
    out = obv(close, v)
    assert math.isnan(out[60])
    keep = np.arange(120) != 60
    np.testing.assert_array_equal(out[keep], obv(close[keep], volume[keep]))


def test_a_gap_does_not_poison_the_running_sums():
    """TA-Lib alone carries one NaN through every later SMA/EMA/OBV value."""
    _, _, close, volume = _walk(10, 100)
    close[30] = NAN
    for out in (sma(close, 5), ema(close, 5), obv(close, volume), rsi(close, 5)):
        assert np.isnan(out).sum() <= 1 + 5
        assert not np.isnan(out[31:]).any()


# ---------------------------------------------------------------------------------------------
# Flat prices, zero volume, one-way markets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("price", [50_000.0, 50_123.7, 0.0015])
def test_constant_price(price):
    n = 60
    x = np.full(n, price)
    _close(sma(x, 20)[19:], np.full(n - 19, price))
    _close(ema(x, 20)[19:], np.full(n - 19, price))
    # RS = 0/0: the wrapper reads 50 (neutral), not TA-Lib's 0.
    np.testing.assert_array_equal(rsi(x, 14)[14:], np.full(n - 14, 50.0))
    for out in macd(x):
        _close(out[33:], np.zeros(n - 33))
    upper, middle, lower = bbands(x, 20, 2.0)
    _close(middle[19:], np.full(n - 19, price))
    _close(upper[19:], middle[19:], atol=0)
    _close(lower[19:], middle[19:], atol=0)
    np.testing.assert_array_equal(atr(x, x, x, 14)[14:], np.zeros(n - 14))
    # No up or down closes: OBV keeps the first bar's volume.
    np.testing.assert_array_equal(obv(x, np.arange(1.0, n + 1)), np.ones(n))


def test_rsi_reads_50_only_until_the_first_move():
    flat_then_up = [100.0] * 20 + [101.0, 102.0]
    out = rsi(flat_then_up, 14)
    np.testing.assert_array_equal(out[14:20], [50.0] * 6)
    np.testing.assert_array_equal(out[20:], [100.0, 100.0])
    # Once it has moved, a flat stretch keeps the last RS (gains and losses decay alike).
    up_then_flat = [100.0, 101.0, 100.5, 102.0, 101.0] + [101.0] * 30
    out = rsi(up_then_flat, 3)
    _close(out[4:], np.full(31, out[4]))
    assert out[4] != 50.0
    _close(out, ref_rsi(up_then_flat, 3))


def test_rsi_of_one_way_markets():
    np.testing.assert_array_equal(rsi(np.arange(1.0, 30.0), 14)[14:], np.full(15, 100.0))
    np.testing.assert_array_equal(rsi(np.arange(30.0, 1.0, -1), 14)[14:], np.full(15, 0.0))


def test_rsi_and_bbands_do_not_depend_on_the_price_scale():
    _, _, close, _ = _walk(13, 300)
    for scale in (1e-6, 1e3):
        _close(rsi(close * scale, 14), rsi(close, 14), atol=1e-9)
        width = bbands(close, 20).upper - bbands(close, 20).middle
        scaled = bbands(close * scale, 20)
        _close((scaled.upper - scaled.middle) / scale, width)


def test_atr_when_the_bar_has_no_range_but_gaps():
    # H = L = C every bar, but the close moves: TR = |C − Cprev|.
    c = np.array([100.0, 103.0, 101.0, 101.0, 106.0])
    np.testing.assert_array_equal(atr(c, c, c, 2), [NAN, NAN, 2.5, 1.25, 3.125])


def test_obv_with_zero_volume():
    _, _, close, _ = _walk(14, 50)
    np.testing.assert_array_equal(obv(close, np.zeros(50)), np.zeros(50))
    volume = np.full(50, 1_000.0)
    volume[[0, 20, 21]] = 0.0
    got = obv(close, volume)
    assert got[0] == 0.0  # the first bar's volume, which is zero
    assert got[20] == got[19]
    assert got[21] == got[19]
    np.testing.assert_array_equal(got, ref_obv(list(close), list(volume)))


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

GOOD = [50_000.0 + i for i in range(30)]

# (call, inputs by keyword) for every indicator; each input is swapped for a bad one in turn.
INPUTS: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "sma": (sma, ("values",)),
    "ema": (ema, ("values",)),
    "rsi": (rsi, ("close",)),
    "macd": (macd, ("close",)),
    "bbands": (bbands, ("close",)),
    "atr": (atr, ("high", "low", "close")),
    "obv": (obv, ("close", "volume")),
}

CASES = [(name, arg) for name, (_, args) in INPUTS.items() for arg in args]


@pytest.mark.parametrize(("name", "arg"), CASES)
@pytest.mark.parametrize("bad", [math.inf, -math.inf])
def test_an_infinite_input_is_rejected_naming_it(name, arg, bad):
    func, args = INPUTS[name]
    inputs: dict[str, Any] = {a: list(GOOD) for a in args}
    inputs[arg][17] = bad
    with pytest.raises(ValidationError, match=rf"{arg}\[17\]") as caught:
        func(**inputs)
    assert caught.value.field == arg
    assert caught.value.value == bad


@pytest.mark.parametrize(("name", "arg"), CASES)
@pytest.mark.parametrize(
    "bad",
    [[[1.0, 2.0], [3.0, 4.0]], ["a", "b"], [[1.0], [1.0, 2.0]], object(), {"a": 1.0}],
    ids=["2-D", "strings", "ragged", "object", "dict"],
)
def test_a_non_series_input_is_rejected_naming_it(name, arg, bad):
    func, args = INPUTS[name]
    inputs: dict[str, Any] = {a: [1.0, 2.0] for a in args}
    inputs[arg] = bad
    with pytest.raises(ValidationError) as caught:
        func(**inputs)
    assert caught.value.field == arg
    assert arg in str(caught.value)


@pytest.mark.parametrize("bad", [5.0, None], ids=["scalar", "None"])
def test_a_scalar_or_none_input_is_rejected_naming_it(bad):
    accepted = []
    for name, arg in CASES:
        func, args = INPUTS[name]
        inputs: dict[str, Any] = {a: [1.0] for a in args}
        inputs[arg] = bad
        try:
            func(**inputs)
        except ValidationError as exc:
            if exc.field != arg:
                accepted.append(f"{name}({arg}=...): field {exc.field}")
        else:
            accepted.append(f"{name}({arg}=...): no error")
    assert accepted == []


@pytest.mark.parametrize("name", ["atr", "obv"])
def test_inputs_of_different_lengths_are_rejected(name):
    func, args = INPUTS[name]
    for short in args:
        inputs = {a: list(GOOD) for a in args}
        inputs[short] = GOOD[:-1]
        with pytest.raises(ValidationError, match="same length") as caught:
            func(**inputs)
        assert caught.value.field in args
        assert f"{short}=29" in str(caught.value)


PARAMS_OK: dict[str, dict[str, Any]] = {
    "sma": {"period": 5},
    "ema": {"period": 5},
    "rsi": {"period": 5},
    "macd": {"fast": 3, "slow": 6, "signal": 4},
    "bbands": {"period": 5, "stddev": 2.0},
    "atr": {"period": 5},
}

BAD_PARAMS = [
    ("sma", "period", 0),
    ("sma", "period", -3),
    ("sma", "period", standard.MAX_PERIOD + 1),
    ("sma", "period", 2.5),
    ("sma", "period", "20"),
    ("sma", "period", True),
    ("sma", "period", None),
    ("sma", "period", math.nan),
    ("ema", "period", 0),
    ("ema", "period", 7.1),
    ("rsi", "period", 1),
    ("rsi", "period", math.inf),
    ("macd", "fast", 1),
    ("macd", "slow", standard.MAX_PERIOD + 1),
    ("macd", "signal", 0),
    ("macd", "signal", "9"),
    ("bbands", "period", 1),
    ("bbands", "stddev", 0.0),
    ("bbands", "stddev", -2.0),
    ("bbands", "stddev", 10.5),
    ("bbands", "stddev", math.nan),
    ("bbands", "stddev", math.inf),
    ("bbands", "stddev", "2"),
    ("bbands", "stddev", False),
    ("atr", "period", 0),
    ("atr", "period", 14.5),
]


@pytest.mark.parametrize(("name", "param", "bad"), BAD_PARAMS)
def test_a_bad_parameter_is_rejected_naming_it(name, param, bad):
    func, args = INPUTS[name]
    inputs = {a: list(GOOD) for a in args}
    func(**inputs, **PARAMS_OK[name])  # the good parameters pass
    with pytest.raises(ValidationError) as caught:
        func(**inputs, **{**PARAMS_OK[name], param: bad})
    assert caught.value.field == param
    assert param in str(caught.value)


def test_integral_floats_and_numpy_numbers_are_accepted_as_periods():
    _, _, close, _ = _walk(15, 80)
    expected = sma(close, 14)
    periods: list[Any] = [14.0, np.int64(14), np.float32(14.0)]
    for period in periods:
        np.testing.assert_array_equal(sma(close, period), expected)
    np.testing.assert_array_equal(bbands(close, 20, 2).upper, bbands(close, 20, 2.0).upper)


@pytest.mark.parametrize(("fast", "slow"), [(26, 26), (26, 12)])
def test_macd_rejects_fast_not_below_slow(fast, slow):
    with pytest.raises(ValidationError, match="below") as caught:
        macd(GOOD, fast, slow, 9)
    assert caught.value.field == "fast"
    assert caught.value.value == fast


def test_default_parameters_are_the_usual_ones():
    _, _, close, _ = _walk(16, 120)
    high, low = close * 1.01, close * 0.99
    np.testing.assert_array_equal(sma(close), sma(close, 20))
    np.testing.assert_array_equal(ema(close), ema(close, 20))
    np.testing.assert_array_equal(rsi(close), rsi(close, 14))
    for a, b in zip(macd(close), macd(close, 12, 26, 9), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(bbands(close), bbands(close, 20, 2.0), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(atr(high, low, close), atr(high, low, close, 14))
