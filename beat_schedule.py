"""Celery beat's schedule, in Asia/Seoul time (``celeryconfig.timezone``).

Every entry names an explicitly named task (a test checks they are registered) and expires:
a tick that could not be delivered in time is dropped rather than run late next to the next
one. Exactly one beat runs (docker-compose.yml); a later issue adds a lock and a unique
(job, slot) key so a second scheduler cannot double-run.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

#: KRX regular session ends 15:30 KST; closing prices and investor flows settle after that.
_AFTER_KRX_CLOSE = {"hour": 16, "minute": 10, "day_of_week": "mon-fri"}
_ONE_HOUR = 3600

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    f"collect-daily-candles-{market.lower()}": {
        "task": "quantbeat.collect.daily_candles",
        "schedule": crontab(**_AFTER_KRX_CLOSE),
        "kwargs": {"market": market},
        "options": {"expires": _ONE_HOUR},
    }
    for market in ("KOSPI", "KOSDAQ")
} | {
    f"collect-investor-flows-{market.lower()}": {
        "task": "quantbeat.collect.investor_flows",
        "schedule": crontab(hour=16, minute=40, day_of_week="mon-fri"),
        "kwargs": {"market": market},
        "options": {"expires": _ONE_HOUR},
    }
    for market in ("KOSPI", "KOSDAQ")
}
