"""Validation of task arguments. Every error names the argument and the value it got."""

from __future__ import annotations

import contextlib
import datetime as dt

from quant.errors import ValidationError
from quant.market.types import INTRADAY_INTERVALS, KRX_MARKETS, Market
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import latest_krx_session
from quantbeat.services.strategies import canonical_strategy, scan_strategy, scan_strategy_names


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


def parse_param_pairs(values: list[str] | None, *, field: str = "--param") -> dict[str, object]:
    """``NAME=VALUE`` items (indicator parameters: ``quantbeat indicators get --param``, the
    API's ``param`` query) → a dict; integers and floats are parsed, the rest stay text.

    Raises:
        quant.errors.ValidationError: an item without ``=`` or a name (names ``field``).
    """
    out: dict[str, object] = {}
    for item in values or []:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ValidationError(
                f"{field} must look like NAME=VALUE, got {item!r}", field=field, value=item
            )
        text = raw.strip()
        value: object = text
        try:
            value = int(text)
        except ValueError:
            with contextlib.suppress(ValueError):
                value = float(text)
        out[name.strip()] = value
    return out


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
        quant.errors.ValidationError: not a KRX market (KOSPI, KOSDAQ); the error names
            ``field``.
    """
    if value is None:
        return KRX_MARKETS
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, got {value!r}", field=field, value=value)
    try:
        market = Market.parse(value)
    except ValidationError as exc:
        raise ValidationError(f"{field}: {exc}", field=field, value=value) from None
    if market not in KRX_MARKETS:
        names = ", ".join(m.value for m in KRX_MARKETS)
        raise ValidationError(
            f"{field} must be a KRX market ({names}), got {value!r}", field=field, value=value
        )
    return (market,)


def parse_moment(value: object, *, field: str) -> dt.datetime:
    """Parse an ISO date-time with a time zone (``2026-11-20T00:00:00+00:00``); returned in UTC.

    Raises:
        quant.errors.ValidationError: not a string, not an ISO date-time, without a zone, or
            outside years 1–9999 once in UTC (``0001-01-01T00:00:00+01:00``).
    """
    if not isinstance(value, str):
        raise ValidationError(
            f"{field} must be an ISO date-time string, got {value!r}", field=field, value=value
        )
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"{field} must be an ISO date-time, got {value!r}", field=field, value=value
        ) from None
    if moment.tzinfo is None:
        raise ValidationError(
            f"{field} needs a time zone (e.g. 2026-11-20T00:00:00+00:00), got {value!r}",
            field=field,
            value=value,
        )
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        raise ValidationError(
            f"{field} is outside years 1–9999 in UTC, got {value!r}", field=field, value=value
        ) from None


def parse_interval(value: object, *, field: str = "interval") -> str:
    """An intraday bar interval (``1m`` … ``240m``, :data:`quant.market.types.INTRADAY_INTERVALS`).

    Raises:
        quant.errors.ValidationError: not one of them.
    """
    if value not in INTRADAY_INTERVALS:
        raise ValidationError(
            f"{field} must be one of {', '.join(INTRADAY_INTERVALS)}, got {value!r}",
            field=field,
            value=value,
        )
    assert isinstance(value, str)
    return value


def parse_tickers(value: object, *, field: str = "tickers") -> list[str] | None:
    """``None``, or a list of non-empty market codes (``["KRW-BTC", ...]``).

    Raises:
        quant.errors.ValidationError: anything else.
    """
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise ValidationError(f"{field} must be a list of market codes, got {value!r}", field=field)
    return list(value)


#: The phases of a day's signals: the evening's ``final`` decision and the buy window's
#: ``preliminary`` one.
PHASES: tuple[str, ...] = ("final", "preliminary")


def parse_phase(value: object, *, field: str = "phase") -> str:
    """``final`` or ``preliminary``.

    Raises:
        quant.errors.ValidationError: anything else (the message names both).
    """
    if value not in PHASES:
        raise ValidationError(
            f"{field} must be one of {', '.join(PHASES)}, got {value!r}", field=field, value=value
        )
    return str(value)


def parse_flag(value: object, *, field: str) -> bool:
    """A task's boolean argument (JSON ``true``/``false``; not 0/1 or strings).

    Raises:
        quant.errors.ValidationError: not a boolean (names ``field`` and the value).
    """
    if not isinstance(value, bool):
        raise ValidationError(
            f"{field} must be true or false, got {value!r}", field=field, value=value
        )
    return value


def parse_strategy(value: object, *, field: str = "strategy", exact: bool = False) -> str:
    """A registered scan strategy's name: ``closing-bet`` → ``closing_bet`` (case and
    dashes forgiven), or with ``exact`` only the name itself.

    Raises:
        quant.errors.ValidationError: not a string naming a registered strategy (the message
            names ``field`` and lists the registered ones).
    """
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, got {value!r}", field=field, value=value)
    try:
        return scan_strategy(value).name if exact else canonical_strategy(value)
    except ValidationError as exc:
        raise ValidationError(f"{field}: {exc}", field=field, value=value) from None


def grade_ladder(strategy: str | None = None) -> tuple[str, ...]:
    """The grades a registered ``strategy``'s signals may carry, best first; without one,
    every registered strategy's (in registration order, each once).

    Raises:
        quant.errors.ValidationError: an unknown strategy.
    """
    names = (strategy,) if strategy is not None else scan_strategy_names()
    out: list[str] = []
    for name in names:
        out += [g for g in scan_strategy(name).grade_ladder() if g not in out]
    return tuple(out)


def parse_grade(value: object, *, field: str = "grade") -> str:
    """A grade some registered strategy's signals carry (:func:`grade_ladder`; exactly as
    stored: ``S``, ``Strong``).

    Raises:
        quant.errors.ValidationError: any other value (the message names ``field`` and the
            grades accepted).
    """
    grades = grade_ladder()
    if not isinstance(value, str) or value not in grades:
        raise ValidationError(
            f"{field} must be one of {', '.join(grades)}, got {value!r}", field=field, value=value
        )
    return value
