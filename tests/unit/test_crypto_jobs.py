"""The crypto jobs' task contracts (issue 23): seed 000's retries (1 s, 2 s, 4 s; a server's
Retry-After still a floor), the io queue, the 5-minute beat entry, and bad arguments refused
by name before any work."""

from __future__ import annotations

import pytest

from beat_schedule import BEAT_SCHEDULE
from quant.errors import ValidationError
from workers.app import app
from workers.queues import queue_for

TASK = "quantbeat.crypto.volatility_check"


def _task():
    app.loader.import_default_modules()
    return app.tasks[TASK]


def test_retries_wait_one_two_then_four_seconds() -> None:
    task = _task()
    assert task.max_retries == 3
    assert [task.retry_countdown(n) for n in range(3)] == [1.0, 2.0, 4.0]
    assert task.retry_countdown(1, retry_after=7.5) == 7.5  # the provider's word wins
    assert task.retry_countdown(2, retry_after=0.5) == 4.0


def test_other_tasks_keep_the_jittered_backoff() -> None:
    app.loader.import_default_modules()
    other = app.tasks["quantbeat.collect.crypto_candles"]
    assert other.retry_delays is None
    waits = {other.retry_countdown(3) for _ in range(20)}
    assert len(waits) > 1  # jittered


def test_it_runs_on_the_io_queue_every_five_minutes() -> None:
    assert queue_for(TASK) == "io"
    entry = BEAT_SCHEDULE["crypto-volatility-5m"]
    assert entry["task"] == TASK
    assert entry["schedule"].minute == set(range(0, 60, 5))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sigma": 0}, "sigma"),
        ({"sigma": -1.0}, "sigma"),
        ({"sigma": True}, "sigma"),
        ({"sigma": "3"}, "sigma"),
        ({"at": "2026-11-20T10:00:00"}, "at"),  # no zone
        ({"markets": "KRW-BTC"}, "markets"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _task().run(**kwargs)
    assert caught.value.field == field


def test_health_judges_a_crypto_job_by_its_latest_success() -> None:
    from datetime import UTC, datetime, timedelta

    from quantbeat.services.health import CRYPTO_JOBS, Status, assess_crypto_job

    period = CRYPTO_JOBS[TASK]
    now = datetime(2026, 12, 7, 0, 30, tzinfo=UTC)
    assert assess_crypto_job(TASK, period, None, now) == (
        Status.WARNING,
        "volatility_check has not succeeded yet (every 5 min)",
    )
    fresh = assess_crypto_job(TASK, period, now - timedelta(minutes=11), now)
    assert fresh[0] is Status.HEALTHY
    late = assess_crypto_job(TASK, period, now - timedelta(minutes=12), now)
    assert late[0] is Status.WARNING
    assert late[1].startswith("volatility_check last succeeded 12 min ago")
    naive = assess_crypto_job(TASK, period, (now - timedelta(minutes=1)).replace(tzinfo=None), now)
    assert naive[0] is Status.HEALTHY
