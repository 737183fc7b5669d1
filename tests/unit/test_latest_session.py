from __future__ import annotations

from datetime import date, datetime

import pytest

from quant.calendar import krx_approximate_calendar, latest_closed_session


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 20, 16, 10), date(2026, 11, 20)),  # Friday after the close
        (datetime(2026, 11, 20, 15, 29), date(2026, 11, 19)),  # Friday before the close
        (datetime(2026, 11, 21, 12, 0), date(2026, 11, 20)),  # Saturday
        (datetime(2026, 11, 23, 9, 0), date(2026, 11, 20)),  # Monday morning
        (datetime(2026, 10, 9, 18, 0), date(2026, 10, 8)),  # 한글날, a fixed holiday
    ],
)
def test_latest_closed_session(now: datetime, expected: date):
    assert latest_closed_session(krx_approximate_calendar(), now) == expected
