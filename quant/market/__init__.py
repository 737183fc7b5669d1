"""Market data: the provider interface, its record types and the simulated market."""

from quant.market.base import (
    IntradaySource,
    MarketDataSource,
    ReferenceDataSource,
    SnapshotSource,
)
from quant.market.types import (
    DAILY_CANDLE_COLUMNS,
    INTRADAY_CANDLE_COLUMNS,
    INTRADAY_INTERVALS,
    INVESTOR_FLOW_COLUMNS,
    REFERENCE_BAR_COLUMNS,
    SNAPSHOT_COLUMNS,
    Instrument,
    ListingStatus,
    Market,
    ReferenceKind,
    ReferenceSeries,
    default_reference_series,
)

__all__ = [
    "DAILY_CANDLE_COLUMNS",
    "INTRADAY_CANDLE_COLUMNS",
    "INTRADAY_INTERVALS",
    "INVESTOR_FLOW_COLUMNS",
    "REFERENCE_BAR_COLUMNS",
    "SNAPSHOT_COLUMNS",
    "Instrument",
    "IntradaySource",
    "ListingStatus",
    "Market",
    "MarketDataSource",
    "ReferenceDataSource",
    "ReferenceKind",
    "ReferenceSeries",
    "SnapshotSource",
    "default_reference_series",
]
