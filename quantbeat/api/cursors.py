"""Opaque cursors of keyset-paginated listings (``?cursor=`` in, ``next_cursor`` out).

A cursor is the key of the last item a page listed — e.g. ``(started_at, id)`` — as JSON,
base64url-encoded without padding. Clients must treat it as opaque: its form may change. A
cursor that does not decode to a key of the expected shape is bad input naming the field
(``query.cursor``), never a server error.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence

from quant.errors import ValidationError

#: Longest cursor accepted (characters); the keys this API encodes are far shorter.
MAX_CURSOR = 512
#: The largest id a cursor may carry (PostgreSQL ``bigint``).
MAX_ID = 2**63 - 1

Part = str | int


def _bad(text: str, field: str) -> ValidationError:
    shown = text if len(text) <= 80 else text[:80] + "…"
    return ValidationError(
        f"{field} {shown!r} is not a cursor this API gave out: pass next_cursor of the "
        "previous page unchanged, or leave it out for the first page",
        field=field,
        value=shown,
    )


def encode_cursor(parts: Sequence[Part]) -> str:
    """The cursor of the key ``parts`` (strings and integers)."""
    raw = json.dumps(list(parts), separators=(",", ":"), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(text: str, kinds: Sequence[type], *, field: str = "query.cursor") -> list[Part]:
    """The key in the cursor ``text``: one value per entry of ``kinds`` (``str`` or
    ``int``), in order.

    Raises:
        quant.errors.ValidationError: ``text`` is not a cursor this API gave out (names
            ``field``).
    """

    def bad() -> ValidationError:
        return _bad(text, field)

    if not text or len(text) > MAX_CURSOR or not text.isascii():
        raise bad()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        parts = json.loads(raw.decode("ascii"))
    except (binascii.Error, ValueError):
        raise bad() from None
    if not isinstance(parts, list) or len(parts) != len(kinds):
        raise bad()
    for value, kind in zip(parts, kinds, strict=True):
        if type(value) is not kind:  # bool is not an int here
            raise bad()
        if isinstance(value, int) and not -(2**63) <= value < 2**63:  # a BIGINT key
            raise bad()
    return parts


def time_key(value: Part, *, field: str = "query.cursor") -> dt.datetime:
    """A cursor's ISO 8601 instant (timezone-aware) as a datetime in UTC.

    Raises:
        quant.errors.ValidationError: not an aware ISO 8601 date-time (names ``field``).
    """
    try:
        moment: dt.datetime | None = dt.datetime.fromisoformat(str(value))
        if moment is not None and moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValidationError(
            f"{field} holds no valid time: pass next_cursor of the previous page unchanged",
            field=field,
            value=str(value)[:80],
        )
    return moment


def date_id_key(text: str, *, field: str = "query.cursor") -> tuple[dt.date, int]:
    """The ``(date, id)`` key of a cursor made by ``encode_cursor([date.isoformat(), id])``.

    Raises:
        quant.errors.ValidationError: anything else (names ``field``).
    """
    day, ident = decode_cursor(text, [str, int], field=field)
    if not 1 <= int(ident) <= MAX_ID:
        raise _bad(text, field)
    try:
        return dt.date.fromisoformat(str(day)), int(ident)
    except ValueError:
        raise _bad(text, field) from None
