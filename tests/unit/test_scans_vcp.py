"""The Trend Template and VCP scan on hand-shaped candle series.

Each series is a piecewise-linear "centre" path through hand-picked knots (KRW per share),
with ``high = centre·(1 + W)`` and ``low = centre·(1 − W)``, so a knot at a peak is a swing
high and a knot at a trough a swing low, and a contraction from a peak P to a trough
``_trough(P, d)`` has depth exactly d. The 300-bar series rise from 30,000 to 100,000 KRW
(a Stage-2 uptrend) and then form the pattern in the last 120 bars.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from quant.errors import ValidationError
from quant.indicators import Candles
from quant.scans.inputs import ScanInputs
from quant.scans.trend import CRITERIA, TrendTemplate, TrendTemplateParams, trend_template
from quant.scans.vcp import (
    BREAKOUT,
    UNCONFIRMED,
    VcpParams,
    contraction_score,
    find_vcp,
    pivot_score,
    rs_score,
    scan_vcp,
    score_vcp,
    swing_points,
    trend_score,
    vcp_rating,
    volume_score,
)

W = 0.005  # half the bar range around the centre, as a fraction
K = 1000.0  # prices in thousands of KRW below


def _trough(peak: float, depth: float) -> float:
    """The centre of a trough whose low is ``depth`` below the high of a peak centred at
    ``peak``."""
    return peak * (1 + W) * (1 - depth) / (1 - W)


def _path(knots: list[tuple[int, float]]) -> np.ndarray:
    xs, ys = zip(*knots, strict=True)
    centre: np.ndarray = np.interp(np.arange(xs[-1] + 1), xs, ys) * K
    return centre


def _candles(centre: np.ndarray, volume: np.ndarray) -> Candles:
    times = np.datetime64("2025-01-02", "D") + np.arange(len(centre))
    return Candles.from_columns(
        times,
        unit="D",
        open=centre,
        high=centre * (1 + W),
        low=centre * (1 - W),
        close=centre,
        volume=volume,
        traded_value=centre * volume,
    )


def _inputs(
    centre: np.ndarray,
    volume: np.ndarray,
    *,
    rs_rating: float | None = 85.0,
    benchmark: float | None = 0.05,
) -> ScanInputs:
    return ScanInputs(
        "005930",
        _candles(centre, volume),
        rs_rating=rs_rating,
        benchmark_rs_raw=benchmark,
    )


def _volume(n: int = 300) -> np.ndarray:
    """1M shares in the uptrend, drying up to 300k through the base, 250k in the last 10."""
    v = np.full(n, 1_000_000.0)
    v[189:] = np.linspace(900_000, 300_000, n - 189)
    v[-10:] = 250_000.0
    return v


# Peak centres and (down, up) leg lengths of the textbook base: H1 at bar 189.
PEAKS = (100.0, 97.0, 95.0, 94.0)
LEGS = ((16, 20), (12, 13), (8, 12), (6, 8))


def _base(depths: tuple[float, ...], end: float = 94.0) -> list[tuple[int, float]]:
    """Knots: the uptrend to H1 (bar 189), then one contraction per depth, then a climb to
    ``end`` at bar 299."""
    knots = [(0, 30.0), (189, PEAKS[0])]
    t = 189
    for k, depth in enumerate(depths):
        t += LEGS[k][0]
        knots.append((t, _trough(PEAKS[k], depth)))
        if k + 1 < len(depths):
            t += LEGS[k][1]
            knots.append((t, PEAKS[k + 1]))
    knots.append((299, end))
    return knots


TEXTBOOK = (0.25, 0.15, 0.08)


def _textbook() -> tuple[np.ndarray, np.ndarray]:
    return _path(_base(TEXTBOOK)), _volume()


def _halt(centre: np.ndarray, volume: np.ndarray, start: int, stop: int) -> None:
    """Bars start … stop − 1 halted: flat at the previous close, no volume (as KRX reports)."""
    centre[start:stop] = centre[start - 1]
    volume[start:stop] = 0.0


# --------------------------------------------------------------------------------------------
# The textbook pattern
# --------------------------------------------------------------------------------------------


def test_textbook_vcp_is_found_and_is_a_candidate():
    centre, volume = _textbook()
    result = scan_vcp(_inputs(centre, volume))
    pattern = result.pattern

    assert pattern.valid, pattern.reasons
    assert pattern.reasons == ()
    assert pattern.depths == pytest.approx(TEXTBOOK, abs=1e-6)
    assert [(c.high_index, c.low_index) for c in pattern.contractions] == [
        (189, 205),
        (225, 237),
        (250, 258),
    ]
    assert pattern.contractions[0].high == pytest.approx(100_000 * (1 + W))
    assert pattern.duration == 258 - 189
    # pivot = high of the last contraction; stop = its low × 0.99
    assert pattern.pivot == pytest.approx(95_000 * (1 + W))
    assert pattern.stop == pytest.approx(_trough(95.0, 0.08) * K * (1 - W) * 0.99)
    assert pattern.distance_to_pivot == pytest.approx(94.0 / (95.0 * (1 + W)) - 1)
    # dry-up = mean of the last 10 volumes / mean of the last 50
    assert pattern.dry_up == pytest.approx(volume[-10:].mean() / volume[-50:].mean())
    assert not pattern.breakout
    assert not pattern.extended

    assert result.trend.passed
    assert result.trend.failed == ()
    assert result.is_candidate
    assert result.reasons[-1] == "Candidate: the Trend Template passed and the VCP is valid."
    assert any("3 contractions (25.0% → 15.0% → 8.0%)" in r for r in result.reasons)


def test_textbook_score_by_hand():
    centre, volume = _textbook()
    inputs = _inputs(centre, volume, benchmark=0.05)
    result = scan_vcp(inputs)
    score = result.score
    c = centre
    rs_raw = 0.4 * (c[-1] / c[-64] - 1) + sum(
        0.2 * (c[-1] / c[-1 - n] - 1) for n in (126, 189, 252)
    )

    assert score.tt == 100.0  # 7 × 14.3 capped; close 3 % above SMA50: no penalty
    assert score.contraction == 80.0  # 3 contractions; last 8 % (not < 5 %); mean ratio 0.57
    assert score.net_up_closes == 20  # the last 20 closes all rise
    assert score.volume == 60.0 + 10.0  # dry-up 0.60 → 60, accumulation +10
    assert score.pivot == 90.0  # 1.5 % below the pivot
    assert score.outperformance is not None
    assert score.outperformance == pytest.approx(rs_raw - 0.05)
    assert 0.20 <= score.outperformance < 0.30
    assert score.rs == 90.0
    assert score.total == pytest.approx(0.25 * 100 + 0.25 * 80 + 0.2 * 70 + 0.15 * 90 + 0.15 * 90)
    assert score.total == 86.0
    assert score.rating == "Strong"


def test_rs_component_falls_back_to_the_rating_then_to_none():
    centre, volume = _textbook()
    by_rating = scan_vcp(_inputs(centre, volume, benchmark=None)).score
    assert by_rating.outperformance is None
    assert by_rating.rs == 80.0  # rating 85 → 80
    assert by_rating.total == 84.5

    inputs = _inputs(centre, volume, rs_rating=None, benchmark=None)
    trend = trend_template(inputs)
    assert trend.failed == ("rs_rating",)
    assert trend.insufficient == ("rs_rating",)
    unknown = score_vcp(inputs, trend, find_vcp(inputs))
    assert unknown.rs is None
    # RS counts as 0; TT has 6 of 7 criteria: 85.8
    assert unknown.tt == pytest.approx(85.8)
    assert unknown.total == round(0.25 * 85.8 + 0.25 * 80 + 0.2 * 70 + 0.15 * 90, 1)
    assert any("counts as 0" in note for note in unknown.notes)


@pytest.mark.parametrize(
    ("close_over_pivot", "volume_multiple", "breakout", "extended", "state"),
    [
        (1.02, 3.0, True, False, "breakout"),  # above the pivot on 3× volume
        (1.02, 1.2, False, False, "unconfirmed"),  # above the pivot on too little volume
        (0.99, 3.0, False, False, "forming"),  # heavy volume below the pivot
        (1.07, 3.0, True, True, "breakout"),  # a breakout 7 % above the pivot: do not chase
    ],
)
def test_breakout_day(close_over_pivot, volume_multiple, breakout, extended, state):
    centre, volume = _textbook()
    pivot = 95_000 * (1 + W)
    centre[-1] = pivot * close_over_pivot
    volume[-1] = volume_multiple * volume[-51:-1].mean()
    result = scan_vcp(_inputs(centre, volume))
    pattern = result.pattern

    assert pattern.valid
    assert pattern.pivot == pytest.approx(pivot)
    assert pattern.volume_ratio == pytest.approx(volume[-1] / volume[-50:].mean())
    assert pattern.breakout is breakout
    assert pattern.extended is extended
    assert pattern.distance_to_pivot == pytest.approx(close_over_pivot - 1)
    assert result.is_candidate
    assert any(r.startswith("Breakout:") for r in result.reasons) is breakout
    assert any("do not chase" in r for r in result.reasons) is extended
    assert pattern.state == state
    unconfirmed = [r for r in result.reasons if r.startswith("Above the pivot, no volume")]
    assert bool(unconfirmed) is (state == "unconfirmed")
    if breakout:
        assert result.score.pivot == 100.0


def test_above_the_pivot_without_volume_is_its_own_state_with_a_reason_naming_the_volume():
    centre, volume = _textbook()
    pivot = 95_000 * (1 + W)
    centre[-1] = pivot * 1.021
    volume[-1] = 1.2 * volume[-51:-1].mean()
    result = scan_vcp(_inputs(centre, volume))
    pattern = result.pattern
    ratio = volume[-1] / volume[-50:].mean()  # the 50-day mean includes the scan day
    assert 1.15 < ratio < 1.25
    assert pattern.state == UNCONFIRMED
    assert not pattern.breakout
    assert pattern.volume_ratio == pytest.approx(ratio)
    assert (
        f"Above the pivot, no volume confirmation: close {pattern.distance_to_pivot:.1%} above "
        f"the pivot on {ratio:.1f}× the 50-day volume; a breakout needs 1.5×."
    ) in result.reasons
    assert f"{pattern.distance_to_pivot:.1%}" == "2.1%"
    assert not any(r.startswith("Breakout:") for r in result.reasons)
    # it scores below the same day with the breakout volume (no volume bonus, pivot 85 < 100)
    volume[-1] = 3.0 * volume[-51:-1].mean()
    confirmed = scan_vcp(_inputs(centre, volume))
    assert confirmed.pattern.state == BREAKOUT
    assert result.score.pivot == 85.0 < confirmed.score.pivot == 100.0
    assert result.score.total < confirmed.score.total


def test_the_required_multiple_comes_from_the_parameters_and_a_near_miss_shows_two_decimals():
    centre, volume = _textbook()
    pivot = 95_000 * (1 + W)
    centre[-1] = pivot * 1.01
    base = volume[-51:-1].mean()
    # ratio r = v / ((49·base' + v) / 50) with the 49 earlier bars: solve for r = 1.48
    earlier = volume[-50:-1].sum()
    target = 1.48
    volume[-1] = target * earlier / (50 - target)
    assert base > 0
    result = scan_vcp(_inputs(centre, volume), vcp_params=VcpParams(breakout_volume=1.5))
    assert result.pattern.volume_ratio == pytest.approx(target)
    assert any("on 1.48× the 50-day volume; a breakout needs 1.5×." in r for r in result.reasons)
    lower = scan_vcp(_inputs(centre, volume), vcp_params=VcpParams(breakout_volume=1.4))
    assert lower.pattern.state == BREAKOUT


def test_no_volume_on_the_scan_day_above_the_pivot_is_unconfirmed():
    centre, volume = _textbook()
    centre[-1] = 95_000 * (1 + W) * 1.02
    volume[-1] = np.nan
    result = scan_vcp(_inputs(centre, volume))
    assert result.pattern.volume_ratio is None
    assert result.pattern.state == UNCONFIRMED
    assert any("on an unknown volume; a breakout needs 1.5×." in r for r in result.reasons)


# --------------------------------------------------------------------------------------------
# Trend Template
# --------------------------------------------------------------------------------------------

# close, sma50, sma150, sma200, sma200 22 bars ago, 52w low, 52w high, RS rating
BASE = {
    "close": 100.0,
    "sma50": 95.0,
    "sma150": 90.0,
    "sma200": 85.0,
    "sma200_before": 80.0,
    "low_52w": 60.0,
    "high_52w": 110.0,
    "rs_rating": 85.0,
}


def _trend_inputs(**overrides: float) -> ScanInputs:
    """300 bars whose last close and precomputed series end at the given values (the cache
    is how the universe scan feeds the series)."""
    v = {**BASE, **overrides}
    n = 300
    close = np.full(n, v["close"])
    sma200 = np.full(n, v["sma200"])
    sma200[-23] = v["sma200_before"]
    precomputed = {
        "sma_50": np.full(n, v["sma50"]),
        "sma_150": np.full(n, v["sma150"]),
        "sma_200": sma200,
        "low_52w": np.full(n, v["low_52w"]),
        "high_52w": np.full(n, v["high_52w"]),
    }
    candles = _candles(close, np.full(n, 1e6))
    return ScanInputs("000660", candles, precomputed=precomputed, rs_rating=v["rs_rating"])


@pytest.mark.parametrize(
    ("overrides", "failed"),
    [
        ({}, ()),
        # 4 (SMA50 above both) and 5 (C > SMA50) imply 1, so criterion 1 never fails alone:
        # the closest case fails it together with close_above_sma50.
        ({"close": 89.0}, ("close_above_sma150_and_sma200", "close_above_sma50")),
        ({"sma150": 84.0}, ("sma150_above_sma200",)),
        ({"sma200_before": 85.0}, ("sma200_rising",)),
        ({"sma50": 89.0}, ("sma50_above_sma150_and_sma200",)),
        ({"close": 94.0}, ("close_above_sma50",)),
        ({"low_52w": 77.0}, ("above_52w_low",)),
        ({"high_52w": 134.0}, ("near_52w_high",)),
        ({"rs_rating": 69.0}, ("rs_rating",)),
        # boundaries: ≥ passes
        ({"close": 130.0, "low_52w": 100.0, "high_52w": 130.0}, ()),
        ({"close": 90.0, "sma50": 89.0, "sma150": 88.0, "high_52w": 120.0}, ()),
        ({"rs_rating": 70.0}, ()),
    ],
)
def test_trend_template_fails_exactly_the_broken_criterion(overrides, failed):
    trend = trend_template(_trend_inputs(**overrides))

    assert trend.failed == failed
    assert trend.passed is (failed == ())
    assert trend.insufficient == ()
    assert list(trend.criteria) == list(CRITERIA)
    assert [name for name, ok in trend.criteria.items() if not ok] == list(failed)
    assert trend.values == {**BASE, **overrides}


def test_each_criterion_fails_alone_when_it_can():
    """Criteria 2–8 each have a row above that fails only them."""
    rows = [
        ({"sma150": 84.0}, 2),
        ({"sma200_before": 85.0}, 3),
        ({"sma50": 89.0}, 4),
        ({"close": 94.0}, 5),
        ({"low_52w": 77.0}, 6),
        ({"high_52w": 134.0}, 7),
        ({"rs_rating": 69.0}, 8),
    ]
    for overrides, number in rows:
        result = scan_vcp(_trend_inputs(**overrides))
        name = CRITERIA[number - 1]
        assert result.trend.failed == (name,)
        assert not result.is_candidate
        assert any(r.startswith(f"Trend Template fails {name}: ") for r in result.reasons)


def test_trend_template_from_candles_rejects_a_52w_high_spike_and_a_low_rating():
    centre, volume = _textbook()
    low_rating = trend_template(_inputs(centre, volume, rs_rating=60.0))
    assert low_rating.failed == ("rs_rating",)

    candles = _candles(centre, volume)
    high = candles.high.copy()
    high[100] = 200_000.0  # one wick in the last 252 bars: 94,000 < 0.75 × 200,000
    spiked = Candles.from_columns(
        candles.time,
        unit="D",
        open=candles.open,
        high=high,
        low=candles.low,
        close=candles.close,
        volume=volume,
        traded_value=candles.traded_value,
    )
    trend = trend_template(ScanInputs("x", spiked, rs_rating=85.0))
    assert trend.failed == ("near_52w_high",)
    assert trend.values["high_52w"] == 200_000.0


def test_trend_template_non_default_periods_compute_their_own_series():
    centre, volume = _textbook()
    params = TrendTemplateParams(sma_short=40, week52_window=100, min_above_low=1.25)
    trend = trend_template(_inputs(centre, volume), params)
    assert trend.values["sma50"] == pytest.approx(centre[-40:].mean())
    assert trend.values["low_52w"] == pytest.approx(centre[-100:].min() * (1 - W))


# --------------------------------------------------------------------------------------------
# Invalid patterns
# --------------------------------------------------------------------------------------------


def _duration_knots() -> list[tuple[int, float]]:
    # 20 % then 10 % in 4-bar legs: H1 at 280, last low at 292: 12 bars
    return [
        (0, 30.0),
        (280, 100.0),
        (284, _trough(100.0, 0.20)),
        (288, 98.0),
        (292, _trough(98.0, 0.10)),
        (299, 96.0),
    ]


def _one_contraction_knots() -> list[tuple[int, float]]:
    return [(0, 30.0), (189, 100.0), (205, _trough(100.0, 0.25)), (299, 94.0)]


@pytest.mark.parametrize(
    ("knots", "depths", "reason"),
    [
        (
            _base((0.25, 0.20, 0.12)),
            (0.25, 0.20, 0.12),
            "T2 depth 20.0% is 0.80 of T1 (25.0%); each contraction must be at most 0.75 "
            "of the previous",
        ),
        (
            _one_contraction_knots(),
            (0.25,),
            "1 contraction found, a VCP needs at least 2",
        ),
        (
            _base((0.06, 0.04, 0.02), end=95.0),
            (0.06, 0.04, 0.02),
            "T1 depth 6.0% is shallower than the 8.0% minimum",
        ),
        (
            _duration_knots(),
            (0.20, 0.10),
            "the pattern lasts 12 bars from H1 to the last low, shorter than 15",
        ),
    ],
    ids=["not-shrinking", "one-contraction", "shallow-T1", "too-short"],
)
def test_invalid_patterns_give_the_reason(knots, depths, reason):
    inputs = _inputs(_path(knots), _volume())
    result = scan_vcp(inputs)
    pattern = result.pattern

    assert not pattern.valid
    assert pattern.depths == pytest.approx(depths, abs=1e-6)
    assert pattern.reasons == (reason,)
    assert not result.is_candidate
    assert f"No valid VCP: {reason}." in result.reasons
    # pivot and stop still come from the last contraction found
    assert pattern.pivot == pytest.approx(pattern.contractions[-1].high)
    assert pattern.stop == pytest.approx(pattern.contractions[-1].low * 0.99)


def test_invalid_pattern_is_rated_developing_at_best():
    centre = _path(_base((0.25, 0.20, 0.12)))
    result = scan_vcp(_inputs(centre, _volume()))
    assert result.trend.passed
    assert result.score.contraction == 40.0  # min(40, 15 × 3)
    assert result.score.total >= 70.0  # Good by its total …
    assert result.score.rating == "Developing"  # … capped


def test_deep_first_contraction_is_only_noted():
    knots = _base((0.38, 0.2, 0.1))
    pattern = find_vcp(_inputs(_path(knots), _volume()))
    assert pattern.valid
    assert pattern.notes == ("T1 depth 38.0% is deeper than the preferred 35.0%",)


def test_contractions_start_at_the_highest_swing_high():
    knots = [
        (0, 30.0),
        (186, 92.0),  # an earlier, lower swing high inside the window
        (192, 88.0),
        (200, 100.0),  # H1
        (216, _trough(100.0, 0.25)),
        (236, 97.0),
        (248, _trough(97.0, 0.15)),
        (261, 95.0),
        (269, _trough(95.0, 0.08)),
        (299, 94.0),
    ]
    pattern = find_vcp(_inputs(_path(knots), _volume()))
    assert pattern.valid
    assert [c.high_index for c in pattern.contractions] == [200, 236, 261]
    assert pattern.depths == pytest.approx(TEXTBOOK, abs=1e-6)


def test_no_swing_high_in_a_straight_rise():
    centre = _path([(0, 30.0), (299, 100.0)])
    pattern = find_vcp(_inputs(centre, _volume()))
    assert not pattern.valid
    assert pattern.contractions == ()
    assert pattern.pivot is None
    assert pattern.stop is None
    assert pattern.reasons[0].startswith("no swing high in the last 120 traded bars")


# --------------------------------------------------------------------------------------------
# Gaps, halts and short histories
# --------------------------------------------------------------------------------------------


def test_trading_halts_are_skipped():
    centre, volume = _textbook()
    _halt(centre, volume, 240, 245)  # inside the T2 → H3 climb
    _halt(centre, volume, 280, 285)  # inside the last 50 bars
    result = scan_vcp(_inputs(centre, volume))
    pattern = result.pattern

    assert pattern.valid
    assert [(c.high_index, c.low_index) for c in pattern.contractions] == [
        (189, 205),
        (225, 237),
        (250, 258),
    ]
    assert pattern.depths == pytest.approx(TEXTBOOK, abs=1e-6)
    assert pattern.duration == 258 - 189 - 5  # counted in traded bars
    # the 50 traded bars are 245–279 and 285–299; halted zeros would fake a dry-up
    traded = np.r_[volume[245:280], volume[285:300]]
    assert pattern.dry_up == pytest.approx(volume[290:300].mean() / traded.mean())
    assert result.is_candidate


def test_halted_scan_day_is_no_breakout():
    centre, volume = _textbook()
    centre[-1] = 99_000.0  # would be above the pivot …
    _halt(centre, volume, 299, 300)  # … but the day is halted at the previous close
    pattern = find_vcp(_inputs(centre, volume))
    assert pattern.valid
    assert pattern.volume_ratio is None
    assert not pattern.breakout


def test_missing_bars_inside_the_pattern():
    centre, volume = _textbook()
    centre[[195, 196, 197, 230, 280]] = math.nan
    volume[285] = math.nan  # prices known, volume not: still a bar for the swings
    result = scan_vcp(_inputs(centre, volume))
    assert result.pattern.valid
    # the last 50 bars with a known volume: 248 … 299 but 280 (missing) and 285 (no volume)
    known = np.r_[volume[248:280], volume[281:285], volume[286:300]]
    assert len(known) == 50
    assert result.pattern.dry_up == pytest.approx(volume[290:300].mean() / known.mean())
    assert [(c.high_index, c.low_index) for c in result.pattern.contractions] == [
        (189, 205),
        (225, 237),
        (250, 258),
    ]
    assert result.trend.passed
    assert result.is_candidate


def test_missing_scan_day_bar():
    centre, volume = _textbook()
    centre[-1] = math.nan
    result = scan_vcp(_inputs(centre, volume))
    assert not result.is_candidate
    assert result.trend.failed == CRITERIA[:-1]
    assert "the scan-day bar has no close (missing bar)" in result.trend.notes
    assert result.pattern.distance_to_pivot is None
    assert "the scan-day bar has no close" in result.pattern.notes


@pytest.mark.parametrize("bars", [0, 1, 5, 11, 40])
def test_short_history_is_a_clear_non_candidate(bars):
    centre = _path([(0, 30.0), (299, 100.0)])[:bars]
    volume = np.full(bars, 1e6)
    result = scan_vcp(_inputs(centre, volume, rs_rating=None, benchmark=None))

    assert not result.is_candidate
    assert not result.pattern.valid
    assert result.trend.failed == CRITERIA
    assert result.trend.insufficient == CRITERIA
    assert result.pattern.dry_up is None
    assert result.score.rs is None
    assert result.reasons[-1] == "Not a candidate."
    if bars:
        assert f"Insufficient data: sma50 needs 50 bars, have {bars}." in result.reasons
        assert f"sma200 needs 200 bars, have {bars}" in result.trend.notes
    else:
        assert result.trend.notes[0] == "no bars"


def test_new_listing_with_150_bars():
    centre, volume = _textbook()
    result = scan_vcp(_inputs(centre[150:], volume[150:]))

    # the pattern is all inside the last 120 bars: found at the same place, shifted
    assert result.pattern.valid
    assert [c.high_index for c in result.pattern.contractions] == [39, 75, 100]
    unknown = (
        "close_above_sma150_and_sma200",
        "sma150_above_sma200",
        "sma200_rising",
        "sma50_above_sma150_and_sma200",
        "above_52w_low",
        "near_52w_high",
    )
    assert result.trend.failed == unknown
    assert result.trend.insufficient == unknown
    assert math.isnan(result.trend.values["sma200"])
    assert not math.isnan(result.trend.values["sma150"])
    assert "sma200 needs 200 bars, have 150" in result.trend.notes
    assert "52-week high/low needs 252 bars, have 150" in result.trend.notes
    assert not result.is_candidate
    assert (
        "Trend Template fails sma200_rising: insufficient data (sma200, sma200_before unknown)."
        in result.reasons
    )


# --------------------------------------------------------------------------------------------
# Swing points
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("high", "neighbours", "expected"),
    [
        ([1, 2, 3, 9, 3, 2, 1], 3, [3]),
        ([1, 2, 3, 9, 3, 2, 1], 4, []),  # needs 4 bars each side
        ([1, 2, 9, 9, 2, 1, 0], 2, []),  # a flat top is no swing (strict)
        ([5, 1, 6, 2, 7, 3, 4], 1, [2, 4]),
        ([1, 8, 2, 3, 4, 9, 1, 2, 1], 2, [5]),  # 8 at bar 1 has too few bars before it
    ],
)
def test_swing_highs(high, neighbours, expected):
    h = np.asarray(high, dtype=float)
    highs, lows = swing_points(h, h, neighbours)
    assert highs == expected
    negated_highs, _ = swing_points(-h, -h, neighbours)
    _, negated_lows = swing_points(-h, -h, neighbours)
    assert negated_lows == expected
    assert set(lows).isdisjoint(expected)
    assert negated_highs == lows


# --------------------------------------------------------------------------------------------
# Score components
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dry_up", "volume_ratio", "above", "net", "expected"),
    [
        (0.25, None, False, 0, 90.0),
        (0.30, None, False, 0, 75.0),
        (0.49, None, False, 0, 75.0),
        (0.50, None, False, 0, 60.0),
        (0.70, None, False, 0, 40.0),
        (1.00, None, False, 0, 40.0),
        (1.01, None, False, 0, 20.0),
        (None, 2.0, True, 10, 0.0),
        (0.25, 1.6, True, 0, 100.0),  # breakout volume above the pivot: +10
        (0.25, 1.5, True, 0, 90.0),  # the bonus needs V > 1.5 × avg
        (0.60, 2.0, False, 0, 60.0),  # not above the pivot
        (0.60, None, False, 4, 70.0),  # 4 more up closes than down: +10
        (0.60, None, False, 3, 60.0),
        (0.60, None, False, -4, 50.0),
        (1.50, None, False, -4, 10.0),
        (0.10, 3.0, True, 5, 100.0),  # clamped
    ],
)
def test_volume_score(dry_up, volume_ratio, above, net, expected):
    assert volume_score(dry_up, volume_ratio, above, net) == expected


@pytest.mark.parametrize(
    ("distance", "breakout", "expected"),
    [
        (0.01, True, 100.0),
        (0.01, False, 85.0),
        (0.0, True, 90.0),  # at the pivot is not above it
        (-0.02, False, 90.0),
        (-0.0201, False, 75.0),
        (-0.05, False, 75.0),
        (-0.06, False, 60.0),
        (-0.08, False, 60.0),
        (-0.09, False, 45.0),
        (-0.10, False, 45.0),
        (-0.12, False, 30.0),
        (-0.15, False, 30.0),
        (-0.151, False, 10.0),
        (None, False, 0.0),
    ],
)
def test_pivot_score(distance, breakout, expected):
    assert pivot_score(distance, breakout) == expected


@pytest.mark.parametrize(
    ("outperformance", "rating", "expected"),
    [
        (0.50, None, 100.0),
        (0.49, None, 95.0),
        (0.30, None, 95.0),
        (0.20, None, 90.0),
        (0.10, None, 80.0),
        (0.05, None, 70.0),
        (0.0, None, 60.0),
        (-0.05, None, 50.0),
        (-0.10, None, 40.0),
        (-0.20, None, 20.0),
        (-0.21, None, 0.0),
        (0.12, 20.0, 80.0),  # out-performance wins over the rating
        (None, 99.0, 100.0),
        (None, 85.0, 80.0),
        (None, 25.0, 20.0),
        (None, 24.0, 0.0),
        (math.nan, 70.0, 70.0),
        (None, None, None),
    ],
)
def test_rs_score(outperformance, rating, expected):
    assert rs_score(outperformance, rating) == expected


@pytest.mark.parametrize(
    ("depths", "valid", "expected"),
    [
        ((0.25, 0.15, 0.08), True, 80.0),
        ((0.25, 0.15), True, 60.0),
        ((0.20, 0.10, 0.04), True, 90.0),  # last < 5 %; mean ratio 0.45
        ((0.30, 0.10, 0.03), True, 100.0),  # + mean ratio 0.32 < 0.4; T1 30 % is not > 30 %
        ((0.32, 0.10, 0.03), True, 90.0),  # deep T1: −10
        ((0.30, 0.20, 0.10, 0.04), True, 100.0),  # 90 + 10
        ((0.25, 0.20), False, 30.0),
        ((0.25,), False, 15.0),
        ((0.10, 0.09, 0.08, 0.07), False, 40.0),
        ((), False, 0.0),
    ],
)
def test_contraction_score(depths, valid, expected):
    assert contraction_score(depths, valid) == expected


def _trend(close: float, sma50: float, failing: tuple[str, ...] = ()) -> TrendTemplate:
    criteria = {name: name not in failing for name in CRITERIA}
    return TrendTemplate(
        passed=not failing,
        criteria=criteria,
        failed=failing,
        insufficient=(),
        values={**BASE, "close": close, "sma50": sma50},
        notes=(),
    )


@pytest.mark.parametrize(
    ("close", "failing", "score", "raw"),
    [
        (105.0, (), 100.0, 100.0),
        (107.99, (), 100.0, 100.0),
        (108.01, (), 95.0, 100.0),  # ≥ 8 % above SMA50: −5
        (112.01, (), 90.0, 100.0),
        (118.01, (), 85.0, 100.0),
        (125.0, (), 80.0, 100.0),
        (140.0, (), 80.0, 100.0),
        (105.0, ("sma50_above_sma150_and_sma200",), 100.0, 100.0),  # not in the 7 points
        (105.0, ("rs_rating",), 85.8, 85.8),
        (105.0, ("rs_rating", "near_52w_high"), 71.5, 71.5),
        (125.0, CRITERIA, 0.0, 0.0),
    ],
)
def test_trend_score(close, failing, score, raw):
    got, got_raw = trend_score(_trend(close, 100.0, failing))
    assert got == pytest.approx(score)
    assert got_raw == pytest.approx(raw)


@pytest.mark.parametrize(
    ("total", "valid", "label"),
    [
        (100.0, True, "Textbook"),
        (90.0, True, "Textbook"),
        (89.9, True, "Strong"),
        (80.0, True, "Strong"),
        (79.9, True, "Good"),
        (70.0, True, "Good"),
        (69.9, True, "Developing"),
        (60.0, True, "Developing"),
        (59.9, True, "Weak"),
        (50.0, True, "Weak"),
        (49.9, True, None),
        (95.0, False, "Developing"),
        (70.0, False, "Developing"),
        (65.0, False, "Developing"),
        (55.0, False, "Weak"),
        (45.0, False, None),
    ],
)
def test_rating_labels(total, valid, label):
    assert vcp_rating(total, valid) == label


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


def test_thresholds_are_parameters():
    centre = _path(_base((0.25, 0.20, 0.12)))
    loose = VcpParams(max_depth_ratio=0.85)
    assert find_vcp(_inputs(centre, _volume()), loose).valid
    strict = TrendTemplateParams(min_rs_rating=90.0)
    assert trend_template(_inputs(*_textbook()), strict).failed == ("rs_rating",)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: VcpParams(window=10), "window"),
        (lambda: VcpParams(swing_neighbours=0), "swing_neighbours"),
        (lambda: VcpParams(dry_up_short=60), "dry_up_short"),
        (lambda: VcpParams(weights=(0.5, 0.5, 0.5, 0.0, 0.0)), "weights"),
        (lambda: VcpParams(invalid_rating="Superb"), "invalid_rating"),
        (lambda: TrendTemplateParams(sma_short=0), "sma_short"),
        (lambda: TrendTemplateParams(min_of_high=math.nan), "min_of_high"),
    ],
)
def test_bad_parameters_are_rejected(make, field):
    with pytest.raises(ValidationError) as caught:
        make()
    assert caught.value.field == field


def test_the_scan_s_signal_carries_the_state_as_status_and_the_volume_ratio():
    from quantbeat.services.strategies import evaluate_vcp, scan_strategy

    centre, volume = _textbook()
    centre[-1] = 95_000 * (1 + W) * 1.02
    volume[-1] = 1.2 * volume[-51:-1].mean()
    unconfirmed = evaluate_vcp(_inputs(centre, volume))
    assert unconfirmed.candidate
    assert unconfirmed.status == "unconfirmed"
    assert unconfirmed.volume_ratio == pytest.approx(volume[-1] / volume[-50:].mean())
    assert unconfirmed.inputs["pivot_state"] == "unconfirmed"
    assert unconfirmed.inputs["breakout_volume"] == 1.5
    volume[-1] = 3.0 * volume[-51:-1].mean()
    confirmed = evaluate_vcp(_inputs(centre, volume))
    assert confirmed.status == "breakout"
    # the scan ranks confirmed breakouts before any other state
    assert scan_strategy("vcp").ranked_first == ("breakout",)
