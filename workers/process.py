"""Worker process setup, connected to Celery signals when :mod:`workers.app` is imported.

* logging: structlog JSON for Celery's and our own loggers (Celery's own setup is skipped);
* after fork: every process-wide registry is reset (:mod:`quantbeat.infra.forkstate`): pooled
  database connections inherited from the parent are abandoned (``dispose(close=False)``),
  Redis clients and caches dropped, so no two processes share a socket;
* publishing: a message larger than ``QUANTBEAT_MAX_MESSAGE_BYTES`` is refused before it is
  queued (:class:`QuantbeatAMQP`, the app's ``amqp`` class; a ``before_task_publish`` receiver
  cannot refuse: Celery logs and swallows what receivers raise), and the argument reprs in
  message headers (what events and Flower show) are masked;
* per task: the task id and name are bound to the logging context and cleared afterwards;
* hard time limits: recorded from the parent (the killed child cannot);
* memory: each prefork pool child caps its address space at its size after fork plus
  ``QUANTBEAT_CHILD_MAX_BYTES`` (``RLIMIT_AS``): beyond it allocations raise ``MemoryError``,
  which fails the task at once (``out_of_memory``) instead of the OOM killer taking the
  child (children killed anyway are counted by :mod:`workers.request`);
* at worker start: numba kernels are compiled (or loaded from their on-disk cache) once in
  the parent, so forked pool children inherit them instead of compiling in their first task.
"""

from __future__ import annotations

import resource
import threading
from collections import OrderedDict
from typing import Any

import structlog
from celery.app.amqp import AMQP
from celery.exceptions import TimeLimitExceeded
from celery.signals import (
    before_task_publish,
    setup_logging,
    task_failure,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
)
from celery.utils.saferepr import saferepr

from quantbeat.infra.forkstate import reset_after_fork
from quantbeat.infra.logging import configure_logging
from quantbeat.infra.masking import mask_value
from quantbeat.infra.settings import get_settings
from workers.base import hard_time_limit_handler, record_failure_outside_task
from workers.limits import check_publish

log = structlog.get_logger(__name__)


@setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    settings = get_settings()
    # `quantbeat worker --loglevel` / `celery worker -l` win over QUANTBEAT_LOG_LEVEL.
    configure_logging(loglevel or settings.log_level, json=settings.log_json)


class QuantbeatAMQP(AMQP):  # type: ignore[misc]
    """Celery's AMQP helper, with the size limit checked before every task message is sent
    (``send_task``, ``apply_async``, retries, canvas callbacks): before the
    ``before_task_publish`` receivers (masking) run and before anything reaches the broker."""

    def _create_task_sender(self) -> Any:
        send = super()._create_task_sender()

        def send_task_message(producer: Any, name: str, message: Any, **options: Any) -> Any:
            """Raises quant.errors.ValidationError: the message is larger than
            QUANTBEAT_MAX_MESSAGE_BYTES (nothing is queued)."""
            check_publish(name, message.body)
            return send(producer, name, message, **options)

        return send_task_message


@before_task_publish.connect
def _mask_argument_reprs(body: Any = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Task events (and so Flower) show ``argsrepr``/``kwargsrepr`` from the message headers;
    mask them in every process that publishes. The arguments themselves are untouched."""
    if headers is None or not isinstance(body, list | tuple) or len(body) < 2:
        return
    args, kwargs = body[0], body[1]
    headers["argsrepr"] = saferepr(mask_value(list(args or ())), 1024)
    headers["kwargsrepr"] = saferepr(mask_value(dict(kwargs or {})), 1024)


@worker_init.connect
def _warm_up(**_: Any) -> None:
    # numba and TA-Lib kernels: loaded by workers only, not by every client of workers.app.
    from quant.kernels import warm_up  # noqa: PLC0415 (numba kernels)

    warm_up()


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    """Every process-wide registry (engines, Redis clients, caches, limiters) registered its
    reset with :func:`quantbeat.infra.forkstate.after_fork`; run them all. Then cap the
    child's memory (:func:`cap_child_memory`)."""
    reset_after_fork()
    cap_child_memory(get_settings().child_max_bytes)


def address_space_bytes() -> int | None:
    """This process' virtual memory size (bytes, ``/proc/self/statm``), ``None`` off Linux."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize()


def cap_child_memory(extra_bytes: int) -> int | None:
    """Limit this process' address space (``RLIMIT_AS``) to its current size plus
    ``extra_bytes`` (``QUANTBEAT_CHILD_MAX_BYTES``, in a prefork pool child), so an
    allocation beyond it raises ``MemoryError`` in the task — dead-lettered
    ``out_of_memory`` at once by :mod:`workers.base` — before the kernel's OOM killer takes
    the child. Never above an existing hard limit. Returns the limit set (bytes), ``None``
    when ``extra_bytes`` is 0 or the size is unknown (nothing set)."""
    if extra_bytes <= 0:
        return None
    size = address_space_bytes()
    if size is None:
        return None
    limit = size + extra_bytes
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError) as exc:
        log.warning("child_memory_cap.not_set", limit=limit, error=f"{exc!r}")
        return None
    log.debug("child_memory_cap.set", limit=limit, size=size)
    return limit


@task_prerun.connect
def _bind_task_context(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task_name=getattr(task, "name", None))


@task_postrun.connect
def _clear_task_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


_recorded_time_limits: OrderedDict[str, None] = OrderedDict()
_recorded_lock = threading.Lock()


@task_failure.connect
def _record_hard_time_limit(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    **_: Any,
) -> None:
    """The hard time limit kills the pool child before the task can record anything; the
    parent process sees the failure here and records it (job run ``timed_out``, dead letter).
    Other failures were recorded by the task itself."""
    if not isinstance(exception, TimeLimitExceeded) or task_id is None or sender is None:
        return
    # Celery 5.7 reports one hard time limit twice (timeout handler and pool error callback);
    # record it once, or the dead letter would count two occurrences.
    with _recorded_lock:
        if task_id in _recorded_time_limits:
            return
        _recorded_time_limits[task_id] = None
        while len(_recorded_time_limits) > 1024:
            _recorded_time_limits.popitem(last=False)
    name = getattr(sender, "name", str(sender))
    handler = hard_time_limit_handler(name)
    if handler is not None:
        try:
            handler(args, kwargs)
        except Exception as exc:  # the job run and dead letter below must still be written
            log.error("hard_time_limit.handler_failed", task=name, error=f"{exc!r}"[:500])
    record_failure_outside_task(
        task_name=name,
        task_id=task_id,
        args=args,
        kwargs=kwargs,
        reason="hard_time_limit",
        error=f"TimeLimitExceeded: hard time limit ({exception}) killed the worker process",
        state="timed_out",
    )
