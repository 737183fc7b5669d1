"""Parameter types that accept only what the OpenAPI document says: pydantic's lax mode
would take ``0`` as the date 1970-01-01 and ``1.0`` or ``1_000`` as integers, which a
client reading the document never means. Each is the plain type in the document."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INTEGER = re.compile(r"^-?\d{1,20}$")


def _iso_date(value: Any) -> Any:
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


def _integer(value: Any) -> Any:
    if isinstance(value, str) and not _INTEGER.match(value):
        raise ValueError("must be a whole number written in digits")
    return value


#: A date written ``YYYY-MM-DD``.
IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
#: Checks an integer parameter is written in decimal digits (an optional minus sign).
DIGITS = BeforeValidator(_integer)
#: An integer written in decimal digits. Bounds go before :data:`DIGITS` in the annotation
#: (``Annotated[int, Ge(1), Le(500), DIGITS, Query(...)]``) to reach the document as
#: ``minimum``/``maximum``: ``Query(ge=…)`` around a validated type would not.
Integer = Annotated[int, DIGITS]
