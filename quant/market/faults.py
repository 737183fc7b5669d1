"""Fault injection for market-data sources: FOR TESTS AND DRILLS, NEVER REAL DATA.

:class:`CorruptingSource` wraps any :class:`~quant.market.base.MarketDataSource` and corrupts a
deterministic fraction of the rows it returns (NaN prices, ``high < low``, negative volume,
zero prices, fractional or missing net-buying figures), so that the rejection path — keep the
good rows, record the bad ones, keep running — can be exercised end to end. It always reports
itself as ``simulated``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd

from quant.errors import ValidationError
from quant.market.base import MarketDataSource
from quant.market.types import Instrument, Market

#: Corruptions of a daily bar, applied in turn to the selected rows.
CANDLE_FAULTS: tuple[str, ...] = ("non_finite", "high_below_low", "negative_volume", "zero_price")
#: Corruptions of an investor-flow row.
FLOW_FAULTS: tuple[str, ...] = ("non_finite", "non_integer")


class CorruptingSource:
    """A source whose rows are corrupted with probability ``rate`` (0 ≤ rate ≤ 1).

    Which rows are corrupted depends only on ``seed``, the ticker and the date, so a re-run
    corrupts the same rows the same way.
    """

    simulated = True

    def __init__(self, inner: MarketDataSource, rate: float, seed: int = 0) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValidationError(f"rate must be within [0, 1], got {rate!r}", field="rate")
        self.inner = inner
        self.rate = rate
        self.seed = seed
        self.name = inner.name

    def __repr__(self) -> str:
        return f"CorruptingSource({self.inner!r}, rate={self.rate}, seed={self.seed})"

    def list_instruments(self, as_of: date, market: Market | None = None) -> list[Instrument]:
        return self.inner.list_instruments(as_of, market)

    def daily_candles(
        self,
        start: date,
        end: date,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        frame = self.inner.daily_candles(start, end, market, tickers).copy()
        by_fault = self._selected(frame, len(CANDLE_FAULTS))
        rows = by_fault[0]  # non_finite
        frame.loc[rows, "close"] = np.nan
        rows = by_fault[1]  # high_below_low
        frame.loc[rows, "high"] = frame.loc[rows, "low"].to_numpy() * 0.5
        rows = by_fault[2]  # negative_volume
        frame.loc[rows, "volume"] = -1.0 - frame.loc[rows, "volume"].to_numpy()
        rows = by_fault[3]  # zero_price
        frame.loc[rows, "open"] = 0.0
        return frame

    def investor_flows(
        self,
        start: date,
        end: date,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        frame = self.inner.investor_flows(start, end, market, tickers)
        by_fault = self._selected(frame, len(FLOW_FAULTS))
        if not any(len(rows) for rows in by_fault):
            return frame
        frame = frame.astype({"foreign_net_shares": "float64"})
        frame.loc[by_fault[0], "foreign_net_shares"] = np.nan  # non_finite
        rows = by_fault[1]  # non_integer
        frame.loc[rows, "foreign_net_shares"] = frame.loc[rows, "foreign_net_shares"] + 0.5
        return frame

    def _selected(self, frame: pd.DataFrame, kinds: int) -> list[list[int]]:
        """Row labels to corrupt, split round-robin into ``kinds`` groups. A row is picked when
        a stable hash of (seed, ticker, date) falls below ``rate``."""
        groups: list[list[int]] = [[] for _ in range(kinds)]
        if self.rate == 0.0 or frame.empty:
            return groups
        n = 0
        for i, ticker, day in zip(frame.index, frame["ticker"], frame["trade_date"], strict=True):
            digest = zlib.crc32(f"{self.seed}:{ticker}:{day}".encode())
            if digest / 2**32 < self.rate:
                groups[n % kinds].append(int(i))
                n += 1
        return groups
