"""What one indicator request asks for, validated: the unit of the cache, the task and the CLI.

A request names an instrument (``MARKET:TICKER``, or a bare ticker the worker resolves), a
bar interval (``1d`` or an intraday one), an indicator with its parameters, and a range: the
last ``limit`` bars whose time is in ``[start, end]`` (either end open). Daily ranges are
dates; intraday ranges are time-zone-aware date-times.

The JSON form (task arguments, ``quantbeat indicators``)::

    {"instrument": "KOSPI:005930", "indicator": "rsi", "params": {"period": 14},
     "interval": "1d", "end": "2026-11-20", "start": null, "limit": 1000}
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from quant.errors import ValidationError
from quant.indicators._arrays import check_int
from quant.indicators.registry import Params, canonical_params, params_key, spec
from quant.market.types import INTRADAY_INTERVALS, Market

#: Bar intervals indicators can be computed on.
INTERVALS: tuple[str, ...] = ("1d", *INTRADAY_INTERVALS)
#: Most bars one request may cover.
MAX_BARS = 5_000
DEFAULT_LIMIT = 1_000

Moment = dt.date | dt.datetime


@dataclass(frozen=True)
class IndicatorRequest:
    """A validated request; build it with :meth:`parse` (or :meth:`create`)."""

    instrument: str
    indicator: str
    params: Params
    interval: str = "1d"
    start: Moment | None = None
    end: Moment | None = None
    limit: int = DEFAULT_LIMIT

    @property
    def market(self) -> str | None:
        """The market part of ``instrument`` (``None`` for a bare ticker)."""
        return self.instrument.split(":", 1)[0] if ":" in self.instrument else None

    @property
    def ticker(self) -> str:
        return self.instrument.split(":", 1)[-1]

    @property
    def range_key(self) -> str:
        """The candle range as text: ``<start>..<end>#<limit>`` (``*`` for an open end)."""
        first = self.start.isoformat() if self.start is not None else "*"
        last = self.end.isoformat() if self.end is not None else "*"
        return f"{first}..{last}#{self.limit}"

    @property
    def params_key(self) -> str:
        return params_key(self.params)

    @property
    def dedup_key(self) -> tuple[str, str, str, str, str]:
        """Two requests with the same key ask for the same values."""
        return (self.instrument, self.interval, self.range_key, self.indicator, self.params_key)

    def to_json(self) -> dict[str, Any]:
        return {
            "instrument": self.instrument,
            "indicator": self.indicator,
            "params": dict(self.params),
            "interval": self.interval,
            "start": self.start.isoformat() if self.start is not None else None,
            "end": self.end.isoformat() if self.end is not None else None,
            "limit": self.limit,
        }

    @classmethod
    def create(
        cls,
        instrument: str,
        indicator: str,
        params: dict[str, object] | None = None,
        *,
        interval: str = "1d",
        start: Moment | str | None = None,
        end: Moment | str | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> IndicatorRequest:
        """Keyword form of :meth:`parse`."""
        return cls.parse(
            {
                "instrument": instrument,
                "indicator": indicator,
                "params": params,
                "interval": interval,
                "start": start,
                "end": end,
                "limit": limit,
            }
        )

    @classmethod
    def parse(cls, data: object, *, where: str = "request") -> IndicatorRequest:
        """Validate a request's JSON form.

        Raises:
            quant.errors.ValidationError: a missing or bad field; ``field`` is
                ``<where>.<field>`` (``<where>.params.<name>`` for a parameter).
        """
        if not isinstance(data, dict):
            raise ValidationError(
                f"{where} must be an object, got {type(data).__name__}", field=where, value=data
            )
        known = {"instrument", "indicator", "params", "interval", "start", "end", "limit"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(
                f"{where} has unknown field {unknown[0]!r} (fields: {', '.join(sorted(known))})",
                field=f"{where}.{unknown[0]}",
                value=data[unknown[0]],
            )
        instrument = _instrument(data.get("instrument"), f"{where}.instrument")
        name = data.get("indicator")
        try:
            spec(name)
        except ValidationError as exc:
            raise ValidationError(str(exc), field=f"{where}.indicator", value=name) from None
        assert isinstance(name, str)
        params = canonical_params(name, data.get("params"), where=f"{where}.params")
        interval = data.get("interval", "1d")
        if interval not in INTERVALS:
            raise ValidationError(
                f"{where}.interval must be one of {', '.join(INTERVALS)}, got {interval!r}",
                field=f"{where}.interval",
                value=interval,
            )
        daily = interval == "1d"
        start = _moment(data.get("start"), f"{where}.start", daily=daily)
        end = _moment(data.get("end"), f"{where}.end", daily=daily)
        if start is not None and end is not None and start > end:
            raise ValidationError(
                f"{where}.start ({start}) is after {where}.end ({end})",
                field=f"{where}.start",
                value=data.get("start"),
            )
        limit = check_int(
            data.get("limit", DEFAULT_LIMIT), f"{where}.limit", minimum=1, maximum=MAX_BARS
        )
        return cls(instrument, name, params, interval, start, end, limit)


def _instrument(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(
            f"{where} must be MARKET:TICKER or a ticker, got {value!r}", field=where, value=value
        )
    text = value.strip()
    if ":" in text:
        market, ticker = text.split(":", 1)
        try:
            market = Market.parse(market).value
        except ValidationError as exc:
            raise ValidationError(str(exc), field=where, value=value) from None
    else:
        market, ticker = "", text
    ticker = ticker.strip().upper()
    if not ticker or len(ticker) > 32 or any(c.isspace() or c in ":|" for c in ticker):
        raise ValidationError(f"{where} has a bad ticker: {value!r}", field=where, value=value)
    return f"{market}:{ticker}" if market else ticker


def _moment(value: object, where: str, *, daily: bool) -> Moment | None:
    if value is None or isinstance(value, dt.date):
        moment = value
    elif isinstance(value, str):
        try:
            moment = dt.date.fromisoformat(value) if daily else dt.datetime.fromisoformat(value)
        except ValueError:
            kind = "an ISO date (YYYY-MM-DD)" if daily else "an ISO date-time with a zone"
            raise ValidationError(
                f"{where} must be {kind}, got {value!r}", field=where, value=value
            ) from None
    else:
        raise ValidationError(
            f"{where} must be an ISO date string, got {value!r}", field=where, value=value
        )
    if moment is None:
        return None
    if daily:
        if isinstance(moment, dt.datetime):
            raise ValidationError(
                f"{where} must be a date for daily bars, got {value!r}", field=where, value=value
            )
        return moment
    if not isinstance(moment, dt.datetime) or moment.tzinfo is None:
        raise ValidationError(
            f"{where} must be a date-time with a time zone for intraday bars, got {value!r}",
            field=where,
            value=value,
        )
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        raise ValidationError(
            f"{where} is outside years 1–9999 in UTC, got {value!r}", field=where, value=value
        ) from None
