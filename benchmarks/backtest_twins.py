"""backtesting.py twins of quantbeat's backtest strategies, for ``benchmarks/backtest.py``.

Each twin is a ``backtesting.Strategy`` that decides bar by bar in ``next()`` (the
backtesting.py way) and reproduces the rules *and* the execution semantics of
:mod:`quant.backtest.engine` for that strategy, so the benchmark can check that both find the
same trades. The indicator arrays may come from quantbeat (``self.I`` over
``quant.indicators``), the decisions may not.

How the engine's timing maps onto backtesting.py (``broker.next()`` fills orders on the bar's
open/high/low, then ``Strategy.next()`` runs at its close):

* entries and signal/level/time exits decided at a close fill at the next open: market orders
  (``self.buy`` / ``trade.close()``); ``trade.close()`` goes to the front of the queue, so a
  pending exit fills before a stop that was not gapped, as in the engine;
* the bracket stop is ``self.buy(sl=...)``: live from the entry fill (backtesting.py
  re-processes the new stop on the entry bar), filled at ``min(open, stop)``;
* the partial target is a reduce-only limit sell on the trade, placed once the fill is known,
  so it is live from the bar after the entry; the stop order sits in front of it, so a bar
  that reaches both fills the stop (the engine checks the stop first, pessimistically); an
  open above its level fills at the open (backtesting.py's limit rule, and the engine's);
* the trailing stop after the partial moves ``trade.sl`` up at each close.

One engine rule has no backtesting.py equivalent: the engine skips an entry whose stop is at
or above its fill (the next open gapped down through the stop), where backtesting.py buys and
is stopped out on the same bar. The benchmark counts such entries in its data (none).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from backtesting import Strategy
from backtesting.backtesting import Order

from quant.indicators.custom import rolling_volume_profile
from quant.indicators.standard import atr


def sma(values: Any, window: int) -> Any:
    """``pandas.Series.rolling(window).mean()``, as an array."""
    return pd.Series(values).rolling(window).mean().to_numpy()


def value_area(high: Any, low: Any, volume: Any, window: int, bins: int, share: float) -> Any:
    """POC, VAH and VAL of the ``window`` bars before each bar (quantbeat's indicator)."""
    return np.vstack(
        rolling_volume_profile(high, low, volume, window=window, bins=bins, value_area=share)
    )


class VolumeZoneBreakout(Strategy):  # type: ignore[misc]
    """Volume Zone Breakout (domain notes §4), as ``volume_zone_breakout`` runs it in quantbeat.

    Entry at the next open after a close through the value-area high of the previous
    ``profile_bars`` bars on volume, in an uptrend, from a narrow value area; bracket stop
    ``max(VAH − stop_atr·ATR, close·(1 − max_stop))`` of the signal bar; out at the next open
    after ``level_closes`` consecutive closes below the breakout VAH; ``partial_fraction`` of
    the units sold at ``fill + partial_r·R`` (R = fill − stop); after that, the stop trails
    ``max(high since entry) − trail_atr·ATR`` and a close below SMA(``exit_sma``) exits; a time
    stop after ``max_bars`` bars while the close is under ``fill + time_r·R``.
    """

    # strategy parameters (quantbeat's defaults)
    profile_bars = 60
    bins = 24
    value_area_share = 0.70
    breakout_buffer = 0.005
    volume_mult = 1.5
    volume_sma = 20
    trend_sma = 50
    close_position = 0.5
    max_value_area_width = 0.25
    atr_period = 14
    stop_atr = 1.0
    max_stop = 0.08
    trail_atr = 3.0
    exit_sma = 20
    # execution rules (quantbeat's ExecutionConfig of the strategy)
    fraction = 0.9999999
    level_closes = 2
    partial_r = 2.0
    partial_fraction = 0.5
    max_bars = 20
    time_r = 1.0

    def init(self) -> None:
        d = self.data
        self.profile = self.I(
            value_area,
            d.High,
            d.Low,
            d.Volume,
            self.profile_bars,
            self.bins,
            self.value_area_share,
            name="profile",
            plot=False,
        )
        self.atr = self.I(atr, d.High, d.Low, d.Close, self.atr_period, name="atr", plot=False)
        self.vol_mean = self.I(sma, d.Volume, self.volume_sma, name="vol_mean", plot=False)
        self.trend = self.I(sma, d.Close, self.trend_sma, name="trend", plot=False)
        self.exit_mean = self.I(sma, d.Close, self.exit_sma, name="exit_mean", plot=False)
        self._trade = None  # the trade being managed
        self._signal_stop = math.nan  # stop and VAH of the last entry signal
        self._signal_level = math.nan
        self._stop = math.nan  # the managed trade's initial stop, R, level, …
        self._r = math.nan
        self._level = math.nan
        self._below = 0
        self._high_since = math.nan
        self._partial_px = math.nan
        self._partial_done = False
        self._partial_order = None

    def _start(self, trade: Any) -> None:
        """A new trade filled at this bar's open: its stop, R and the partial target."""
        if self._partial_order is not None and self._partial_order in self.orders:
            self._partial_order.cancel()
        self._trade = trade
        self._stop = self._signal_stop
        self._level = self._signal_level
        self._r = trade.entry_price - self._stop
        self._below = 0
        self._high_since = trade.entry_price
        self._partial_px = trade.entry_price + self.partial_r * self._r
        self._partial_done = False
        self._partial_order = None
        part = math.floor(trade.size * self.partial_fraction)
        if 0 < part < trade.size:
            # reduce-only limit sell on this trade, live from the next bar; a plain
            # self.sell(limit=...) would open a short if the stop filled first on that bar
            self._partial_order = Order(
                self._broker, -part, limit_price=self._partial_px, parent_trade=trade
            )
            self._broker.orders.append(self._partial_order)

    def next(self) -> None:
        d = self.data
        i = len(d) - 1
        close = d.Close[-1]
        high = d.High[-1]
        low = d.Low[-1]
        atr_now = self.atr[-1]
        trade = self.trades[0] if self.trades else None
        exiting = False
        if trade is not None:
            if trade is not self._trade:
                self._start(trade)
            elif not self._partial_done and high >= self._partial_px:
                self._partial_done = True  # the limit sell filled on this bar
            if close < self._level:
                self._below += 1
            else:
                self._below = 0
            held = i - trade.entry_bar
            if self._below >= self.level_closes:
                exiting = True  # failed breakout
            elif self._partial_done and close < self.exit_mean[-1]:
                exiting = True  # the rest: a close below the exit SMA
            elif held >= self.max_bars and close < trade.entry_price + self.time_r * self._r:
                exiting = True  # time stop
            if exiting:
                trade.close()
            else:
                self._high_since = max(self._high_since, high)
                if self._partial_done and not math.isnan(atr_now):
                    trail = self._high_since - self.trail_atr * atr_now
                    if trail > trade.sl:
                        trade.sl = trail
        elif self._partial_order is not None:
            if self._partial_order in self.orders:
                self._partial_order.cancel()
            self._partial_order = None

        if i < 1 or (trade is not None and not exiting):
            return
        poc, vah, val = self.profile[0][-1], self.profile[1][-1], self.profile[2][-1]
        span = high - low
        close_pos = (close - low) / span if span > 0 else 1.0
        if (
            close > vah * (1.0 + self.breakout_buffer)
            and d.Close[-2] <= vah
            and d.Volume[-1] >= self.volume_mult * self.vol_mean[-2]
            and close > self.trend[-1]
            and close_pos >= self.close_position
            and (vah - val) / poc <= self.max_value_area_width
        ):
            stop = max(vah - self.stop_atr * atr_now, close * (1.0 - self.max_stop))
            self._signal_stop = stop
            self._signal_level = vah
            self.buy(size=self.fraction, sl=stop)
