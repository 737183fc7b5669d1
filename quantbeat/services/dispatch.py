"""Sending tasks by name and waiting for their results: how services reach the workers.

A :class:`TaskCall` is one task as data — its explicit name and JSON keyword arguments — so
plans (a backfill's chunks, a pipeline's steps) can be built and tested without a broker, and
sent later by :func:`send`, or chained (:func:`signature`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celery.canvas import Signature
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from quant.errors import ServiceUnavailable
from workers.app import app
from workers.queues import queue_for


@dataclass(frozen=True)
class TaskCall:
    """One task to run: its explicit name and its (JSON-safe) keyword arguments."""

    task: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def send(call: TaskCall) -> AsyncResult:
    """Send ``call`` to its queue (routed by name); returns its result handle at once."""
    return app.send_task(call.task, kwargs=call.kwargs)


def signature(call: TaskCall) -> Signature:
    """``call`` as an immutable signature (it ignores the previous step's result), for chains."""
    return app.signature(call.task, kwargs=call.kwargs, immutable=True)


def result_of(task_id: str) -> AsyncResult:
    """The result handle of a task (or chord) id that a task returned."""
    return app.AsyncResult(task_id)


def worker_hint(task_name: str) -> str:
    """What to check when ``task_name`` does not finish: the worker of its queue."""
    queue = queue_for(task_name)
    if queue is None:
        return "is a worker running?"
    name = queue.value
    return f"is a worker consuming the {name} queue? (quantbeat worker --queues {name})"


#: Seconds between polls of a result backend that cannot push results (``cache+memory://``).
POLL_S = 0.02


def wait(result: AsyncResult, *, timeout: float, what: str, task_name: str | None = None) -> Any:
    """The return value of ``result`` once it has finished (re-raising the task's error).

    ``what`` names the awaited work in the error; ``task_name`` (default ``what``) says which
    queue's worker to check.

    Raises:
        quant.errors.ServiceUnavailable: not finished within ``timeout`` seconds.
        Exception: the task's own error, as the result backend re-raises it.
    """
    try:
        # ``interval`` only matters for polling result backends (the embedded in-memory one,
        # default 0.5 s a poll); Redis delivers results by pub/sub.
        return result.get(timeout=timeout, interval=POLL_S)
    except CeleryTimeout:
        raise ServiceUnavailable(
            f"{what} ({result.id}) did not finish within {timeout:.0f} s; "
            + worker_hint(task_name or what)
        ) from None
