"""The latest snapshot's time on the embedded default's SQLite file is timezone-aware UTC, as
on PostgreSQL: ``health`` subtracts it from now during a KRX session (it raised TypeError,
can't subtract offset-naive and offset-aware datetimes, whenever a session was open)."""

from __future__ import annotations

import datetime as dt

from db.engine import session_scope
from db.models import IntradaySnapshot
from db.snapshots import latest_snapshot
from quantbeat.services.health import assess_snapshots


def test_the_latest_snapshot_is_aware_utc_and_health_can_age_it(sqlite_url: str) -> None:
    taken = dt.datetime(2026, 12, 7, 0, 10, tzinfo=dt.UTC)  # 09:10 KST, a session is open
    with session_scope() as session:
        assert latest_snapshot(session) is None
        session.add(
            IntradaySnapshot(trade_date=taken.date(), taken_at=taken, open=1.0, high=1.0,
                             low=1.0, close=1.0, source="simulated", simulated=True)
        )  # fmt: skip
    with session_scope() as session:
        latest = latest_snapshot(session)
        assert latest == taken
        assert latest is not None
        assert latest.tzinfo is not None
        assert latest_snapshot(session, taken.date()) == taken
    now = taken + dt.timedelta(minutes=3)
    health = assess_snapshots(True, latest, now, 10)
    assert health.status.value == "healthy", health
