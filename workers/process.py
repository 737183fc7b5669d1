"""Worker process setup, connected to Celery signals when :mod:`workers.app` is imported.

* logging: structlog JSON for Celery's and our own loggers (Celery's own setup is skipped);
* after fork: pooled database connections inherited from the parent are abandoned
  (``dispose(close=False)``), so no two processes share a socket;
* per task: the task id and name are bound to the logging context and cleared afterwards.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
)

from quantbeat.logging import configure_logging
from quantbeat.settings import get_settings


@setup_logging.connect
def _setup_logging(**_: Any) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    from db.engine import dispose_engines

    dispose_engines(close=False)


@task_prerun.connect
def _bind_task_context(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task_name=getattr(task, "name", None))


@task_postrun.connect
def _clear_task_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()
