"""db.store.iso_utc: the one way reads turn stored days and times into ISO 8601 text."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from db.store import iso_utc


def test_a_date_is_its_day() -> None:
    assert iso_utc(dt.date(2026, 6, 30)) == "2026-06-30"


def test_a_naive_time_is_read_as_utc() -> None:
    # SQLite hands stored times back naive; they were stored in UTC
    assert iso_utc(dt.datetime(2026, 6, 30, 6, 10)) == "2026-06-30T06:10:00+00:00"


def test_an_aware_time_is_given_in_utc() -> None:
    kst = dt.datetime(2026, 6, 30, 15, 10, tzinfo=ZoneInfo("Asia/Seoul"))
    assert iso_utc(kst) == "2026-06-30T06:10:00+00:00"
    assert dt.datetime.fromisoformat(iso_utc(kst) or "") == kst


def test_none_stays_none() -> None:
    assert iso_utc(None) is None
