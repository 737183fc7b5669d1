"""Paper portfolios (``io`` queue): step every portfolio through the latest day whose bars and
signal outcomes are stored (see :mod:`quantbeat.services.portfolio`)."""

from __future__ import annotations

from typing import Any

from quantbeat.services.args import parse_date
from quantbeat.services.portfolio import update as update_portfolios
from workers.app import app


@app.task(name="quantbeat.portfolio.update")
def update(through: str | None = None, name: str | None = None) -> dict[str, Any]:
    """Step every portfolio (or ``name``) day by day through ``through`` (ISO date; default:
    the latest day with stored bars and outcomes). Idempotent: a stored day is never stepped
    again, and each portfolio-day is one transaction. Returns ``{"through", "portfolios":
    {name: {"days", "entries", "refused", "exits", "equity"}}}``. Raises ValidationError for
    a malformed date, NotFound for an unknown ``name``."""
    day = None if through is None else parse_date(through, field="through")
    return update_portfolios(day, name=name)
