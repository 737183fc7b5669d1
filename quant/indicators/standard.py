"""The standard indicators, computed by TA-Lib (the C library, through its bundled wheel).

Each function validates its inputs and parameters, applies the missing-bar policy of
:mod:`quant.indicators._arrays` (NaN bars are skipped and come back as NaN; TA-Lib alone would
carry one NaN through every later value) and returns float64 arrays of the input length, NaN
during the warm-up. Prices are in the instrument's currency, volumes in shares (or coins).

Raises (every function): :class:`quant.errors.ValidationError` for a bad input (not 1-D, not
numeric, an infinity, lengths that differ) or a parameter out of range; the message names it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import talib
from talib._ta_lib import MA_Type

from quant.errors import ValidationError
from quant.indicators._arrays import (
    FloatArray,
    as_inputs,
    as_series,
    check_float,
    check_int,
    on_present,
)

#: Longest window any indicator accepts (bars).
MAX_PERIOD = 5_000


class Macd(NamedTuple):
    macd: FloatArray
    signal: FloatArray
    hist: FloatArray


class Bands(NamedTuple):
    upper: FloatArray
    middle: FloatArray
    lower: FloatArray


def _one(values: FloatArray) -> tuple[FloatArray]:
    return (values,)


def sma(values: object, period: int = 20) -> FloatArray:
    """Simple moving average of ``values`` over ``period`` bars (TA-Lib ``SMA``); the first
    ``period − 1`` values are NaN."""
    x = as_series(values, "values")
    n = check_int(period, "period", minimum=1, maximum=MAX_PERIOD)
    return on_present(lambda v: _one(talib.SMA(v, timeperiod=n)), [x])[0]


def ema(values: object, period: int = 20) -> FloatArray:
    """Exponential moving average, α = 2/(period+1), seeded with the SMA of the first
    ``period`` bars (TA-Lib ``EMA``); the first ``period − 1`` values are NaN."""
    x = as_series(values, "values")
    n = check_int(period, "period", minimum=1, maximum=MAX_PERIOD)
    return on_present(lambda v: _one(talib.EMA(v, timeperiod=n)), [x])[0]


def _rsi(close: FloatArray, period: int) -> tuple[FloatArray]:
    out = np.asarray(talib.RSI(close, timeperiod=period), dtype=np.float64)
    # RS = 0/0 while the price has never moved: TA-Lib says 0 ("oversold"), which is wrong
    # for a flat series. Report the neutral 50 until the first change.
    if len(close) > 1:
        moved = np.concatenate(([False], np.cumsum(np.diff(close) != 0) > 0))
        flat = ~moved & ~np.isnan(out)
        out[flat] = 50.0
    return (out,)


def rsi(close: object, period: int = 14) -> FloatArray:
    """Wilder's relative strength index, 0–100 (TA-Lib ``RSI``); the first ``period`` values
    are NaN. A series that has not moved since its start reads 50 (RS = 0/0), not TA-Lib's 0.
    """
    x = as_series(close, "close")
    n = check_int(period, "period", minimum=2, maximum=MAX_PERIOD)
    return on_present(_rsi, [x], period=n)[0]


def macd(close: object, fast: int = 12, slow: int = 26, signal: int = 9) -> Macd:
    """MACD line (EMA fast − EMA slow), its signal line (EMA of the MACD) and the histogram
    (TA-Lib ``MACD``). Warm-up: ``slow + signal − 2`` bars.

    Raises:
        quant.errors.ValidationError: also when ``fast >= slow``.
    """
    x = as_series(close, "close")
    f = check_int(fast, "fast", minimum=2, maximum=MAX_PERIOD)
    s = check_int(slow, "slow", minimum=2, maximum=MAX_PERIOD)
    g = check_int(signal, "signal", minimum=1, maximum=MAX_PERIOD)
    if f >= s:
        raise ValidationError(f"fast ({f}) must be below slow ({s})", field="fast", value=fast)
    out = on_present(
        lambda v: talib.MACD(v, fastperiod=f, slowperiod=s, signalperiod=g),
        [x],
    )
    return Macd(*out)


def bbands(close: object, period: int = 20, stddev: float = 2.0) -> Bands:
    """Bollinger Bands: SMA(period) ± ``stddev`` × the population standard deviation over the
    same window (TA-Lib ``BBANDS``, as Bollinger defines it). Warm-up: ``period − 1`` bars."""
    x = as_series(close, "close")
    n = check_int(period, "period", minimum=2, maximum=MAX_PERIOD)
    k = check_float(stddev, "stddev", minimum=0.0, maximum=10.0, inclusive_minimum=False)
    out = on_present(
        lambda v: talib.BBANDS(v, timeperiod=n, nbdevup=k, nbdevdn=k, matype=MA_Type.SMA),
        [x],
    )
    return Bands(*out)


def atr(high: object, low: object, close: object, period: int = 14) -> FloatArray:
    """Wilder's average true range, in price units (TA-Lib ``ATR``); the first ``period``
    values are NaN."""
    h, lo, c = as_inputs(high=high, low=low, close=close)
    n = check_int(period, "period", minimum=1, maximum=MAX_PERIOD)
    return on_present(lambda a, b, d: _one(talib.ATR(a, b, d, timeperiod=n)), [h, lo, c])[0]


def obv(close: object, volume: object) -> FloatArray:
    """On-balance volume, in the volume's unit, starting from the first bar's volume
    (TA-Lib ``OBV``); no warm-up."""
    c, v = as_inputs(close=close, volume=volume)
    return on_present(lambda a, b: _one(talib.OBV(a, b)), [c, v])[0]
