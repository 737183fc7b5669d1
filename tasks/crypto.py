"""Crypto jobs of the seed backend (issue 23): the volatility check every 5 minutes, the
hourly signal and the paper portfolio's order sync after it.

Retries follow seed 000 for these jobs: transient errors only (a provider's 429, a timeout,
an unreachable database), after 1 s, 2 s and 4 s."""

from __future__ import annotations

from typing import Any

from quant.errors import ValidationError
from quantbeat.services.args import parse_moment, parse_tickers
from quantbeat.services.crypto import check_volatility
from quantbeat.services.crypto_paper import sync_orders
from quantbeat.services.crypto_signals import generate_signals
from workers.app import app

#: Seed 000's waits before each retry of a crypto job (seconds).
CRYPTO_RETRY_DELAYS = (1.0, 2.0, 4.0)


@app.task(name="quantbeat.crypto.volatility_check", retry_delays=CRYPTO_RETRY_DELAYS)
def volatility_check(
    at: str | None = None, markets: list[str] | None = None, sigma: float | None = None
) -> dict[str, Any]:
    """Assess the last hour of each market (default ``QUANTBEAT_CRYPTO_SIGNAL_MARKETS``)
    against its trailing 30 days and announce an unusual one (``crypto.volatility``, at most
    once per market and hour): see :func:`quantbeat.services.crypto.check_volatility`.
    ``at`` is an ISO date-time with a zone (default: now, floored to 5 minutes); ``sigma``
    the threshold (default ``QUANTBEAT_VOLATILITY_SIGMA``)."""
    if sigma is not None and (
        isinstance(sigma, bool) or not isinstance(sigma, int | float) or not 0 < sigma <= 100
    ):
        raise ValidationError(
            f"sigma must be a number of sigmas in (0, 100], got {sigma!r}",
            field="sigma",
            value=sigma,
        )
    return check_volatility(
        None if at is None else parse_moment(at, field="at"),
        parse_tickers(markets, field="markets"),
        None if sigma is None else float(sigma),
    )


@app.task(name="quantbeat.crypto.signal", retry_delays=CRYPTO_RETRY_DELAYS)
def signal(at: str | None = None, markets: list[str] | None = None) -> dict[str, Any]:
    """Decide, store and announce the hourly signal of each market (default
    ``QUANTBEAT_CRYPTO_SIGNAL_MARKETS``) and follow the stored ones: see
    :func:`quantbeat.services.crypto_signals.generate_signals`. ``at`` is an ISO date-time
    with a zone (default: now), floored to the hour."""
    return generate_signals(
        None if at is None else parse_moment(at, field="at"),
        parse_tickers(markets, field="markets"),
    )


@app.task(name="quantbeat.crypto.order_sync", retry_delays=CRYPTO_RETRY_DELAYS)
def order_sync(at: str | None = None) -> dict[str, Any]:
    """The crypto paper portfolio's order sync up to ``at`` (ISO with a zone; default now):
    signals to paper orders, fills from the next bar, the book reconciled with its ledger.
    No live order is ever sent. See :func:`quantbeat.services.crypto_paper.sync_orders`."""
    return sync_orders(None if at is None else parse_moment(at, field="at"))
