"""The Minervini Trend Template (``docs/domain.md`` §1): eight criteria on the scan
day's close that together say "stage 2 uptrend".

On the last bar t, with C the close and every moving average a simple one of closes:

1. ``close_above_sma150_and_sma200``: C > SMA150 and C > SMA200
2. ``sma150_above_sma200``: SMA150 > SMA200
3. ``sma200_rising``: SMA200[t] > SMA200[t − 22] (22 present bars back, about a month)
4. ``sma50_above_sma150_and_sma200``: SMA50 > SMA150 and SMA50 > SMA200
5. ``close_above_sma50``: C > SMA50
6. ``above_52w_low``: C ≥ 1.30 × the lowest low of the last 252 bars
7. ``near_52w_high``: C ≥ 0.75 × the highest high of the last 252 bars
8. ``rs_rating``: the universe RS rating (1–99) ≥ 70

A criterion whose inputs are unknown (NaN: too short a history, a missing scan-day bar, no RS
rating) fails, is listed in :attr:`TrendTemplate.insufficient`, and a note says what data is
missing. Note that 4 and 5 together imply 1, so criterion 1 can never be the only failure.

Prices are in KRW per share; lags and windows count present bars (the missing-bar policy of
:mod:`quant.indicators._arrays`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from quant.errors import ValidationError
from quant.indicators import compute
from quant.indicators._arrays import FloatArray
from quant.scans.inputs import SERIES, ScanInputs

#: The criteria in the order of the template; :attr:`TrendTemplate.failed` keeps this order.
CRITERIA: tuple[str, ...] = (
    "close_above_sma150_and_sma200",
    "sma150_above_sma200",
    "sma200_rising",
    "sma50_above_sma150_and_sma200",
    "close_above_sma50",
    "above_52w_low",
    "near_52w_high",
    "rs_rating",
)

#: The :attr:`TrendTemplate.values` each criterion reads.
CRITERION_INPUTS: dict[str, tuple[str, ...]] = {
    "close_above_sma150_and_sma200": ("close", "sma150", "sma200"),
    "sma150_above_sma200": ("sma150", "sma200"),
    "sma200_rising": ("sma200", "sma200_before"),
    "sma50_above_sma150_and_sma200": ("sma50", "sma150", "sma200"),
    "close_above_sma50": ("close", "sma50"),
    "above_52w_low": ("close", "low_52w"),
    "near_52w_high": ("close", "high_52w"),
    "rs_rating": ("rs_rating",),
}


@dataclass(frozen=True)
class TrendTemplateParams:
    """Thresholds of the Trend Template; the defaults are the documented ones.

    Attributes:
        sma_short: period of the short moving average (bars), 50.
        sma_mid: period of the middle moving average (bars), 150.
        sma_long: period of the long moving average (bars), 200.
        rising_lookback: SMA200 must exceed its value this many present bars back, 22.
        week52_window: bars of highs and lows in the 52-week range, 252.
        min_above_low: C must be ≥ this multiple of the 52-week low, 1.30 (book; some
            screeners use 1.25).
        min_of_high: C must be ≥ this fraction of the 52-week high, 0.75.
        min_rs_rating: the RS rating (1–99) must be ≥ this, 70.

    Raises:
        quant.errors.ValidationError: a period, lag or window < 1, or a factor that is not a
            finite number > 0.
    """

    sma_short: int = 50
    sma_mid: int = 150
    sma_long: int = 200
    rising_lookback: int = 22
    week52_window: int = 252
    min_above_low: float = 1.30
    min_of_high: float = 0.75
    min_rs_rating: float = 70.0

    def __post_init__(self) -> None:
        for name in ("sma_short", "sma_mid", "sma_long", "rising_lookback", "week52_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(
                    f"{name} must be an integer >= 1, got {value!r}", field=name, value=value
                )
        for name in ("min_above_low", "min_of_high", "min_rs_rating"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValidationError(
                    f"{name} must be a finite number > 0, got {value!r}", field=name, value=value
                )


@dataclass(frozen=True)
class TrendTemplate:
    """The Trend Template evaluated on the scan day.

    Attributes:
        passed: every criterion holds.
        criteria: criterion name (:data:`CRITERIA`, in that order) → whether it holds.
        failed: names of the criteria that do not hold, in :data:`CRITERIA` order.
        insufficient: the failed criteria that failed because an input is unknown, not on
            its merits (a subset of ``failed``, same order).
        values: the inputs used, NaN when unknown: ``close``, ``sma50``, ``sma150``,
            ``sma200``, ``sma200_before`` (SMA200 ``rising_lookback`` present bars back),
            ``low_52w``, ``high_52w`` (KRW per share) and ``rs_rating`` (1–99). The keys are
            named after the default periods whatever the parameters.
        notes: one sentence per unknown input saying what data is missing, e.g.
            ``"sma200 needs 200 bars, have 120"``.
    """

    passed: bool
    criteria: dict[str, bool]
    failed: tuple[str, ...]
    insufficient: tuple[str, ...]
    values: dict[str, float]
    notes: tuple[str, ...]

    @property
    def points(self) -> int:
        """How many of the eight criteria hold."""
        return sum(self.criteria.values())


def _sma(inputs: ScanInputs, period: int) -> FloatArray:
    name = f"sma_{period}"
    if name in SERIES:
        return inputs.series(name)
    return compute("sma", inputs.candles, {"period": period})["sma"]


def _high_low(inputs: ScanInputs, window: int) -> tuple[FloatArray, FloatArray]:
    if window == SERIES["high_52w"][1]["window"]:
        return inputs.series("high_52w"), inputs.series("low_52w")
    out = compute("high_low", inputs.candles, {"window": window})
    return out["high"], out["low"]


def _at(values: FloatArray, index: int | None) -> float:
    return float(values[index]) if index is not None else math.nan


def _rules(values: Mapping[str, Any], params: TrendTemplateParams) -> dict[str, Any]:
    """The criteria over ``values`` (floats for one scan day, or arrays for many: the same
    expressions either way). NaN compares False, so a rule with an unknown input fails."""
    v = values
    return {
        "close_above_sma150_and_sma200": (v["close"] > v["sma150"]) & (v["close"] > v["sma200"]),
        "sma150_above_sma200": v["sma150"] > v["sma200"],
        "sma200_rising": v["sma200"] > v["sma200_before"],
        "sma50_above_sma150_and_sma200": (v["sma50"] > v["sma150"]) & (v["sma50"] > v["sma200"]),
        "close_above_sma50": v["close"] > v["sma50"],
        "above_52w_low": v["close"] >= params.min_above_low * v["low_52w"],
        "near_52w_high": v["close"] >= params.min_of_high * v["high_52w"],
        "rs_rating": v["rs_rating"] >= params.min_rs_rating,
    }


def passes_on_each_bar(
    inputs: ScanInputs,
    params: TrendTemplateParams = TrendTemplateParams(),
    rs_rating: FloatArray | float | None = None,
) -> npt.NDArray[np.bool_]:
    """For every bar ``t`` of ``inputs``: would :func:`trend_template` pass with the candles
    (and series) ending at ``t`` and the RS rating ``rs_rating[t]`` (an array per bar, or
    one value; default ``inputs.rs_rating``)? One pass over arrays instead of a scan per bar:
    every input is causal (its value at ``t`` depends on bars up to ``t`` only), and the
    criteria are :func:`trend_template`'s own (:func:`_rules`)."""
    close = inputs.candles.close
    n = len(close)
    sma_long = _sma(inputs, params.sma_long)
    high_52w, low_52w = _high_low(inputs, params.week52_window)
    # the long SMA `rising_lookback` present bars before each present bar (as trend_template
    # looks back from its scan day over the bars with a close)
    present = np.flatnonzero(~np.isnan(close))
    lag = params.rising_lookback
    before = np.full(n, np.nan)
    if len(present) > lag:
        before[present[lag:]] = sma_long[present[:-lag]]
    rating = inputs.rs_rating if rs_rating is None else rs_rating
    values = {
        "close": close,
        "sma50": _sma(inputs, params.sma_short),
        "sma150": _sma(inputs, params.sma_mid),
        "sma200": sma_long,
        "sma200_before": before,
        "low_52w": low_52w,
        "high_52w": high_52w,
        "rs_rating": np.broadcast_to(
            np.asarray(math.nan if rating is None else rating, dtype=np.float64), (n,)
        ),
    }
    return _passes(values, params)


def _passes(values: Mapping[str, Any], params: TrendTemplateParams) -> npt.NDArray[np.bool_]:
    with np.errstate(invalid="ignore"):
        rules = _rules(values, params)
        passed: npt.NDArray[np.bool_] = np.logical_and.reduce(
            [np.asarray(rules[name], dtype=bool) for name in CRITERIA]
        )
    return passed


def passes_on_each_bar_columns(
    close: FloatArray,
    *,
    sma_short: FloatArray,
    sma_mid: FloatArray,
    sma_long: FloatArray,
    high_52w: FloatArray,
    low_52w: FloatArray,
    rs_rating: FloatArray | float,
    params: TrendTemplateParams = TrendTemplateParams(),
) -> npt.NDArray[np.bool_]:
    """:func:`passes_on_each_bar` of many instruments at once: every argument an ``(n, m)``
    matrix (bars × instruments; ``rs_rating`` may be one value), the series computed with
    ``params``' periods and window as :func:`trend_template` computes them (e.g. by
    :mod:`quant.indicators.columns`). Returns the ``(n, m)`` pass mask; column ``c`` is
    :func:`passes_on_each_bar` of instrument ``c``.

    Raises:
        quant.errors.ValidationError: the matrices' shapes differ.
    """
    shape = close.shape
    for name, matrix in (
        ("sma_short", sma_short),
        ("sma_mid", sma_mid),
        ("sma_long", sma_long),
        ("high_52w", high_52w),
        ("low_52w", low_52w),
    ):
        if matrix.shape != shape:
            raise ValidationError(
                f"{name} has shape {matrix.shape}, close {shape}", field=name, value=matrix.shape
            )
    lag = params.rising_lookback
    before = np.full(shape, np.nan)
    gappy = np.isnan(close).any(axis=0)
    if shape[0] > lag:
        before[lag:] = sma_long[:-lag]
    # a column with a missing close looks back over its present bars, as trend_template does
    for c in np.flatnonzero(gappy):
        before[:, c] = np.nan
        present = np.flatnonzero(~np.isnan(close[:, c]))
        if len(present) > lag:
            before[present[lag:], c] = sma_long[present[:-lag], c]
    rating = np.broadcast_to(np.asarray(rs_rating, dtype=np.float64), shape)
    values = {
        "close": close,
        "sma50": sma_short,
        "sma150": sma_mid,
        "sma200": sma_long,
        "sma200_before": before,
        "low_52w": low_52w,
        "high_52w": high_52w,
        "rs_rating": rating,
    }
    return _passes(values, params)


def trend_template(
    inputs: ScanInputs, params: TrendTemplateParams = TrendTemplateParams()
) -> TrendTemplate:
    """Evaluate the Trend Template on the last bar of ``inputs`` (see the module docstring).

    The moving averages and the 52-week range are read from ``inputs`` (precomputed, or
    computed from the candles); the RS rating is ``inputs.rs_rating``. Never raises for short
    or gappy histories: unknown inputs fail their criteria with a note.

    Raises:
        quant.errors.ValidationError: only for candles an indicator rejects (see
            :meth:`quant.scans.inputs.ScanInputs.series`).
    """
    close = inputs.candles.close
    present = np.flatnonzero(~np.isnan(close))
    have = len(present)
    # The scan day is the last bar; when its close is missing every input is unknown.
    last = len(close) - 1 if have and present[-1] == len(close) - 1 else None
    back = present[-1 - params.rising_lookback] if have > params.rising_lookback else None
    before_index = int(back) if last is not None and back is not None else None

    sma_long = _sma(inputs, params.sma_long)
    high_52w, low_52w = _high_low(inputs, params.week52_window)
    rating = inputs.rs_rating
    values = {
        "close": _at(close, last),
        "sma50": _at(_sma(inputs, params.sma_short), last),
        "sma150": _at(_sma(inputs, params.sma_mid), last),
        "sma200": _at(sma_long, last),
        "sma200_before": _at(sma_long, before_index),
        "low_52w": _at(low_52w, last),
        "high_52w": _at(high_52w, last),
        "rs_rating": float(rating) if rating is not None else math.nan,
    }

    notes: list[str] = []
    if last is None:
        notes.append(
            "no bars" if len(close) == 0 else "the scan-day bar has no close (missing bar)"
        )
    else:
        needs = (
            ("sma50", f"sma{params.sma_short}", params.sma_short),
            ("sma150", f"sma{params.sma_mid}", params.sma_mid),
            ("sma200", f"sma{params.sma_long}", params.sma_long),
            (
                "sma200_before",
                f"sma{params.sma_long} {params.rising_lookback} bars ago",
                params.sma_long + params.rising_lookback,
            ),
            ("high_52w", "52-week high/low", params.week52_window),
        )
        for key, label, bars in needs:
            if math.isnan(values[key]):
                notes.append(
                    f"{label} needs {bars} bars, have {have}"
                    if have < bars
                    else f"{label} is unknown on the scan day"
                )
        if math.isnan(values["low_52w"]) and not math.isnan(values["high_52w"]):
            notes.append("52-week low is unknown on the scan day")
    if math.isnan(values["rs_rating"]):
        notes.append("rs_rating is unknown (no universe RS rating for this instrument)")

    v = values
    rules = _rules(values, params)
    criteria = {name: bool(rules[name]) for name in CRITERIA}
    failed = tuple(name for name in CRITERIA if not criteria[name])
    insufficient = tuple(
        name for name in failed if any(math.isnan(v[key]) for key in CRITERION_INPUTS[name])
    )
    return TrendTemplate(
        passed=not failed,
        criteria=criteria,
        failed=failed,
        insufficient=insufficient,
        values=values,
        notes=tuple(notes),
    )
