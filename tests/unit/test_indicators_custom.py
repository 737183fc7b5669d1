"""quant.indicators.custom against slow, independent references written from the definitions
(plain Python loops, pandas rolling/rank), on seeded random data with NaN gaps and KRW-sized
prices, plus hand-worked examples, edge cases and validation errors."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from quant.errors import ValidationError
from quant.indicators.custom import (
    VolumeProfile,
    rolling_high_low,
    rolling_volume_profile,
    rs_rating,
    rs_raw,
    volume_profile,
    warm_up,
)

NAN = math.nan


def _close(a: object, b: object) -> None:
    np.testing.assert_allclose(
        np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-12, atol=1e-9
    )


def _bars(
    seed: int, n: int, *, missing: float = 0.0, gaps: int = 0, zero_volume: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A daily random walk around 50,000 KRW, rounded to whole won (so prices tie and land on
    bin edges), with ``missing`` scattered NaN bars and ``gaps`` NaN runs of 3–8 bars."""
    rng = np.random.default_rng(seed)
    close = np.round(50_000 * np.exp(np.cumsum(rng.normal(0, 0.02, n))))
    high = np.round(close * (1 + np.abs(rng.normal(0, 0.012, n))))
    low = np.round(close * (1 - np.abs(rng.normal(0, 0.012, n))))
    volume = rng.integers(0, 2_000_000, n).astype(float)
    volume[rng.random(n) < zero_volume] = 0.0
    holes = rng.random(n) < missing
    for _ in range(gaps):
        start = int(rng.integers(0, max(n - 8, 1)))
        holes[start : start + int(rng.integers(3, 9))] = True
    # A bar may be missing in just one input: that is enough to make it absent.
    parts = np.array_split(np.flatnonzero(holes), 4)
    for holed, series in zip(parts, (close, high, low, volume), strict=True):
        series[holed] = NAN
    return high, low, close, volume


def _scatter(mask: np.ndarray, values: list[float]) -> np.ndarray:
    out = np.full(len(mask), NAN)
    out[mask] = values
    return out


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


def ref_high_low(high, low, window, min_periods):
    mask = ~np.isnan(high) & ~np.isnan(low)
    hi = pd.Series(high[mask]).rolling(window, min_periods=min_periods).max()
    lo = pd.Series(low[mask]).rolling(window, min_periods=min_periods).min()
    return _scatter(mask, list(hi)), _scatter(mask, list(lo))


def ref_rs_raw(close, periods, weights):
    mask = ~np.isnan(close)
    c = [float(x) for x in close[mask]]
    out = []
    for t in range(len(c)):
        if t < max(periods):
            out.append(NAN)
        else:
            terms = zip(periods, weights, strict=True)
            out.append(sum(w * (c[t] / c[t - p] - 1) for p, w in terms))
    return _scatter(mask, out)


def ref_rs_rating(raw):
    s = pd.Series(raw, dtype=float)
    ranks = s.rank(method="average")
    n = int(s.notna().sum())
    out = []
    for value, r in zip(s, ranks, strict=True):
        if math.isnan(value):
            out.append(NAN)
        elif n == 1:
            out.append(50.0)
        else:
            p = (Fraction(r) - 1) / (n - 1)
            out.append(float(math.floor(1 + 98 * p + Fraction(1, 2))))
    return np.array(out, dtype=float)


def ref_profile(high, low, volume, bins, value_area):
    """(volumes, poc_index, poc, vah, val, hvn) by the rules of domain notes §4, in loops."""
    bars = [
        (float(h), float(lo), float(v))
        for h, lo, v in zip(high, low, volume, strict=True)
        if not (math.isnan(h) or math.isnan(lo) or math.isnan(v))
    ]
    if not bars:
        return [0.0] * bins, -1, NAN, NAN, NAN, ()
    m = min(b[1] for b in bars)
    top = max(b[0] for b in bars)
    w = (top - m) / bins
    edges = [m + i * w for i in range(bins)] + [top]

    def bin_of(p):
        return 0 if w == 0 else min(math.floor((p - m) / w), bins - 1)

    vols = [0.0] * bins
    for h, lo, v in bars:
        a, b = bin_of(lo), bin_of(h)
        for i in range(a, b + 1):
            vols[i] += v / (b - a + 1)
    total = sum(vols)
    if total == 0:
        return vols, -1, NAN, NAN, NAN, ()
    mid = (m + top) / 2
    best = max(vols)
    tied = [i for i in range(bins) if vols[i] == best]
    poc = min(tied, key=lambda i: (abs((edges[i] + edges[i + 1]) / 2 - mid), i))
    lo_b = hi_b = poc
    inside = vols[poc]
    while inside < value_area * total:
        up = vols[hi_b + 1 : hi_b + 3]
        down = vols[max(lo_b - 2, 0) : lo_b]
        if not up and not down:
            break
        if up and (not down or sum(up) >= sum(down)):
            inside += sum(up)
            hi_b += len(up)
        else:
            inside += sum(down)
            lo_b -= len(down)
    mean = sum(vols) / bins
    std = math.sqrt(sum((x - mean) ** 2 for x in vols) / bins)
    hvn = tuple(i for i in range(bins) if vols[i] >= mean + std)
    poc_price = m if w == 0 else (edges[poc] + edges[poc + 1]) / 2
    return vols, poc, poc_price, edges[hi_b + 1], edges[lo_b], hvn


def ref_rolling_profile(high, low, volume, window, bins, value_area):
    mask = ~np.isnan(high) & ~np.isnan(low) & ~np.isnan(volume)
    h, lo, v = high[mask], low[mask], volume[mask]
    cols: list[list[float]] = [[], [], []]
    for t in range(len(h)):
        if t < window:
            row = (NAN, NAN, NAN)
        else:
            s = slice(t - window, t)
            _, _, poc, vah, val, _ = ref_profile(h[s], lo[s], v[s], bins, value_area)
            row = (poc, vah, val)
        for col, x in zip(cols, row, strict=True):
            col.append(x)
    return tuple(_scatter(mask, col) for col in cols)


def _assert_profile(p: VolumeProfile, ref) -> None:
    vols, index, poc, vah, val, hvn = ref
    _close(p.volumes, vols)
    assert p.poc_index == index
    _close([p.poc, p.vah, p.val], [poc, vah, val])
    assert p.hvn == hvn


# ---------------------------------------------------------------------------------------------
# rolling_high_low
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "window", "min_periods"),
    [(1, 252, None), (2, 20, 5), (3, 1, None), (4, 7, 1), (5, 50, 50), (6, 400, 30)],
)
def test_rolling_high_low_matches_pandas(seed, window, min_periods):
    high, low, _, _ = _bars(seed, 600, missing=0.05, gaps=3)
    got_hi, got_lo = rolling_high_low(high, low, window=window, min_periods=min_periods)
    want_hi, want_lo = ref_high_low(high, low, window, min_periods or window)
    _close(got_hi, want_hi)
    _close(got_lo, want_lo)
    assert got_hi.dtype == np.float64
    assert len(got_hi) == len(high)


def test_rolling_high_low_skips_missing_bars():
    high = np.array([10.0, 12.0, NAN, 11.0, NAN, NAN, 9.0])
    low = np.array([8.0, 9.0, 7.0, 10.0, NAN, 1.0, 8.5])
    hi, lo = rolling_high_low(high, low, window=2)
    # Present bars: 0, 1, 3, 6 (bar 2 lacks a high, bar 5 lacks a high, bar 4 lacks both).
    _close(hi, [NAN, 12.0, NAN, 12.0, NAN, NAN, 11.0])
    _close(lo, [NAN, 8.0, NAN, 9.0, NAN, NAN, 8.5])


def test_rolling_high_low_edges():
    flat = np.full(30, 50_000.0)
    hi, lo = rolling_high_low(flat, flat, window=10)
    _close(hi[9:], flat[9:])
    _close(lo[9:], flat[9:])
    assert np.isnan(hi[:9]).all()
    short_hi, short_lo = rolling_high_low(flat[:5], flat[:5], window=252)
    assert np.isnan(short_hi).all()
    assert np.isnan(short_lo).all()
    empty_hi, empty_lo = rolling_high_low([], [], window=252)
    assert empty_hi.shape == empty_lo.shape == (0,)
    all_nan = rolling_high_low([NAN] * 4, [NAN] * 4, window=2, min_periods=1)
    assert np.isnan(all_nan[0]).all()
    # A new listing: values from its min_periods-th bar.
    hi, _ = rolling_high_low(np.arange(1.0, 6.0), np.arange(5.0), window=252, min_periods=3)
    _close(hi, [NAN, NAN, 3.0, 4.0, 5.0])


@pytest.mark.parametrize(
    ("kwargs", "field", "shown"),
    [
        ({"window": 0}, "window", "got 0"),
        ({"window": 5001}, "window", "got 5001"),
        ({"window": 2.5}, "window", "2.5"),
        ({"window": 10, "min_periods": 11}, "min_periods", "got 11"),
        ({"window": 10, "min_periods": 0}, "min_periods", "got 0"),
    ],
)
def test_rolling_high_low_rejects_bad_parameters(kwargs, field, shown):
    with pytest.raises(ValidationError, match=field) as info:
        rolling_high_low([1.0, 2.0], [0.5, 1.0], **kwargs)
    assert info.value.field == field
    assert shown in str(info.value)


def test_rolling_high_low_rejects_bad_inputs():
    with pytest.raises(ValidationError, match=r"high\[1\] is inf") as info:
        rolling_high_low([1.0, math.inf], [0.5, 1.0])
    assert info.value.field == "high"
    with pytest.raises(ValidationError, match="same length"):
        rolling_high_low([1.0, 2.0], [0.5])


# ---------------------------------------------------------------------------------------------
# rs_raw / rs_rating
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "periods", "weights"),
    [
        (11, (63, 126, 189, 252), (0.4, 0.2, 0.2, 0.2)),
        (12, (5,), (1.0,)),
        (13, (3, 1, 10), (0.5, -0.25, 2.0)),
    ],
)
def test_rs_raw_matches_loop(seed, periods, weights):
    _, _, close, _ = _bars(seed, 400, missing=0.04, gaps=4)
    got = rs_raw(close, periods=periods, weights=weights)
    _close(got, ref_rs_raw(close, periods, weights))
    present = ~np.isnan(close)
    assert np.isnan(got[~present]).all()
    # Warm-up: the first max(periods) present bars.
    assert np.isnan(got[np.flatnonzero(present)[: max(periods)]]).all()
    assert not np.isnan(got[np.flatnonzero(present)[max(periods) :]]).any()


def test_rs_raw_edges():
    _close(rs_raw(np.full(300, 50_000.0)), np.r_[np.full(252, NAN), np.zeros(48)])
    assert np.isnan(rs_raw(np.full(252, 50_000.0))).all()  # one bar short of the warm-up
    assert rs_raw([]).shape == (0,)
    # Doubling over exactly each lag: 0.4·1 + 0.2·1 + …
    _close(rs_raw([1.0, 2.0, 4.0], periods=(1, 2), weights=(0.5, 0.5)), [NAN, NAN, 0.5 + 1.5])
    # A gap: lags count present bars, so the NaN is skipped, not bridged by a wrong bar.
    _close(rs_raw([1.0, NAN, 2.0, 3.0], periods=(1,), weights=(1.0,)), [NAN, NAN, 1.0, 0.5])


@pytest.mark.parametrize(
    ("kwargs", "field", "shown"),
    [
        ({"periods": (63, 126), "weights": (1.0,)}, "weights", "same length"),
        ({"periods": (), "weights": ()}, "periods", "empty"),
        ({"periods": (0,), "weights": (1.0,)}, "periods[0]", "got 0"),
        ({"periods": (5, 2.5), "weights": (1.0, 1.0)}, "periods[1]", "2.5"),
        ({"periods": (5, 6), "weights": (1.0, math.nan)}, "weights[1]", "nan"),
        ({"periods": (5,), "weights": (math.inf,)}, "weights[0]", "inf"),
        ({"periods": 5, "weights": (1.0,)}, "periods", "5"),
    ],
)
def test_rs_raw_rejects_bad_parameters(kwargs, field, shown):
    with pytest.raises(ValidationError) as info:
        rs_raw(np.full(10, 100.0), **kwargs)
    assert info.value.field == field
    assert shown in str(info.value)


@pytest.mark.parametrize("bad", [0.0, -5.0])
def test_rs_raw_rejects_non_positive_close(bad):
    close = [100.0, NAN, 101.0, bad, 102.0]
    with pytest.raises(ValidationError, match=r"close\[3\]") as info:
        rs_raw(close, periods=(1,), weights=(1.0,))
    assert info.value.field == "close[3]"
    assert info.value.value == bad


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_rs_rating_matches_pandas_rank(seed):
    rng = np.random.default_rng(seed)
    raw = np.round(rng.normal(0.05, 0.3, 2_500), 2)  # rounding makes many ties
    raw[rng.random(2_500) < 0.05] = NAN
    got = rs_rating(raw)
    np.testing.assert_array_equal(got, ref_rs_rating(raw))
    finite = ~np.isnan(raw)
    assert got[finite].min() == 1
    assert got[finite].max() == 99


def test_rs_rating_rounds_half_up_exactly():
    # n = 197 distinct values: 98·p = (r − 1)/2 is exactly x.5 for every even rank, where a
    # floating-point evaluation could land just below; exact rating = 1 + r // 2.
    raw = np.linspace(-1.0, 1.0, 197)[::-1]
    ranks = np.arange(197, 0, -1)
    np.testing.assert_array_equal(rs_rating(raw), 1 + ranks // 2)
    np.testing.assert_array_equal(rs_rating(raw), ref_rs_rating(raw))


def test_rs_rating_edges():
    _close(rs_rating([0.3]), [50.0])
    _close(rs_rating([NAN, 0.3, NAN]), [NAN, 50.0, NAN])
    _close(rs_rating([0.1, 0.2]), [1.0, 99.0])
    _close(rs_rating([0.2, 0.2, 0.2]), [50.0, 50.0, 50.0])  # all tied: average rank
    # Ranks 1.5, 1.5, 3: p = 0.25, 0.25, 1 → floor(1 + 24.5 + 0.5) = 26.
    _close(rs_rating([0.1, 0.1, 0.9]), [26.0, 26.0, 99.0])
    assert rs_rating([]).shape == (0,)
    assert np.isnan(rs_rating([NAN, NAN])).all()
    with pytest.raises(ValidationError, match=r"raw\[1\] is -inf"):
        rs_rating([0.1, -math.inf])
    with pytest.raises(ValidationError, match="one-dimensional"):
        rs_rating([[0.1, 0.2]])


# ---------------------------------------------------------------------------------------------
# volume_profile
# ---------------------------------------------------------------------------------------------


def test_volume_profile_hand_example():
    # m = 100, M = 108, B = 4 → w = 2, bins [100,102) [102,104) [104,106) [106,108].
    #   bar 0: 100–104 → bins 0..2, 300/3 = 100 each
    #   bar 1: 101–103 → bins 0..1, 200/2 = 100 each
    #   bar 2: 103–108 → bins 1..3 (bin(108) = min(4, 3)), 600/3 = 200 each
    #   bar 3: 105–107 → bins 2..3, 100/2 = 50 each
    # volumes = [200, 400, 350, 250], total 1200 → POC bin 1, poc = 103.
    # VA 70 % = 840: {1} = 400; above 350 + 250 = 600 vs below 200 → add above → 1000 ≥ 840.
    # VA = bins 1..3 → VAL = 102, VAH = 108.
    # mean 300, std = √((100² + 100² + 50² + 50²)/4) = 79.06 → HVN threshold 379.06 → (1,).
    p = volume_profile(
        [104.0, 103.0, 108.0, 107.0], [100.0, 101.0, 103.0, 105.0], [300, 200, 600, 100], bins=4
    )
    np.testing.assert_array_equal(p.edges, [100.0, 102.0, 104.0, 106.0, 108.0])
    np.testing.assert_array_equal(p.volumes, [200.0, 400.0, 350.0, 250.0])
    assert (p.poc_index, p.poc, p.vah, p.val, p.hvn) == (1, 103.0, 108.0, 102.0, (1,))
    assert p.total == 1200.0
    assert not p.empty
    # A 30 % value area is the POC bin alone (400 ≥ 360).
    small = volume_profile(
        [104.0, 103.0, 108.0, 107.0],
        [100.0, 101.0, 103.0, 105.0],
        [300, 200, 600, 100],
        bins=4,
        value_area=0.3,
    )
    assert (small.vah, small.val) == (104.0, 102.0)


def test_volume_profile_poc_tie_goes_to_range_midpoint_then_lower_bin():
    # m = 100, M = 108, B = 4: bars in bin 0 (100), bins 1–2 (200 → 100 each), bin 3 (100).
    # All bins hold 100; the range midpoint 104 is 1 from the midpoints 103 (bin 1) and 105
    # (bin 2) → the lower, bin 1, poc = 103. VA 70 % = 280: {1} = 100; above 100 + 100 = 200
    # vs below 100 → above → 300. VAL = 102, VAH = 108. std 0 → every bin is an HVN.
    p = volume_profile([101.0, 105.0, 108.0], [100.0, 103.0, 107.0], [100.0, 200.0, 100.0], bins=4)
    assert (p.poc_index, p.poc, p.vah, p.val, p.hvn) == (1, 103.0, 108.0, 102.0, (0, 1, 2, 3))
    # Three equal bins of five: the middle one (bin 2, midpoint = range midpoint) wins.
    q = volume_profile([101.0, 105.0, 109.0], [100.0, 104.0, 108.0], [1.0, 1.0, 1.0], bins=5)
    assert q.poc_index == 2


def test_volume_profile_value_area_tie_adds_the_pair_above():
    # m = 100, M = 110, B = 5, w = 2; one bar per bin: volumes [50, 100, 300, 100, 50].
    # 70 % of 600 = 420: {2} = 300; above 100 + 50 = 150 = below 50 + 100 → above → 450.
    # VA = bins 2..4 → VAL = 104, VAH = 110.
    p = volume_profile(
        [101.0, 103.0, 105.0, 107.0, 110.0],
        [100.0, 102.0, 104.0, 106.0, 108.0],
        [50.0, 100.0, 300.0, 100.0, 50.0],
        bins=5,
    )
    np.testing.assert_array_equal(p.volumes, [50.0, 100.0, 300.0, 100.0, 50.0])
    assert (p.poc_index, p.poc, p.vah, p.val) == (2, 105.0, 110.0, 104.0)
    # value_area = 1: the whole range.
    q = volume_profile(
        [101.0, 103.0, 105.0, 107.0, 110.0],
        [100.0, 102.0, 104.0, 106.0, 108.0],
        [50.0, 100.0, 300.0, 100.0, 50.0],
        bins=5,
        value_area=1.0,
    )
    assert (q.vah, q.val) == (110.0, 100.0)


@pytest.mark.parametrize(
    ("seed", "n", "bins", "value_area"),
    [(31, 60, 24, 0.7), (32, 90, 24, 0.7), (33, 40, 7, 0.5), (34, 120, 2, 1.0), (35, 5, 50, 0.9)],
)
def test_volume_profile_matches_reference(seed, n, bins, value_area):
    high, low, _, volume = _bars(seed, n, missing=0.05, gaps=1)
    got = volume_profile(high, low, volume, bins=bins, value_area=value_area)
    _assert_profile(got, ref_profile(high, low, volume, bins, value_area))
    assert len(got.edges) == bins + 1
    assert got.val <= got.poc <= got.vah


def test_volume_profile_many_random_windows():
    # Short windows of few bins hit volume ties, edge prices and the near-edge value-area cases.
    rng = np.random.default_rng(36)
    for _ in range(300):
        n = int(rng.integers(1, 12))
        low = rng.integers(100, 110, n).astype(float)
        high = low + rng.integers(0, 6, n)
        volume = rng.integers(0, 4, n).astype(float) * 10
        bins = int(rng.integers(2, 7))
        va = float(rng.choice([0.3, 0.7, 1.0]))
        _assert_profile(
            volume_profile(high, low, volume, bins=bins, value_area=va),
            ref_profile(high, low, volume, bins, va),
        )


def test_volume_profile_flat_range():
    p = volume_profile([50_000.0] * 3, [50_000.0] * 3, [10.0, 0.0, 5.0], bins=4)
    np.testing.assert_array_equal(p.edges, np.full(5, 50_000.0))
    np.testing.assert_array_equal(p.volumes, [15.0, 0.0, 0.0, 0.0])
    assert (p.poc_index, p.poc, p.vah, p.val, p.hvn) == (0, 50_000.0, 50_000.0, 50_000.0, (0,))


def test_volume_profile_empty_profiles():
    for high, low, volume in (
        ([], [], []),
        ([NAN, 5.0], [4.0, NAN], [1.0, 1.0]),  # no bar present in every input
        ([5.0, 6.0], [4.0, 5.0], [0.0, 0.0]),  # zero volume
    ):
        p = volume_profile(high, low, volume, bins=3)
        assert p.empty
        assert p.poc_index == -1
        assert p.hvn == ()
        assert np.isnan([p.poc, p.vah, p.val]).all()
        assert p.volumes.tolist() == [0.0, 0.0, 0.0]
        assert len(p.edges) == 4
    assert np.isnan(volume_profile([], [], [], bins=3).edges).all()
    _close(volume_profile([5.0, 6.0], [4.0, 5.0], [0.0, 0.0], bins=2).edges, [4.0, 5.0, 6.0])


def test_volume_profile_ignores_missing_bars():
    high, low, _, volume = _bars(37, 60)
    holed_high = high.copy()
    holed_high[[3, 4, 5, 40]] = NAN
    keep = np.ones(60, dtype=bool)
    keep[[3, 4, 5, 40]] = False
    a = volume_profile(holed_high, low, volume)
    b = volume_profile(high[keep], low[keep], volume[keep])
    np.testing.assert_array_equal(a.volumes, b.volumes)
    assert (a.poc, a.vah, a.val, a.hvn) == (b.poc, b.vah, b.val, b.hvn)


@pytest.mark.parametrize(
    ("kwargs", "field", "shown"),
    [
        ({"bins": 1}, "bins", "got 1"),
        ({"bins": 1001}, "bins", "got 1001"),
        ({"value_area": 0.0}, "value_area", "0.0"),
        ({"value_area": 1.5}, "value_area", "1.5"),
        ({"value_area": math.nan}, "value_area", "nan"),
    ],
)
def test_volume_profile_rejects_bad_parameters(kwargs, field, shown):
    for call in (volume_profile, rolling_volume_profile):
        with pytest.raises(ValidationError) as info:
            call([2.0, 3.0], [1.0, 2.0], [1.0, 1.0], **kwargs)
        assert info.value.field == field
        assert shown in str(info.value)


def test_volume_profile_rejects_bad_bars():
    for call in (volume_profile, rolling_volume_profile):
        with pytest.raises(ValidationError, match=r"volume\[2\] is -1\.0") as info:
            call([2.0, 3.0, 4.0], [1.0, 2.0, 3.0], [1.0, 0.0, -1.0])
        assert info.value.field == "volume[2]"
        with pytest.raises(ValidationError, match=r"high\[1\] is 1\.5, below low\[1\]") as info:
            call([2.0, 1.5, 4.0], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
        assert info.value.field == "high[1]"
        with pytest.raises(ValidationError, match=r"low\[0\] is inf"):
            call([2.0], [math.inf], [1.0])
        with pytest.raises(ValidationError, match="same length"):
            call([2.0], [1.0], [1.0, 2.0])
    # A missing bar is not checked: its other values are ignored.
    assert volume_profile([NAN, 3.0], [5.0, 2.0], [-1.0, 1.0], bins=2).poc_index >= 0
    with pytest.raises(ValidationError, match="window"):
        rolling_volume_profile([2.0], [1.0], [1.0], window=0)


# ---------------------------------------------------------------------------------------------
# rolling_volume_profile
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "window", "bins", "value_area"),
    [(41, 60, 24, 0.7), (42, 20, 8, 0.5), (43, 1, 3, 0.7), (44, 35, 24, 1.0)],
)
def test_rolling_volume_profile_matches_reference(seed, window, bins, value_area):
    high, low, _, volume = _bars(seed, 150, missing=0.04, gaps=2, zero_volume=0.1)
    got = rolling_volume_profile(high, low, volume, window=window, bins=bins, value_area=value_area)
    want = ref_rolling_profile(high, low, volume, window, bins, value_area)
    for g, w in zip(got, want, strict=True):
        _close(g, w)
        assert g.dtype == np.float64
        assert len(g) == len(high)


def test_rolling_volume_profile_equals_volume_profile_of_the_previous_bars():
    high, low, _, volume = _bars(45, 200)
    window = 60
    poc, vah, val = rolling_volume_profile(high, low, volume, window=window)
    assert np.isnan(poc[:window]).all()
    for t in range(window, 200):
        p = volume_profile(high[t - window : t], low[t - window : t], volume[t - window : t])
        # Same kernel, same slice: the very same numbers.
        assert (poc[t], vah[t], val[t]) == (p.poc, p.vah, p.val), t


def test_rolling_volume_profile_with_gaps_uses_the_previous_present_bars():
    high, low, _, volume = _bars(46, 120, missing=0.1, gaps=3)
    window = 15
    poc, vah, val = rolling_volume_profile(high, low, volume, window=window, bins=10)
    mask = ~(np.isnan(high) | np.isnan(low) | np.isnan(volume))
    assert np.isnan(poc[~mask]).all()
    at = np.flatnonzero(mask)
    for k in range(window, len(at)):
        before = at[k - window : k]
        p = volume_profile(high[before], low[before], volume[before], bins=10)
        t = at[k]
        np.testing.assert_array_equal([poc[t], vah[t], val[t]], [p.poc, p.vah, p.val])


def test_rolling_volume_profile_never_looks_ahead():
    high, low, _, volume = _bars(47, 120, missing=0.03)
    base = rolling_volume_profile(high, low, volume, window=20, bins=12)
    rng = np.random.default_rng(48)
    for t in (20, 21, 57, 90, 119):
        h, lo, v = high.copy(), low.copy(), volume.copy()
        # Bar t changes but stays as present (or missing) as it was; later bars change freely.
        if not np.isnan([h[t], lo[t], v[t]]).any():
            lo[t] = 10.0
            h[t] = 1_000_000.0
            v[t] = 1e12
        later = slice(t + 1, None)
        size = len(h[later])
        lo[later] = rng.uniform(1, 100, size)
        h[later] = lo[later] + rng.uniform(0, 1e6, size)
        v[later] = rng.uniform(0, 1e9, size)
        h[later][rng.random(size) < 0.3] = NAN
        changed = rolling_volume_profile(h, lo, v, window=20, bins=12)
        for a, b in zip(base, changed, strict=True):
            np.testing.assert_array_equal(a[: t + 1], b[: t + 1])


def test_rolling_volume_profile_edges():
    # Fewer bars than the window (and just enough for one value).
    high, low, _, volume = _bars(49, 61)
    assert all(np.isnan(x).all() for x in rolling_volume_profile(high[:60], low[:60], volume[:60]))
    poc, _, _ = rolling_volume_profile(high[:61], low[:61], volume[:61], window=60)
    assert np.isnan(poc[:60]).all()
    assert not np.isnan(poc[60])
    # Empty input.
    assert all(x.shape == (0,) for x in rolling_volume_profile([], [], []))
    # Constant price: POC = VAH = VAL = the price.
    flat = np.full(10, 50_000.0)
    poc, vah, val = rolling_volume_profile(flat, flat, np.full(10, 100.0), window=3)
    for x in (poc, vah, val):
        _close(x, [NAN] * 3 + [50_000.0] * 7)
    # A window with no volume gives NaN; one traded bar in it is enough for a value.
    volume = np.zeros(12)
    volume[[0, 9]] = 100.0
    high = np.arange(100.0, 112.0)
    poc, vah, val = rolling_volume_profile(high, high - 1, volume, window=4, bins=4)
    expected = [False] * 4 + [True] + [False] * 5 + [True] * 2
    np.testing.assert_array_equal(~np.isnan(poc), expected)
    np.testing.assert_array_equal(~np.isnan(vah), expected)
    np.testing.assert_array_equal(~np.isnan(val), expected)


def test_warm_up_runs():
    warm_up()


def test_volume_profile_is_immutable():
    p = volume_profile([2.0, 3.0], [1.0, 2.0], [1.0, 1.0], bins=2)
    with pytest.raises(ValueError, match="read-only"):
        p.volumes[0] = 5.0
    with pytest.raises(AttributeError):
        p.poc = 1.0  # type: ignore[misc]


def test_rolling_volume_profile_at_selected_bars_equals_the_full_computation():
    rng = np.random.default_rng(11)
    n = 300
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    high = close + rng.uniform(0, 2, n)
    low = close - rng.uniform(0, 2, n)
    volume = rng.uniform(1e3, 1e4, n)
    high[[40, 41, 150]] = np.nan  # missing bars are skipped the same way
    at = rng.uniform(size=n) < 0.2
    full = rolling_volume_profile(high, low, volume, window=60)
    some = rolling_volume_profile(high, low, volume, window=60, at=at)
    for whole, part in zip(full, some, strict=True):
        np.testing.assert_array_equal(part[at], whole[at])
        assert np.isnan(part[~at]).all()
    assert np.isfinite(some[1][at]).sum() > 20
    with pytest.raises(ValidationError, match="boolean mask"):
        rolling_volume_profile(high, low, volume, at=np.ones(n))
