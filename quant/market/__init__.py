"""Market data: the provider interface, its record types and the simulated market."""

from quant.market.base import IntradaySource, MarketDataSource
from quant.market.types import (
    DAILY_CANDLE_COLUMNS,
    INTRADAY_CANDLE_COLUMNS,
    INTRADAY_INTERVALS,
    INVESTOR_FLOW_COLUMNS,
    Instrument,
    ListingStatus,
    Market,
)

__all__ = [
    "DAILY_CANDLE_COLUMNS",
    "INTRADAY_CANDLE_COLUMNS",
    "INTRADAY_INTERVALS",
    "INVESTOR_FLOW_COLUMNS",
    "Instrument",
    "IntradaySource",
    "ListingStatus",
    "Market",
    "MarketDataSource",
]
