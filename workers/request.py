"""The worker-side request of every quantbeat task: a pool child killed by SIGKILL.

With ``task_acks_late`` and ``task_reject_on_worker_lost`` Celery requeues the message of a
pool child that died mid-task. When the kernel's OOM killer took the child, the next delivery
allocates as much and dies the same way: until ``QUANTBEAT_MAX_ATTEMPTS`` it would take down
child after child (and whatever else shared those children). :class:`QuantbeatRequest`
(``QuantbeatTask.Request``) counts, in the worker's main process, the deaths by SIGKILL of
children running one task id — in Redis (``qb:killed:<task id>``), so redeliveries to other
workers count too — and at the ``QUANTBEAT_MAX_CHILD_KILLS``-th (default 2) ends the message
instead of requeueing it: dead letter ``worker_killed``, job run ``failed``, a ``FAILURE``
result for the waiting client (``WorkerKilled``), the message acknowledged.

An allocation beyond the child's own cap (``QUANTBEAT_CHILD_MAX_BYTES``, set by
:mod:`workers.process`) raises ``MemoryError`` in the task instead, which fails it at once
(``out_of_memory``, :mod:`workers.base`); the SIGKILL count is for what that cap cannot
catch (memory of native code the kernel reclaims, an operator's ``kill -9``).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from typing import Any

import redis
import structlog
from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery.worker import state as worker_state
from celery.worker.request import Request

from quant.errors import PermanentError
from quantbeat.infra.forkstate import after_fork
from quantbeat.infra.keys import child_kill_key
from quantbeat.infra.settings import get_settings
from workers.base import child_killed_handler, record_failure_outside_task

log = structlog.get_logger(__name__)

#: Reason of the dead letter written when a task's children kept being SIGKILLed.
WORKER_KILLED = "worker_killed"
#: How long a task id's kill count is kept (seconds).
KILL_COUNT_TTL = 7 * 86_400
#: billiard's description of a child that died by SIGKILL ("signal 9 (SIGKILL)").
_SIGKILL = re.compile(r"\bsignal 9\b|\bSIGKILL\b")


class WorkerKilled(PermanentError):
    """The pool child running the task was killed by SIGKILL (most likely by the kernel's
    OOM killer) ``QUANTBEAT_MAX_CHILD_KILLS`` times; the message is dead-lettered."""


def killed_by_sigkill(exc: BaseException) -> bool:
    """Whether ``exc`` is billiard's report of a pool child that died by SIGKILL."""
    return isinstance(exc, WorkerLostError) and bool(_SIGKILL.search(str(exc)))


class KillCounter:
    """Counts SIGKILL deaths per task id: in Redis (shared by every worker) when
    ``QUANTBEAT_REDIS_URL`` is a Redis URL, else (``memory://``, or Redis unreachable) in
    this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._client: redis.Redis | None = None
        self._url: str | None = None

    def _redis(self) -> redis.Redis | None:
        url = get_settings().redis_url
        if url.startswith("memory://"):
            return None
        with self._lock:
            if self._client is None or self._url != url:
                self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
                self._url = url
            return self._client

    def increment(self, task_id: str) -> int:
        """Count one more death of a child running ``task_id``; returns the count so far."""
        client = self._redis()
        if client is not None:
            try:
                key = child_kill_key(task_id)
                pipe = client.pipeline(transaction=True)
                pipe.incr(key)
                pipe.expire(key, KILL_COUNT_TTL)
                count, _ = pipe.execute()
                return int(count)
            except redis.RedisError as exc:
                log.warning("child_kill.not_counted_in_redis", error=f"{exc!r}"[:300])
        now = time.monotonic()
        with self._lock:
            count = self._local.pop(task_id, (0, now))[0] + 1
            self._local[task_id] = (count, now)
            while len(self._local) > 4096:
                self._local.popitem(last=False)
            return count

    def forget(self) -> None:
        with self._lock:
            self._client = None
            self._url = None
            self._local.clear()


kill_counter = KillCounter()


@after_fork
def _forget_kill_counter() -> None:
    kill_counter.forget()


class QuantbeatRequest(Request):  # type: ignore[misc]
    """Celery's request, ending (instead of requeueing) a message whose pool children keep
    being SIGKILLed. Runs in the worker's main process."""

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if (
            killed_by_sigkill(exc)
            and not (self._already_cancelled or self._already_revoked)
            and not worker_state.should_terminate
            and not self._stored_success()
        ):
            exc_info = self._count_kill(exc, exc_info)
        return super().on_failure(exc_info, send_failed_event=send_failed_event,
                                  return_ok=return_ok)  # fmt: skip

    def _stored_success(self) -> bool:
        """Whether the child stored SUCCESS before it died (Celery then acks; not a kill)."""
        check = getattr(self, "_success_was_stored", None)
        try:
            return bool(check()) if check is not None else False
        except Exception:
            return False

    def _count_kill(self, exc: BaseException, exc_info: Any) -> Any:
        """Count the kill; below the limit return ``exc_info`` (Celery requeues the message),
        at it record the dead letter and return a :class:`WorkerKilled` failure (Celery then
        acknowledges the message and stores the failure for the client)."""
        limit = get_settings().max_child_kills
        count = kill_counter.increment(self.id)
        if count < limit:
            log.warning("task.child_killed", task_id=self.id, task=self.task_name,
                        kills=count, limit=limit, requeued=True, error=str(exc))  # fmt: skip
            return exc_info
        message = (
            f"the pool child running task {self.task_name} [{self.id}] was killed by SIGKILL "
            f"{count} time(s) (limit QUANTBEAT_MAX_CHILD_KILLS={limit}), most likely by the "
            "kernel's OOM killer: the task needs more memory than the worker has; not "
            f"requeued ({exc})"
        )
        log.error("task.child_killed", task_id=self.id, task=self.task_name, kills=count,
                  limit=limit, requeued=False, error=str(exc))  # fmt: skip
        handler = child_killed_handler(self.task_name)
        if handler is not None:
            try:
                handler(self.args, self.kwargs)
            except Exception as handler_exc:  # the dead letter below must still be written
                log.error("child_killed.handler_failed", task=self.task_name,
                          error=f"{handler_exc!r}"[:500])  # fmt: skip
        record_failure_outside_task(
            task_name=self.task_name,
            task_id=self.id,
            args=self.args,
            kwargs=self.kwargs,
            reason=WORKER_KILLED,
            error=f"WorkerKilled: {message}",
        )
        try:
            raise WorkerKilled(message)
        except WorkerKilled:
            return ExceptionInfo()
