"""quant.scans.supply and quant.scans.closing_bet on small hand-written series.

Every expected number below is worked out by hand in the comments (domain.md §2, §3): window
sums and size-neutral ratios, streaks, the score mapping at its breakpoints, one row per hard
filter, grade boundaries, the exit plan, and short, halted and gappy histories.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from quant.errors import ValidationError
from quant.indicators import Candles
from quant.scans.closing_bet import (
    FILTERS,
    ClosingBet,
    ClosingBetParams,
    ScoreComponents,
    closing_bet,
)
from quant.scans.inputs import ScanInputs
from quant.scans.supply import (
    SupplyDemand,
    SupplyParams,
    supply_demand,
    supply_label,
    supply_score,
)

NAN = math.nan
DAY0 = np.datetime64("2026-01-01", "D")


def _times(n: int) -> np.ndarray:
    return DAY0 + np.arange(n)


# =============================================================================================
# Supply / demand
# =============================================================================================


def _supply_inputs(
    traded_value: list[float], flows: dict[str, list[float]], instrument: str = "000001"
) -> ScanInputs:
    n = len(traded_value)
    ones = np.full(n, 10_000.0)
    candles = Candles.from_columns(
        _times(n),
        unit="D",
        open=ones,
        high=ones,
        low=ones,
        close=ones,
        volume=np.full(n, 1_000.0),
        traded_value=traded_value,
    )
    return ScanInputs(
        instrument=instrument,
        candles=candles,
        flows={k: np.asarray(v, dtype=float) for k, v in flows.items()},
    )


# 25 sessions; traded value 1e10 KRW a day, 2e10 on the last 5.
TV_25 = [1e10] * 20 + [2e10] * 5
# foreign: 1e8 a day, then the last 5 days 1e9, 2e9, −5e8, 1e9, 5e8.
FOREIGN_25 = [1e8] * 20 + [1e9, 2e9, -5e8, 1e9, 5e8]
# institution: 2e8 a day, then −1e9 on each of the last 5 days.
INSTITUTION_25 = [2e8] * 20 + [-1e9] * 5


def test_supply_window_sums_ratios_streaks_and_score():
    s = supply_demand(
        _supply_inputs(
            TV_25, {"foreign_net_krw": FOREIGN_25, "institution_net_krw": INSTITUTION_25}
        )
    )
    # 5 days: foreign 1e9 + 2e9 − 5e8 + 1e9 + 5e8 = 4e9; TV 5 × 2e10 = 1e11.
    assert s.foreign_5d_krw == pytest.approx(4e9, rel=1e-12)
    assert s.institution_5d_krw == pytest.approx(-5e9, rel=1e-12)
    assert s.traded_value_5d_krw == pytest.approx(1e11, rel=1e-12)
    # 20 days: the last 5 plus 15 earlier days: foreign 15 × 1e8 + 4e9 = 5.5e9,
    # institution 15 × 2e8 − 5e9 = −2e9; TV 15 × 1e10 + 1e11 = 2.5e11.
    assert s.foreign_20d_krw == pytest.approx(5.5e9, rel=1e-12)
    assert s.institution_20d_krw == pytest.approx(-2e9, rel=1e-12)
    assert s.traded_value_20d_krw == pytest.approx(2.5e11, rel=1e-12)
    assert s.foreign_flow_5 == pytest.approx(0.04, rel=1e-12)
    assert s.institution_flow_5 == pytest.approx(-0.05, rel=1e-12)
    assert s.foreign_flow_20 == pytest.approx(0.022, rel=1e-12)
    assert s.institution_flow_20 == pytest.approx(-0.008, rel=1e-12)
    # foreign: +5e8, +1e9, then −5e8 → 2 buying days; institution: 5 selling days.
    assert (s.foreign_buy_days, s.foreign_sell_days) == (2, 0)
    assert (s.institution_buy_days, s.institution_sell_days) == (0, 5)
    # 100 × [0.20·(1+0.4)/2 + 0.20·(1−0.5)/2 + 0.15·(1+0.22)/2 + 0.15·(1−0.08)/2
    #        + 0.15·(1+2/5)/2 + 0.15·(1−5/5)/2] = 14 + 5 + 9.15 + 6.9 + 10.5 + 0 = 45.55
    assert s.score == pytest.approx(45.55, abs=1e-9)
    assert s.label == "neutral"
    assert s.known
    assert s.incomplete_windows == ()
    assert s.instrument == "000001"
    assert s.date == "2026-01-25"


@pytest.mark.parametrize(
    ("foreign_tail", "expected_buy", "expected_sell"),
    [
        ([1.0, 1.0, 1.0, 1.0, 1.0], 25, 0),  # every day net buying (20 earlier days too)
        ([1.0, 1.0, NAN, 1.0, 1.0], 2, 0),  # a missing day breaks the streak
        ([1.0, 1.0, 1.0, 1.0, NAN], 0, 0),  # the scan day unknown: no streak
        ([1.0, -1.0, -1.0, 0.0, 2.0], 1, 0),  # a zero day breaks a buying streak
        ([1.0, 1.0, -1.0, -2.0, -3.0], 0, 3),
    ],
)
def test_supply_streaks(foreign_tail, expected_buy, expected_sell):
    s = supply_demand(_supply_inputs([1e10] * 25, {"foreign_net_krw": [1.0] * 20 + foreign_tail}))
    assert (s.foreign_buy_days, s.foreign_sell_days) == (expected_buy, expected_sell)


def test_supply_missing_day_flags_window_and_makes_score_unknown():
    foreign = [1e8] * 22 + [NAN] + [1e8] * 2
    s = supply_demand(
        _supply_inputs([1e10] * 25, {"foreign_net_krw": foreign, "institution_net_krw": [0.0] * 25})
    )
    assert math.isnan(s.foreign_5d_krw)
    assert math.isnan(s.foreign_flow_5)
    assert math.isnan(s.foreign_20d_krw)
    assert set(s.incomplete_windows) == {"foreign_5d", "foreign_20d"}
    assert s.institution_5d_krw == 0.0
    assert not s.known
    assert s.score is None
    assert s.label == "unknown"
    assert any("unknown on 1 of the last 20" in note for note in s.notes)

    # Allowing one missing day: sums and ratios over the known days (flagged all the same).
    relaxed = supply_demand(
        _supply_inputs(
            [1e10] * 25, {"foreign_net_krw": foreign, "institution_net_krw": [0.0] * 25}
        ),
        SupplyParams(max_missing_days=1),
    )
    assert relaxed.foreign_5d_krw == pytest.approx(4e8, rel=1e-12)
    assert relaxed.foreign_flow_5 == pytest.approx(4e8 / 4e10, rel=1e-12)  # 4 known days
    assert relaxed.foreign_flow_20 == pytest.approx(19e8 / 19e10, rel=1e-12)
    assert "foreign_5d" in relaxed.incomplete_windows
    assert relaxed.known
    assert relaxed.score is not None


def test_supply_shares_only_is_kept_out_of_krw():
    # KRW flows unknown on the last 3 days, shares known: the 5-day KRW figure is unknown and
    # is NOT the shares sum (3 × 50,000 shares) nor a mix of both.
    krw = [1e9] * 22 + [NAN, NAN, NAN]
    shares = [5e4] * 25
    s = supply_demand(
        _supply_inputs(
            [1e10] * 25,
            {
                "foreign_net_krw": krw,
                "foreign_net_shares": shares,
                "institution_net_krw": [0.0] * 25,
            },
        )
    )
    assert math.isnan(s.foreign_5d_krw)
    assert math.isnan(s.foreign_flow_5)
    assert s.foreign_buy_days == 0
    assert not s.known
    shares_notes = [note for note in s.notes if "shares only" in note]
    assert len(shares_notes) == 1
    assert "3 of the last 20" in shares_notes[0]
    assert "not converted" in shares_notes[0]


def test_supply_only_shares_everywhere_is_unknown_in_krw():
    s = supply_demand(
        _supply_inputs(
            [1e10] * 25,
            {"foreign_net_shares": [1e4] * 25, "institution_net_shares": [1e4] * 25},
        )
    )
    for value in (s.foreign_5d_krw, s.institution_5d_krw, s.foreign_20d_krw):
        assert math.isnan(value)
    assert not s.known
    assert sum("shares only" in note for note in s.notes) == 2


def test_supply_short_history_and_nothing_traded():
    short = supply_demand(
        _supply_inputs(
            [1e10] * 10, {"foreign_net_krw": [1e8] * 10, "institution_net_krw": [1e8] * 10}
        )
    )
    assert short.foreign_5d_krw == pytest.approx(5e8, rel=1e-12)
    assert math.isnan(short.foreign_20d_krw)
    assert math.isnan(short.traded_value_20d_krw)
    assert not short.known
    assert any("Only 10 sessions" in note for note in short.notes)

    halted = supply_demand(
        _supply_inputs(
            [0.0] * 25, {"foreign_net_krw": [0.0] * 25, "institution_net_krw": [0.0] * 25}
        )
    )
    assert halted.foreign_5d_krw == 0.0
    assert math.isnan(halted.foreign_flow_5)  # 0 / 0 traded: unknown, not 0
    assert not halted.known


@pytest.mark.parametrize(
    ("flows", "streaks", "expected"),
    [
        ((0.0, 0.0, 0.0, 0.0), (0, 0), 50.0),
        ((0.10, 0.10, 0.10, 0.10), (5, 5), 100.0),  # saturation exactly at the scales
        ((0.5, 0.7, 0.2, 0.3), (9, 12), 100.0),  # clipped beyond them
        ((-0.10, -0.10, -0.10, -0.10), (-5, -5), 0.0),
        ((-1.0, -1.0, -1.0, -1.0), (-30, -30), 0.0),
        ((0.05, 0.0, 0.0, 0.0), (0, 0), 55.0),  # 0.20 × 50 × 0.5
        ((0.0, 0.0, 0.0, -0.05), (0, 0), 46.25),  # 0.15 × 50 × −0.5
        ((0.0, 0.0, 0.0, 0.0), (1, 0), 51.5),  # one buying day: 0.15 × 50 / 5
        ((0.0, 0.0, 0.0, 0.0), (0, -5), 42.5),
    ],
)
def test_supply_score_mapping(flows, streaks, expected):
    assert supply_score(flows, streaks) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("score", "label"),
    [
        (100.0, "strong accumulation"),
        (80.0, "strong accumulation"),
        (79.99, "accumulation"),
        (60.0, "accumulation"),
        (59.99, "neutral"),
        (40.0, "neutral"),
        (39.99, "distribution"),
        (20.0, "distribution"),
        (19.99, "strong distribution"),
        (0.0, "strong distribution"),
        (None, "unknown"),
    ],
)
def test_supply_labels(score, label):
    assert supply_label(score) == label


def test_supply_validation():
    with pytest.raises(ValidationError):
        supply_score((NAN, 0.0, 0.0, 0.0), (0, 0))
    with pytest.raises(ValidationError):
        SupplyParams(short_window=10, long_window=5)
    with pytest.raises(ValidationError):
        SupplyParams(weight_flow_short=0.5)


# =============================================================================================
# Closing bet
# =============================================================================================
#
# A 30-bar history: 29 quiet days (open = close = 10,000 KRW, high 10,100, low 9,900, volume
# 1,000,000 shares, traded value 100억 KRW), then the scan day described by ``Day``. The
# indicator series are given as precomputed values so each component is set by hand:
#   high_52w  20,000 (close not above it)   → new-high point only with ``new_high``
#   sma_20 9,000 < sma_60 10,000            → trend point only with ``trend``
#   BB width 0.30 everywhere, today's upper band 30,000 → consolidation only with ``squeeze``

PREV_CLOSE = 10_000.0
PREV_VOLUME = 1_000_000.0


@dataclass(frozen=True)
class Day:
    """The scan day. Default: +5.00% (10,000 → 10,500), body 500, upper wick 200 (≤ 0.5 ×
    body, but not < 0.3 × body: no candle point), volume ratio exactly 2, 600억 KRW."""

    open: float = 10_000.0
    high: float = 10_700.0
    low: float = 10_000.0
    close: float = 10_500.0
    volume: float = 2_000_000.0
    traded_value: float = 60_000_000_000.0


@dataclass(frozen=True)
class Setup:
    day: Day = field(default_factory=Day)
    news: int | None = 1
    new_high: bool = False
    trend: bool = False
    squeeze: str = ""  # "", "ratio" (0.20 vs 0.30), "narrow" (0.14 vs 0.14), "loose" (0.25 vs 0.30)
    foreign: float | None = None  # KRW net buying every day (None: no supply given)
    institution: float | None = None
    bars: int = 30


def _inputs(setup: Setup) -> tuple[ScanInputs, SupplyDemand | None]:
    n = setup.bars
    t = n - 1
    d = setup.day

    def col(quiet: float, today: float) -> np.ndarray:
        a = np.full(n, quiet)
        a[t] = today
        return a

    candles = Candles.from_columns(
        _times(n),
        unit="D",
        open=col(PREV_CLOSE, d.open),
        high=col(10_100.0, d.high),
        low=col(9_900.0, d.low),
        close=col(PREV_CLOSE, d.close),
        volume=col(PREV_VOLUME, d.volume),
        traded_value=col(1e10, d.traded_value),
    )
    widths = np.full(n, 0.30)
    if setup.squeeze:
        recent, older = {"ratio": (0.20, 0.30), "narrow": (0.14, 0.14), "loose": (0.25, 0.30)}[
            setup.squeeze
        ]
        widths[:] = older
        widths[t - 5 : t] = recent
    middle = np.full(n, 10_000.0)
    upper = middle * (1 + widths / 2)
    lower = middle * (1 - widths / 2)
    upper[t] = 10_100.0 if setup.squeeze else 30_000.0
    precomputed = {
        "high_52w": np.full(n, 10_400.0 if setup.new_high else 20_000.0),
        "sma_20": np.full(n, 10_200.0 if setup.trend else 9_000.0),
        "sma_60": np.full(n, 10_100.0 if setup.trend else 10_000.0),
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
    }
    flows = {}
    if setup.foreign is not None:
        flows["foreign_net_krw"] = np.full(n, setup.foreign)
    if setup.institution is not None:
        flows["institution_net_krw"] = np.full(n, setup.institution)
    inputs = ScanInputs(
        instrument="123456",
        candles=candles,
        precomputed=precomputed,
        flows=flows,
        news_score=setup.news,
    )
    supply = supply_demand(inputs) if flows else None
    return inputs, supply


def _run(setup: Setup, params: ClosingBetParams | None = None) -> ClosingBet:
    inputs, supply = _inputs(setup)
    return closing_bet(inputs, supply, params)


def test_default_day_passes_every_filter_and_scores_by_hand():
    r = _run(Setup())
    assert r.passed_filters
    assert r.failed_filters == ()
    assert r.change_pct == 5.0
    assert r.volume_ratio == 2.0
    assert r.traded_value_krw == 60_000_000_000.0
    # news 1, traded value 600억 < 1000억 → 0, no chart/candle/consolidation/supply;
    # bonus: volume ratio 2 → 1, change 5% → 1.
    assert r.components == ScoreComponents(news=1, volume_bonus=1, change_bonus=1)
    assert (r.base, r.bonus, r.total) == (1, 2, 3)
    assert r.grade is None  # passed, but 3 < 8 (C): dropped
    assert r.exit_plan is None
    assert not r.candidate
    assert r.news == "analysed"
    assert any("dropped" in reason for reason in r.reasons)


@pytest.mark.parametrize(
    ("name", "setup"),
    [
        ("traded_value", Setup(day=Day(traded_value=49_999_999_999.0))),
        ("traded_value", Setup(day=Day(traded_value=NAN))),
        ("change", Setup(day=Day(close=10_499.0, high=10_499.0))),  # +4.99%
        ("change", Setup(day=Day(close=13_000.0, high=13_000.0))),  # +30% (limit-up)
        ("change", Setup(day=Day(open=9_000.0, close=9_500.0, high=9_500.0, low=9_000.0))),
        ("news", Setup(news=0)),
        ("upper_wick", Setup(day=Day(high=10_751.0))),  # wick 251 > 0.5 × 500
        ("upper_wick", Setup(day=Day(open=10_500.0, close=10_500.0, high=10_501.0))),  # doji
        ("volume_ratio", Setup(day=Day(volume=1_999_999.0))),
    ],
)
def test_each_hard_filter_fails_alone(name, setup):
    r = _run(setup)
    assert r.failed_filters == (name,)
    assert not r.passed_filters
    assert r.grade is None
    assert r.exit_plan is None
    assert any(f"failed {name}" in reason for reason in r.reasons)


@pytest.mark.parametrize(
    "setup",
    [
        Setup(day=Day(traded_value=50_000_000_000.0)),  # exactly 500억
        Setup(day=Day(close=12_990.0, high=12_990.0)),  # exactly +29.9%
        Setup(day=Day(high=10_750.0)),  # wick exactly 0.5 × body
        Setup(day=Day(volume=2_000_000.0)),  # ratio exactly 2
        Setup(news=1),
        Setup(day=Day(open=11_000.0, high=11_000.0, close=10_500.0)),  # bearish, no wick
    ],
)
def test_hard_filter_boundaries_pass(setup):
    assert _run(setup).failed_filters == ()


def test_every_filter_can_fail_at_once_in_stable_order():
    r = _run(
        Setup(
            news=0,
            day=Day(close=10_400.0, high=10_800.0, volume=1_000_000.0, traded_value=1e9),
        )
    )
    assert r.failed_filters == ("traded_value", "change", "news", "upper_wick", "volume_ratio")


@pytest.mark.parametrize(
    ("setup", "components", "total", "grade"),
    [
        # S at its boundaries: TV exactly 1조 (3), news 1, chart 2, supply 2, bonus 2 → 10.
        (
            Setup(
                day=Day(traded_value=1e12), new_high=True, trend=True, foreign=1e9, institution=1e9
            ),
            ScoreComponents(1, 3, 2, 0, 0, 2, 1, 1),
            10,
            "S",
        ),
        # one point short of S (institution selling) → 9, TV ≥ 5000억 → A.
        (
            Setup(
                day=Day(traded_value=1e12), new_high=True, trend=True, foreign=1e9, institution=-1e9
            ),
            ScoreComponents(1, 3, 2, 0, 0, 1, 1, 1),
            9,
            "A",
        ),
        # total 10 but TV one won below 1조 (2 points; news 2 makes up) → A.
        (
            Setup(
                day=Day(traded_value=999_999_999_999.0),
                news=2,
                new_high=True,
                trend=True,
                foreign=1e9,
                institution=1e9,
            ),
            ScoreComponents(2, 2, 2, 0, 0, 2, 1, 1),
            10,
            "A",
        ),
        # A at its boundaries: TV exactly 5000억 (2), news 1, chart 2, candle 1 (wick 100),
        # bonus 2 → 8.
        (
            Setup(day=Day(traded_value=5e11, high=10_600.0), new_high=True, trend=True),
            ScoreComponents(1, 2, 2, 1, 0, 0, 1, 1),
            8,
            "A",
        ),
        # the same without the candle point → 7 → B.
        (
            Setup(day=Day(traded_value=5e11), new_high=True, trend=True),
            ScoreComponents(1, 2, 2, 0, 0, 0, 1, 1),
            7,
            "B",
        ),
        # total 8 but TV one won below 5000억 (1 point; news 2 makes up) → B.
        (
            Setup(
                day=Day(traded_value=499_999_999_999.0, high=10_600.0),
                news=2,
                new_high=True,
                trend=True,
            ),
            ScoreComponents(2, 1, 2, 1, 0, 0, 1, 1),
            8,
            "B",
        ),
        # B at its boundaries: TV exactly 1000억 (1), news 1, chart 2, bonus 2 → 6.
        (
            Setup(day=Day(traded_value=1e11), new_high=True, trend=True),
            ScoreComponents(1, 1, 2, 0, 0, 0, 1, 1),
            6,
            "B",
        ),
        # one point short (trend only) → 5: dropped.
        (
            Setup(day=Day(traded_value=1e11), trend=True),
            ScoreComponents(1, 1, 1, 0, 0, 0, 1, 1),
            5,
            None,
        ),
        # TV below 1000억 (0 points), news 3, chart 2, candle 1, bonus 2 → 8: C.
        (
            Setup(
                day=Day(traded_value=99_999_999_999.0, high=10_600.0),
                news=3,
                new_high=True,
                trend=True,
            ),
            ScoreComponents(3, 0, 2, 1, 0, 0, 1, 1),
            8,
            "C",
        ),
        # the same with news 2 → 7: dropped (C needs 8).
        (
            Setup(
                day=Day(traded_value=99_999_999_999.0, high=10_600.0),
                news=2,
                new_high=True,
                trend=True,
            ),
            ScoreComponents(2, 0, 2, 1, 0, 0, 1, 1),
            7,
            None,
        ),
    ],
)
def test_grades_at_their_boundaries(setup, components, total, grade):
    r = _run(setup)
    assert r.passed_filters
    assert r.components == components
    assert r.total == total
    assert r.grade == grade
    assert (r.exit_plan is None) == (grade is None)
    if grade is not None:
        assert r.exit_plan is not None
        assert r.exit_plan.grade == grade


def test_strong_day_scores_everything_with_an_exact_exit_plan():
    # +25% (10,000 → 12,500), body 2,500, upper wick 100, no lower wick, volume 10× the
    # baseline, 1.2조 KRW, news 3, new high, MA trend, BB squeeze breakout, both investors buying.
    r = _run(
        Setup(
            day=Day(
                open=10_000.0,
                high=12_600.0,
                low=10_000.0,
                close=12_500.0,
                volume=10_000_000.0,
                traded_value=1.2e12,
            ),
            news=3,
            new_high=True,
            trend=True,
            squeeze="ratio",
            foreign=5e9,
            institution=1e9,
        )
    )
    assert r.passed_filters
    assert r.change_pct == 25.0
    assert r.volume_ratio == 10.0
    assert r.components == ScoreComponents(
        news=3,
        traded_value=3,
        chart=2,
        candle=1,
        consolidation=1,
        supply=2,
        volume_bonus=4,
        change_bonus=5,
    )
    assert (r.base, r.bonus, r.total) == (12, 9, 21)
    assert r.grade == "S"
    plan = r.exit_plan
    assert plan is not None
    assert plan.entry_price == 12_500.0
    assert plan.take_profit_price == pytest.approx(13_125.0, rel=1e-12)  # +5%
    assert plan.stop_loss_price == pytest.approx(12_125.0, rel=1e-12)  # −3%
    assert plan.gap_up_take_profit_price == pytest.approx(12_875.0, rel=1e-12)  # +3%
    assert plan.gap_down_stop_price == pytest.approx(12_250.0, rel=1e-12)  # −2%
    assert plan.time_stop == "10:00 KST next session"
    assert plan.entry_window == "15:00–15:20 KST"
    assert plan.risk_fraction == pytest.approx(0.0075, rel=1e-12)  # 0.5% × 1.5
    assert plan.position_fraction == pytest.approx(0.25, rel=1e-12)  # 0.0075 / 0.03


@pytest.mark.parametrize(
    ("setup", "risk", "position"),
    [
        (Setup(day=Day(traded_value=5e11, high=10_600.0), new_high=True, trend=True), 0.005, 1 / 6),
        (Setup(day=Day(traded_value=1e11), new_high=True, trend=True), 0.0025, 1 / 12),
        (
            Setup(
                day=Day(traded_value=99_999_999_999.0, high=10_600.0),
                news=3,
                new_high=True,
                trend=True,
            ),
            0.0,
            0.0,
        ),
    ],
    ids=["A", "B", "C"],
)
def test_sizing_by_grade(setup, risk, position):
    plan = _run(setup).exit_plan
    assert plan is not None
    assert plan.entry_price == 10_500.0
    assert plan.take_profit_price == pytest.approx(11_025.0, rel=1e-12)
    assert plan.stop_loss_price == pytest.approx(10_185.0, rel=1e-12)
    assert plan.risk_fraction == pytest.approx(risk, abs=1e-15)
    assert plan.position_fraction == pytest.approx(position, abs=1e-15)


@pytest.mark.parametrize(
    ("day", "candle"),
    [
        (Day(high=10_600.0), 1),  # body 500, wick 100 < 150, 500 ≥ 2 × 100
        (Day(high=10_649.0), 1),  # wick 149 < 150
        (Day(high=10_650.0), 0),  # wick 150 = 0.3 × body: not short
        (Day(high=10_500.0, low=9_749.0), 0),  # lower wick 251: body 500 < 2 × 251
        (Day(high=10_500.0, low=9_750.0), 1),  # 500 ≥ 2 × 250
        (Day(open=11_000.0, high=11_000.0, close=10_500.0), 0),  # bearish
    ],
)
def test_candle_component(day, candle):
    assert _run(Setup(day=day)).components.candle == candle


@pytest.mark.parametrize(
    ("squeeze", "points"),
    [
        ("ratio", 1),  # 0.20 < 0.8 × 0.30
        ("narrow", 1),  # 0.14 < 0.15
        ("loose", 0),  # 0.25 ≥ 0.24 and ≥ 0.15
        ("", 0),  # no contraction and close below the upper band
    ],
)
def test_consolidation_component(squeeze, points):
    assert _run(Setup(squeeze=squeeze)).components.consolidation == points


def test_consolidation_needs_the_breakout():
    inputs, _ = _inputs(Setup(squeeze="ratio"))
    upper = inputs.precomputed["bb_upper"].copy()
    upper[-1] = 10_500.0  # close not above the band
    inputs = ScanInputs(
        inputs.instrument,
        inputs.candles,
        precomputed={**inputs.precomputed, "bb_upper": upper},
        news_score=1,
    )
    r = closing_bet(inputs)
    assert r.components.consolidation == 0
    assert any("contracted" in reason and "not above" in reason for reason in r.reasons)


def test_no_news_analysed_skips_the_filter_and_scores_zero():
    r = _run(Setup(news=None, day=Day(traded_value=1e12), new_high=True, trend=True))
    assert r.news == "no news analysed"
    assert r.passed_filters
    assert "news" not in r.failed_filters
    assert r.components.news == 0
    # TV 3 + chart 2 + bonus 2 = 7 → B
    assert r.total == 7
    assert r.grade == "B"
    assert any("No news analysed" in reason for reason in r.reasons)


@pytest.mark.parametrize(
    ("foreign", "institution", "points"),
    [(1e9, 1e9, 2), (1e9, 0.0, 1), (0.0, -1e9, 0), (-1e9, 1.0, 1)],
)
def test_supply_component(foreign, institution, points):
    # every day's net buying in KRW; the component reads the 5-day sums (> 0 scores).
    assert _run(Setup(foreign=foreign, institution=institution)).components.supply == points


def test_supply_unknown_in_krw_scores_zero():
    inputs, _ = _inputs(Setup())
    n = len(inputs)
    inputs = ScanInputs(
        inputs.instrument,
        inputs.candles,
        precomputed=inputs.precomputed,
        flows={"foreign_net_shares": np.full(n, 1e6), "institution_net_shares": np.full(n, 1e6)},
        news_score=1,
    )
    r = closing_bet(inputs, supply_demand(inputs))
    assert r.components.supply == 0
    assert sum("unknown" in reason and "Supply" in reason for reason in r.reasons) == 2
    assert _run(Setup()).components.supply == 0  # no supply at all
    assert any("no flow data" in reason for reason in _run(Setup()).reasons)


@pytest.mark.parametrize(
    ("setup", "name", "says"),
    [
        (Setup(bars=20), "history", "Only 20 bars"),
        (Setup(day=Day(volume=0.0, traded_value=0.0)), "halted", "halted"),
        (Setup(day=Day(open=NAN, high=NAN, low=NAN, close=NAN, volume=NAN)), "missing_bar", "NaN"),
        (Setup(day=Day(high=NAN)), "missing_bar", "NaN"),
    ],
)
def test_non_candidates_with_a_reason(setup, name, says):
    r = _run(setup)
    assert r.failed_filters == (name,)
    assert name in FILTERS
    assert not r.passed_filters
    assert r.grade is None
    assert r.total == 0
    assert any(says in reason for reason in r.reasons)


def test_empty_history_is_not_an_error():
    r = closing_bet(ScanInputs("000000", Candles.empty(), news_score=2))
    assert r.failed_filters == ("history",)
    assert r.date is None


def test_missing_and_halted_days_inside_the_history():
    # 32 bars; bar 30 (the day before the scan) missing, bar 27 halted (volume 0, close
    # carried), bars 0–8 with 9× the volume. The previous close is bar 29's (10,000 → +5%);
    # the 20 traded days before the scan day are bars 9–26, 28, 29, all 1,000,000 shares,
    # so 4,000,000 shares today is a ratio of exactly 4 (counting the missing and halted
    # bars as sessions would have pulled bars 11–30 in instead, or bars 0–8 with 9e6).
    n = 32
    open_ = np.full(n, 10_000.0)
    high = np.full(n, 10_100.0)
    low = np.full(n, 9_900.0)
    close = np.full(n, 10_000.0)
    volume = np.full(n, 1_000_000.0)
    volume[:9] = 9_000_000.0
    traded = np.full(n, 1e10)
    for a in (open_, high, low, close, volume, traded):
        a[30] = NAN
    volume[27] = 0.0
    traded[27] = 0.0
    open_[-1], high[-1], low[-1], close[-1] = 10_000.0, 10_600.0, 10_000.0, 10_500.0
    volume[-1], traded[-1] = 4_000_000.0, 1e11
    candles = Candles.from_columns(
        _times(n),
        unit="D",
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
        traded_value=traded,
    )
    r = closing_bet(ScanInputs("000777", candles, news_score=2))
    assert r.change_pct == 5.0
    assert r.volume_ratio == 4.0
    assert r.passed_filters
    # computed series: 32 bars, no 52w high (→ reason), MA60 unknown; BB widths known for
    # bars 19–29 only (11 < 19 needed) → no consolidation point.
    assert r.components == ScoreComponents(
        news=2, traded_value=1, candle=1, volume_bonus=2, change_bonus=1
    )
    assert r.total == 7
    assert r.grade == "B"
    assert any("52-week high unknown" in reason for reason in r.reasons)
    assert any("MA60 unknown" in reason for reason in r.reasons)
    assert any("Bollinger width needs" in reason for reason in r.reasons)


def test_too_few_traded_days_is_history():
    # 25 bars but 6 of the 24 before the scan day are missing → only 18 traded days.
    inputs, _ = _inputs(Setup(bars=25))
    volume = inputs.candles.volume.copy()
    volume[3:9] = NAN
    candles = Candles.from_columns(
        inputs.candles.time,
        unit="D",
        open=inputs.candles.open,
        high=inputs.candles.high,
        low=inputs.candles.low,
        close=inputs.candles.close,
        volume=volume,
        traded_value=inputs.candles.traded_value,
    )
    r = closing_bet(ScanInputs("000888", candles, news_score=1))
    assert r.failed_filters == ("history",)
    assert any("Only 18 traded days" in reason for reason in r.reasons)


def test_long_flat_history_then_breakout_with_computed_indicators():
    # 260 bars flat at 10,000 (high 10,100), then 10,000 → 11,000 (+10%) on 3× volume and
    # 6000억 KRW. Computed: prior 52w high 10,100 < 11,000 (+1); MA20 10,050 > MA60 ≈ 10,016.7
    # and close > MA20 (+1); flat band width 0 before (< 0.15) and upper band ≈ 10,485.9 <
    # 11,000 (+1); candle: body 1,000, no wicks (+1).
    n = 261
    open_ = np.full(n, 10_000.0)
    high = np.full(n, 10_100.0)
    low = np.full(n, 9_900.0)
    close = np.full(n, 10_000.0)
    volume = np.full(n, 1_000_000.0)
    traded = np.full(n, 1e10)
    high[-1], low[-1], close[-1], volume[-1], traded[-1] = 11_000.0, 10_000.0, 11_000.0, 3e6, 6e11
    candles = Candles.from_columns(
        _times(n),
        unit="D",
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
        traded_value=traded,
    )
    r = closing_bet(ScanInputs("000999", candles, news_score=2))
    # news 2, TV 2, chart 2, candle 1, consolidation 1; bonus: ratio 3 → 2, +10% → 2.
    assert r.components == ScoreComponents(2, 2, 2, 1, 1, 0, 2, 2)
    assert (r.base, r.bonus, r.total) == (8, 4, 12)
    assert r.grade == "A"


def test_validation_errors():
    inputs, supply = _inputs(Setup(foreign=1e9, institution=1e9))
    with pytest.raises(ValidationError):
        closing_bet(ScanInputs("123456", inputs.candles, news_score=4))
    other = supply_demand(
        ScanInputs("654321", inputs.candles, flows={"foreign_net_krw": np.zeros(len(inputs))})
    )
    with pytest.raises(ValidationError):
        closing_bet(inputs, other)
    with pytest.raises(ValidationError):
        ClosingBetParams(min_change_pct=30.0, max_change_pct=5.0)
    with pytest.raises(ValidationError):
        ClosingBetParams(change_bonus=((5.0, 1), (10.0, 2)))
    with pytest.raises(ValidationError):
        ClosingBetParams(stop_loss_pct=0.0)
    assert supply is not None


def test_params_change_the_outcome():
    # the same day, a stricter volume filter fails it; a looser change floor passes +4.99%.
    assert _run(Setup(), ClosingBetParams(min_volume_ratio=2.5)).failed_filters == ("volume_ratio",)
    loose = ClosingBetParams(min_change_pct=4.0)
    assert _run(Setup(day=Day(close=10_499.0, high=10_499.0)), loose).failed_filters == ()
