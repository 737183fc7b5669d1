"""Minervini's volatility contraction pattern (VCP): detection, scoring and the combined scan
(``docs/domain.md`` §1, tradermonty's ``vcp_pattern_calculator.py`` and
``scorer.py`` as the baseline). Every threshold is a :class:`VcpParams` field.

**Detection** (:func:`find_vcp`), on the last ``window`` (120) *traded* bars:

- A bar is traded when its high and low are present and its volume is not 0: a missing bar
  (NaN) and a halted bar (volume 0, a flat bar at the previous close) carry no price discovery
  and are skipped, so swings, the window and the duration are counted in traded bars. The
  reported indices are positions in ``inputs.candles``.
- Swing high at i: ``High[i] > High[i ± j]`` for j = 1 … 5 (strict); swing low symmetric with
  lows. The first and last five bars of the window can be neither.
- H1 = the highest swing high (the earliest on a tie). Up to 4 times: L = the first swing low
  after H, ``depth = (H − L) / H``, next H = the first swing high after L. A swing low that is
  not below its high ends the sequence (it is no contraction).
- Valid iff ≥ 2 contractions, ``depth(T1) ≥ 8 %``, every ``depth_i / depth_{i−1} ≤ 0.75``
  and the duration (last low − H1, traded bars) ≥ 15. ``depth(T1) > 35 %`` and a duration
  > 325 are only noted.
- Volume dry-up = mean volume of the last 10 traded bars / mean of the last 50 (halted
  bars would fake a dry-up, so they are left out). Pivot = high of the last contraction,
  stop = its low × 0.99. Breakout = close > pivot and volume ≥ 1.5 × the 50-bar mean volume
  (today included); a close more than 5 % above the pivot is *extended*: do not chase.
- The pattern's **state** at the pivot (:attr:`VcpPattern.state`, stored as the signal's
  status): ``breakout`` (confirmed: above the pivot on the breakout volume), ``unconfirmed``
  (a close above the pivot on less than the breakout volume, or an unknown volume: no volume
  confirmation, not a breakout — its reason names the volume ratio and the multiple needed),
  or ``forming`` (at or below the pivot, or no pivot). The score is unchanged by the state
  (an unconfirmed close gets neither the volume bonus nor the breakout's pivot points); the
  scan's ranking puts confirmed breakouts first.

**Scoring** (:func:`score_vcp`): ``0.25·TT + 0.25·contraction + 0.20·volume + 0.15·pivot +
0.15·RS``, rounded to 0.1, rated ≥ 90 Textbook, ≥ 80 Strong, ≥ 70 Good, ≥ 60 Developing,
≥ 50 Weak, else ``None``; an invalid pattern is rated Developing at best. The components
are the public ``*_score`` functions below. Choices where the notes leave room:

- TT is the 7-point variant: the eight criteria of :mod:`quant.scans.trend` without
  ``sma50_above_sma150_and_sma200``, 14.3 points each (capped at 100), minus the extension
  penalty; the gate (raw points ≥ 85) is reported, it does not zero the score.
- RS is scored from the weighted out-performance ``rs_raw[t] − inputs.benchmark_rs_raw`` (both
  fractions with weights summing to 1, so this equals tradermonty's weighted stock-minus-index
  return). When that is unknown but the RS rating is known, the rating is mapped through
  tradermonty's own score ↔ rank table (≥ 99 → 100, ≥ 95 → 95, …, ≥ 25 → 20, else 0). When
  both are unknown the component is ``None`` and counts as 0 in the total (conservative, like
  tradermonty's 0 for missing data).
- The volume bonus is the notes' literal "V > 1.5 × avg and C > pivot"; the pivot score's
  "above + volume" uses the breakout rule (V ≥ 1.5 × avg).

Prices are KRW per share, volumes shares, depths and distances fractions (0.08 = 8 %).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from quant.errors import ValidationError
from quant.indicators._arrays import FloatArray
from quant.indicators.candles import Candles
from quant.scans.inputs import ScanInputs
from quant.scans.trend import (
    CRITERION_INPUTS,
    TrendTemplate,
    TrendTemplateParams,
    trend_template,
)

#: The states of a pattern at its pivot (:attr:`VcpPattern.state`), confirmed first.
BREAKOUT, UNCONFIRMED, FORMING = "breakout", "unconfirmed", "forming"
PIVOT_STATES: tuple[str, ...] = (BREAKOUT, UNCONFIRMED, FORMING)

#: Rating bands, highest first: (minimum total, label).
RATINGS: tuple[tuple[float, str], ...] = (
    (90.0, "Textbook"),
    (80.0, "Strong"),
    (70.0, "Good"),
    (60.0, "Developing"),
    (50.0, "Weak"),
)


@dataclass(frozen=True)
class VcpParams:
    """Every threshold of VCP detection and scoring; the defaults are the documented ones.

    Detection: ``window`` traded bars searched (120); ``swing_neighbours`` bars each side a
    swing point must beat (5); ``max_contractions`` (4); ``min_contractions`` for a valid
    pattern (2); ``min_first_depth`` of T1 (0.08); ``max_first_depth`` above which T1 is noted
    as deep (0.35); ``max_depth_ratio`` of each depth to the previous (0.75); ``min_duration``
    from H1 to the last low, traded bars (15); ``max_duration`` above which it is noted (325);
    ``dry_up_short`` / ``dry_up_long`` mean-volume windows (10 / 50 traded bars);
    ``breakout_volume``, the multiple of the long mean volume a breakout needs (1.5);
    ``max_chase`` above the pivot (0.05); ``stop_factor`` × the last low = stop (0.99).

    Scoring: ``weights`` of (TT, contraction, volume, pivot, RS), summing to 1; ``ratings``
    (:data:`RATINGS`) and ``invalid_rating`` (the best label of an invalid pattern);
    ``tt_points`` per criterion (14.3), ``tt_omitted`` criteria, ``tt_gate`` (85);
    ``extension_penalties`` (C/SMA50 − 1 ≥ bound → points off, largest bound first);
    ``contraction_base`` (count ≥ n → points, largest first), the tight-last, low-ratio and
    deep-T1 adjustments, and the invalid-pattern points (min(cap, per · n));
    ``dry_up_scores`` (dry-up < bound → points), ``dry_up_weak`` (≤ bound → points) and
    ``dry_up_else``; ``volume_bonus``; ``accumulation_days`` / ``accumulation_threshold`` /
    ``accumulation_points`` (up − down closes > threshold → +points, < −threshold → −points);
    ``pivot_above_volume`` / ``pivot_above`` and ``pivot_below`` (distance ≥ −bound →
    points) and ``pivot_else``; ``rs_scores`` (out-performance ≥ bound → points) and
    ``rs_rating_scores`` (rating ≥ bound → points, used when out-performance is unknown).

    Raises:
        quant.errors.ValidationError: a count or window < 1, a window too small for the swing
            test, ``dry_up_short`` > ``dry_up_long``, weights not ≥ 0 summing to 1, or
            ``invalid_rating`` not a label of ``ratings``.
    """

    window: int = 120
    swing_neighbours: int = 5
    max_contractions: int = 4
    min_contractions: int = 2
    min_first_depth: float = 0.08
    max_first_depth: float = 0.35
    max_depth_ratio: float = 0.75
    min_duration: int = 15
    max_duration: int = 325
    dry_up_short: int = 10
    dry_up_long: int = 50
    breakout_volume: float = 1.5
    max_chase: float = 0.05
    stop_factor: float = 0.99

    weights: tuple[float, float, float, float, float] = (0.25, 0.25, 0.20, 0.15, 0.15)
    ratings: tuple[tuple[float, str], ...] = RATINGS
    invalid_rating: str = "Developing"
    tt_points: float = 14.3
    tt_omitted: tuple[str, ...] = ("sma50_above_sma150_and_sma200",)
    tt_gate: float = 85.0
    extension_penalties: tuple[tuple[float, float], ...] = (
        (0.25, 20.0),
        (0.18, 15.0),
        (0.12, 10.0),
        (0.08, 5.0),
    )
    contraction_base: tuple[tuple[int, float], ...] = ((4, 90.0), (3, 80.0), (2, 60.0))
    tight_last_depth: float = 0.05
    tight_last_bonus: float = 10.0
    low_mean_ratio: float = 0.4
    low_mean_ratio_bonus: float = 10.0
    deep_first_depth: float = 0.30
    deep_first_penalty: float = 10.0
    invalid_contraction_points: float = 15.0
    invalid_contraction_cap: float = 40.0
    dry_up_scores: tuple[tuple[float, float], ...] = ((0.3, 90.0), (0.5, 75.0), (0.7, 60.0))
    dry_up_weak: tuple[float, float] = (1.0, 40.0)
    dry_up_else: float = 20.0
    volume_bonus: float = 10.0
    accumulation_days: int = 20
    accumulation_threshold: int = 3
    accumulation_points: float = 10.0
    pivot_above_volume: float = 100.0
    pivot_above: float = 85.0
    pivot_below: tuple[tuple[float, float], ...] = (
        (0.02, 90.0),
        (0.05, 75.0),
        (0.08, 60.0),
        (0.10, 45.0),
        (0.15, 30.0),
    )
    pivot_else: float = 10.0
    rs_scores: tuple[tuple[float, float], ...] = (
        (0.50, 100.0),
        (0.30, 95.0),
        (0.20, 90.0),
        (0.10, 80.0),
        (0.05, 70.0),
        (0.0, 60.0),
        (-0.05, 50.0),
        (-0.10, 40.0),
        (-0.20, 20.0),
    )
    rs_else: float = 0.0
    rs_rating_scores: tuple[tuple[float, float], ...] = (
        (99.0, 100.0),
        (95.0, 95.0),
        (90.0, 90.0),
        (80.0, 80.0),
        (70.0, 70.0),
        (60.0, 60.0),
        (50.0, 50.0),
        (40.0, 40.0),
        (25.0, 20.0),
    )

    def __post_init__(self) -> None:
        for name in (
            "window",
            "swing_neighbours",
            "max_contractions",
            "min_contractions",
            "dry_up_short",
            "dry_up_long",
            "accumulation_days",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(
                    f"{name} must be an integer >= 1, got {value!r}", field=name, value=value
                )
        if self.window < 2 * self.swing_neighbours + 1:
            raise ValidationError(
                f"window ({self.window}) must hold at least 2 × swing_neighbours + 1 = "
                f"{2 * self.swing_neighbours + 1} bars",
                field="window",
                value=self.window,
            )
        if self.dry_up_short > self.dry_up_long:
            raise ValidationError(
                f"dry_up_short ({self.dry_up_short}) must not exceed dry_up_long "
                f"({self.dry_up_long})",
                field="dry_up_short",
                value=self.dry_up_short,
            )
        if len(self.weights) != 5 or min(self.weights) < 0 or abs(sum(self.weights) - 1) > 1e-9:
            raise ValidationError(
                f"weights must be 5 numbers >= 0 summing to 1, got {self.weights!r}",
                field="weights",
                value=self.weights,
            )
        if self.invalid_rating not in {label for _, label in self.ratings}:
            raise ValidationError(
                f"invalid_rating {self.invalid_rating!r} is not a rating label",
                field="invalid_rating",
                value=self.invalid_rating,
            )


@dataclass(frozen=True)
class Contraction:
    """One contraction T_k: a swing high, the first swing low after it, and its depth.

    ``high_index`` / ``low_index`` are positions in ``inputs.candles``; ``high`` / ``low`` in
    KRW per share; ``depth = (high − low) / high``, a fraction.
    """

    high_index: int
    high: float
    low_index: int
    low: float
    depth: float


@dataclass(frozen=True)
class VcpPattern:
    """What :func:`find_vcp` found in the window.

    Attributes:
        valid: the contractions meet every validity rule.
        contractions: T1, T2, … in time order (possibly fewer than needed).
        reasons: why the pattern is invalid, one sentence each (empty when valid).
        notes: flags that do not invalidate (deep T1, long duration, short history, unknown
            volume, extended above the pivot, close below the stop).
        pivot: high of the last contraction (KRW), ``None`` without contractions.
        stop: low of the last contraction × ``stop_factor`` (KRW), ``None`` without.
        duration: traded bars from H1 to the last low, ``None`` without contractions.
        dry_up: mean volume of the last ``dry_up_short`` traded bars over the last
            ``dry_up_long``; ``None`` with fewer than ``dry_up_long`` traded bars.
        volume_ratio: the scan day's volume over the ``dry_up_long``-bar mean (today
            included); ``None`` when unknown or the scan day did not trade.
        breakout: close > pivot and ``volume_ratio ≥ breakout_volume``.
        extended: close > pivot × (1 + ``max_chase``): too far above the pivot to buy.
        distance_to_pivot: close / pivot − 1 (negative below), ``None`` when unknown.
    """

    valid: bool
    contractions: tuple[Contraction, ...]
    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    pivot: float | None
    stop: float | None
    duration: int | None
    dry_up: float | None
    volume_ratio: float | None
    breakout: bool
    extended: bool
    distance_to_pivot: float | None

    @property
    def depths(self) -> tuple[float, ...]:
        """The contraction depths, T1 first (fractions)."""
        return tuple(c.depth for c in self.contractions)

    @property
    def state(self) -> str:
        """One of :data:`PIVOT_STATES`: ``breakout`` (close above the pivot on the breakout
        volume), ``unconfirmed`` (close above the pivot without that volume, or with an
        unknown volume) or ``forming`` (at or below the pivot, or no pivot)."""
        if self.breakout:
            return BREAKOUT
        if self.distance_to_pivot is not None and self.distance_to_pivot > 0:
            return UNCONFIRMED
        return FORMING


@dataclass(frozen=True)
class VcpScore:
    """The composite VCP score.

    Attributes:
        total: 0–100, the weighted components rounded to 0.1 (an unknown RS counts as 0).
        rating: the label of :data:`RATINGS` (capped at ``invalid_rating`` for an invalid
            pattern), ``None`` below the lowest band.
        tt, contraction, volume, pivot: component scores, 0–100.
        rs: RS component 0–100, ``None`` when out-performance and rating are both unknown.
        tt_raw: 7-point Trend Template points before the extension penalty.
        tt_gate: ``tt_raw ≥ tt_gate`` (tradermonty's pass gate).
        extension: close / SMA50 − 1, ``None`` when unknown.
        net_up_closes: up closes − down closes over the last ``accumulation_days``.
        outperformance: ``rs_raw[t] − benchmark_rs_raw`` (fraction), ``None`` when unknown.
        notes: how unknown inputs were scored.
    """

    total: float
    rating: str | None
    tt: float
    contraction: float
    volume: float
    pivot: float
    rs: float | None
    tt_raw: float
    tt_gate: bool
    extension: float | None
    net_up_closes: int
    outperformance: float | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class VcpCandidate:
    """The VCP scan of one instrument: ``is_candidate`` iff the Trend Template passed and the
    pattern is valid; ``reasons`` are human-readable sentences saying why or why not."""

    instrument: str
    is_candidate: bool
    trend: TrendTemplate
    pattern: VcpPattern
    score: VcpScore
    reasons: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


def _window_max(x: FloatArray, width: int) -> FloatArray:
    """``out[:, i] = max(x[:, i … i + width − 1])`` along axis 1 (length n − width + 1), by
    doubling: O(n log width) vector operations."""
    out = x
    covered = 1
    while covered * 2 <= width:
        out = np.maximum(out[:, :-covered], out[:, covered:])
        covered *= 2
    rest = width - covered
    if rest:
        out = np.maximum(out[:, :-rest], out[:, rest:])
    return out


def swing_points(high: FloatArray, low: FloatArray, neighbours: int) -> tuple[list[int], list[int]]:
    """Indices of the swing highs and swing lows of NaN-free ``high`` / ``low``, ascending.

    Swing high at i: ``high[i] > high[i ± j]`` for every j in 1 … ``neighbours`` (strict, so
    a flat top is no swing); swing low: ``low[i] < low[i ± j]``. Only i with ``neighbours``
    bars on both sides qualify.
    """
    n = len(high)
    k = neighbours
    if n < 2 * k + 1:
        return [], []
    x = np.empty((2, n))
    x[0] = high
    np.negative(low, out=x[1])
    side = _window_max(x, k)  # side[:, i] = max of x[:, i … i + k − 1]
    centre = x[:, k : n - k]
    beats = (centre > side[:, : n - 2 * k]) & (centre > side[:, k + 1 :])
    return (np.flatnonzero(beats[0]) + k).tolist(), (np.flatnonzero(beats[1]) + k).tolist()


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _ratio(ratio: float, needed: float) -> str:
    """``ratio`` with one decimal, or two when one would round it up to ``needed``."""
    shown = f"{ratio:.1f}"
    return shown if float(shown) < needed else f"{ratio:.2f}"


def _price(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:,.2f}"


#: Relative slack of :func:`breakout_volume_possible`: its sums are taken another way than
#: :func:`find_vcp`'s, so a bar within this of the threshold is kept (scanned), never dropped.
_VOLUME_SLACK = 1e-9


def breakout_volume_possible(
    candles: Candles, params: VcpParams = VcpParams()
) -> npt.NDArray[np.bool_]:
    """For every bar ``t``: could :func:`find_vcp` on the candles ending at ``t`` find a
    breakout, as far as volume decides? A necessary condition of ``pattern.breakout``, for
    all bars at once: the bar is traded with a known volume, ``dry_up_long`` such bars up to
    it exist, their mean is positive and the bar's volume is at least ``breakout_volume`` ×
    that mean (within :data:`_VOLUME_SLACK`: a bar at the threshold is kept, so the
    condition never rejects a bar the scan would accept)."""
    return _breakout_volume_possible(candles.high, candles.low, candles.volume, params)


def _breakout_volume_possible(
    high: FloatArray, low: FloatArray, volume: FloatArray, params: VcpParams
) -> npt.NDArray[np.bool_]:
    known = ~(np.isnan(high) | np.isnan(low) | (volume == 0)) & ~np.isnan(volume)
    out = np.zeros(len(volume), dtype=bool)
    where = np.flatnonzero(known)
    window = params.dry_up_long
    if len(where) < window:
        return out
    values = volume[where]
    sums = np.lib.stride_tricks.sliding_window_view(values, window).sum(axis=1)
    means = sums / window
    today = values[window - 1 :]
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (means > 0) & (today >= params.breakout_volume * means * (1.0 - _VOLUME_SLACK))
    out[where[window - 1 :]] = ok
    return out


def breakout_volume_possible_columns(
    high: FloatArray, low: FloatArray, volume: FloatArray, params: VcpParams = VcpParams()
) -> npt.NDArray[np.bool_]:
    """:func:`breakout_volume_possible` of many instruments at once: ``(n, m)`` matrices
    (bars × instruments) in, the ``(n, m)`` mask out, column ``c`` being the one-series
    condition on instrument ``c`` (the same necessary condition, with the same slack).
    Columns where every bar is traded with a known volume are decided together; the others
    one by one.

    Raises:
        quant.errors.ValidationError: the matrices' shapes differ.
    """
    if not (high.shape == low.shape == volume.shape) or high.ndim != 2:
        raise ValidationError(
            f"high, low and volume must be (bars, instruments) matrices of one shape, got "
            f"{high.shape}, {low.shape} and {volume.shape}",
            field="volume",
        )
    n, m = volume.shape
    out = np.zeros((n, m), dtype=bool)
    with np.errstate(invalid="ignore"):
        known = ~(np.isnan(high) | np.isnan(low) | np.isnan(volume) | (volume == 0))
    whole = known.all(axis=0)
    window = params.dry_up_long
    if whole.any() and n >= window:
        values = volume if whole.all() else volume[:, whole]
        sums = np.lib.stride_tricks.sliding_window_view(values, window, axis=0).sum(axis=-1)
        means = sums / window
        today = values[window - 1 :]
        with np.errstate(invalid="ignore", divide="ignore"):
            ok = (means > 0) & (today >= params.breakout_volume * means * (1.0 - _VOLUME_SLACK))
        if whole.all():
            out[window - 1 :] = ok
        else:
            out[window - 1 :, whole] = ok
    for c in np.flatnonzero(~whole):
        out[:, c] = _breakout_volume_possible(high[:, c], low[:, c], volume[:, c], params)
    return out


def find_vcp(inputs: ScanInputs, params: VcpParams = VcpParams()) -> VcpPattern:
    """Detect a VCP ending at the scan day (the last bar); see the module docstring.

    Never raises for short, gappy or halted histories: too few bars give fewer (or no)
    contractions and an invalid pattern whose ``reasons`` say so.
    """
    candles = inputs.candles
    high, low, close, volume = candles.high, candles.low, candles.close, candles.volume
    traded = ~(np.isnan(high) | np.isnan(low) | (volume == 0))
    all_traded = np.flatnonzero(traded)
    positions = all_traded[-params.window :]
    h = high[positions]
    lo = low[positions]
    reasons: list[str] = []
    notes: list[str] = []
    if len(positions) < params.window:
        notes.append(f"only {len(positions)} traded bars, the window is {params.window}")

    swing_highs, swing_lows = swing_points(h, lo, params.swing_neighbours)
    contractions: list[Contraction] = []
    first = last_low = -1
    if swing_highs:
        first = current = max(swing_highs, key=lambda i: (h[i], -i))
        for _ in range(params.max_contractions):
            at = bisect_right(swing_lows, current)
            if at == len(swing_lows):
                break
            trough = swing_lows[at]
            top = float(h[current])
            bottom = float(lo[trough])
            if not 0 < bottom < top:
                break
            contractions.append(
                Contraction(
                    high_index=int(positions[current]),
                    high=top,
                    low_index=int(positions[trough]),
                    low=bottom,
                    depth=(top - bottom) / top,
                )
            )
            last_low = trough
            at = bisect_right(swing_highs, trough)
            if at == len(swing_highs):
                break
            current = swing_highs[at]

    count = len(contractions)
    duration = last_low - first if contractions else None
    if not swing_highs:
        reasons.append(
            f"no swing high in the last {len(positions)} traded bars (a swing high needs "
            f"{params.swing_neighbours} lower highs on each side)"
        )
    elif count < params.min_contractions:
        if count == 0:
            reasons.append("no swing low after the highest swing high: no contraction")
        else:
            reasons.append(
                f"{count} contraction{'s' if count != 1 else ''} found, a VCP needs at least "
                f"{params.min_contractions}"
            )
    else:
        depths = [c.depth for c in contractions]
        if depths[0] < params.min_first_depth:
            reasons.append(
                f"T1 depth {_pct(depths[0])} is shallower than the "
                f"{_pct(params.min_first_depth)} minimum"
            )
        elif depths[0] > params.max_first_depth:
            notes.append(
                f"T1 depth {_pct(depths[0])} is deeper than the preferred "
                f"{_pct(params.max_first_depth)}"
            )
        for k in range(1, count):
            ratio = depths[k] / depths[k - 1]
            if ratio > params.max_depth_ratio:
                reasons.append(
                    f"T{k + 1} depth {_pct(depths[k])} is {ratio:.2f} of T{k} "
                    f"({_pct(depths[k - 1])}); each contraction must be at most "
                    f"{params.max_depth_ratio:.2f} of the previous"
                )
        assert duration is not None
        if duration < params.min_duration:
            reasons.append(
                f"the pattern lasts {duration} bars from H1 to the last low, shorter than "
                f"{params.min_duration}"
            )
        elif duration > params.max_duration:
            notes.append(
                f"the pattern lasts {duration} bars, longer than the preferred "
                f"{params.max_duration}"
            )

    # Volume: means over traded bars with a known volume, today included.
    known = volume[traded & ~np.isnan(volume)][-params.dry_up_long :]
    dry_up: float | None = None
    volume_ratio: float | None = None
    if len(known) >= params.dry_up_long:
        long_mean = float(known.sum()) / len(known)
        if long_mean > 0:
            dry_up = float(known[-params.dry_up_short :].sum()) / params.dry_up_short / long_mean
            today = float(volume[-1]) if len(volume) else math.nan
            if traded[-1] and not math.isnan(today):
                volume_ratio = today / long_mean
    else:
        notes.append(
            f"volume dry-up needs {params.dry_up_long} traded bars with a volume, have {len(known)}"
        )

    pivot = stop = distance = None
    breakout = extended = False
    if contractions:
        pivot = contractions[-1].high
        stop = contractions[-1].low * params.stop_factor
        today_close = float(close[-1])
        if math.isnan(today_close):
            notes.append("the scan-day bar has no close")
        else:
            distance = today_close / pivot - 1.0
            breakout = distance > 0 and (volume_ratio or 0.0) >= params.breakout_volume
            extended = distance > params.max_chase
            if extended:
                notes.append(
                    f"close is {_pct(distance)} above the pivot, more than "
                    f"{_pct(params.max_chase)}: do not chase"
                )
            if today_close < stop:
                notes.append(f"close {_price(today_close)} is below the stop {_price(stop)}")

    return VcpPattern(
        valid=not reasons,
        contractions=tuple(contractions),
        reasons=tuple(reasons),
        notes=tuple(notes),
        pivot=pivot,
        stop=stop,
        duration=duration,
        dry_up=dry_up,
        volume_ratio=volume_ratio,
        breakout=breakout,
        extended=extended,
        distance_to_pivot=distance,
    )


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def _first_at_least(value: float, table: Sequence[tuple[float, float]], default: float) -> float:
    for bound, points in table:
        if value >= bound:
            return points
    return default


def trend_score(trend: TrendTemplate, params: VcpParams = VcpParams()) -> tuple[float, float]:
    """The TT component: ``(score, raw)``. ``raw = min(100, tt_points × criteria held)``,
    counting the criteria not in ``tt_omitted`` (7-point variant); ``score = max(0, raw −
    penalty)`` with the penalty of the first ``extension_penalties`` row whose bound
    ``close / sma50 − 1`` reaches (no penalty when either is unknown)."""
    held = sum(ok for name, ok in trend.criteria.items() if name not in params.tt_omitted)
    raw = min(100.0, round(held * params.tt_points, 1))
    close, sma50 = trend.values.get("close", math.nan), trend.values.get("sma50", math.nan)
    penalty = 0.0
    if sma50 > 0 and not math.isnan(close):
        penalty = _first_at_least(close / sma50 - 1.0, params.extension_penalties, 0.0)
    return max(0.0, raw - penalty), raw


def contraction_score(
    depths: Sequence[float], valid: bool, params: VcpParams = VcpParams()
) -> float:
    """The contraction component from the depths (T1 first, fractions).

    Invalid: ``min(invalid_contraction_cap, invalid_contraction_points × count)``. Valid: the
    first ``contraction_base`` row whose count is reached (60/80/90 for 2/3/≥4), +10 when the
    last depth < 5 %, +10 when the mean of the depth ratios < 0.4, −10 when T1 > 30 %,
    clamped to 0–100.
    """
    count = len(depths)
    if not valid:
        return min(params.invalid_contraction_cap, params.invalid_contraction_points * count)
    score = 0.0
    for least, points in params.contraction_base:
        if count >= least:
            score = points
            break
    if depths and depths[-1] < params.tight_last_depth:
        score += params.tight_last_bonus
    ratios = [b / a for a, b in pairwise(depths) if a > 0]
    if ratios and sum(ratios) / len(ratios) < params.low_mean_ratio:
        score += params.low_mean_ratio_bonus
    if depths and depths[0] > params.deep_first_depth:
        score -= params.deep_first_penalty
    return max(0.0, min(100.0, score))


def volume_score(
    dry_up: float | None,
    volume_ratio: float | None,
    above_pivot: bool,
    net_up_closes: int,
    params: VcpParams = VcpParams(),
) -> float:
    """The volume component: dry-up < 0.3 → 90, < 0.5 → 75, < 0.7 → 60, ≤ 1.0 → 40, else 20
    (unknown dry-up: 0); +10 when ``volume_ratio > breakout_volume`` and the close is above
    the pivot; +10 / −10 when ``net_up_closes`` > 3 / < −3; clamped to 0–100."""
    if dry_up is None:
        return 0.0
    score = params.dry_up_else
    for bound, points in params.dry_up_scores:
        if dry_up < bound:
            score = points
            break
    else:
        if dry_up <= params.dry_up_weak[0]:
            score = params.dry_up_weak[1]
    if above_pivot and volume_ratio is not None and volume_ratio > params.breakout_volume:
        score += params.volume_bonus
    if net_up_closes > params.accumulation_threshold:
        score += params.accumulation_points
    elif net_up_closes < -params.accumulation_threshold:
        score -= params.accumulation_points
    return max(0.0, min(100.0, score))


def pivot_score(distance: float | None, breakout: bool, params: VcpParams = VcpParams()) -> float:
    """The pivot component from ``distance = close / pivot − 1``: above with breakout volume
    100, above 85, ≥ −2 % 90, ≥ −5 % 75, ≥ −8 % 60, ≥ −10 % 45, ≥ −15 % 30, else 10;
    0 without a pivot."""
    if distance is None:
        return 0.0
    if distance > 0:
        return params.pivot_above_volume if breakout else params.pivot_above
    for bound, points in params.pivot_below:
        if distance >= -bound:
            return points
    return params.pivot_else


def rs_score(
    outperformance: float | None, rs_rating: float | None, params: VcpParams = VcpParams()
) -> float | None:
    """The RS component: ``outperformance`` (a fraction) through ``rs_scores`` (≥ 50 % → 100
    … ≥ −20 % → 20, else 0); when unknown, ``rs_rating`` through ``rs_rating_scores``; when
    both are unknown, ``None``."""
    if outperformance is not None and not math.isnan(outperformance):
        return _first_at_least(outperformance, params.rs_scores, params.rs_else)
    if rs_rating is not None and not math.isnan(rs_rating):
        return _first_at_least(rs_rating, params.rs_rating_scores, params.rs_else)
    return None


def vcp_rating(total: float, valid: bool, params: VcpParams = VcpParams()) -> str | None:
    """The label of the first band ``total`` reaches (``None`` below all); an invalid
    pattern's label is lowered to ``invalid_rating`` when it would be better."""
    for rank, (least, label) in enumerate(params.ratings):
        if total >= least:
            if not valid:
                cap = [name for _, name in params.ratings].index(params.invalid_rating)
                if rank < cap:
                    return params.invalid_rating
            return label
    return None


def _net_up_closes(close: FloatArray, traded: npt.NDArray[np.bool_], days: int) -> int:
    """Up closes − down closes over the last ``days`` close-to-close moves of traded bars."""
    closes = close[traded]
    closes = closes[~np.isnan(closes)][-(days + 1) :]
    moves = np.diff(closes)
    return int(np.count_nonzero(moves > 0)) - int(np.count_nonzero(moves < 0))


def score_vcp(
    inputs: ScanInputs,
    trend: TrendTemplate,
    pattern: VcpPattern,
    params: VcpParams = VcpParams(),
) -> VcpScore:
    """Score a pattern found by :func:`find_vcp` on ``inputs`` with its Trend Template result
    (see the module docstring for the rules and the choices made).

    Raises:
        quant.errors.ValidationError: only for candles the RS indicator rejects (a close
            that is not > 0).
    """
    candles = inputs.candles
    notes: list[str] = []
    tt, tt_raw = trend_score(trend, params)
    close, sma50 = trend.values.get("close", math.nan), trend.values.get("sma50", math.nan)
    extension = close / sma50 - 1.0 if sma50 > 0 and not math.isnan(close) else None

    traded = ~(np.isnan(candles.high) | np.isnan(candles.low) | (candles.volume == 0))
    net = _net_up_closes(candles.close, traded, params.accumulation_days)
    above = pattern.distance_to_pivot is not None and pattern.distance_to_pivot > 0
    volume = volume_score(pattern.dry_up, pattern.volume_ratio, above, net, params)
    if pattern.dry_up is None:
        notes.append("volume dry-up unknown: volume component 0")

    raw_rs = inputs.last("rs_raw")
    bench = inputs.benchmark_rs_raw
    outperformance = (
        raw_rs - bench if bench is not None and not math.isnan(raw_rs - bench) else None
    )
    rs = rs_score(outperformance, inputs.rs_rating, params)
    if outperformance is None:
        notes.append(
            "RS out-performance unknown: RS component from the RS rating"
            if rs is not None
            else "RS out-performance and rating unknown: RS component counts as 0"
        )

    contraction = contraction_score(pattern.depths, pattern.valid, params)
    pivot = pivot_score(pattern.distance_to_pivot, pattern.breakout, params)
    components = (tt, contraction, volume, pivot, rs if rs is not None else 0.0)
    total = round(sum(w * s for w, s in zip(params.weights, components, strict=True)), 1)
    return VcpScore(
        total=total,
        rating=vcp_rating(total, pattern.valid, params),
        tt=tt,
        contraction=contraction,
        volume=volume,
        pivot=pivot,
        rs=rs,
        tt_raw=tt_raw,
        tt_gate=tt_raw >= params.tt_gate,
        extension=extension,
        net_up_closes=net,
        outperformance=outperformance,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------
# The scan
# --------------------------------------------------------------------------------------------

_TREND_DEFAULTS = TrendTemplateParams()


#: Why a criterion failed, formatted with the Trend Template's values and parameters.
_CRITERION_TEXT: dict[str, str] = {
    "close_above_sma150_and_sma200": (
        "close {close} is not above both SMA{mid} {sma150} and SMA{long} {sma200}"
    ),
    "sma150_above_sma200": "SMA{mid} {sma150} is not above SMA{long} {sma200}",
    "sma200_rising": (
        "SMA{long} {sma200} is not above its value {lookback} bars ago {sma200_before}"
    ),
    "sma50_above_sma150_and_sma200": (
        "SMA{short} {sma50} is not above both SMA{mid} {sma150} and SMA{long} {sma200}"
    ),
    "close_above_sma50": "close {close} is not above SMA{short} {sma50}",
    "above_52w_low": "close {close} is below {above_low} × the 52-week low {low_52w}",
    "near_52w_high": "close {close} is below {of_high} × the 52-week high {high_52w}",
    "rs_rating": "RS rating {rs_rating} is below {min_rs}",
}


def _criterion_sentences(trend: TrendTemplate, params: TrendTemplateParams) -> list[str]:
    """One sentence per failed criterion, in template order."""
    shown = {key: _price(value) for key, value in trend.values.items()}
    shown["rs_rating"] = f"{trend.values['rs_rating']:.0f}"
    shown.update(
        short=str(params.sma_short),
        mid=str(params.sma_mid),
        long=str(params.sma_long),
        lookback=str(params.rising_lookback),
        above_low=f"{params.min_above_low:.2f}",
        of_high=f"{params.min_of_high:.2f}",
        min_rs=f"{params.min_rs_rating:.0f}",
    )
    sentences = []
    for name in trend.failed:
        if name in trend.insufficient:
            unknown = [k for k in CRITERION_INPUTS[name] if math.isnan(trend.values[k])]
            why = f"insufficient data ({', '.join(unknown)} unknown)"
        else:
            why = _CRITERION_TEXT[name].format(**shown)
        sentences.append(f"Trend Template fails {name}: {why}.")
    return sentences


def scan_vcp(
    inputs: ScanInputs,
    trend_params: TrendTemplateParams = _TREND_DEFAULTS,
    vcp_params: VcpParams = VcpParams(),
) -> VcpCandidate:
    """Run the Trend Template, :func:`find_vcp` and :func:`score_vcp` on one instrument.

    ``is_candidate`` = Trend Template passed and pattern valid. ``reasons`` explain it in
    sentences: each failed criterion (with its values, or "insufficient data" and what is
    missing), each invalidity reason, the pattern's notes, a breakout, and the score.

    Raises:
        quant.errors.ValidationError: only for candles an indicator rejects.
    """
    trend = trend_template(inputs, trend_params)
    pattern = find_vcp(inputs, vcp_params)
    score = score_vcp(inputs, trend, pattern, vcp_params)
    is_candidate = trend.passed and pattern.valid

    reasons: list[str] = []
    if trend.passed:
        reasons.append(f"Trend Template: all {len(trend.criteria)} criteria hold.")
    else:
        reasons.extend(_criterion_sentences(trend, trend_params))
        reasons.extend(f"Insufficient data: {note}." for note in trend.notes)
    if pattern.valid:
        depths = " → ".join(_pct(d) for d in pattern.depths)
        assert pattern.pivot is not None
        assert pattern.stop is not None
        reasons.append(
            f"VCP: {len(pattern.contractions)} contractions ({depths}) over "
            f"{pattern.duration} bars; pivot {_price(pattern.pivot)}, stop "
            f"{_price(pattern.stop)}."
        )
    else:
        reasons.extend(f"No valid VCP: {reason}." for reason in pattern.reasons)
    reasons.extend(f"Note: {note}." for note in pattern.notes)
    if pattern.breakout and pattern.volume_ratio is not None:
        reasons.append(
            f"Breakout: close is {_pct(pattern.distance_to_pivot or 0.0)} above the pivot on "
            f"{pattern.volume_ratio:.1f}× the {vcp_params.dry_up_long}-bar mean volume."
        )
    elif pattern.state == UNCONFIRMED:
        on = (
            f"{_ratio(pattern.volume_ratio, vcp_params.breakout_volume)}× the "
            f"{vcp_params.dry_up_long}-day volume"
            if pattern.volume_ratio is not None
            else "an unknown volume"
        )
        reasons.append(
            f"Above the pivot, no volume confirmation: close "
            f"{_pct(pattern.distance_to_pivot or 0.0)} above the pivot on {on}; a breakout "
            f"needs {vcp_params.breakout_volume:g}×."
        )
    rated = f" ({score.rating})" if score.rating else ""
    reasons.append(f"VCP score {score.total:.1f}{rated}.")
    reasons.append(
        "Candidate: the Trend Template passed and the VCP is valid."
        if is_candidate
        else "Not a candidate."
    )
    return VcpCandidate(
        instrument=inputs.instrument,
        is_candidate=is_candidate,
        trend=trend,
        pattern=pattern,
        score=score,
        reasons=tuple(reasons),
    )
