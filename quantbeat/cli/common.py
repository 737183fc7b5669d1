"""What every command group shares: exit codes, the consoles, option parsing helpers."""

from __future__ import annotations

import datetime as dt

from rich.console import Console

from quantbeat.services.args import parse_date

#: Exit codes (see :mod:`quantbeat.cli.main`).
EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_FAILED = range(6)

console = Console()
err_console = Console(stderr=True)


def parse_date_option(value: str | None, option: str) -> dt.date | None:
    """``value`` (YYYY-MM-DD) as a date, ``None`` when not given.

    Raises:
        quant.errors.ValidationError: not a date; the message names ``option``.
    """
    return None if value is None else parse_date(value, field=option)
