"""Closing-price betting (종가베팅), the V2 engine (``docs/domain.md`` §3).

Buy a strong day's stock at 15:00–15:20 KST (before the 15:20–15:30 closing auction) and sell
it the next morning. For one instrument on its scan day (the last candle):

1. **Hard filters** (all must pass; stable names in :data:`FILTERS`): traded value ≥ 500억
   KRW; 5% ≤ change ≤ 29.9%; news score > 0 (skipped — not failed — when no news was
   analysed); upper wick ≤ 0.5 × body; volume ratio ≥ 2. Before them, data preconditions:
   enough history (``"history"``), a scan-day bar present (``"missing_bar"``) and traded
   (``"halted"``); when one fails, nothing else is evaluated and nothing is scored.
2. **Base score 0–12**: news 0–3, traded value 0–3, chart 0–2, candle 0–1, consolidation 0–1,
   supply 0–2. **Bonus 0–9**: volume-ratio tiers 0–4, change tiers 0–5. Total = base + bonus.
3. **Grade** (only when every filter passed): S total ≥ 10 ∧ TV ≥ 1조; A ≥ 8 ∧ ≥ 5000억;
   B ≥ 6 ∧ ≥ 1000억; else C when total ≥ 8; else none (dropped).
4. **Exit plan** for a graded candidate: entry at today's close, TP +5%, SL −3%, gap-up TP +3%,
   gap-down stop −2%, time stop 10:00 KST next session; risk R = 0.5% of capital × the grade
   multiplier (S 1.5, A 1.0, B 0.5, C 0).

Decisions where §3 (or the V2 source it summarises) is ambiguous:

* **Change** = close / previous close − 1, the previous close being the last bar before the
  scan day with a close (a halted day's carried close counts), in percent, rounded to 1e-10
  points so that a boundary such as exactly +5% compares as written.
* **Volume ratio** = today's volume / the mean volume of the 20 most recent *traded* bars
  before the scan day (present, volume > 0): missing bars and halted (zero-volume) days are
  not sessions of this stock and would otherwise drag the baseline towards zero. Fewer than
  20 such bars → not a candidate (``"history"``). Hence at least 21 bars.
* **Upper-wick filter** uses the absolute body ``|close − open|`` (as V2 does) but applies
  the inequality as written also when the body is 0: a doji passes only without an upper
  wick (V2 skipped the check for a zero body).
* **Chart +1 "close > 52-week high"**: ``high_52w`` includes the scan day's own high, so the
  close can never exceed it; the scan day's close is compared with the 52-week high as of the
  previous bar (a breakout to a new high). Unknown (fewer than 252 bars) → no point, with a
  reason. **Chart +1 "MA20 > MA60 ∧ C > MA20"** uses ``sma_20``/``sma_60`` on the scan day.
* **Candle 0–1**: V2's "bull body > 2 × range" can never hold; its own comment reads "the rise
  is at least twice the fall". Implemented as: bullish (close > open), body ≥ 2 × (upper +
  lower wick) — i.e. the body is at least 2/3 of the range — and upper wick < 0.3 × body, on
  the scan day's candle (V2 looked at any of the last 4 candles; the bet is on today's).
* **Consolidation 0–1** (V2 ``_score_timing``): BB(20, 2) width = (upper − lower) / middle;
  contracted when the mean width of the 5 bars before the scan day is < 0.8 × the mean of the
  14 bars before those, or < 0.15; the point needs contraction and close > upper band on the
  scan day. Missing width values (short history) → no point, with a reason.
* **Supply 0–2** from the :class:`~quant.scans.supply.SupplyDemand` passed in: +1 foreign
  5-day net KRW > 0, +1 institution 5-day net KRW > 0. ``None`` or unknown → no point, with
  a reason (shares are never used here).
* **Grade C**: §3's "else C (≥8) / drop" follows V2's ``determine_grade``: a candidate that
  passed every filter and is not S/A/B is C when its total ≥ 8, otherwise dropped (grade
  ``None``). With the default thresholds C is exactly 500억 ≤ TV < 1000억 ∧ total ≥ 8. C's size
  multiplier is 0: a watch-list entry, no position. The newer V2 ``grade_decider.py`` extra
  B conditions (change ≥ 3%, both 5-day flows > 0) are not applied.
* **Gap rules**: the gap-up take-profit price is entry × 1.03 — if the next session opens at
  or above it, sell at the open; the gap-down stop is entry × 0.98 — if it opens at or below,
  sell at the open; otherwise TP +5% / SL −3% until the 10:00 KST time stop. Prices are not
  rounded to KRX tick sizes.
* **Sizing**: ``risk_fraction`` = R × multiplier (the fraction of capital at risk, S 0.75%);
  ``position_fraction`` = risk_fraction / stop-loss distance (S 0.0075 / 0.03 = 25% of
  capital), capped at 1.

Cost: scalar math on the last bars of arrays the scan already holds (the indicator series
come precomputed from the cache); no pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from quant.errors import ValidationError
from quant.scans.inputs import ScanInputs
from quant.scans.supply import SupplyDemand

__all__ = [
    "FILTERS",
    "ClosingBet",
    "ClosingBetParams",
    "ExitPlan",
    "Grade",
    "ScoreComponents",
    "closing_bet",
]

Grade = Literal["S", "A", "B", "C"]
NewsStatus = Literal["analysed", "no news analysed"]

#: Names in :attr:`ClosingBet.failed_filters`: data preconditions, then the hard filters.
FILTERS: tuple[str, ...] = (
    "history",
    "missing_bar",
    "halted",
    "traded_value",
    "change",
    "news",
    "upper_wick",
    "volume_ratio",
)

_EOK = 100_000_000.0  # 1억 KRW
_JO = 1_000_000_000_000.0  # 1조 KRW


@dataclass(frozen=True)
class ClosingBetParams:
    """Every threshold of the V2 engine, defaults as §3 documents them.

    Units: ``*_krw`` in KRW (500억 = 50_000_000_000, 1조 = 1_000_000_000_000), ``*_pct`` of
    the change in percent (5.0 = +5%), exit ``*_pct`` as fractions of the entry (0.05 = 5%),
    ratios dimensionless. Tier tables are ``(floor, points)`` pairs, highest floor first; the
    first floor reached gives its points.

    Raises:
        quant.errors.ValidationError: ``volume_lookback`` < 1, ``min_change_pct`` >
            ``max_change_pct``, a negative threshold, a tier table not ordered highest first,
            grade traded-value floors not decreasing S → A → B, or exit/sizing fractions
            outside (0, 1).
    """

    # hard filters
    min_traded_value_krw: float = 50_000_000_000.0
    min_change_pct: float = 5.0
    max_change_pct: float = 29.9
    min_news_score: int = 1
    max_upper_wick_to_body: float = 0.5
    min_volume_ratio: float = 2.0
    volume_lookback: int = 20
    # base score
    traded_value_points: tuple[tuple[float, int], ...] = (
        (1_000_000_000_000.0, 3),
        (500_000_000_000.0, 2),
        (100_000_000_000.0, 1),
    )
    candle_min_body_to_wicks: float = 2.0
    candle_max_upper_wick_to_body: float = 0.3
    bb_recent_bars: int = 5
    bb_older_bars: int = 14
    bb_contraction_ratio: float = 0.8
    bb_narrow_width: float = 0.15
    # bonus
    volume_ratio_bonus: tuple[tuple[float, int], ...] = ((10.0, 4), (5.0, 3), (3.0, 2), (2.0, 1))
    change_bonus: tuple[tuple[float, int], ...] = (
        (25.0, 5),
        (20.0, 4),
        (15.0, 3),
        (10.0, 2),
        (5.0, 1),
    )
    # grades
    grade_s_min_total: int = 10
    grade_s_min_traded_value_krw: float = 1_000_000_000_000.0
    grade_a_min_total: int = 8
    grade_a_min_traded_value_krw: float = 500_000_000_000.0
    grade_b_min_total: int = 6
    grade_b_min_traded_value_krw: float = 100_000_000_000.0
    grade_c_min_total: int = 8
    # exits and sizing
    take_profit_pct: float = 0.05
    stop_loss_pct: float = 0.03
    gap_up_take_profit_pct: float = 0.03
    gap_down_stop_pct: float = 0.02
    time_stop: str = "10:00 KST next session"
    entry_window: str = "15:00–15:20 KST"
    risk_per_trade: float = 0.005
    multiplier_s: float = 1.5
    multiplier_a: float = 1.0
    multiplier_b: float = 0.5
    multiplier_c: float = 0.0

    def __post_init__(self) -> None:
        if self.volume_lookback < 1 or self.bb_recent_bars < 1 or self.bb_older_bars < 1:
            raise ValidationError(
                "volume_lookback, bb_recent_bars and bb_older_bars must be ≥ 1",
                field="volume_lookback",
                value=self.volume_lookback,
            )
        if self.min_change_pct > self.max_change_pct:
            raise ValidationError(
                f"min_change_pct {self.min_change_pct} exceeds max_change_pct "
                f"{self.max_change_pct}",
                field="min_change_pct",
                value=self.min_change_pct,
            )
        nonnegative = {
            "min_traded_value_krw": self.min_traded_value_krw,
            "max_upper_wick_to_body": self.max_upper_wick_to_body,
            "min_volume_ratio": self.min_volume_ratio,
            "candle_min_body_to_wicks": self.candle_min_body_to_wicks,
            "candle_max_upper_wick_to_body": self.candle_max_upper_wick_to_body,
            "bb_contraction_ratio": self.bb_contraction_ratio,
            "bb_narrow_width": self.bb_narrow_width,
            "multiplier_s": self.multiplier_s,
            "multiplier_a": self.multiplier_a,
            "multiplier_b": self.multiplier_b,
            "multiplier_c": self.multiplier_c,
        }
        for name, value in nonnegative.items():
            if not value >= 0:
                raise ValidationError(f"{name} must be ≥ 0, got {value}", field=name, value=value)
        for name in ("traded_value_points", "volume_ratio_bonus", "change_bonus"):
            table: tuple[tuple[float, int], ...] = getattr(self, name)
            floors = [floor for floor, _ in table]
            if floors != sorted(floors, reverse=True):
                raise ValidationError(
                    f"{name} must list floors highest first, got {table}", field=name, value=table
                )
        if not (
            self.grade_s_min_traded_value_krw
            >= self.grade_a_min_traded_value_krw
            >= self.grade_b_min_traded_value_krw
        ):
            raise ValidationError(
                "grade traded-value floors must not increase from S to A to B",
                field="grade_s_min_traded_value_krw",
                value=self.grade_s_min_traded_value_krw,
            )
        fractions = {
            "take_profit_pct": self.take_profit_pct,
            "stop_loss_pct": self.stop_loss_pct,
            "gap_up_take_profit_pct": self.gap_up_take_profit_pct,
            "gap_down_stop_pct": self.gap_down_stop_pct,
            "risk_per_trade": self.risk_per_trade,
        }
        for name, value in fractions.items():
            if not 0 < value < 1:
                raise ValidationError(
                    f"{name} must be in (0, 1), got {value}", field=name, value=value
                )

    def multiplier(self, grade: Grade) -> float:
        """The position multiplier of ``grade`` (S 1.5, A 1.0, B 0.5, C 0 by default)."""
        return {
            "S": self.multiplier_s,
            "A": self.multiplier_a,
            "B": self.multiplier_b,
            "C": self.multiplier_c,
        }[grade]


@dataclass(frozen=True)
class ScoreComponents:
    """Points per component: base (news 0–3, traded value 0–3, chart 0–2, candle 0–1,
    consolidation 0–1, supply 0–2) and bonus (volume ratio 0–4, change 0–5)."""

    news: int = 0
    traded_value: int = 0
    chart: int = 0
    candle: int = 0
    consolidation: int = 0
    supply: int = 0
    volume_bonus: int = 0
    change_bonus: int = 0

    @property
    def base(self) -> int:
        """Base score, 0–12."""
        return (
            self.news
            + self.traded_value
            + self.chart
            + self.candle
            + self.consolidation
            + self.supply
        )

    @property
    def bonus(self) -> int:
        """Bonus, 0–9."""
        return self.volume_bonus + self.change_bonus


@dataclass(frozen=True)
class ExitPlan:
    """How a graded candidate is traded: bought at ``entry_price`` (today's close, KRW per
    share) in ``entry_window``, sold next session.

    Prices are KRW per share, unrounded to tick sizes: ``take_profit_price`` = entry × (1 +
    TP), ``stop_loss_price`` = entry × (1 − SL); ``gap_up_take_profit_price`` = entry × (1 +
    gap TP): an open at or above it is sold at the open; ``gap_down_stop_price`` = entry × (1 −
    gap SL): an open at or below it is sold at the open; what is still held at ``time_stop`` is
    sold. ``risk_fraction`` = R × the grade multiplier (fraction of capital at risk);
    ``position_fraction`` = risk_fraction / the stop-loss distance, capped at 1 (fraction of
    capital invested).
    """

    grade: Grade
    entry_price: float
    take_profit_price: float
    stop_loss_price: float
    gap_up_take_profit_price: float
    gap_down_stop_price: float
    time_stop: str
    entry_window: str
    risk_fraction: float
    position_fraction: float


@dataclass(frozen=True)
class ClosingBet:
    """One instrument's closing-bet evaluation on its scan day.

    ``passed_filters``: every precondition and hard filter passed (``failed_filters`` is
    empty; names from :data:`FILTERS`, in that order). ``components``/``base``/``bonus``/
    ``total`` are computed whenever the preconditions hold, also when a hard filter failed
    (all 0 otherwise). ``grade`` is ``None`` unless the filters passed and a grade rule
    matched; ``exit_plan`` is set exactly when ``grade`` is. ``change_pct`` is in percent,
    ``traded_value_krw`` in KRW, ``volume_ratio`` dimensionless; NaN where unknown.
    ``news``: ``"no news analysed"`` when ``inputs.news_score`` was ``None``. ``reasons``:
    human-readable sentences, one per check.
    """

    instrument: str
    date: str | None
    passed_filters: bool
    failed_filters: tuple[str, ...]
    components: ScoreComponents
    base: int
    bonus: int
    total: int
    grade: Grade | None
    exit_plan: ExitPlan | None
    news: NewsStatus
    change_pct: float
    traded_value_krw: float
    volume_ratio: float
    reasons: tuple[str, ...]

    @property
    def candidate(self) -> bool:
        """Passed every filter and got a grade (C included: watch-only, size 0)."""
        return self.grade is not None


def closing_bet(
    inputs: ScanInputs,
    supply: SupplyDemand | None = None,
    params: ClosingBetParams | None = None,
) -> ClosingBet:
    """Evaluate the V2 closing-bet engine on the scan day (the last candle).

    ``supply`` is the instrument's :func:`quant.scans.supply.supply_demand` for the same day
    (``None``: unknown, the supply component scores 0). Reads the candles and the named
    series ``sma_20``, ``sma_60``, ``high_52w``, ``bb_upper``/``bb_middle``/``bb_lower``
    (precomputed or computed by ``inputs``), and ``inputs.news_score``. Short histories,
    missing or halted scan days give a non-candidate with the reason, never an exception.

    Raises:
        quant.errors.ValidationError: ``inputs.news_score`` outside 0–3, or ``supply`` for
            another instrument or day.
    """
    p = params or ClosingBetParams()
    c = inputs.candles
    n = len(c)
    date = str(c.time[-1]) if n else None
    news_score = inputs.news_score
    if news_score is not None and not (
        isinstance(news_score, int | np.integer)
        and not isinstance(news_score, bool)
        and 0 <= news_score <= 3
    ):
        raise ValidationError(
            f"{inputs.instrument}: news_score must be an integer 0–3 or None, got {news_score!r}",
            field="news_score",
            value=news_score,
        )
    if supply is not None and (supply.instrument != inputs.instrument or supply.date != date):
        raise ValidationError(
            f"supply is for {supply.instrument} on {supply.date}, the scan for "
            f"{inputs.instrument} on {date}",
            field="supply",
            value=(supply.instrument, supply.date),
        )
    news: NewsStatus = "no news analysed" if news_score is None else "analysed"
    nan = float("nan")

    def reject(failed: str, reason: str, change: float = nan) -> ClosingBet:
        return ClosingBet(
            instrument=inputs.instrument,
            date=date,
            passed_filters=False,
            failed_filters=(failed,),
            components=ScoreComponents(),
            base=0,
            bonus=0,
            total=0,
            grade=None,
            exit_plan=None,
            news=news,
            change_pct=change,
            traded_value_krw=nan,
            volume_ratio=nan,
            reasons=(reason, "Not a candidate."),
        )

    # ---- preconditions ---------------------------------------------------------------------
    need = p.volume_lookback + 1
    if n < need:
        return reject(
            "history",
            f"Only {n} bars of history; the volume ratio needs {need} (the scan day and "
            f"{p.volume_lookback} traded days before it).",
        )
    t = n - 1
    o, h, lo, close = float(c.open[t]), float(c.high[t]), float(c.low[t]), float(c.close[t])
    volume = float(c.volume[t])
    if any(np.isnan(x) for x in (o, h, lo, close, volume)):
        return reject("missing_bar", f"The scan day {date} has no complete bar (NaN prices).")
    if volume <= 0.0:
        return reject("halted", f"The scan day {date} had no trading (volume 0): halted.")
    prev_closes = c.close[:t]
    with_close = np.flatnonzero(~np.isnan(prev_closes))
    if len(with_close) == 0 or prev_closes[with_close[-1]] <= 0.0:
        return reject("history", "No previous close to measure the change against.")
    prev = int(with_close[-1])
    change = round((close / float(prev_closes[prev]) - 1.0) * 100.0, 10)
    previous_volumes = c.volume[:t]
    traded_days = np.flatnonzero(previous_volumes > 0.0)  # NaN compares False
    if len(traded_days) < p.volume_lookback:
        return reject(
            "history",
            f"Only {len(traded_days)} traded days before the scan day; the volume ratio needs "
            f"{p.volume_lookback}.",
            change,
        )
    baseline = float(previous_volumes[traded_days[-p.volume_lookback :]].mean())
    volume_ratio = round(volume / baseline, 10)

    # ---- hard filters ----------------------------------------------------------------------
    failed: list[str] = []
    reasons: list[str] = []
    traded_value = float(c.traded_value[t])
    if np.isnan(traded_value):
        failed.append("traded_value")
        reasons.append("Traded value is unknown on the scan day.")
    elif traded_value < p.min_traded_value_krw:
        failed.append("traded_value")
        reasons.append(
            f"Traded value {_krw(traded_value)} is below {_krw(p.min_traded_value_krw)}."
        )
    else:
        reasons.append(f"Traded value {_krw(traded_value)} ≥ {_krw(p.min_traded_value_krw)}.")
    if p.min_change_pct <= change <= p.max_change_pct:
        reasons.append(
            f"Change {change:+.2f}% is within {p.min_change_pct:g}–{p.max_change_pct:g}%."
        )
    else:
        failed.append("change")
        reasons.append(
            f"Change {change:+.2f}% is outside {p.min_change_pct:g}–{p.max_change_pct:g}%."
        )
    if news_score is None:
        reasons.append("No news analysed: the news filter is skipped and news scores 0.")
    elif news_score < p.min_news_score:
        failed.append("news")
        reasons.append(f"News score {news_score} is below {p.min_news_score}.")
    else:
        reasons.append(f"News score {news_score} ≥ {p.min_news_score}.")
    body = abs(close - o)
    upper_wick = h - max(o, close)
    lower_wick = min(o, close) - lo
    if upper_wick <= p.max_upper_wick_to_body * body:
        reasons.append(f"Upper wick {upper_wick:g} ≤ {p.max_upper_wick_to_body:g} × body {body:g}.")
    else:
        failed.append("upper_wick")
        reasons.append(
            f"Upper wick {upper_wick:g} exceeds {p.max_upper_wick_to_body:g} × body {body:g}."
        )
    if volume_ratio >= p.min_volume_ratio:
        reasons.append(
            f"Volume ratio {volume_ratio:.2f} (today / mean of {p.volume_lookback} traded "
            f"days before) ≥ {p.min_volume_ratio:g}."
        )
    else:
        failed.append("volume_ratio")
        reasons.append(
            f"Volume ratio {volume_ratio:.2f} (today / mean of {p.volume_lookback} traded "
            f"days before) is below {p.min_volume_ratio:g}."
        )

    # ---- base score ------------------------------------------------------------------------
    news_points = 0 if news_score is None else int(news_score)
    tv_points = 0 if np.isnan(traded_value) else _tier(traded_value, p.traded_value_points)
    reasons.append(f"News scores {news_points}; traded value scores {tv_points}.")

    chart = 0
    high_52w_prev = float(inputs.series("high_52w")[prev])
    if np.isnan(high_52w_prev):
        reasons.append("Chart: 52-week high unknown (fewer than 252 bars), no new-high point.")
    elif close > high_52w_prev:
        chart += 1
        reasons.append(f"Chart +1: close {close:g} above the prior 52-week high {high_52w_prev:g}.")
    else:
        reasons.append(
            f"Chart: close {close:g} not above the prior 52-week high {high_52w_prev:g}."
        )
    ma20 = float(inputs.series("sma_20")[t])
    ma60 = float(inputs.series("sma_60")[t])
    if np.isnan(ma20) or np.isnan(ma60):
        reasons.append("Chart: MA20 or MA60 unknown (short history), no trend point.")
    elif ma20 > ma60 and close > ma20:
        chart += 1
        reasons.append(f"Chart +1: MA20 {ma20:.2f} > MA60 {ma60:.2f} and close above MA20.")
    else:
        reasons.append(f"Chart: not MA20 {ma20:.2f} > MA60 {ma60:.2f} with close above MA20.")

    candle = int(
        close > o
        and body >= p.candle_min_body_to_wicks * (upper_wick + lower_wick)
        and upper_wick < p.candle_max_upper_wick_to_body * body
    )
    reasons.append(
        "Candle +1: a long bullish body with a short upper wick."
        if candle
        else "Candle: not a long bullish body with a short upper wick."
    )

    consolidation, consolidation_reason = _consolidation(inputs, t, close, p)
    reasons.append(consolidation_reason)

    supply_points = 0
    if supply is None:
        reasons.append("Supply: no flow data, scores 0.")
    else:
        for label, value in (
            ("foreign", supply.foreign_5d_krw),
            ("institution", supply.institution_5d_krw),
        ):
            if np.isnan(value):
                reasons.append(f"Supply: {label} 5-day net buying in KRW unknown, no point.")
            elif value > 0.0:
                supply_points += 1
                reasons.append(f"Supply +1: {label} 5-day net buying {_krw(value)}.")
            else:
                reasons.append(f"Supply: {label} 5-day net buying {_krw(value)}, no point.")

    components = ScoreComponents(
        news=news_points,
        traded_value=tv_points,
        chart=chart,
        candle=candle,
        consolidation=consolidation,
        supply=supply_points,
        volume_bonus=_tier(volume_ratio, p.volume_ratio_bonus),
        change_bonus=_tier(change, p.change_bonus),
    )
    total = components.base + components.bonus
    reasons.append(
        f"Score: base {components.base} + bonus {components.bonus} (volume "
        f"{components.volume_bonus}, change {components.change_bonus}) = {total}."
    )

    # ---- grade and exits -------------------------------------------------------------------
    passed = not failed
    grade: Grade | None = None
    if passed and not np.isnan(traded_value):
        grade = _grade(total, traded_value, p)
    exit_plan = None if grade is None else _exit_plan(grade, close, p)
    if not passed:
        reasons.append(f"Not a candidate: failed {', '.join(failed)}.")
    elif grade is None:
        reasons.append(f"Passed the filters but total {total} earns no grade: dropped.")
    else:
        reasons.append(f"Grade {grade}.")
    return ClosingBet(
        instrument=inputs.instrument,
        date=date,
        passed_filters=passed,
        failed_filters=tuple(name for name in FILTERS if name in failed),
        components=components,
        base=components.base,
        bonus=components.bonus,
        total=total,
        grade=grade,
        exit_plan=exit_plan,
        news=news,
        change_pct=change,
        traded_value_krw=traded_value,
        volume_ratio=volume_ratio,
        reasons=tuple(reasons),
    )


def _tier(value: float, table: tuple[tuple[float, int], ...]) -> int:
    for floor, points in table:
        if value >= floor:
            return points
    return 0


def _grade(total: int, traded_value: float, p: ClosingBetParams) -> Grade | None:
    if total >= p.grade_s_min_total and traded_value >= p.grade_s_min_traded_value_krw:
        return "S"
    if total >= p.grade_a_min_total and traded_value >= p.grade_a_min_traded_value_krw:
        return "A"
    if total >= p.grade_b_min_total and traded_value >= p.grade_b_min_traded_value_krw:
        return "B"
    if total >= p.grade_c_min_total:
        return "C"
    return None


def _exit_plan(grade: Grade, entry: float, p: ClosingBetParams) -> ExitPlan:
    risk = p.risk_per_trade * p.multiplier(grade)
    return ExitPlan(
        grade=grade,
        entry_price=entry,
        take_profit_price=entry * (1.0 + p.take_profit_pct),
        stop_loss_price=entry * (1.0 - p.stop_loss_pct),
        gap_up_take_profit_price=entry * (1.0 + p.gap_up_take_profit_pct),
        gap_down_stop_price=entry * (1.0 - p.gap_down_stop_pct),
        time_stop=p.time_stop,
        entry_window=p.entry_window,
        risk_fraction=risk,
        position_fraction=min(1.0, risk / p.stop_loss_pct),
    )


def _consolidation(
    inputs: ScanInputs, t: int, close: float, p: ClosingBetParams
) -> tuple[int, str]:
    """(0 or 1, reason): BB width contracted before the scan day and close > upper band."""
    upper = inputs.series("bb_upper")
    lower = inputs.series("bb_lower")
    middle = inputs.series("bb_middle")
    need = p.bb_recent_bars + p.bb_older_bars
    start = max(0, t - 2 * need)  # room for a few missing bars; widened below if needed
    while True:
        u, lw, m = upper[start:t], lower[start:t], middle[start:t]
        with np.errstate(divide="ignore", invalid="ignore"):
            width = (u - lw) / m
        width = width[np.isfinite(width)]
        if len(width) >= need or start == 0:
            break
        start = max(0, start - 2 * need)
    today_upper = float(upper[t])
    if len(width) < need or np.isnan(today_upper):
        return 0, (
            f"Consolidation: Bollinger width needs {need} bars before the scan day (short "
            "history), no point."
        )
    recent = float(width[-p.bb_recent_bars :].mean())
    older = float(width[-need : -p.bb_recent_bars].mean())
    contracted = recent < p.bb_contraction_ratio * older or recent < p.bb_narrow_width
    breakout = close > today_upper
    if contracted and breakout:
        return 1, (
            f"Consolidation +1: band width {recent:.3f} (last {p.bb_recent_bars}) vs "
            f"{older:.3f} before, and close above the upper band {today_upper:g}."
        )
    return 0, (
        f"Consolidation: band width {recent:.3f} (last {p.bb_recent_bars}) vs {older:.3f} "
        f"before ({'contracted' if contracted else 'not contracted'}), close "
        f"{'above' if breakout else 'not above'} the upper band {today_upper:g}; no point."
    )


def _krw(value: float) -> str:
    """KRW in 조/억 (1조 = 10¹² KRW, 1억 = 10⁸ KRW)."""
    if abs(value) >= _JO:
        return f"{value / _JO:,.2f}조 KRW"
    return f"{value / _EOK:,.0f}억 KRW"
