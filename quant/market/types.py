"""Record types shared by every market-data provider.

Units are fixed here once: prices are in the instrument's currency per share (KRW for KRX and
Upbit KRW markets), ``volume`` and every ``*_shares`` column count shares (or coins), and every
``*_krw`` / ``traded_value`` column is an amount of Korean won.
"""

from __future__ import annotations

from collections.abc import Mapping
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
#: The provider (``source``) name of the simulated market sources: rows and instruments from
#: it are labelled simulated in every report.
SIMULATED_SOURCE = "simulated"


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


# --- reference series: indices, sector ETFs and FX (domain notes §7) ---------------------------


class ReferenceKind(StrEnum):
    """What a reference series is: a KRX index, an ETF, or an exchange rate."""

    INDEX = "index"
    ETF = "etf"
    FX = "fx"


@dataclass(frozen=True, slots=True)
class ReferenceSeries:
    """One reference series: ``code`` (KRX index code such as ``"1001"``, ETF short code such
    as ``"069500"``, or :data:`USDKRW`), its kind, a display name and the currency its prices
    are in (points for indices are reported as ``"KRW"`` too: the market's currency)."""

    code: str
    kind: ReferenceKind
    name: str
    currency: str = "KRW"


#: KRX index codes (pykrx's index tickers) → names: the market indices the gate reads.
KRX_INDICES: dict[str, str] = {"1001": "KOSPI", "2001": "KOSDAQ", "1028": "KOSPI200"}

#: Code of the USD/KRW exchange rate series (KRW per US dollar).
USDKRW = "USDKRW"

#: The sector ETFs of the original system (code → name), the default of
#: ``QUANTBEAT_SECTOR_ETFS``; ``quant.gate`` reads them from here.
DEFAULT_SECTOR_ETFS: dict[str, str] = {
    "069500": "KOSPI200",
    "091160": "반도체",
    "305720": "2차전지",
    "091170": "자동차",
    "102780": "IT",
    "102960": "은행",
    "117680": "철강",
    "102970": "증권",
}

#: Columns of a reference-bar frame, in order: ``code`` str, ``trade_date``
#: :class:`datetime.date` (as in daily-candle frames), ``open/high/low/close`` float64 (index
#: points, KRW per ETF share, KRW per USD), ``volume`` float64 shares and ``value`` float64 KRW
#: traded; both NaN where the provider has none (FX).
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

#: Columns of a snapshot frame (the day so far), in order: ``ticker`` str (an index code in an
#: index snapshot), ``open`` the day's first price, ``high``/``low`` the running extremes,
#: ``close`` the last price, ``volume`` float64 cumulative shares, ``value`` float64 cumulative
#: KRW traded.
SNAPSHOT_COLUMNS: tuple[str, ...] = ("ticker", "open", "high", "low", "close", "volume", "value")


def default_reference_series(etfs: Mapping[str, str] | None = None) -> list[ReferenceSeries]:
    """The reference series the Market Gate reads: the three KRX indices of
    :data:`KRX_INDICES`, the sector ETFs ``etfs`` (code → name; default
    :data:`DEFAULT_SECTOR_ETFS`) and USD/KRW, in that order.

    Raises:
        quant.errors.ValidationError: an ETF code is not a six-character KRX code.
    """
    chosen = DEFAULT_SECTOR_ETFS if etfs is None else etfs
    out = [ReferenceSeries(code, ReferenceKind.INDEX, name) for code, name in KRX_INDICES.items()]
    for code, name in chosen.items():
        if not (isinstance(code, str) and len(code) == 6 and code.isalnum()):
            raise ValidationError(
                f"sector ETF code {code!r} is not a six-character KRX code",
                field="etfs",
                value=code,
            )
        out.append(ReferenceSeries(code, ReferenceKind.ETF, str(name)))
    out.append(ReferenceSeries(USDKRW, ReferenceKind.FX, "USD/KRW", "KRW"))
    return out
