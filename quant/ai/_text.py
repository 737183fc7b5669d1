"""Text and number helpers shared by the prompt builder and the analyzers.

Everything here is pure and deterministic: no clock, no environment, no I/O.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

#: Korea Standard Time (UTC+9, no daylight saving); news timestamps are compared in KST.
KST = dt.timezone(dt.timedelta(hours=9), "KST")

# Unicode categories removed from untrusted text: controls (Cc), format characters (Cf: zero-width
# and bidirectional overrides that can hide or reorder text), surrogates (Cs), private use (Co)
# and unassigned code points (Cn).
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_WHITESPACE = re.compile(r"\s+")
ELLIPSIS = "…"


def clean_text(value: object, limit: int | None = None) -> str:
    """``value`` as one line of printable text, at most ``limit`` characters.

    NFC-normalises (Korean text may arrive as decomposed jamo), turns every whitespace run
    (newlines and tabs included) into one space, drops control, format, surrogate, private-use
    and unassigned characters, strips the ends, and cuts to ``limit`` characters, the last of
    which is then ``…``. ``None`` becomes ``""``; other non-strings go through ``str()``.
    """
    if value is None:
        return ""
    text = unicodedata.normalize("NFC", value if isinstance(value, str) else str(value))
    text = _WHITESPACE.sub(" ", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    text = _WHITESPACE.sub(" ", text).strip()
    return truncate(text, limit)


def truncate(text: str, limit: int | None) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``…`` when it was cut."""
    if limit is None or len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    return text[: limit - 1].rstrip() + ELLIPSIS


def number(value: object) -> float | None:
    """``value`` as a finite float, or ``None`` when it is missing, not numeric, or not finite.

    Accepts ints, floats, :class:`~decimal.Decimal`, numpy scalars (anything with
    ``__float__``) and numeric strings; ``bool`` is not a number here.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            result = float(value.strip().replace(",", ""))
        except ValueError:
            return None
    elif isinstance(value, int | float | Decimal) or hasattr(value, "__float__"):
        try:
            result = float(value)
        except (TypeError, ValueError, OverflowError):
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def format_number(value: object) -> str:
    """A compact, deterministic rendering of a numeric cell: ``""`` when missing.

    Integral values print without a decimal point (``71200``, ``-1250000000``); others with
    up to 8 significant digits (``0.00012345``, ``5.4321``).
    """
    x = number(value)
    if x is None:
        return ""
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return format(x, ".8g")


def to_date(value: object) -> dt.date | None:
    """A calendar date from a ``date``, a ``datetime`` (its KST date when tz-aware) or an ISO
    string (``"2026-11-20"`` or a full ISO timestamp); ``None`` when unparseable."""
    if isinstance(value, dt.datetime):
        return kst_date(value)
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return dt.date.fromisoformat(text[:10])
        except ValueError:
            try:
                return kst_date(dt.datetime.fromisoformat(text))
            except ValueError:
                return None
    return None


def kst_date(moment: dt.datetime) -> dt.date:
    """The KST calendar date of ``moment``; a naive datetime is taken to be KST already."""
    if moment.tzinfo is None:
        return moment.date()
    return moment.astimezone(KST).date()


def kst_timestamp(moment: dt.datetime) -> str:
    """``moment`` as ``YYYY-MM-DDTHH:MM`` in KST (naive datetimes are taken as KST)."""
    local = moment if moment.tzinfo is None else moment.astimezone(KST)
    return local.strftime("%Y-%m-%dT%H:%M")


def compact(value: Any, *, depth: int = 0, text_limit: int = 200) -> Any:
    """A JSON-safe, size-bounded copy of ``value`` for the prompt.

    Mappings keep at most 40 entries (keys sorted as text), sequences at most 20 items,
    strings are cleaned and cut to ``text_limit`` characters, numbers become ints or floats
    (non-finite ones ``None``), dates ISO strings; nesting deeper than 4 levels is cut to a
    short text. Keys are cleaned text. Deterministic: the same input gives the same output.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return clean_text(value, text_limit)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        return _json_number(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return compact(value.tolist(), depth=depth, text_limit=text_limit)
    if depth >= 4:
        return clean_text(repr(value), 60)
    if isinstance(value, Mapping):
        items = sorted(((clean_text(k, 60), v) for k, v in value.items()), key=lambda kv: kv[0])
        return {k: compact(v, depth=depth + 1, text_limit=text_limit) for k, v in items[:40]}
    if isinstance(value, list | tuple | set | frozenset):
        seq = sorted(value, key=repr) if isinstance(value, set | frozenset) else list(value)
        return [compact(v, depth=depth + 1, text_limit=text_limit) for v in seq[:20]]
    return clean_text(value, text_limit)


def _json_number(value: float | Decimal) -> int | float | None:
    x = number(value)
    if x is None:
        return None
    return int(x) if x.is_integer() and abs(x) < 1e15 else float(format(x, ".10g"))
