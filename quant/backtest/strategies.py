"""The backtestable strategies: signal builders plus their execution rules.

Every builder reads only what was known at each bar's close (indicators are causal; the
scan-based ones run the scan on the history up to that bar), so a signal at bar ``t`` never
changes when later bars change. Each strategy states its fill (next open or close):

* ``sma_crossover`` — the reference: buy when SMA(fast) crosses above SMA(slow), sell when it
  crosses below (backtesting.py's ``crossover``: strictly below, then strictly above); fills
  at the next open.
* ``volume_zone_breakout`` — domain notes §4: a close through the value-area high of the
  previous 60 bars on volume; stop ``max(VAH − 1·ATR14, close·0.92)`` (the signal close, known
  when the bracket order goes in), failed breakout after 2 closes below the breakout VAH,
  half off at +2R, the rest trailed ``max(H since entry) − 3·ATR14`` or closed below SMA20, a
  20-bar time stop while under +1R; fills at the next open.
* ``vcp_breakout`` — the VCP scan's breakout (Trend Template passed, valid pattern, close
  above the pivot on volume, not extended); stop = the pattern's stop, at most 8 % below the
  fill; exit on a close below SMA50; risk-unit sizing; fills at the next open.
* ``crypto_trend`` — the hourly crypto signal's daily leg on a 24/7 market (UTC days): long
  while close > SMA20 > SMA50 with a positive MACD histogram, out when the close falls
  below SMA20 with a negative one; fills at the next open, Upbit's 0.05 % fees, fractional
  coins, annualized over 365 days.
* ``closing_bet`` — 종가베팅 V2 candidates graded S/A/B (domain notes §3), bought at the
  close; next session: gap up ≥ 3 % or down ≤ −2 % sells at the open, else −3 % stop, +5 %
  target, else out at that session's close (daily bars cannot see the 10:00 time stop);
  R = 0.5 % of equity × grade weight (S 1.5, A 1.0, B 0.5).

Prices are in the instrument's currency, volumes in shares, traded value and flows in KRW.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from quant.backtest.engine import (
    BoolArray,
    ExecutionConfig,
    FloatArray,
    Market,
    Signals,
    _jit,
)
from quant.errors import ValidationError
from quant.indicators import Candles
from quant.indicators.columns import high_low_columns, rs_raw_columns, sma_columns
from quant.indicators.custom import rolling_volume_profile, rs_rating
from quant.indicators.standard import atr, macd
from quant.scans.closing_bet import ClosingBetParams, closing_bet
from quant.scans.inputs import FLOW_COLUMNS, ScanInputs
from quant.scans.supply import supply_demand
from quant.scans.trend import TrendTemplateParams, passes_on_each_bar_columns
from quant.scans.vcp import (
    VcpParams,
    breakout_volume_possible_columns,
    find_vcp,
    scan_vcp,
)

#: ``progress(done, total)``: called after each instrument of a per-instrument builder; it may
#: raise to stop the build (a cancelled run).
Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# Vectorized helpers over (bars, instruments)
# --------------------------------------------------------------------------------------------


@_jit
def _rolling_mean_kernel(x: FloatArray, window: int) -> FloatArray:
    n, m = x.shape
    out = np.full((n, m), np.nan)
    for c in range(m):
        total = 0.0
        nans = 0
        for t in range(n):
            v = x[t, c]
            if math.isnan(v):
                nans += 1
            else:
                total += v
            if t >= window:
                old = x[t - window, c]
                if math.isnan(old):
                    nans -= 1
                else:
                    total -= old
            if t >= window - 1 and nans == 0:
                out[t, c] = total / window
    return out


def rolling_mean(x: FloatArray, window: int) -> FloatArray:
    """Mean of the last ``window`` bars per column, NaN while a window holds a NaN (pandas'
    ``rolling(window).mean()``).

    Raises:
        quant.errors.ValidationError: ``window`` not an integer ≥ 1.
    """
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ValidationError(f"window must be an integer >= 1, got {window!r}", field="window")
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim == 1:
        result: FloatArray = _rolling_mean_kernel(a.reshape(-1, 1), window)[:, 0]
        return result
    return _rolling_mean_kernel(a, window)


def _shift(x: np.ndarray[Any, Any], fill: Any) -> np.ndarray[Any, Any]:
    out = np.empty_like(x)
    out[0] = fill
    out[1:] = x[:-1]
    return out


def _ffill(x: FloatArray) -> FloatArray:
    """Each NaN replaced by the last non-NaN value above it in its column (NaN before any)."""
    n = x.shape[0]
    rows = np.where(np.isnan(x), 0, np.arange(n).reshape((-1,) + (1,) * (x.ndim - 1)))
    rows = np.maximum.accumulate(rows, axis=0)
    result: FloatArray = np.take_along_axis(x, rows, axis=0)
    return result


def crossed_above(a: FloatArray, b: FloatArray) -> BoolArray:
    """``a[t-1] < b[t-1] and a[t] > b[t]`` (NaN compares False)."""
    with np.errstate(invalid="ignore"):
        result: BoolArray = (_shift(a, np.nan) < _shift(b, np.nan)) & (a > b)
    return result


def _candles(market: Market, c: int, stop: int | None = None) -> Candles:
    end = len(market.times) if stop is None else stop
    return Candles(
        time=market.times[:end],
        open=np.ascontiguousarray(market.open[:end, c]),
        high=np.ascontiguousarray(market.high[:end, c]),
        low=np.ascontiguousarray(market.low[:end, c]),
        close=np.ascontiguousarray(market.close[:end, c]),
        volume=np.ascontiguousarray(market.volume[:end, c]),
        traded_value=np.ascontiguousarray(market.column("traded_value")[:end, c]),
    )


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------


def sma_crossover(
    market: Market,
    params: Mapping[str, Any],
    flows: Mapping[str, FloatArray] | None = None,
    progress: Progress | None = None,
) -> Signals:
    """Entries where SMA(fast) crosses above SMA(slow), exits where it crosses below."""
    fast = rolling_mean(market.close, int(params["fast"]))
    slow = rolling_mean(market.close, int(params["slow"]))
    return Signals(entries=crossed_above(fast, slow), exits=crossed_above(slow, fast))


def crypto_trend(
    market: Market,
    params: Mapping[str, Any],
    flows: Mapping[str, FloatArray] | None = None,
    progress: Progress | None = None,
) -> Signals:
    """The crypto signal's daily leg (:mod:`quant.crypto.signal`) on a 24/7 market: long
    from the first close where the daily view would vote BUY — close > SMA(fast) > SMA(slow)
    and the MACD(12, 26, 9) histogram > 0 — until a close below SMA(fast) with the
    histogram < 0 (the trend and the momentum both turned)."""
    close = market.close
    fast = rolling_mean(close, int(params["fast"]))
    slow = rolling_mean(close, int(params["slow"]))
    hist = np.full(close.shape, np.nan)
    for c in range(close.shape[1]):
        column = close[:, c]
        present = ~np.isnan(column)
        if present.sum() > 40:
            hist[present, c] = macd(column[present]).hist
        if progress is not None:
            progress(c + 1, close.shape[1])
    with np.errstate(invalid="ignore"):
        up = (close > fast) & (fast > slow) & (hist > 0)
        down = (close < fast) & (hist < 0)
    return Signals(entries=up & ~_shift(up, False), exits=down & ~_shift(down, False))


def volume_zone_breakout(
    market: Market,
    params: Mapping[str, Any],
    flows: Mapping[str, FloatArray] | None = None,
    progress: Progress | None = None,
) -> Signals:
    """Domain notes §4 entries, with the stop, breakout level and ATR trail per entry."""
    p = params
    n, m = market.shape
    close, high, low, volume = market.close, market.high, market.low, market.volume
    vol_sma_prev = _shift(rolling_mean(volume, int(p["volume_sma"])), np.nan)
    trend_sma = rolling_mean(close, int(p["trend_sma"]))
    exit_sma = rolling_mean(close, int(p["exit_sma"]))
    with np.errstate(invalid="ignore", divide="ignore"):
        span = high - low
        close_pos = np.where(span > 0, (close - low) / span, 1.0)
        # The conditions that need no profile: the profile (the costly part) is built only
        # on the bars that pass them, the only bars whose VAH/VAL/POC anything reads.
        cheap = (
            (volume >= float(p["volume_mult"]) * vol_sma_prev)
            & (close > trend_sma)
            & (close_pos >= float(p["close_position"]))
        )
    poc = np.full((n, m), np.nan)
    vah = np.full((n, m), np.nan)
    val = np.full((n, m), np.nan)
    atr_ = np.full((n, m), np.nan)
    for c in range(m):
        source = market.column("traded_value")[:, c] if p["use_traded_value"] else volume[:, c]
        poc[:, c], vah[:, c], val[:, c] = rolling_volume_profile(
            high[:, c],
            low[:, c],
            source,
            window=int(p["profile_bars"]),
            bins=int(p["bins"]),
            value_area=float(p["value_area"]),
            at=np.ascontiguousarray(cheap[:, c]),
        )
        atr_[:, c] = atr(high[:, c], low[:, c], close[:, c], int(p["atr_period"]))
        if progress is not None:
            progress(c + 1, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        entries = (
            cheap
            & (close > vah * (1.0 + float(p["breakout_buffer"])))
            & (_shift(close, np.nan) <= vah)
            & ((vah - val) / poc <= float(p["max_value_area_width"]))
        )
        stop = np.maximum(vah - float(p["stop_atr"]) * atr_, close * (1.0 - float(p["max_stop"])))
        exits = close < exit_sma
    return Signals(
        entries=entries,
        exits=exits,
        stop=stop,
        level=vah,
        trail=float(p["trail_atr"]) * atr_,
    )


def _series_for(candles: Candles, names: tuple[str, ...]) -> dict[str, FloatArray]:
    inputs = ScanInputs(instrument="-", candles=candles)
    return {name: inputs.series(name) for name in names}


def _slice_inputs(
    symbol: str,
    candles: Candles,
    series: Mapping[str, FloatArray],
    flows: Mapping[str, FloatArray],
    t: int,
    rs: float | None,
) -> ScanInputs:
    end = t + 1
    return ScanInputs(
        instrument=symbol,
        candles=candles.head(end),
        precomputed={k: v[:end] for k, v in series.items()},
        flows={k: v[:end] for k, v in flows.items()},
        rs_rating=rs,
    )


def _rs_ratings(market: Market, min_universe: int) -> FloatArray | None:
    """Cross-sectional RS rating (1–99) of each instrument among the run's instruments per
    bar, or ``None`` when the run has fewer than ``min_universe`` instruments."""
    n, m = market.shape
    if m < min_universe:
        return None
    raw = rs_raw_columns(market.close)
    out = np.full((n, m), np.nan)
    for t in range(n):
        out[t] = rs_rating(raw[t])
    return out


#: The series the VCP scan reads on every scanned bar, computed for all instruments at once.
#: (``rs_raw``, read by the score only, is left to the few bars that are scored.)
_VCP_SERIES = ("sma_50", "sma_150", "sma_200", "high_52w", "low_52w")


def _vcp_series(market: Market, trend: TrendTemplateParams) -> dict[str, FloatArray]:
    """The scan's series (:data:`_VCP_SERIES`) of every instrument, bars × instruments: each
    column what :meth:`ScanInputs.series` computes for that instrument
    (:mod:`quant.indicators.columns`)."""
    close = market.close
    defaults = TrendTemplateParams()
    assert (trend.sma_short, trend.sma_mid, trend.sma_long, trend.week52_window) == (
        defaults.sma_short,
        defaults.sma_mid,
        defaults.sma_long,
        defaults.week52_window,
    ), "the VCP strategy scans with the Trend Template's default periods"
    high_52w, low_52w = high_low_columns(market.high, market.low, window=trend.week52_window)
    return {
        "sma_50": sma_columns(close, trend.sma_short),
        "sma_150": sma_columns(close, trend.sma_mid),
        "sma_200": sma_columns(close, trend.sma_long),
        "high_52w": high_52w,
        "low_52w": low_52w,
    }


def vcp_breakout(
    market: Market,
    params: Mapping[str, Any],
    flows: Mapping[str, FloatArray] | None = None,
    progress: Progress | None = None,
) -> Signals:
    """The VCP scan evaluated on every bar where a breakout is possible.

    A bar is scanned only when the cheap necessary conditions hold — close above SMA50,
    SMA150 and SMA200, volume at least ``prefilter_volume`` × its 50-bar mean, the Trend
    Template (:func:`passes_on_each_bar_columns`) and the breakout volume
    (:func:`breakout_volume_possible_columns`) — all decided for every bar of every
    instrument at once; the scan (:func:`find_vcp`, then :func:`scan_vcp` where the pattern
    is a breakout) then decides. The RS criterion uses the rating among the run's
    instruments when the run has at least ``min_universe`` of them; with fewer it is not
    applied (noted in the signals).
    """
    n, m = market.shape
    vcp_params = VcpParams()
    # Fix: "not applied" was min_rs_rating=0.0 with a rating of 0.0, but TrendTemplateParams
    # requires min_rs_rating > 0, so every run with fewer than min_universe instruments
    # raised ValidationError. The lowest real rating (1) against a minimum of 1 always
    # passes and still scores 0 RS points, as 0 did.
    unranked = 1.0
    min_universe = int(params["min_universe"])
    trend_params = TrendTemplateParams(
        min_rs_rating=float(params["min_rs_rating"]) if m >= min_universe else unranked
    )
    series = _vcp_series(market, trend_params)
    ratings = _rs_ratings(market, min_universe)
    close, volume = market.close, market.volume
    vol_mean = rolling_mean(volume, 50)
    with np.errstate(invalid="ignore"):
        maybe = (
            (close > series["sma_50"])
            & (close > series["sma_150"])
            & (close > series["sma_200"])
            # Fix: a NaN (missing) bar in the 50 bars made the mean NaN and rejected
            # the bar, while the scan skips missing bars; unknown → let the scan decide.
            & ~(volume < float(params["prefilter_volume"]) * vol_mean)
        )
        exits = close < series["sma_50"]
    del vol_mean
    # the Trend Template is the scan's first condition: decided for every bar at once, the
    # scan runs only where it holds (the same criteria: quant.scans.trend)
    maybe &= passes_on_each_bar_columns(
        close,
        sma_short=series["sma_50"],
        sma_mid=series["sma_150"],
        sma_long=series["sma_200"],
        high_52w=series["high_52w"],
        low_52w=series["low_52w"],
        rs_rating=ratings if ratings is not None else unranked,
        params=trend_params,
    )
    # and an entry needs a breakout, which needs the breakout volume (quant.scans.vcp)
    maybe &= breakout_volume_possible_columns(market.high, market.low, volume, vcp_params)

    entries = np.zeros((n, m), dtype=np.bool_)
    stop = np.full((n, m), np.nan)
    priority = np.zeros((n, m))
    scanned = 0
    for c in range(m):
        bars = np.flatnonzero(maybe[:, c])
        if len(bars):
            candles = _candles(market, c)
            instrument = {k: v[:, c] for k, v in series.items()}
            for t in bars:
                rs = float(ratings[t, c]) if ratings is not None else unranked
                inputs = _slice_inputs(market.symbols[c], candles, instrument, {}, int(t), rs)
                scanned += 1
                # an entry is a candidate whose pattern is a breakout not extended: the
                # pattern alone (find_vcp, the scan's own detection) rules most bars out,
                # and only the rest pay for the Trend Template, the score and the reasons
                found = find_vcp(inputs, vcp_params)
                if not (found.valid and found.breakout and not found.extended):
                    continue
                result = scan_vcp(inputs, trend_params, vcp_params)
                pattern = result.pattern
                if result.is_candidate and pattern.breakout and not pattern.extended:
                    entries[t, c] = True
                    stop[t, c] = pattern.stop if pattern.stop is not None else np.nan
                    priority[t, c] = result.score.total
        if progress is not None:
            progress(c + 1, m)
    notes: dict[str, Any] = {"bars_scanned": scanned}
    if ratings is None:
        notes["rs_criterion"] = (
            f"not applied: the run has {m} instrument(s), fewer than "
            f"{params['min_universe']} to rank"
        )
    return Signals(entries=entries, exits=exits, stop=stop, priority=priority, notes=notes)


_BET_SERIES = ("high_52w", "sma_20", "sma_60", "bb_upper", "bb_middle", "bb_lower")
_GRADE_WEIGHT = {"S": 1.5, "A": 1.0, "B": 0.5}


def closing_bet_signals(
    market: Market,
    params: Mapping[str, Any],
    flows: Mapping[str, FloatArray] | None = None,
    progress: Progress | None = None,
) -> Signals:
    """Closing-bet V2 candidates graded S/A/B on each bar that passes the cheap hard filters
    (traded value, change, volume ratio); ``flows`` are ``(bars, instruments)`` arrays of the
    :data:`quant.scans.inputs.FLOW_COLUMNS` (missing: the supply points score 0)."""
    n, m = market.shape
    bet_params = ClosingBetParams()
    flows = flows or {}
    entries = np.zeros((n, m), dtype=np.bool_)
    mult = np.zeros((n, m))
    priority = np.zeros((n, m))
    allowed = set(str(g) for g in params["grades"])
    tv = market.column("traded_value")
    # Fix: the prefilter must be a necessary condition of the scan, which measures the
    # change against the last bar *with* a close and skips missing bars in the volume
    # baseline. A plain shift (NaN after a missing bar) and a rolling mean over a window
    # holding a NaN rejected candidates the scan grades; use the last present close, and
    # let an unknown baseline through to the scan.
    prev_close = _shift(_ffill(market.close), np.nan)
    vol_prev = _shift(rolling_mean(market.volume, 20), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        change = market.close / prev_close - 1.0
        maybe = (
            (tv >= bet_params.min_traded_value_krw)
            & (change >= float(params["min_change"]))
            & ~(market.volume < float(params["min_volume_ratio"]) * vol_prev)
        )
    scanned = 0
    for c in range(m):
        bars = np.flatnonzero(maybe[:, c])
        if len(bars):
            candles = _candles(market, c)
            series = _series_for(candles, _BET_SERIES)
            col_flows = {k: np.ascontiguousarray(v[:, c]) for k, v in flows.items()}
            for t in bars:
                inputs = _slice_inputs(market.symbols[c], candles, series, col_flows, int(t), None)
                bet = closing_bet(inputs, supply_demand(inputs) if col_flows else None, bet_params)
                scanned += 1
                if bet.candidate and bet.grade in allowed:
                    entries[t, c] = True
                    mult[t, c] = _GRADE_WEIGHT.get(str(bet.grade), 0.0)
                    priority[t, c] = float(bet.total)
        if progress is not None:
            progress(c + 1, m)
    return Signals(
        entries=entries,
        exits=np.zeros((n, m), dtype=np.bool_),
        size_mult=mult,
        priority=priority,
        notes={"bars_scanned": scanned, "news": "no news scores in history: filter not applied"},
    )


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------

Builder = Callable[
    [Market, Mapping[str, Any], Mapping[str, FloatArray] | None, Progress | None], Signals
]


@dataclass(frozen=True)
class Strategy:
    """A backtestable strategy: its signal builder, parameter defaults and execution."""

    name: str
    title: str
    build: Builder
    defaults: Mapping[str, Any]
    execution: ExecutionConfig
    needs_flows: bool = False
    min_bars: int = 2
    #: Peak bytes per ``(bar, instrument)`` cell of the builder's own arrays (on top of the
    #: market and flows it reads): the memory estimate of a run
    #: (:func:`quant.backtest.memory.estimate_backtest_bytes`); measured by
    #: ``tests/unit/test_backtest_memory.py``.
    signal_bytes_per_cell: int = 128

    def params(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults with ``overrides`` applied, each checked against its default's type.

        Raises:
            quant.errors.ValidationError: an unknown parameter or a value of the wrong type,
                naming it and the strategy.
        """
        out = dict(self.defaults)
        for key, value in (overrides or {}).items():
            if key not in self.defaults:
                raise ValidationError(
                    f"strategy {self.name} has no parameter {key!r} "
                    f"(known: {', '.join(sorted(self.defaults))})",
                    field=f"params.{key}",
                    value=value,
                )
            default = self.defaults[key]
            ok = (
                isinstance(value, type(default))
                or (isinstance(default, float) and isinstance(value, int))
            ) and not (isinstance(value, bool) and not isinstance(default, bool))
            if not ok:
                raise ValidationError(
                    f"strategy {self.name} parameter {key} must be "
                    f"{type(default).__name__}, got {value!r}",
                    field=f"params.{key}",
                    value=value,
                )
            out[key] = value
        if self.name in ("sma_crossover", "crypto_trend") and not 1 <= out["fast"] < out["slow"]:
            raise ValidationError(
                f"{self.name} needs 1 <= fast < slow, got fast={out['fast']} slow={out['slow']}",
                field="params.fast",
            )
        return out

    def signals(
        self,
        market: Market,
        params: Mapping[str, Any] | None = None,
        flows: Mapping[str, FloatArray] | None = None,
        progress: Progress | None = None,
    ) -> Signals:
        """The strategy's signals on ``market`` with validated ``params``."""
        return self.build(market, self.params(params), flows, progress)

    def execution_with(self, overrides: Mapping[str, Any] | None = None) -> ExecutionConfig:
        """The strategy's execution rules with ``overrides`` (fees, slippage, sizing …).

        Raises:
            quant.errors.ValidationError: an unknown or invalid setting.
        """
        if not overrides:
            return self.execution
        merged = self.execution.as_dict()
        unknown = sorted(set(overrides) - set(merged))
        if unknown:
            raise ValidationError(
                f"unknown execution setting(s): {', '.join(unknown)}", field="execution"
            )
        merged.update(overrides)
        return ExecutionConfig.from_dict(merged)


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy(
            name="sma_crossover",
            title="SMA crossover",
            build=sma_crossover,
            defaults={"fast": 10, "slow": 30},
            signal_bytes_per_cell=40,
            execution=ExecutionConfig(fill="next_open", fees=0.00015, fraction=1.0),
        ),
        Strategy(
            name="crypto_trend",
            title="Crypto daily trend (the crypto signal's daily leg)",
            build=crypto_trend,
            defaults={"fast": 20, "slow": 50},
            min_bars=60,
            signal_bytes_per_cell=48,
            # Upbit's KRW market: 0.05 % fees, coins to 8 decimals, no sell tax
            execution=ExecutionConfig(
                fill="next_open", fees=0.0005, slippage=0.0005, lot=1e-8, fraction=1.0
            ),
        ),
        Strategy(
            name="volume_zone_breakout",
            title="Volume Zone Breakout",
            build=volume_zone_breakout,
            defaults={
                "profile_bars": 60,
                "bins": 24,
                "value_area": 0.70,
                "use_traded_value": False,
                "breakout_buffer": 0.005,
                "volume_mult": 1.5,
                "volume_sma": 20,
                "trend_sma": 50,
                "close_position": 0.5,
                "max_value_area_width": 0.25,
                "atr_period": 14,
                "stop_atr": 1.0,
                "max_stop": 0.08,
                "trail_atr": 3.0,
                "exit_sma": 20,
            },
            signal_bytes_per_cell=112,
            execution=ExecutionConfig(
                fill="next_open",
                fees=0.00015,
                level_closes=2,
                partial_r=2.0,
                partial_fraction=0.5,
                trail_after_partial=True,
                signal_exits_after_partial=True,
                max_bars=20,
                time_stop_below_r=1.0,
                sizing="fraction",
                fraction=1.0,
            ),
        ),
        Strategy(
            name="vcp_breakout",
            title="VCP breakout",
            build=vcp_breakout,
            defaults={"min_universe": 10, "min_rs_rating": 70.0, "prefilter_volume": 1.2},
            signal_bytes_per_cell=80,
            execution=ExecutionConfig(
                fill="next_open",
                fees=0.00015,
                stop_loss=0.08,
                sizing="risk",
                risk=0.01,
                fraction=0.25,
            ),
        ),
        Strategy(
            name="closing_bet",
            title="Closing-price betting V2",
            build=closing_bet_signals,
            defaults={
                "grades": ["S", "A", "B"],
                "min_change": 0.05,
                "min_volume_ratio": 2.0,
            },
            signal_bytes_per_cell=64,
            execution=ExecutionConfig(
                fill="close",
                fees=0.00015,
                stop_loss=0.03,
                take_profit=0.05,
                open_stop_loss=0.02,
                open_take_profit=0.03,
                max_bars=1,
                sizing="risk",
                risk=0.005,
                fraction=0.5,
            ),
            needs_flows=True,
        ),
    )
}


def get(name: str) -> Strategy:
    """The strategy called ``name``.

    Raises:
        quant.errors.ValidationError: unknown name (the message lists the known ones).
    """
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValidationError(
            f"unknown strategy {name!r} (known: {', '.join(sorted(STRATEGIES))})",
            field="strategy",
            value=name,
        ) from None


def flow_names() -> tuple[str, ...]:
    """The flow columns a flows-aware strategy reads."""
    return FLOW_COLUMNS


def warm_up() -> None:
    """Compile (or load) the numba kernels used by the builders."""
    rolling_mean(np.arange(4, dtype=np.float64).reshape(-1, 1), 2)


__all__ = [
    "STRATEGIES",
    "Strategy",
    "closing_bet_signals",
    "crossed_above",
    "get",
    "rolling_mean",
    "sma_crossover",
    "vcp_breakout",
    "volume_zone_breakout",
]
