"""Indicators of many instruments at once: ``(n, m)`` float64 matrices, one column per
instrument (bars down the rows), for a whole-universe backtest.

Each function returns, for every column, exactly (bit for bit) what its one-series function
returns on that column: :func:`sma_columns` is :func:`quant.indicators.standard.sma`,
:func:`high_low_columns` is :func:`quant.indicators.custom.rolling_high_low` and
:func:`rs_raw_columns` is :func:`quant.indicators.custom.rs_raw`. The columns with no missing
bar are computed together, each with the same floating-point operations in the same order as
the one-series kernel (TA-Lib's running sum for the SMA; a maximum is exact in any order); a
column with a missing bar (NaN) goes through the one-series function, which skips it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from quant.errors import ValidationError
from quant.indicators._arrays import FloatArray, check_int
from quant.indicators.custom import MAX_WINDOW, _check_weights, rolling_high_low, rs_raw
from quant.indicators.standard import MAX_PERIOD, sma


def _matrix(x: object, name: str) -> FloatArray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValidationError(
            f"{name} must be a 2-D (bars, instruments) matrix, got shape {a.shape}", field=name
        )
    return a


def _complete(*matrices: FloatArray) -> npt.NDArray[np.bool_]:
    """Columns with no NaN in any of ``matrices``."""
    mask = np.ones(matrices[0].shape[1], dtype=bool)
    for a in matrices:
        mask &= ~np.isnan(a).any(axis=0)
    return mask


def _each_other_column(
    complete: npt.NDArray[np.bool_],
    outs: tuple[FloatArray, ...],
    one: Callable[[int], tuple[FloatArray, ...]],
) -> None:
    for c in np.flatnonzero(~complete):
        for out, values in zip(outs, one(int(c)), strict=True):
            out[:, c] = values


def sma_columns(x: object, period: int) -> FloatArray:
    """:func:`quant.indicators.standard.sma` of every column of ``x`` (bars × instruments).

    TA-Lib's SMA keeps a running total: the first ``period − 1`` values summed, then per bar
    the new value added, the total divided by ``period``, the oldest value subtracted. The
    complete columns run that recurrence side by side (a vector per bar), so each gets the
    same sums in the same order.

    Raises:
        quant.errors.ValidationError: ``x`` not 2-D; ``period`` not an integer in range.
    """
    a = _matrix(x, "values")
    p = check_int(period, "period", minimum=1, maximum=MAX_PERIOD)
    n, m = a.shape
    out = np.full((n, m), np.nan)
    complete = _complete(a)
    if complete.any() and n >= p:
        v = a[:, complete] if not complete.all() else a
        total = np.zeros(v.shape[1])
        for i in range(p - 1):
            total += v[i]
        block = np.empty((n - p + 1, v.shape[1]))
        for i in range(p - 1, n):
            total += v[i]
            np.divide(total, p, out=block[i - p + 1])
            total -= v[i - p + 1]
        if complete.all():
            out[p - 1 :] = block
        else:
            out[p - 1 :, complete] = block
    _each_other_column(complete, (out,), lambda c: (sma(a[:, c], p),))
    return out


def _running_max_columns(x: FloatArray, window: int) -> FloatArray:
    """Max of ``x[max(0, t − window + 1) … t, c]`` for every t and column (NaN-free ``x``),
    by van Herk / Gil-Werman blocks down the rows (O(n) per column)."""
    n, m = x.shape
    length = n + window - 1
    blocks = -(-length // window)
    padded = np.full((blocks * window, m), -np.inf)
    padded[window - 1 : length] = x
    grid = padded.reshape(blocks, window, m)
    prefix = np.maximum.accumulate(grid, axis=1).reshape(-1, m)
    suffix = np.maximum.accumulate(grid[:, ::-1], axis=1)[:, ::-1].reshape(-1, m)
    return np.maximum(suffix[:n], prefix[window - 1 : window - 1 + n])


def high_low_columns(
    high: object, low: object, *, window: int = 252, min_periods: int | None = None
) -> tuple[FloatArray, FloatArray]:
    """:func:`quant.indicators.custom.rolling_high_low` of every column: ``(highest,
    lowest)`` over the last ``window`` present bars, NaN before ``min_periods`` (default
    ``window``) present bars.

    Raises:
        quant.errors.ValidationError: a matrix not 2-D or of another shape; ``window`` or
            ``min_periods`` out of range.
    """
    h, lo = _matrix(high, "high"), _matrix(low, "low")
    if h.shape != lo.shape:
        raise ValidationError(
            f"high and low must have the same shape, got {h.shape} and {lo.shape}", field="low"
        )
    w = check_int(window, "window", minimum=1, maximum=MAX_WINDOW)
    need = w if min_periods is None else check_int(min_periods, "min_periods", minimum=1, maximum=w)
    n, m = h.shape
    highest = np.full((n, m), np.nan)
    lowest = np.full((n, m), np.nan)
    complete = _complete(h, lo)
    if complete.any() and n:
        every = complete.all()
        hi_max = _running_max_columns(h if every else h[:, complete], w)
        lo_min = -_running_max_columns(-(lo if every else lo[:, complete]), w)
        hi_max[: need - 1] = np.nan
        lo_min[: need - 1] = np.nan
        if every:
            highest, lowest = hi_max, lo_min
        else:
            highest[:, complete] = hi_max
            lowest[:, complete] = lo_min
    _each_other_column(
        complete,
        (highest, lowest),
        lambda c: rolling_high_low(h[:, c], lo[:, c], window=w, min_periods=need),
    )
    return highest, lowest


def rs_raw_columns(
    close: object,
    *,
    periods: tuple[int, ...] = (63, 126, 189, 252),
    weights: tuple[float, ...] = (0.4, 0.2, 0.2, 0.2),
) -> FloatArray:
    """:func:`quant.indicators.custom.rs_raw` of every column (a fraction; lags in present
    bars).

    Raises:
        quant.errors.ValidationError: ``close`` not 2-D; whatever :func:`rs_raw` raises for a
            column (a present close ≤ 0, bad ``periods`` or ``weights``), naming the column.
    """
    c = _matrix(close, "close")
    n, m = c.shape
    out = np.full((n, m), np.nan)
    complete = _complete(c) & (c > 0).all(axis=0)
    lags, factors = _check_weights(periods, weights)  # rs_raw's own validation
    if complete.any():
        v = c if complete.all() else c[:, complete]
        total: FloatArray = np.zeros(v.shape)
        for lag, factor in zip(lags, factors, strict=True):
            ratio = np.full(v.shape, np.nan)
            if n > lag:
                ratio[lag:] = v[lag:] / v[:-lag] - 1.0
            total += factor * ratio
        if complete.all():
            out = total
        else:
            out[:, complete] = total

    def one(col: int) -> tuple[FloatArray]:
        try:
            return (rs_raw(c[:, col], periods=periods, weights=weights),)
        except ValidationError as exc:
            raise ValidationError(f"column {col}: {exc}", field=exc.field) from exc

    _each_other_column(complete, (out,), one)
    return out
