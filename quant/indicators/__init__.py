"""Technical indicators: TA-Lib for the standard ones (:mod:`.standard`), vectorized NumPy and
numba for what TA-Lib lacks (:mod:`.custom`), one registry by name (:mod:`.registry`).

Missing bars (NaN) are skipped rather than propagated, warm-ups are NaN, outputs are float64 of
the input length (see :mod:`._arrays`).
"""

from __future__ import annotations

from quant.indicators.candles import COLUMNS, Candles
from quant.indicators.registry import (
    INDICATORS,
    IndicatorSpec,
    Params,
    canonical_params,
    compute,
    describe,
    params_key,
    spec,
)
from quant.indicators.request import INTERVALS, MAX_BARS, IndicatorRequest

#: Bars of daily history the universe scans read (52 weeks of highs/lows and RS need 253).
SCAN_BARS = 300

#: The indicators the scans read, precomputed for the whole universe after each daily
#: collection so that scans find them in the cache: (name, parameters).
SCAN_SET: tuple[tuple[str, dict[str, object]], ...] = (
    ("sma", {"period": 5}),
    ("sma", {"period": 20}),
    ("sma", {"period": 50}),
    ("sma", {"period": 60}),
    ("sma", {"period": 150}),
    ("sma", {"period": 200}),
    ("sma", {"period": 10, "source": "volume"}),
    ("sma", {"period": 20, "source": "volume"}),
    ("sma", {"period": 50, "source": "volume"}),
    ("rsi", {"period": 14}),
    ("atr", {"period": 14}),
    ("bbands", {"period": 20, "stddev": 2.0}),
    ("high_low", {"window": 252}),
    ("rs_raw", {}),
    ("volume_profile", {"window": 60, "bins": 24, "value_area": 0.70}),
)

__all__ = [
    "COLUMNS",
    "INDICATORS",
    "INTERVALS",
    "MAX_BARS",
    "SCAN_BARS",
    "SCAN_SET",
    "Candles",
    "IndicatorRequest",
    "IndicatorSpec",
    "Params",
    "canonical_params",
    "compute",
    "describe",
    "params_key",
    "spec",
]
