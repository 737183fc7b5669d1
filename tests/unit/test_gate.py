"""The Market Gate and sector strength (quant/gate.py) against a hand-computed table of the
domain notes §7: scores from fixed readings, the gate's colours including the USD/KRW
override and UNKNOWN cases, the sector ranking, KODEX 200's status, and readings from series
whose moving averages, RSI and changes are known in closed form."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from quant import gate
from quant.errors import ValidationError
from quant.gate import GateParams, Readings, Series


def _r(**over: float | None) -> Readings:
    base: dict[str, float | None] = {
        "close": 110.0,
        "ma_short": 105.0,
        "ma_long": 100.0,
        "rsi": 60.0,
        "macd": 1.0,
        "macd_signal": 0.5,
        "volume_ratio": 1.5,
        "change_pct": 5.0,
        "benchmark_change_pct": 1.0,
    }
    base.update(over)
    return Readings(**base)  # type: ignore[arg-type]


# (readings overrides, trend, rsi, macd, volume, rs, total) — computed by hand from §7.
TABLE = [
    ({}, 25, 25, 20, 15, 15, 100),
    ({"close": 104.0}, 10, 25, 20, 15, 15, 85),  # above MA60 only
    ({"ma_short": 99.0}, 15, 25, 20, 15, 15, 90),  # above MA20 but MA20 < MA60
    ({"close": 95.0}, 0, 25, 20, 15, 15, 75),  # below both
    ({"rsi": 70.0}, 25, 25, 20, 15, 15, 100),  # 70 is still healthy
    ({"rsi": 70.01}, 25, 0, 20, 15, 15, 75),  # overbought
    ({"rsi": 50.0}, 25, 25, 20, 15, 15, 100),
    ({"rsi": 45.0}, 25, 15, 20, 15, 15, 90),
    ({"rsi": 35.0}, 25, 20, 20, 15, 15, 95),  # §7: 30–40 scores above 40–50
    ({"rsi": 29.9}, 25, 10, 20, 15, 15, 85),
    ({"macd": 0.5}, 25, 25, 0, 15, 15, 80),  # equal: not above
    ({"volume_ratio": 1.2}, 25, 25, 20, 10, 15, 95),  # not > 1.2
    ({"volume_ratio": 0.8}, 25, 25, 20, 0, 15, 85),  # not > 0.8
    ({"volume_ratio": None}, 25, 25, 20, 0, 15, 85),  # no volume
    ({"change_pct": 3.0}, 25, 25, 20, 15, 0 + 10, 95),  # +2 pp: not > 2
    ({"change_pct": 1.0}, 25, 25, 20, 15, 5, 90),  # 0 pp
    ({"change_pct": -1.0}, 25, 25, 20, 15, 0, 85),  # −2 pp: not > −2
    (
        {"close": 90.0, "rsi": 75.0, "macd": -1.0, "volume_ratio": 0.5, "change_pct": -9.0},
        0,
        0,
        0,
        0,
        0,
        0,
    ),
]


@pytest.mark.parametrize(("over", "trend", "rsi", "macd", "volume", "rs", "total"), TABLE)
def test_scores_match_the_hand_computed_table(over, trend, rsi, macd, volume, rs, total):
    score = gate.score_readings(_r(**over))
    assert (score.trend, score.rsi, score.macd, score.volume, score.relative_strength) == (
        trend,
        rsi,
        macd,
        volume,
        rs,
    )
    assert score.total == total


def test_every_threshold_is_a_parameter():
    strict = GateParams(trend_full=30.0, macd_points=10.0, volume_high=(2.0, 15.0))
    score = gate.score_readings(_r(), strict)
    assert (score.trend, score.macd, score.volume) == (30.0, 10.0, 10.0)


# --- series with readings known in closed form -------------------------------------------
N = 80


def _ramp(start: float, step: float, n: int = N) -> np.ndarray:
    return start + step * np.arange(n, dtype=np.float64)


def test_readings_of_a_steady_rise():
    close = _ramp(100.0, 1.0)  # 100 … 179
    bench = _ramp(1000.0, 0.0) + np.r_[np.zeros(N - 1), 10.0]  # flat, +1 % on the last day
    volume = np.full(N, 1_000.0)
    volume[-1] = 2_000.0
    r = gate.readings(close, volume, bench, name="TEST")
    assert r.close == 179.0
    assert r.ma_short == pytest.approx(np.mean(close[-20:]))  # 169.5
    assert r.ma_long == pytest.approx(np.mean(close[-60:]))  # 149.5
    assert r.rsi == pytest.approx(100.0)  # never fell
    assert r.change_pct == pytest.approx((179.0 / 159.0 - 1) * 100)
    assert r.benchmark_change_pct == pytest.approx(1.0)
    # today's volume over its 20-day mean including today: 2000 / (19·1000 + 2000)/20
    assert r.volume_ratio == pytest.approx(2000.0 / 1050.0)
    score = gate.score_readings(r)
    assert score.trend == 25  # 179 > 169.5 > 149.5
    assert score.rsi == 0  # RSI 100 > 70: overbought
    assert score.volume == 15
    assert score.relative_strength == 15  # +12.6 pp − 1 pp


def test_readings_refuse_short_or_misaligned_series_naming_them():
    params = GateParams()
    with pytest.raises(ValidationError, match=r"KOSDAQ: 30 daily bars, the gate needs at least"):
        gate.readings(_ramp(1, 1, 30), None, _ramp(1, 1, 30), name="KOSDAQ")
    with pytest.raises(ValidationError, match="benchmark has 79 bars for 80"):
        gate.readings(_ramp(1, 1), None, _ramp(1, 1, 79), name="X")
    close = _ramp(1, 1)
    close[-1] = math.nan
    with pytest.raises(ValidationError, match="latest session"):
        gate.readings(close, None, _ramp(1, 1), name="X")
    assert params.min_sessions == 60


# --- the gate ---------------------------------------------------------------------------------
# (market score, USD/KRW, colour, words in the reason) — by hand from §7.
GATE_TABLE = [
    (70.0, 1_300.0, gate.GREEN, "score 70.0 ≥ 70"),
    (69.9, 1_300.0, gate.YELLOW, "score 69.9 ≥ 45 and < 70"),
    (45.0, 1_300.0, gate.YELLOW, "score 45.0 ≥ 45"),
    (44.9, 1_300.0, gate.RED, "score 44.9 < 45"),
    (0.0, 1_300.0, gate.RED, "score 0.0 < 45"),
    (100.0, 1_399.9, gate.GREEN, "score 100.0 ≥ 70"),
    (100.0, 1_400.0, gate.GREEN, "USD/KRW 1,400.0 ≥ 1,400 (warning)"),
    (50.0, 1_449.9, gate.YELLOW, "USD/KRW 1,449.9 ≥ 1,400 (warning)"),
    (100.0, 1_450.0, gate.RED, "USD/KRW 1,450.0 ≥ 1,450: RED whatever the score"),
    (100.0, 1_600.0, gate.RED, "RED whatever the score"),
]


@pytest.mark.parametrize(("score", "fx", "colour", "words"), GATE_TABLE)
def test_gate_colours_match_the_hand_computed_table(score, fx, colour, words):
    found, reason = gate.decide(score, fx)
    assert found == colour
    assert words in reason


def test_the_yellow_threshold_of_the_readme_variant_is_a_parameter():
    assert gate.decide(42.0, 1_300.0)[0] == gate.RED
    assert gate.decide(42.0, 1_300.0, GateParams(yellow=40.0))[0] == gate.YELLOW


def _series(step: float, n: int = N, volume_last: float = 1_500.0) -> Series:
    close = _ramp(1_000.0, step, n)
    volume = np.full(n, 1_000.0)
    volume[-1] = volume_last
    return Series(close, volume)


def _with_noise(series: Series, seed: int) -> Series:
    rng = np.random.default_rng(seed)
    close = np.asarray(series.close) * (1 + rng.normal(0, 0.01, len(series.close)))
    return Series(close, series.volume)


def test_gate_colours_fx_override_and_warning():
    kospi = _with_noise(_series(2.0), 1)
    kosdaq = _with_noise(_series(3.0), 2)
    fx = np.full(N, 1_380.0)
    found = gate.market_gate(kospi=kospi, kosdaq=kosdaq, usdkrw=fx)
    k = found.components["KOSPI"]["total"]
    q = found.components["KOSDAQ"]["total"]
    assert found.score == pytest.approx((k + q) / 2)
    assert found.score is not None
    assert (found.color, found.reason) == gate.decide(found.score, 1_380.0)
    assert not found.fx_warning
    # From 1400 a warning, the colour unchanged ...
    fx[-1] = 1_400.0
    warned = gate.market_gate(kospi=kospi, kosdaq=kosdaq, usdkrw=fx)
    assert warned.fx_warning
    assert warned.score == found.score
    if warned.color != gate.RED:
        assert "USD/KRW 1,400.0 ≥ 1,400 (warning)" in warned.reason
    # ... and from 1450 RED whatever the score.
    fx[-1] = 1_450.0
    red = gate.market_gate(kospi=kospi, kosdaq=kosdaq, usdkrw=fx)
    assert red.color == gate.RED
    assert red.score == found.score
    assert "USD/KRW 1,450.0 ≥ 1,450: RED whatever the score" in red.reason


def test_gate_thresholds_on_a_fixed_score():
    kospi = _with_noise(_series(2.0), 1)
    kosdaq = _with_noise(_series(3.0), 2)
    fx = np.full(N, 1_300.0)
    score = gate.market_gate(kospi=kospi, kosdaq=kosdaq, usdkrw=fx).score
    assert score is not None
    at_green = GateParams(green=score, yellow=score - 1)
    assert gate.market_gate(kospi=kospi, kosdaq=kosdaq, usdkrw=fx, params=at_green).color == (
        gate.GREEN
    )
    at_yellow = GateParams(green=score + 0.01, yellow=score)
    assert gate.market_gate(kospi=kospi, kosdaq=kosdaq, usdkrw=fx, params=at_yellow).color == (
        gate.YELLOW
    )
    below = GateParams(green=score + 2, yellow=score + 1)
    assert gate.market_gate(kospi=kospi, kosdaq=kosdaq, usdkrw=fx, params=below).color == gate.RED


def test_a_missing_input_makes_the_gate_unknown_with_the_reason():
    kospi, kosdaq, fx = _series(2.0), _series(3.0), np.full(N, 1_300.0)
    no_fx = gate.market_gate(kospi=kospi, kosdaq=kosdaq, usdkrw=None)
    assert (no_fx.color, no_fx.score) == (gate.UNKNOWN, None)
    assert "no USD/KRW rate" in no_fx.reason
    no_kosdaq = gate.market_gate(kospi=kospi, kosdaq=None, usdkrw=fx)
    assert no_kosdaq.color == gate.UNKNOWN
    assert "no KOSDAQ bars" in no_kosdaq.reason
    nothing = gate.market_gate(kospi=None, kosdaq=kosdaq, usdkrw=fx)
    assert nothing.color == gate.UNKNOWN
    assert "no KOSPI (nor KODEX 200) bars" in nothing.reason
    short = gate.market_gate(kospi=kospi, kosdaq=_series(3.0, n=40), usdkrw=fx)
    assert short.color == gate.UNKNOWN
    assert "KOSDAQ: 40 daily bars, the gate needs at least 60" in short.reason
    fx_gap = fx.copy()
    fx_gap[-1] = math.nan
    assert gate.market_gate(kospi=kospi, kosdaq=kosdaq, usdkrw=fx_gap).color == gate.UNKNOWN


def test_kodex_200_stands_in_for_a_missing_kospi():
    kodex, kosdaq = _series(2.0), _series(3.0)
    found = gate.market_gate(kospi=None, kodex200=kodex, kosdaq=kosdaq, usdkrw=np.full(N, 1300.0))
    assert found.color != gate.UNKNOWN
    assert set(found.components) == {"KODEX 200", "KOSDAQ"}
    # KOSDAQ's relative strength is measured against the stand-in
    assert found.components["KOSDAQ"]["readings"]["benchmark_change_pct"] == pytest.approx(
        found.components["KODEX 200"]["readings"]["change_pct"], abs=1e-4
    )


# --- sectors ----------------------------------------------------------------------------------
def test_sectors_are_scored_labelled_and_ranked():
    bench = _series(1.0)
    strong = _with_noise(_series(4.0, volume_last=3_000.0), 3)
    weak = Series(_ramp(2_000.0, -3.0), np.full(N, 1_000.0))
    names = {"A": "반도체", "B": "은행", "C": "철강", "D": "증권"}
    found = gate.sector_strength({"A": strong, "B": weak, "C": None, "D": _series(3.0, n=30)},
                                 names, bench)  # fmt: skip
    ranked = [s for s in found.ranked if s.rank is not None]
    assert [s.code for s in ranked] == ["A", "B"]
    assert ranked[0].score is not None
    assert ranked[1].score is not None
    assert ranked[0].score > ranked[1].score
    for sector in ranked:
        assert sector.score is not None
        want = (
            gate.BULLISH
            if sector.score >= 70
            else gate.BEARISH
            if sector.score < 40
            else gate.NEUTRAL
        )
        assert sector.status == want
    # a falling sector: below both averages (0), RSI < 30 (10), MACD below signal (0), flat
    # volume — ratio 1.0 > 0.8 (10), relative strength −5 pp (0): 20
    assert ranked[1].score == 20
    assert ranked[1].status == gate.BEARISH
    assert (found.strongest, found.weakest) == ("반도체", "은행")
    unknown = {s.code: s for s in found.ranked if s.rank is None}
    assert unknown["C"].status == gate.UNKNOWN
    assert unknown["C"].reason == "no bars"
    assert "30 daily bars" in (unknown["D"].reason or "")


def test_sector_ties_rank_by_code_and_without_kospi_all_are_unknown():
    same = _series(2.0)
    found = gate.sector_strength({"B": same, "A": same}, {}, _series(1.0))
    assert [s.code for s in found.ranked] == ["A", "B"]
    none = gate.sector_strength({"A": same}, {}, None)
    assert none.ranked[0].status == gate.UNKNOWN
    assert none.strongest is None


# --- KODEX 200 status -------------------------------------------------------------------------
def test_kodex_status():
    rising = _ramp(10_000.0, 10.0, 250)
    assert gate.kodex_status(rising)[0] == gate.RISK_ON
    falling = _ramp(20_000.0, -10.0, 250)
    assert gate.kodex_status(falling)[0] == gate.RISK_OFF
    # above MA200 but MA20 below MA50: a recent dip after a long rise
    dip = np.r_[_ramp(10_000.0, 10.0, 220), _ramp(12_190.0, -8.0, 30)]
    state, why = gate.kodex_status(dip)
    assert state == gate.NEUTRAL, why
    assert gate.kodex_status(rising[:150])[0] == gate.UNKNOWN


def test_params_are_json_safe():
    data = GateParams().as_dict()
    assert data["fx_red"] == 1450.0
    assert data["rsi_healthy"] == [50.0, 70.0, 25.0]
    assert replace(GateParams(), green=80).green == 80
