"""The crypto volatility check through the real session worker (``io`` queue), PostgreSQL,
Redis and the notification dispatcher (issue 23): six hours of 5-minute checks of KRW-BTC on
the SIMULATED crypto market collect their bars, find the unusual hours, and announce each
(market, hour) once — one ``crypto.volatility`` event, one Telegram message to a local server
speaking the Bot API — however many checks in that hour find it; running the checks again
records and sends nothing."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from db.engine import session_scope
from db.models import Event, IntradayCandle
from quantbeat.services import notify
from tests.support import notify_env
from tests.support.fake_notify import FakeTelegram

pytestmark = pytest.mark.integration

START = dt.datetime(2026, 11, 20, 0, 5, tzinfo=dt.UTC)
CHECKS = 6 * 12  # six hours, every five minutes
CHAT = notify_env.TELEGRAM_CHAT
#: Low enough that a random walk has unusual hours in six hours, high enough that most are not.
SIGMA = 1.5


@pytest.fixture
def telegram(celery_app: Any, clean_db: str) -> Iterator[FakeTelegram]:
    with FakeTelegram(
        tokens=[notify_env.TELEGRAM_TOKEN], chats=[CHAT], port=notify_env.TELEGRAM_PORT
    ) as fake:
        yield fake


def _check(celery_app: Any, at: dt.datetime) -> dict[str, Any]:
    result: dict[str, Any] = celery_app.send_task(
        "quantbeat.crypto.volatility_check",
        kwargs={"at": at.isoformat(), "markets": ["KRW-BTC"], "sigma": SIGMA},
    ).get(timeout=120)
    return result


def _events() -> list[Event]:
    with session_scope() as session:
        rows = list(
            session.execute(
                select(Event).where(Event.type == "crypto.volatility").order_by(Event.id)
            ).scalars()
        )
        session.expunge_all()
        return rows


def test_six_hours_of_checks_announce_each_unusual_hour_once(
    celery_app: Any, telegram: FakeTelegram
) -> None:
    notify.add("ops", "telegram", target=CHAT, secret="tg_test", language="en",
               filters={"event_types": ["crypto.volatility"]})  # fmt: skip
    results = [_check(celery_app, START + dt.timedelta(minutes=5 * k)) for k in range(CHECKS)]

    readings = [r["markets"]["KRW-BTC"] for r in results]
    assert all(r["simulated"] for r in results)
    assert all(x["reason"] is None for x in readings), readings[0]
    assert all(x["hourly_returns"] >= 719 for x in readings)  # the first check collected 30 days
    unusual = [x for x in readings if x["unusual"]]
    assert 0 < len(unusual) < len(readings)
    hours = {
        (dt.datetime.fromisoformat(x["at"]) - dt.timedelta(seconds=1)).replace(
            minute=0, second=0, microsecond=0
        )
        for x in unusual
    }
    # one event per unusual hour: the first check that found it announced it
    assert sum(r["alerts"] for r in results) == len(hours)
    assert sum(x["announced"] for x in readings) == len(hours)
    events = _events()
    assert len(events) == len(hours)
    assert {e.key for e in events} == {f"crypto.volatility:KRW-BTC:{h.isoformat()}" for h in hours}
    assert all(e.simulated for e in events)
    for e in events:
        assert abs(e.payload["move_sigma"]) >= SIGMA or e.payload["realized_sigma"] >= SIGMA

    # the bars came through the collector: 5-minute bars of the six hours, a month of hours
    with session_scope() as session:
        counts = dict(
            session.execute(
                select(IntradayCandle.interval, func.count()).group_by(IntradayCandle.interval)
            ).all()
        )
    assert counts["5m"] >= CHECKS
    assert counts["60m"] >= 30 * 24

    deadline = time.monotonic() + 60
    while len(telegram.accepted) < len(hours) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(telegram.accepted) == len(hours)
    for message in telegram.accepted:
        assert (message.text or "").startswith("[SIMULATED]")
        assert "Volatility alert" in (message.text or "")
        assert "KRW-BTC" in (message.text or "")

    # the same checks again: nothing new recorded, nothing sent again
    again = [_check(celery_app, START + dt.timedelta(minutes=5 * k)) for k in range(0, CHECKS, 7)]
    assert sum(r["alerts"] for r in again) == 0
    assert len(_events()) == len(hours)
    time.sleep(1.0)
    assert len(telegram.received) == len(hours)
