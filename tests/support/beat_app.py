"""The production Celery app with a once-a-minute test schedule, for the two-beat test
(tests/faults/beat_experiment.py). Beats and the worker of that test run
``celery -A tests.support.beat_app``.

``TEST_BEAT_ENTRY`` names the schedule entry; ``TEST_REDBEAT_PREFIX`` keeps each group's
schedule apart; ``TEST_REDBEAT_LOCK`` empty disables redbeat's lock (to exercise the
PostgreSQL slot key alone).
"""

from __future__ import annotations

import os
from typing import Any

from celery.schedules import crontab

from workers.app import app

__all__ = ["app"]

_entries = [e for e in os.environ.get("TEST_BEAT_ENTRIES", "every-minute").split(",") if e]
app.conf.beat_schedule = {
    entry: {
        "task": "quantbeat.ops.test_tick",
        "schedule": crontab(minute="*"),
        "kwargs": {"entry": entry},
        "options": {"expires": 50},
    }
    for entry in _entries
}
app.conf.redbeat_key_prefix = os.environ.get("TEST_REDBEAT_PREFIX", "qb:test-redbeat:")
_lock = os.environ.get("TEST_REDBEAT_LOCK", "lock")
app.conf.redbeat_lock_key = (app.conf.redbeat_key_prefix + _lock) if _lock else None


@app.task(name="quantbeat.ops.test_tick", bind=True)
def tick(self: Any, entry: str) -> dict[str, Any]:
    """What beat sent: the entry and its scheduled time (kept in job_runs.result)."""
    headers = self.request.headers or {}
    return {
        "entry": entry,
        "slot": self.request.get("qb_beat_slot") or headers.get("qb_beat_slot"),
        "hostname": self.request.hostname,
    }
