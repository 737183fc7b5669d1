"""The interface every market-data provider implements."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Protocol, runtime_checkable

import pandas as pd

from quant.market.types import Instrument, Market, ReferenceSeries


@runtime_checkable
class MarketDataSource(Protocol):
    """A provider of universe listings, daily candles and investor flows.

    ``name`` identifies the provider in stored rows and reports; ``simulated`` is true for
    generated data, which every report must label as such.

    Implementations raise :class:`quant.errors.TransientError` for failures worth retrying
    (timeouts, throttling, an empty answer from a throttling provider) and
    :class:`quant.errors.PermanentError` for requests that can never succeed.
    """

    name: str
    simulated: bool

    def list_instruments(self, as_of: date, market: Market | None = None) -> list[Instrument]:
        """Instruments listed on ``as_of`` in ``market`` (all markets when ``None``)."""
        ...

    def daily_candles(
        self,
        start: date,
        end: date,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Daily bars for sessions in ``[start, end]`` (both inclusive).

        Returns a frame with exactly :data:`quant.market.types.DAILY_CANDLE_COLUMNS`, one row
        per (ticker, session), sorted by ticker then date. Sessions without trading data are
        absent, not NaN-filled.
        """
        ...

    def investor_flows(
        self,
        start: date,
        end: date,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Net buying per investor group, with :data:`INVESTOR_FLOW_COLUMNS`, same shape rules."""
        ...


@runtime_checkable
class IntradaySource(Protocol):
    """A provider of intraday bars (crypto minute candles, for example).

    Kept apart from :class:`MarketDataSource` because most equity providers have none.
    """

    name: str
    simulated: bool

    def intraday_candles(
        self,
        start: datetime,
        end: datetime,
        interval: str,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Bars of ``interval`` (one of :data:`INTRADAY_INTERVALS`) starting in
        ``[start, end)`` (timezone-aware), with :data:`INTRADAY_CANDLE_COLUMNS`, sorted by
        ticker then ``ts``. Minutes without trades have no bar.

        Raises:
            quant.errors.ValidationError: naive datetimes, ``start >= end`` or an unknown
                interval.
        """
        ...


@runtime_checkable
class ReferenceDataSource(Protocol):
    """A provider of daily bars of reference series: KRX indices, ETFs, exchange rates
    (:class:`quant.market.types.ReferenceSeries`). A provider may serve only some kinds.

    Error conventions as :class:`MarketDataSource`.
    """

    name: str
    simulated: bool

    def reference_bars(
        self, start: date, end: date, series: Sequence[ReferenceSeries]
    ) -> pd.DataFrame:
        """Daily bars of ``series`` for the sessions in ``[start, end]`` (both inclusive).

        Returns a frame with exactly :data:`quant.market.types.REFERENCE_BAR_COLUMNS`, sorted by
        ``code`` then ``trade_date`` (``datetime.date`` objects), RangeIndex. Sessions without
        a bar are absent; ``volume``/``value`` are NaN where the provider has none (FX).

        Raises:
            quant.errors.ValidationError: bad dates, ``start > end``, ``series`` not a sequence
                of ReferenceSeries, or a kind this provider does not serve.
            quant.errors.NotFound: a code the provider does not know.
        """
        ...


@runtime_checkable
class SnapshotSource(Protocol):
    """A provider of the KRX trading day so far (the intraday snapshot of §8).

    ``at`` is a timezone-aware datetime within the regular session (09:00–15:30 KST) of the
    session ``day``; at or after 15:30 the snapshot is the day's final bar.
    """

    name: str
    simulated: bool

    def market_snapshot(
        self, day: date, at: datetime, market: Market | None = None
    ) -> pd.DataFrame:
        """Every listed instrument's day so far as of ``at`` (of ``market``; KOSPI and KOSDAQ
        when ``None``): :data:`quant.market.types.SNAPSHOT_COLUMNS`, ``close`` the last price,
        ``volume``/``value`` cumulative, sorted by ticker, RangeIndex.

        Raises:
            quant.errors.ValidationError: ``at`` naive, not on ``day`` (KST), before 09:00 KST,
                or ``day`` not a session.
        """
        ...

    def index_snapshot(self, day: date, at: datetime, codes: Sequence[str]) -> pd.DataFrame:
        """The day so far of the reference series ``codes`` (index codes such as ``"1001"``),
        same columns with ``ticker`` = the code, sorted by it.

        Raises:
            quant.errors.ValidationError: as :meth:`market_snapshot`.
            quant.errors.NotFound: a code the provider does not know.
        """
        ...
