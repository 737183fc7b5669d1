"""The worker app of ``benchmarks/tasks.py``: quantbeat's Celery app (:mod:`workers.app`, its
configuration, consumer, events and signals) plus three benchmark-only no-op tasks, so that
the only difference between them is the task class:

* ``quantbeat.bench.noop`` — the app's default class, :class:`workers.base.QuantbeatTask`
  (job history, masking, size limit, attempt counting, retry policy, the ``job`` log line);
* ``quantbeat.bench.noop_no_history`` — the same class with its three database round trips
  per execution (the lost-run check, the start and the end of the ``job_runs``/
  ``job_attempts`` rows) replaced by nothing: what the base task costs without its history;
* ``bench.bare_noop`` — Celery's own :class:`celery.Task`, no quantbeat base.

Run a worker with ``celery -A benchmarks._tasks_app worker``. Never listed in
:data:`workers.app.TASK_MODULES`: production workers do not know these tasks.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery import Task

from workers.app import app
from workers.base import QuantbeatTask

NOOP = "quantbeat.bench.noop"
NOOP_NO_HISTORY = "quantbeat.bench.noop_no_history"
BARE_NOOP = "bench.bare_noop"


class NoHistoryTask(QuantbeatTask):
    """:class:`QuantbeatTask` without its history writes (benchmark only): no lost-run read,
    no start or end row; everything else (size check, masking of the start record, argument
    binding, the ``task.finished`` log line, the time-limit wrapper) runs as in the base."""

    def _reaped_as_lost(self, task_id: str) -> bool:
        return False

    def _record_start(
        self,
        direct: Any,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        started: dt.datetime,
    ) -> tuple[int | None, bool]:
        self._start_record(task_id, args, kwargs, started)  # the masking, not the write
        self.request.qb_started_at = started
        self.request.qb_attempt = 1
        return 1, False

    def _store_end(self, pending: dict[str, Any] | None, end: dict[str, Any]) -> None:
        """Nothing written: the base's end (log line, result summary) without its write."""


@app.task(name=NOOP)  # type: ignore[untyped-decorator]
def noop() -> None:
    """Do nothing (through the quantbeat base task)."""


@app.task(name=NOOP_NO_HISTORY, base=NoHistoryTask)  # type: ignore[untyped-decorator]
def noop_no_history() -> None:
    """Do nothing (through the base task minus its history writes)."""


@app.task(name=BARE_NOOP, base=Task)  # type: ignore[untyped-decorator]
def bare_noop() -> None:
    """Do nothing (Celery's default task class)."""
