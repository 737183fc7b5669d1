"""Notification tasks (``io`` queue): the event outbox's dispatcher
(:mod:`quantbeat.services.notify`) and the day's announcements
(:mod:`quantbeat.services.announce`).

``dispatch`` and ``deliver`` are idempotent by construction: the ledger has one row per
(event, subscription) and a confirmed part is never sent again, so a redelivered or
duplicated task only finds less to do.
"""

from __future__ import annotations

from typing import Any

from quant.errors import ValidationError
from quantbeat.services import announce, notify
from quantbeat.services.args import parse_date, parse_flag
from workers.app import app


@app.task(name="quantbeat.notify.dispatch")
def dispatch(sweep: bool = False) -> dict[str, Any]:
    """Fan new events out to the subscriptions that match them and start a
    ``quantbeat.notify.deliver`` for each subscription that received deliveries (woken by
    every commit that records an event) — with ``sweep`` (beat, every 15 s: the safety net
    behind a lost wake-up or a backoff) for every subscription with a delivery due. Returns
    ``{"events", "deliveries", "delivering"}``."""
    return notify.dispatch(sweep=parse_flag(sweep, field="sweep"))


@app.task(name="quantbeat.notify.deliver")
def deliver(subscription_id: int) -> dict[str, Any]:
    """Send subscription ``subscription_id``'s due deliveries in event order (one deliverer
    per subscription at a time: a second returns ``skipped: "leased"``). Returns ``{"subscription",
    "sent", "failed", "retrying", "skipped"}``."""
    if isinstance(subscription_id, bool) or not isinstance(subscription_id, int):
        raise ValidationError(
            f"subscription_id must be an integer, got {subscription_id!r}",
            field="subscription_id",
            value=subscription_id,
        )
    return notify.deliver(subscription_id)


@app.task(name="quantbeat.notify.daily_summary")
def daily_summary(trade_date: str | None = None) -> dict[str, Any]:
    """Record the day's ``daily.summary`` event (default: the latest KRX session) — once per
    day, so a re-run sends nothing new. Returns ``{"trade_date", "event_id"}``."""
    day = None if trade_date is None else parse_date(trade_date, field="trade_date")
    return announce.daily_summary(day)


@app.task(name="quantbeat.notify.check_freshness")
def check_freshness(trade_date: str | None = None) -> dict[str, Any]:
    """Record ``data.stale`` for each dataset (daily candles, investor flows) behind the
    session it should hold (default: the last closed KRX session), once per dataset and day.
    Returns ``{"expected", "datasets"}``."""
    day = None if trade_date is None else parse_date(trade_date, field="trade_date")
    return announce.check_freshness(day)
