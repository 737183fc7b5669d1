"""What a scan reads for one instrument on one day, and one way to get every series.

The universe scan fills :class:`ScanInputs` from the indicator cache (the daily precompute
stores :data:`quant.indicators.SCAN_SET` for every instrument), so scans do not recompute;
a series missing from ``precomputed`` is computed here from the candles with the same
registry, so the answer never depends on whether the cache had it.

Units: prices in KRW per share, volumes in shares, traded value and every ``*_krw`` flow in
KRW, ``*_shares`` flows in shares. Flows are aligned to ``candles.time``; NaN is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from quant.errors import ValidationError
from quant.indicators import Candles, compute
from quant.indicators._arrays import FloatArray

#: Named series a scan can ask for: name → (indicator, parameters, output).
SERIES: dict[str, tuple[str, dict[str, object], str]] = {
    "sma_5": ("sma", {"period": 5}, "sma"),
    "sma_20": ("sma", {"period": 20}, "sma"),
    "sma_50": ("sma", {"period": 50}, "sma"),
    "sma_60": ("sma", {"period": 60}, "sma"),
    "sma_150": ("sma", {"period": 150}, "sma"),
    "sma_200": ("sma", {"period": 200}, "sma"),
    "volume_sma_10": ("sma", {"period": 10, "source": "volume"}, "sma"),
    "volume_sma_20": ("sma", {"period": 20, "source": "volume"}, "sma"),
    "volume_sma_50": ("sma", {"period": 50, "source": "volume"}, "sma"),
    "rsi_14": ("rsi", {"period": 14}, "rsi"),
    "atr_14": ("atr", {"period": 14}, "atr"),
    "bb_upper": ("bbands", {"period": 20, "stddev": 2.0}, "upper"),
    "bb_middle": ("bbands", {"period": 20, "stddev": 2.0}, "middle"),
    "bb_lower": ("bbands", {"period": 20, "stddev": 2.0}, "lower"),
    "high_52w": ("high_low", {"window": 252}, "high"),
    "low_52w": ("high_low", {"window": 252}, "low"),
    "rs_raw": ("rs_raw", {}, "rs_raw"),
    "vp_poc": ("volume_profile", {"window": 60, "bins": 24, "value_area": 0.70}, "poc"),
    "vp_vah": ("volume_profile", {"window": 60, "bins": 24, "value_area": 0.70}, "vah"),
    "vp_val": ("volume_profile", {"window": 60, "bins": 24, "value_area": 0.70}, "val"),
}

#: Flow columns a scan can read (net buying; KRW or shares as the name says).
FLOW_COLUMNS: tuple[str, ...] = (
    "foreign_net_krw",
    "institution_net_krw",
    "individual_net_krw",
    "foreign_net_shares",
    "institution_net_shares",
    "individual_net_shares",
)


@dataclass
class ScanInputs:
    """One instrument's data for a scan day (the last candle is the scan day).

    ``rs_rating``: the instrument's RS percentile (1–99) in the universe that day, ``None``
    when it has too little history. ``benchmark_rs_raw``: the universe median RS raw score,
    the "index" RS out-performance is measured against. ``news_score``: 0–3 from the AI
    analysis, ``None`` when no news was analysed.
    """

    instrument: str
    candles: Candles
    precomputed: Mapping[str, FloatArray] = field(default_factory=dict)
    flows: Mapping[str, FloatArray] = field(default_factory=dict)
    rs_rating: float | None = None
    benchmark_rs_raw: float | None = None
    news_score: int | None = None
    _computed: dict[str, FloatArray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.candles)
        for name, values in (*self.precomputed.items(), *self.flows.items()):
            if len(values) != n:
                raise ValidationError(
                    f"{self.instrument}: series {name} has {len(values)} values for {n} candles",
                    field=name,
                )
        unknown = set(self.flows) - set(FLOW_COLUMNS)
        if unknown:
            raise ValidationError(f"unknown flow column(s) {sorted(unknown)}", field="flows")

    def __len__(self) -> int:
        return len(self.candles)

    def series(self, name: str) -> FloatArray:
        """The named series (:data:`SERIES`): precomputed, or computed from the candles.

        Raises:
            quant.errors.ValidationError: an unknown name.
        """
        found = self.precomputed.get(name)
        if found is not None:
            return found
        cached = self._computed.get(name)
        if cached is not None:
            return cached
        if name not in SERIES:
            raise ValidationError(
                f"unknown series {name!r} (known: {', '.join(SERIES)})", field="series"
            )
        indicator, params, _output = SERIES[name]
        outputs = compute(indicator, self.candles, params)
        for other, (ind, p, out) in SERIES.items():
            if ind == indicator and p == params:
                self._computed[other] = outputs[out]
        return self._computed[name]

    def flow(self, name: str) -> FloatArray:
        """A flow column aligned to the candles (all NaN when flows are unknown)."""
        if name not in FLOW_COLUMNS:
            raise ValidationError(f"unknown flow column {name!r}", field="flows")
        found = self.flows.get(name)
        return found if found is not None else np.full(len(self.candles), np.nan)

    def last(self, name: str) -> float:
        """The scan day's value of a series (NaN when there are no bars)."""
        values = self.series(name)
        return float(values[-1]) if len(values) else float("nan")
