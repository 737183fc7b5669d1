"""The HTTP ``Retry-After`` header, as every provider client reads it."""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import time
from collections.abc import Mapping


def parse_retry_after(value: str, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or ``None`` when unparseable.

    Accepts delta-seconds (``"2"``, ``"1.5"``) and an HTTP date (seconds from ``now``, a Unix
    time defaulting to the current time; a past date gives 0). Negative or non-finite values
    give ``None``.
    """
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        reference = time.time() if now is None else now
        return max(0.0, when.timestamp() - reference)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """:func:`parse_retry_after` of a response's ``Retry-After`` header (``None`` if absent)."""
    value = headers.get("retry-after")
    return None if value is None else parse_retry_after(value)
