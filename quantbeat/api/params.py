"""Parameter types the routes share."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date_only(value: Any) -> Any:
    """Pass a ``YYYY-MM-DD`` text (or a date) on; refuse other text — pydantic alone reads
    ``0`` or ``1700000000`` as a Unix time, which no one means by a date."""
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("must be an ISO date, YYYY-MM-DD")
    return value


#: A calendar date given as ``YYYY-MM-DD`` (the OpenAPI ``format: date``), nothing else.
IsoDate = Annotated[dt.date, BeforeValidator(_iso_date_only)]
