"""Validation of task arguments. Every error names the argument and the value it got."""

from __future__ import annotations

import datetime as dt

from quant.errors import ValidationError
from quant.market.types import KRX_MARKETS, Market
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import latest_krx_session


def parse_date(value: object, *, field: str) -> dt.date:
    """Parse an ISO date (``YYYY-MM-DD``) given as a task argument.

    Raises:
        quant.errors.ValidationError: ``value`` is not a string holding an ISO date.
    """
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str):
        raise ValidationError(
            f"{field} must be an ISO date string (YYYY-MM-DD), got {value!r}",
            field=field,
            value=value,
        )
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ValidationError(
            f"{field} must be an ISO date (YYYY-MM-DD), got {value!r}", field=field, value=value
        ) from None


def parse_trade_date(value: object, *, field: str = "trade_date") -> dt.date:
    """An ISO date task argument, or — ``None`` — the latest closed KRX session (in the
    configured time zone).

    Raises:
        quant.errors.ValidationError: ``value`` is neither ``None`` nor an ISO date string.
    """
    if value is None:
        return latest_krx_session(get_settings())
    return parse_date(value, field=field)


def parse_krx_markets(value: object, *, field: str = "market") -> tuple[Market, ...]:
    """``None`` means every KRX market; otherwise one KRX market name.

    Raises:
        quant.errors.ValidationError: not a KRX market (KOSPI, KOSDAQ).
    """
    if value is None:
        return KRX_MARKETS
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, got {value!r}", field=field, value=value)
    market = Market.parse(value)
    if market not in KRX_MARKETS:
        names = ", ".join(m.value for m in KRX_MARKETS)
        raise ValidationError(
            f"{field} must be a KRX market ({names}), got {value!r}", field=field, value=value
        )
    return (market,)
