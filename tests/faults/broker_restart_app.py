"""The production Celery app, with Redis' sweep for unacknowledged messages run every second
instead of kombu's default (a scan every 10 × 10 s), for the broker-restart fault test
(tests/faults/test_server_faults.py).

After a Redis crash, a message the worker had taken but not acknowledged (its ack was lost
in the outage, or it was prefetched) waits in Redis' ``unacked`` hash until it is older than
the visibility timeout and a sweep puts it back on its queue. The test shortens both so
that the redelivery happens within seconds; the mechanism is the production one.

Start with ``celery -A tests.faults.broker_restart_app worker``.
"""

from __future__ import annotations

from workers.app import app

__all__ = ["app"]

app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
