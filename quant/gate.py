"""The Market Gate and sector strength (domain notes §7): pure functions over daily bars.

The original system's ``market_gate.py`` scores the market and each sector 0–100 from a year
of daily bars; quantbeat keeps its rules, makes every threshold a parameter
(:class:`GateParams`), and never answers a default colour on missing data: a gate whose inputs
are missing is :data:`UNKNOWN` with the reason.

**Score of one series** (:func:`score_readings`, 0–100), from its latest readings
(:func:`readings`):

* trend — close > MA20 > MA60: 25; else close > MA20: 15; else close > MA60: 10; else 0;
* RSI(14) — 50 ≤ RSI ≤ 70: 25; 40 ≤ RSI < 50: 15; 30 ≤ RSI < 40: 20; RSI < 30: 10;
  RSI > 70: 0;
* MACD(12, 26, 9) line above its signal line: 20;
* volume / MA20(volume) — > 1.2: 15; > 0.8: 10; else 0 (a series without volume, such as an
  index whose provider gives none, scores 0 here and says so in its readings);
* relative strength vs KOSPI over 20 sessions, in percentage points — > 2: 15; > 0: 10;
  > −2: 5; else 0 (KOSPI against itself is 0 pp: 5).

**The gate** (:func:`market_gate`): the market score is the mean of the KOSPI score (KODEX 200
when KOSPI is missing) and the KOSDAQ score. USD/KRW at or above ``fx_red`` (1450) makes it
RED whatever the score, and from ``fx_warning`` (1400) it carries a warning; otherwise GREEN
at ≥ 70, YELLOW at ≥ 45, else RED. A missing or too-short input (KOSPI and KODEX 200, KOSDAQ,
or USD/KRW) makes it UNKNOWN with the reason.

**Sectors** (:func:`sector_strength`): each sector ETF's score; BULLISH ≥ 70, BEARISH < 40,
else NEUTRAL; ranked strongest first, the strongest and weakest named. An ETF without enough
bars is listed as unknown with the reason and not ranked.

**KODEX 200 status** (:func:`kodex_status`): RISK_ON when close > MA200 and MA20 > MA50,
RISK_OFF when close < MA200, else NEUTRAL.

Prices are in points (indices), KRW (ETFs) or KRW per USD; volumes in shares. Inputs are
aligned by the caller: the benchmark's closes must cover the same sessions as the series.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from quant.errors import ValidationError
from quant.indicators._arrays import FloatArray, as_series
from quant.indicators.standard import macd, rsi, sma
from quant.market.types import DEFAULT_SECTOR_ETFS as DEFAULT_SECTOR_ETFS  # re-exported

GREEN, YELLOW, RED, UNKNOWN = "GREEN", "YELLOW", "RED", "UNKNOWN"
BULLISH, NEUTRAL, BEARISH = "BULLISH", "NEUTRAL", "BEARISH"
RISK_ON, RISK_OFF = "RISK_ON", "RISK_OFF"

#: KODEX 200, the KOSPI stand-in when the index is missing.
KODEX_200 = "069500"


@dataclass(frozen=True)
class GateParams:
    """Every threshold of §7 (defaults: the original system's values)."""

    ma_short: int = 20
    ma_long: int = 60
    rsi_period: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    volume_period: int = 20
    rs_sessions: int = 20
    trend_full: float = 25.0
    trend_above_short: float = 15.0
    trend_above_long: float = 10.0
    rsi_healthy: tuple[float, float, float] = (50.0, 70.0, 25.0)
    rsi_neutral: tuple[float, float, float] = (40.0, 50.0, 15.0)
    rsi_weak: tuple[float, float, float] = (30.0, 40.0, 20.0)
    rsi_oversold: float = 10.0
    rsi_overbought: float = 0.0
    macd_points: float = 20.0
    volume_high: tuple[float, float] = (1.2, 15.0)
    volume_normal: tuple[float, float] = (0.8, 10.0)
    rs_strong: tuple[float, float] = (2.0, 15.0)
    rs_positive: tuple[float, float] = (0.0, 10.0)
    rs_flat: tuple[float, float] = (-2.0, 5.0)
    fx_warning: float = 1_400.0
    fx_red: float = 1_450.0
    green: float = 70.0
    yellow: float = 45.0
    bullish: float = 70.0
    bearish: float = 40.0
    status_long: int = 200
    status_fast: int = 20
    status_slow: int = 50

    @property
    def min_sessions(self) -> int:
        """Bars a series needs for every reading (the longest warm-up, plus one)."""
        return max(
            self.ma_long,
            self.rsi_period + 1,
            self.macd_slow + self.macd_signal - 1,
            self.volume_period,
            self.rs_sessions + 1,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe parameters (stored with every gate)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Readings:
    """The latest values a score is computed from (prices in the series' unit)."""

    close: float
    ma_short: float
    ma_long: float
    rsi: float
    macd: float
    macd_signal: float
    volume_ratio: float | None
    change_pct: float
    benchmark_change_pct: float

    @property
    def relative_strength_pp(self) -> float:
        """Change over the RS window minus the benchmark's, in percentage points."""
        return self.change_pct - self.benchmark_change_pct


@dataclass(frozen=True)
class Score:
    """One series' score (0–100) by component, with the readings behind it."""

    total: float
    trend: float
    rsi: float
    macd: float
    volume: float
    relative_strength: float
    readings: Readings

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: components, total and readings (rounded to 4 decimals)."""
        out: dict[str, Any] = {
            "total": self.total,
            "trend": self.trend,
            "rsi": self.rsi,
            "macd": self.macd,
            "volume": self.volume,
            "relative_strength": self.relative_strength,
        }
        r = asdict(self.readings)
        r["relative_strength_pp"] = self.readings.relative_strength_pp
        out["readings"] = {k: _round(v) for k, v in r.items()}
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _last(values: FloatArray) -> float:
    return float(values[-1]) if len(values) else math.nan


def readings(
    close: object,
    volume: object | None,
    benchmark_close: object,
    params: GateParams = GateParams(),
    *,
    name: str = "series",
) -> Readings:
    """The latest readings of one daily series (oldest bar first) against the benchmark's
    closes over the same sessions. ``volume`` ``None`` (or all NaN/zero): no volume reading.

    Raises:
        quant.errors.ValidationError: the series is shorter than ``params.min_sessions``, its
            last bar or the benchmark's is missing (NaN), the lengths differ, or a value is not
            a finite number; the message names ``name``.
    """
    c = as_series(close, f"{name}.close")
    b = as_series(benchmark_close, f"{name}.benchmark_close")
    need = params.min_sessions
    if len(c) < need:
        raise ValidationError(
            f"{name}: {len(c)} daily bars, the gate needs at least {need}",
            field=f"{name}.close",
            value=len(c),
        )
    if len(b) != len(c):
        raise ValidationError(
            f"{name}: benchmark has {len(b)} bars for {len(c)} of the series",
            field=f"{name}.benchmark_close",
            value=len(b),
        )
    window = params.rs_sessions
    for label, series in (("close", c), ("benchmark close", b)):
        if math.isnan(series[-1]) or math.isnan(series[-1 - window]):
            raise ValidationError(
                f"{name}: the {label} of the latest session or of {window} sessions before is "
                "missing",
                field=f"{name}.close",
                value=None,
            )
    line = macd(c, params.macd_fast, params.macd_slow, params.macd_signal)
    ratio: float | None = None
    if volume is not None:
        v = as_series(volume, f"{name}.volume")
        if len(v) != len(c):
            raise ValidationError(
                f"{name}: volume has {len(v)} bars for {len(c)} closes",
                field=f"{name}.volume",
                value=len(v),
            )
        mean = _last(sma(v, params.volume_period))
        today = float(v[-1])
        if math.isfinite(mean) and mean > 0 and math.isfinite(today):
            ratio = today / mean
    found = Readings(
        close=float(c[-1]),
        ma_short=_last(sma(c, params.ma_short)),
        ma_long=_last(sma(c, params.ma_long)),
        rsi=_last(rsi(c, params.rsi_period)),
        macd=_last(line.macd),
        macd_signal=_last(line.signal),
        volume_ratio=ratio,
        change_pct=(float(c[-1]) / float(c[-1 - window]) - 1.0) * 100.0,
        benchmark_change_pct=(float(b[-1]) / float(b[-1 - window]) - 1.0) * 100.0,
    )
    missing = [
        k
        for k in ("ma_short", "ma_long", "rsi", "macd", "macd_signal")
        if not math.isfinite(getattr(found, k))
    ]
    if missing:
        raise ValidationError(
            f"{name}: {', '.join(missing)} not computable from the latest bars (missing bars)",
            field=f"{name}.close",
            value=None,
        )
    return found


def score_readings(r: Readings, params: GateParams = GateParams()) -> Score:
    """The 0–100 score of §7 from ``r`` (see the module for the rules)."""
    if r.close > r.ma_short > r.ma_long:
        trend = params.trend_full
    elif r.close > r.ma_short:
        trend = params.trend_above_short
    elif r.close > r.ma_long:
        trend = params.trend_above_long
    else:
        trend = 0.0
    low, high, points = params.rsi_healthy
    if r.rsi > high:
        rsi_points = params.rsi_overbought
    elif r.rsi >= low:
        rsi_points = points
    elif r.rsi >= params.rsi_neutral[0]:
        rsi_points = params.rsi_neutral[2]
    elif r.rsi >= params.rsi_weak[0]:
        rsi_points = params.rsi_weak[2]
    else:
        rsi_points = params.rsi_oversold
    macd_points = params.macd_points if r.macd > r.macd_signal else 0.0
    volume_points = 0.0
    if r.volume_ratio is not None:
        if r.volume_ratio > params.volume_high[0]:
            volume_points = params.volume_high[1]
        elif r.volume_ratio > params.volume_normal[0]:
            volume_points = params.volume_normal[1]
    rs = r.relative_strength_pp
    rs_points = 0.0
    for threshold, points_at in (params.rs_strong, params.rs_positive, params.rs_flat):
        if rs > threshold:
            rs_points = points_at
            break
    total = trend + rsi_points + macd_points + volume_points + rs_points
    return Score(total, trend, rsi_points, macd_points, volume_points, rs_points, r)


@dataclass(frozen=True)
class Series:
    """One input of the gate: daily closes and volumes, oldest first (``volume`` may be
    ``None``)."""

    close: Sequence[float] | FloatArray
    volume: Sequence[float] | FloatArray | None = None


@dataclass(frozen=True)
class Gate:
    """The Market Gate: colour, score (``None`` when UNKNOWN), why, and what it came from."""

    color: str
    score: float | None
    reason: str
    usdkrw: float | None = None
    fx_warning: bool = False
    components: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe (stored with the gate and printed by ``quantbeat gate --json``)."""
        return {
            "color": self.color,
            "score": None if self.score is None else round(self.score, 2),
            "reason": self.reason,
            "usdkrw": _round(self.usdkrw),
            "fx_warning": self.fx_warning,
            "components": self.components,
        }


def _score(name: str, series: Series, benchmark: Series, params: GateParams) -> Score:
    found = readings(series.close, series.volume, benchmark.close, params, name=name)
    return score_readings(found, params)


def market_gate(
    *,
    kospi: Series | None,
    kosdaq: Series | None,
    usdkrw: Sequence[float] | FloatArray | None,
    kodex200: Series | None = None,
    params: GateParams = GateParams(),
) -> Gate:
    """The gate of §7 from the KOSPI (or, when it is missing, KODEX 200), KOSDAQ and USD/KRW
    daily series (aligned sessions, oldest first). Never raises for missing or short data:
    the gate is :data:`UNKNOWN` with the reason.

    Raises:
        quant.errors.ValidationError: a series holds a non-numeric or infinite value.
    """
    fx = None if usdkrw is None else as_series(usdkrw, "usdkrw")
    rate = float(fx[-1]) if fx is not None and len(fx) and math.isfinite(fx[-1]) else None
    warning = rate is not None and rate >= params.fx_warning
    problems: list[str] = []
    base_name, base = ("KOSPI", kospi) if kospi is not None else ("KODEX 200", kodex200)
    components: dict[str, Any] = {}
    scores: list[float] = []
    if base is None:
        problems.append("no KOSPI (nor KODEX 200) bars")
    if kosdaq is None:
        problems.append("no KOSDAQ bars")
    if base is not None:
        for name, series in ((base_name, base), ("KOSDAQ", kosdaq)):
            if series is None:
                continue
            try:
                score = _score(name, series, base, params)
            except ValidationError as exc:
                problems.append(str(exc))
                continue
            components[name] = score.as_dict()
            scores.append(score.total)
    if rate is None:
        problems.append("no USD/KRW rate for the session")
    if problems:
        return Gate(UNKNOWN, None, "; ".join(problems), rate, warning, components)
    assert rate is not None  # for mypy: problems covers it
    total = sum(scores) / len(scores)
    color, reason = decide(total, rate, params)
    return Gate(color, total, reason, rate, warning, components)


def decide(score: float, usdkrw: float, params: GateParams = GateParams()) -> tuple[str, str]:
    """The gate's colour and why, from the market score (0–100) and the USD/KRW rate: RED at
    ``fx_red`` or above whatever the score; else GREEN ≥ ``green``, YELLOW ≥ ``yellow``, else
    RED; the reason notes the FX warning from ``fx_warning``."""
    if usdkrw >= params.fx_red:
        return RED, f"USD/KRW {usdkrw:,.1f} ≥ {params.fx_red:,.0f}: RED whatever the score"
    if score >= params.green:
        color, reason = GREEN, f"score {score:.1f} ≥ {params.green:g}"
    elif score >= params.yellow:
        color, reason = YELLOW, f"score {score:.1f} ≥ {params.yellow:g} and < {params.green:g}"
    else:
        color, reason = RED, f"score {score:.1f} < {params.yellow:g}"
    if usdkrw >= params.fx_warning:
        reason += f"; USD/KRW {usdkrw:,.1f} ≥ {params.fx_warning:,.0f} (warning)"
    return color, reason


@dataclass(frozen=True)
class Sector:
    """One sector ETF's strength (``score``/``status`` ``None``/``"UNKNOWN"`` when its bars
    are missing, with the reason)."""

    code: str
    name: str
    score: float | None
    status: str
    rank: int | None
    reason: str | None = None
    components: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        return {
            "code": self.code,
            "name": self.name,
            "score": None if self.score is None else round(self.score, 2),
            "status": self.status,
            "rank": self.rank,
            "reason": self.reason,
            "components": self.components,
        }


@dataclass(frozen=True)
class Sectors:
    """Sectors ranked strongest first (unknown ones last), the strongest and weakest named."""

    ranked: list[Sector]
    strongest: str | None
    weakest: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        return {
            "sectors": [s.as_dict() for s in self.ranked],
            "strongest": self.strongest,
            "weakest": self.weakest,
        }


def sector_strength(
    etfs: Mapping[str, Series | None],
    names: Mapping[str, str],
    benchmark: Series | None,
    params: GateParams = GateParams(),
) -> Sectors:
    """Score each sector ETF (code → series; ``names``: code → sector name) against the
    benchmark (KOSPI), label it BULLISH (≥ ``params.bullish``), BEARISH (< ``params.bearish``)
    or NEUTRAL, and rank them, strongest first; ties by code. Never raises for missing data."""
    known: list[tuple[str, Score]] = []
    unknown: list[Sector] = []
    for code in sorted(etfs):
        series = etfs[code]
        name = names.get(code, code)
        if series is None or benchmark is None:
            why = "no bars" if series is None else "no KOSPI bars to compare with"
            unknown.append(Sector(code, name, None, UNKNOWN, None, why))
            continue
        try:
            known.append((code, _score(name, series, benchmark, params)))
        except ValidationError as exc:
            unknown.append(Sector(code, name, None, UNKNOWN, None, str(exc)))
    known.sort(key=lambda item: (-item[1].total, item[0]))
    ranked = []
    for rank, (code, score) in enumerate(known, start=1):
        if score.total >= params.bullish:
            status = BULLISH
        elif score.total < params.bearish:
            status = BEARISH
        else:
            status = NEUTRAL
        ranked.append(
            Sector(code, names.get(code, code), score.total, status, rank, None, score.as_dict())
        )
    strongest = ranked[0].name if ranked else None
    weakest = ranked[-1].name if len(ranked) > 1 else None
    return Sectors(ranked + unknown, strongest, weakest)


def kodex_status(close: object, params: GateParams = GateParams()) -> tuple[str, str]:
    """KODEX 200's status and why: RISK_ON (close > MA200 and MA20 > MA50), RISK_OFF
    (close < MA200), else NEUTRAL; UNKNOWN when fewer than ``params.status_long`` bars."""
    c = as_series(close, "kodex200.close")
    if len(c) < params.status_long or math.isnan(c[-1]):
        return UNKNOWN, f"{len(c)} bars, MA{params.status_long} needs {params.status_long}"
    long_ma = _last(sma(c, params.status_long))
    fast = _last(sma(c, params.status_fast))
    slow = _last(sma(c, params.status_slow))
    last = float(c[-1])
    if not all(np.isfinite([long_ma, fast, slow])):
        return UNKNOWN, "moving averages not computable (missing bars)"
    if last > long_ma and fast > slow:
        return RISK_ON, (
            f"close {last:,.0f} > MA{params.status_long} {long_ma:,.0f} and "
            f"MA{params.status_fast} > MA{params.status_slow}"
        )
    if last < long_ma:
        return RISK_OFF, f"close {last:,.0f} < MA{params.status_long} {long_ma:,.0f}"
    return NEUTRAL, "above the long average without a rising short trend"
