"""The Celery application: ``celery -A workers.app worker -Q io``.

Configuration comes from :mod:`celeryconfig` (itself derived from ``QUANTBEAT_*`` settings);
every task uses :class:`workers.base.QuantbeatTask`; every message is sent through
:class:`workers.process.QuantbeatAMQP` (the size limit); every worker runs the
:class:`workers.heartbeat.Heartbeat` bootstep; task modules are listed explicitly.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.utils.objects import cached_property

import workers.metrics  # connects the Prometheus metrics signals
import workers.process  # noqa: F401  (connects the worker signals)
from workers.heartbeat import Heartbeat

#: Modules that define tasks. Adding a module here is how a task becomes known to workers.
TASK_MODULES: tuple[str, ...] = (
    "tasks.ai",
    "tasks.backtests",
    "tasks.collect",
    "tasks.crypto",
    "tasks.indicators",
    "tasks.maintenance",
    "tasks.market",
    "tasks.notify",
    "tasks.ops",
    "tasks.pipeline",
    "tasks.portfolio",
    "tasks.scans",
    "tasks.track",
)


class QuantbeatCelery(Celery):  # type: ignore[misc]
    """The Celery app whose result handles survive a missed pub/sub message
    (:class:`workers.results.SlicedResult`)."""

    @cached_property
    def AsyncResult(self) -> Any:  # noqa: N802 (Celery's name)
        return self.subclass_with_self("workers.results:SlicedResult")


app = QuantbeatCelery(
    "quantbeat",
    task_cls="workers.base:QuantbeatTask",
    # Refuses task messages over QUANTBEAT_MAX_MESSAGE_BYTES before they are queued.
    amqp="workers.process:QuantbeatAMQP",
    # Masks the arguments, results and errors that task events (and so Flower) carry.
    events="workers.events:QuantbeatEvents",
    include=list(TASK_MODULES),
)
app.config_from_object("celeryconfig")
# Every worker's main process records a heartbeat (workers.heartbeat): a whole-worker kill
# is noticed by the reaper within QUANTBEAT_WORKER_DEAD_AFTER + 15 s.
app.steps["worker"].add(Heartbeat)
