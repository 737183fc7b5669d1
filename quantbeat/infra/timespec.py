"""Time options of the command line: ``--since 1h``, ``--older-than 30d``.

A *duration* is a whole number followed by a unit: ``s`` (seconds), ``m`` (minutes), ``h``
(hours) or ``d`` (days), e.g. ``90s``, ``15m``, ``1h``, ``2d``. A *point in time* is either a
duration (that long before now) or an ISO 8601 date or datetime (``2026-11-20``,
``2026-11-20T09:00``, ``2026-11-20T09:00:00+09:00``); one without a UTC offset is taken as UTC,
the zone the ``jobs`` and ``dlq`` tables print.
"""

from __future__ import annotations

import datetime as dt
import re

from quant.errors import ValidationError

# ASCII digits, at most 12 (100 years are 3,153,600,000 s): int() never sees a huge number.
_DURATION = re.compile(r"^\s*(?P<n>[0-9]{1,12})\s*(?P<unit>[smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}
#: Longer spans are certainly typos (and would overflow ``datetime``).
_MAX_SECONDS = 100 * 365 * 86_400


def parse_duration(value: str, *, option: str) -> dt.timedelta:
    """``"90s"`` / ``"15m"`` / ``"1h"`` / ``"2d"`` → a positive :class:`datetime.timedelta`.

    Raises:
        quant.errors.ValidationError: anything else; the message names ``option`` and the value.
    """
    match = _DURATION.match(value)
    seconds = int(match["n"]) * _UNIT_SECONDS[match["unit"]] if match else 0
    if not match or not 0 < seconds <= _MAX_SECONDS:
        raise ValidationError(
            f"{option} must be a positive duration such as 90s, 15m, 1h or 2d, got {value!r}",
            field=option,
            value=value,
        )
    return dt.timedelta(seconds=seconds)


def parse_since(value: str, *, option: str, now: dt.datetime | None = None) -> dt.datetime:
    """A duration before ``now`` (default: the current time) or an ISO date/datetime → a
    timezone-aware UTC datetime (naive ISO values are UTC).

    Raises:
        quant.errors.ValidationError: neither a duration nor an ISO date/datetime, or outside
            years 1–9999 in UTC; the message names ``option`` and the value.
    """
    if _DURATION.match(value):
        return (now or dt.datetime.now(dt.UTC)) - parse_duration(value, option=option)
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValidationError(
            f"{option} must be a duration (90s, 15m, 1h, 2d) or an ISO date/datetime "
            f"(2026-11-20, 2026-11-20T09:00:00+09:00), got {value!r}",
            field=option,
            value=value,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise ValidationError(
            f"{option} is outside years 1–9999 in UTC, got {value!r}", field=option, value=value
        ) from None
