"""Record types shared by every market-data provider.

Units are fixed here once: prices are in the instrument's currency per share (KRW for KRX and
Upbit KRW markets), ``volume`` and every ``*_shares`` column count shares (or coins), and every
``*_krw`` / ``traded_value`` column is an amount of Korean won.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from quant.errors import ValidationError


class Market(StrEnum):
    """Markets quantbeat knows. KRX equities trade in sessions; Upbit trades 24/7."""

    KOSPI = "KOSPI"
    KOSDAQ = "KOSDAQ"
    KONEX = "KONEX"
    UPBIT = "UPBIT"
    US = "US"

    @classmethod
    def parse(cls, value: str) -> Market:
        """Return the market named ``value`` (case-insensitive).

        Raises:
            quant.errors.ValidationError: ``value`` names no known market.
        """

        try:
            return cls(value.strip().upper())
        except ValueError:
            known = ", ".join(m.value for m in cls)
            raise ValidationError(
                f"unknown market {value!r} (known: {known})", field="market", value=value
            ) from None


KRX_MARKETS: tuple[Market, ...] = (Market.KOSPI, Market.KOSDAQ)


def selects(market: object, target: Market) -> bool:
    """Whether a provider's ``market`` argument selects ``target``: ``None`` (every market)
    or ``target`` itself; a market name string is parsed.

    Raises:
        quant.errors.ValidationError: ``market`` is neither ``None``, a Market nor a name.
    """

    if market is None:
        return True
    if isinstance(market, str):  # Market is a StrEnum, so this covers both
        return Market.parse(market) == target
    raise ValidationError(
        f"market must be a quant.market.types.Market or None, got {market!r}",
        field="market",
        value=market,
    )


class ListingStatus(StrEnum):
    LISTED = "listed"
    SUSPENDED = "suspended"
    DELISTED = "delisted"


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable instrument, identified by ``(market, ticker)``."""

    market: Market
    ticker: str
    name: str
    currency: str = "KRW"
    listing_status: ListingStatus = ListingStatus.LISTED


#: Columns of a daily-candle frame, in order. ``trade_date`` holds ``datetime.date`` objects;
#: ``open/high/low/close`` are float64 prices, ``volume`` float64 shares, ``traded_value``
#: float64 KRW. A halted instrument has volume 0 and open = high = low = close.
DAILY_CANDLE_COLUMNS: tuple[str, ...] = (
    "market",
    "ticker",
    "trade_date",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "traded_value",
)

#: Columns of an investor-flow frame, in order: net buying (buy minus sell) per investor group,
#: int64 shares and int64 KRW. Across the three groups plus "other" the net sums to zero.
INVESTOR_FLOW_COLUMNS: tuple[str, ...] = (
    "market",
    "ticker",
    "trade_date",
    "foreign_net_shares",
    "institution_net_shares",
    "individual_net_shares",
    "foreign_net_krw",
    "institution_net_krw",
    "individual_net_krw",
)


#: Intraday bar intervals quantbeat stores, as Upbit's minute units (``1m`` … ``240m``).
INTRADAY_INTERVALS: tuple[str, ...] = ("1m", "3m", "5m", "10m", "15m", "30m", "60m", "240m")

#: Columns of an intraday-candle frame, in order. ``ts`` is the bar's start as a timezone-aware
#: UTC ``pandas.Timestamp``; ``interval`` is one of :data:`INTRADAY_INTERVALS`; prices float64
#: in the instrument's currency, ``volume`` float64 units (coins for crypto), ``traded_value``
#: float64 KRW.
INTRADAY_CANDLE_COLUMNS: tuple[str, ...] = (
    "market",
    "ticker",
    "interval",
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "traded_value",
)


class ReferenceKind(StrEnum):
    """What a reference series is: a KRX index, an ETF, or an exchange rate."""

    INDEX = "index"
    ETF = "etf"
    FX = "fx"


@dataclass(frozen=True, slots=True)
class ReferenceSeries:
    """A series the market is read against (the Market Gate's inputs), by its ``code``:
    a KRX index code (``1001``), an ETF ticker (``069500``) or ``USDKRW``."""

    code: str
    kind: ReferenceKind
    name: str
    currency: str = "KRW"


#: KRX index codes (pykrx) and their names.
KRX_INDICES: dict[str, str] = {"1001": "KOSPI", "2001": "KOSDAQ", "1028": "KOSPI200"}
#: The code of the USD/KRW rate (KRW per USD).
USDKRW = "USDKRW"

#: Columns of a reference-bar frame, in order: ``trade_date`` holds ``datetime.date`` objects,
#: prices float64 (points, KRW, KRW per USD), ``volume`` float64 shares and ``value`` float64
#: KRW — NaN where the provider has none (an exchange rate).
REFERENCE_BAR_COLUMNS: tuple[str, ...] = (
    "code",
    "trade_date",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "value",
)

#: Columns of a snapshot frame (the day so far at a moment), in order: ``close`` is the last
#: price; ``volume`` (shares) and ``value`` (KRW) are cumulative since the open.
SNAPSHOT_COLUMNS: tuple[str, ...] = ("ticker", "open", "high", "low", "close", "volume", "value")
