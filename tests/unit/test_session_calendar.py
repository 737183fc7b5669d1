"""The KRX calendar from exchange_calendars' XKRX, and its on-disk cache."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from quant.calendar import SessionCalendar
from quant.errors import ValidationError
from quantbeat.infra.settings import reset_settings
from quantbeat.infra.sources import krx_calendar

D = dt.date


@pytest.fixture(scope="module")
def xkrx() -> SessionCalendar:
    cal = krx_calendar()
    assert isinstance(cal, SessionCalendar)
    return cal


@pytest.mark.parametrize(
    ("day", "session"),
    [
        (D(2026, 11, 20), True),  # an ordinary Friday
        (D(2026, 11, 21), False),  # Saturday
        (D(2026, 2, 17), False),  # 설날 (lunar new year)
        (D(2026, 9, 25), False),  # 추석 (Chuseok)
        (D(2026, 10, 5), False),  # substitute holiday after Chuseok/개천절
        (D(2026, 5, 25), False),  # 부처님오신날 substitute (lunar)
        (D(2025, 12, 31), False),  # year-end closing
        (D(2026, 1, 2), True),  # first session of 2026
    ],
)
def test_xkrx_knows_lunar_and_substitute_holidays(xkrx, day, session):
    assert xkrx.is_session(day) is session


def test_neighbouring_sessions_skip_chuseok(xkrx):
    assert xkrx.next_session(D(2026, 9, 23)) == D(2026, 9, 28)
    assert xkrx.previous_session(D(2026, 9, 27)) == D(2026, 9, 23)
    assert xkrx.sessions(D(2026, 9, 21), D(2026, 9, 30)) == [
        D(2026, 9, 21),
        D(2026, 9, 22),
        D(2026, 9, 23),
        D(2026, 9, 28),
        D(2026, 9, 29),
        D(2026, 9, 30),
    ]


def test_dates_outside_the_calendar_are_refused(xkrx):
    with pytest.raises(ValidationError, match="1999-12-31"):
        xkrx.is_session(D(1999, 12, 31))


def test_the_session_list_is_cached_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("QUANTBEAT_CACHE_DIR", str(tmp_path / "cache"))
    reset_settings()
    krx_calendar.cache_clear()
    try:
        built = krx_calendar()
        (cached,) = list((tmp_path / "cache").glob("xkrx-*.json"))
        krx_calendar.cache_clear()
        again = krx_calendar()  # from the file this time
        assert again.sessions(D(2020, 1, 1), D(2030, 12, 31)) == built.sessions(
            D(2020, 1, 1), D(2030, 12, 31)
        )
        cached.write_text("not json")  # a corrupt cache is rebuilt, not trusted
        krx_calendar.cache_clear()
        assert krx_calendar().is_session(D(2026, 9, 25)) is False
        assert json.loads(cached.read_text())[0].startswith("20")  # rebuilt and rewritten
    finally:
        reset_settings()
        krx_calendar.cache_clear()


def test_explicit_session_calendar_checks_its_input():
    with pytest.raises(ValidationError, match="outside"):
        SessionCalendar("x", [D(2020, 1, 1)], D(2021, 1, 1), D(2021, 12, 31))
