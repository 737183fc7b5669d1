"""The backtest test app (tests.support.backtest_app: the production app, the test tasks and
the test strategies) plus what the worker fault tests (tests/faults/test_worker_faults.py)
need:

* Redis' sweep of unacknowledged messages every second instead of kombu's default (a scan
  every 10 × 10 s), and a short sweep lock, so a message whose whole worker was SIGKILLed is
  restored within a second of its visibility timeout (which the tests shorten to seconds);
* ``quantbeat.backtest.test_pid`` — sleeps, then returns the pid of the pool child that ran it;
* ``quantbeat.backtest.test_kill_child`` — SIGKILLs the pool child running it, as a segfault
  or the OOM killer would: a message that keeps killing its worker.

Start with ``celery -A tests.support.worker_faults_app worker -P prefork -Q cpu``.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from tests.support.backtest_app import app

__all__ = ["app"]

app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
    # A worker killed during its sweep leaves the sweep lock behind for this long (default 300 s).
    "unacked_mutex_expire": 5,
}


@app.task(name="quantbeat.backtest.test_pid")
def pid(seconds: float) -> dict[str, Any]:
    """Sleep ``seconds``; return the pid of the process that ran the task."""
    time.sleep(seconds)
    return {"pid": os.getpid()}


@app.task(name="quantbeat.backtest.test_kill_child")
def kill_child(marker: str) -> None:
    """Count the execution in Redis (``test:kill-child:<marker>``, QUANTBEAT_REDIS_URL), then
    SIGKILL the process running the task. Never returns."""
    import redis

    from quantbeat.infra.settings import get_settings

    client = redis.Redis.from_url(get_settings().redis_url)
    client.incr(f"test:kill-child:{marker}")
    client.expire(f"test:kill-child:{marker}", 3600)
    client.close()
    os.kill(os.getpid(), signal.SIGKILL)
