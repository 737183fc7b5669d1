"""Keyset pagination: a page ends with an opaque ``next_cursor``, the base64url (unpadded)
of the JSON list of its last row's sort key; the next request passes it back as
``cursor``. Pages never overlap or skip a row however the table grows meanwhile.

A cursor that does not decode is bad input: :class:`quant.errors.ValidationError` naming
the query parameter (422).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import Any

from quant.errors import ValidationError

#: The longest cursor accepted (a key of a date and an id takes about 30 characters).
MAX_CURSOR = 200
#: The largest id a cursor may carry (PostgreSQL ``bigint``).
MAX_ID = 2**63 - 1
_ALPHABET = re.compile(r"^[A-Za-z0-9_-]+$")


def encode_cursor(key: Sequence[str | int]) -> str:
    """The cursor of a sort key (strings and integers)."""
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, *, field: str = "query.cursor") -> list[Any]:
    """The sort key a cursor holds.

    Raises:
        quant.errors.ValidationError: not base64url of a JSON list (names ``field``).
    """
    problem = ValidationError(
        f"{field}: {cursor[:40]!r} is not a cursor this API gave (pass a response's "
        "next_cursor unchanged)",
        field=field,
        value=cursor[:40],
    )
    if not cursor or len(cursor) > MAX_CURSOR or not _ALPHABET.match(cursor):
        raise problem
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError):
        raise problem from None
    if not isinstance(key, list):
        raise problem
    return key


def date_id_key(cursor: str, *, field: str = "query.cursor") -> tuple[dt.date, int]:
    """The ``(date, id)`` key of a cursor made by ``encode_cursor([date.isoformat(), id])``.

    Raises:
        quant.errors.ValidationError: anything else (names ``field``).
    """
    key = decode_cursor(cursor, field=field)
    problem = ValidationError(
        f"{field}: {cursor[:40]!r} is not a cursor of this list (pass a response's "
        "next_cursor unchanged)",
        field=field,
        value=cursor[:40],
    )
    if len(key) != 2 or not isinstance(key[0], str):
        raise problem
    day, ident = key
    if isinstance(ident, bool) or not isinstance(ident, int) or not 1 <= ident <= MAX_ID:
        raise problem
    try:
        return dt.date.fromisoformat(day), ident
    except ValueError:
        raise problem from None
