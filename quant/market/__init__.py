"""Market data: the provider interface, its record types and the simulated market."""

from quant.market.base import MarketDataSource
from quant.market.types import (
    DAILY_CANDLE_COLUMNS,
    INVESTOR_FLOW_COLUMNS,
    Instrument,
    ListingStatus,
    Market,
)

__all__ = [
    "DAILY_CANDLE_COLUMNS",
    "INVESTOR_FLOW_COLUMNS",
    "Instrument",
    "ListingStatus",
    "Market",
    "MarketDataSource",
]
