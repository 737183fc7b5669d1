"""The one base class of every quantbeat task.

It gives each task, by its explicit name ``quantbeat.<area>.<action>``:

* **job history** — a ``job_runs`` row per task id; every execution (first run, retry,
  redelivery after a lost worker) increments ``attempts`` and records state, timings, the error
  and a small result summary. Arguments are stored masked.
* **retry policy** — only :class:`quant.errors.TransientError` (and infrastructure errors that
  map to it, see :func:`workers.retry.as_transient`) are retried, with bounded exponential
  backoff and jitter, honouring ``retry_after``. Retries keep the worker slot free (Celery
  ``retry``), never sleep in the task.
* **fail fast** — :class:`quant.errors.PermanentError` (and any unexpected exception) is not
  retried; the task fails and its masked payload goes to the ``dead_letters`` table, as does a
  task whose retries are exhausted, whose retry could not be published, that hit its soft
  time limit, or that keeps getting redelivered (more than ``max_attempts`` executions: it
  fails with :class:`PoisonedMessage` without running).
* Celery's own control flow is recorded as what it is: a ``Retry`` raised by the task body is
  ``retrying``, ``Ignore`` is ``ignored``, ``Reject(requeue=True)`` is ``requeued``.
  Hard time limits kill the child before it can record anything; :mod:`workers.process`
  records those from the parent.
* **logging context** — task id and name are bound to every log line (see
  :mod:`workers.process`); one ``metric_type="job"`` line is logged per execution.

* **size limit** — arguments larger than ``QUANTBEAT_MAX_MESSAGE_BYTES`` are refused before
  anything else (masking, history, attempt counting): dead letter ``oversized`` with a masked
  sample, :class:`quant.errors.ValidationError` (:mod:`workers.limits`). Workers refuse such
  messages in their consumer already; this catches a run that did not come through it.

History writes use their own short transactions. If the database is down, a start is written
with the execution's end; an end or a dead letter that cannot be written goes to the local
spool (:mod:`quantbeat.infra.spool`, replayed by the reaper) and is logged
(``job_run.end_not_recorded``, ``dead_letter.not_recorded``); the task's own database access
then fails as a transient error and retries.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import time
import traceback
from collections.abc import Callable
from typing import Any, ClassVar

import structlog
from celery import Task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded
from celery.utils.saferepr import saferepr
from sqlalchemy.orm import Session

from db.beat import claim_slot
from db.engine import session_scope
from db.jobs import (
    SPOOL_DEAD_LETTER,
    SPOOL_JOB_RUN,
    DirectHistory,
    record_dead_letter,
    record_job_end,
    record_job_start,
)
from db.jobs import job_state as stored_job_state
from quant.errors import PermanentError, TransientError, ValidationError
from quantbeat.infra import spool
from quantbeat.infra.masking import mask_text, mask_value
from quantbeat.infra.settings import get_settings
from workers.deadline import run_limited
from workers.limits import OVERSIZED, SAMPLE_CHARS, arguments_size, oversized_error, sample
from workers.queues import queue_for
from workers.retry import as_transient, backoff_delay

log = structlog.get_logger("quantbeat.task")

#: Message headers set on every task beat sends (by :mod:`workers.beat`): the entry's name and
#: the time it was scheduled for, the key of its slot in ``beat_slots``.
BEAT_ENTRY_HEADER = "qb_beat_entry"
BEAT_SLOT_HEADER = "qb_beat_slot"

HardLimitHandler = Callable[[Any, Any], None]
_hard_limit_handlers: dict[str, HardLimitHandler] = {}


def on_hard_time_limit(task_name: str) -> Callable[[HardLimitHandler], HardLimitHandler]:
    """Register the function the worker's main process calls with ``(args, kwargs)`` when the
    hard time limit killed the pool child running ``task_name`` (the child could not clean up;
    e.g. a backtest run is marked ``timed_out``). One handler per task name; a decorator.

    The job run and the dead letter are recorded by :mod:`workers.process` either way.
    """

    def register(fn: HardLimitHandler) -> HardLimitHandler:
        _hard_limit_handlers[task_name] = fn
        return fn

    return register


def hard_time_limit_handler(task_name: str) -> HardLimitHandler | None:
    """The handler registered for ``task_name`` with :func:`on_hard_time_limit`, if any."""
    return _hard_limit_handlers.get(task_name)


_child_killed_handlers: dict[str, HardLimitHandler] = {}


def on_child_killed(task_name: str) -> Callable[[HardLimitHandler], HardLimitHandler]:
    """Register the function the worker's main process calls with ``(args, kwargs)`` when the
    pool children running ``task_name`` were SIGKILLed ``QUANTBEAT_MAX_CHILD_KILLS`` times
    and its message is dead-lettered (:mod:`workers.request`; e.g. a backtest run is marked
    ``failed``). One handler per task name; a decorator."""

    def register(fn: HardLimitHandler) -> HardLimitHandler:
        _child_killed_handlers[task_name] = fn
        return fn

    return register


#: ``(session, args, kwargs, outcome, reason)`` -> an optional after-commit action.
WorkerLostHandler = Callable[[Session, Any, Any, str, str], Callable[[], None] | None]
_worker_lost_handlers: dict[str, WorkerLostHandler] = {}


def on_worker_lost(task_name: str) -> Callable[[WorkerLostHandler], WorkerLostHandler]:
    """Register the function the reaper calls with ``(session, args, kwargs, outcome,
    reason)`` when it gives up a run of ``task_name`` whose worker died: ``outcome`` is
    ``"requeued"`` (sent again, same task id) or ``"lost"`` (marked lost, dead-lettered);
    ``reason`` says which worker died and how it was noticed. The run's own records (e.g. a
    backtest's row and live state) would otherwise still describe the dead execution.

    The handler runs inside the transaction (a savepoint of it) that ends the job run, so
    both change together; it writes through ``session`` and may return a callable the
    reaper calls after the commit, for effects outside the database (live state in Redis).
    One handler per task name; a decorator. The job run and dead letter are recorded by the
    reaper either way: a handler that raises is rolled back and logged.
    """

    def register(fn: WorkerLostHandler) -> WorkerLostHandler:
        _worker_lost_handlers[task_name] = fn
        return fn

    return register


def child_killed_handler(task_name: str) -> HardLimitHandler | None:
    """The handler registered for ``task_name`` with :func:`on_child_killed`, if any."""
    return _child_killed_handlers.get(task_name)


def worker_lost_handler(task_name: str) -> WorkerLostHandler | None:
    """The handler registered for ``task_name`` with :func:`on_worker_lost`, if any."""
    return _worker_lost_handlers.get(task_name)


#: The direct history writers (db.jobs.DirectHistory) by database URL, PostgreSQL only. Their
#: connections are per thread and per process id: a forked child opens its own.
_direct_writers: dict[str, DirectHistory] = {}


def direct_history() -> DirectHistory | None:
    """The direct history writer of the configured database (``None`` on SQLite: the
    embedded default writes through sessions)."""
    url = get_settings().database_url
    if not url.startswith("postgresql"):
        return None
    writer = _direct_writers.get(url)
    if writer is None:
        writer = _direct_writers.setdefault(url, DirectHistory(url))
    return writer


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _mask_exception(exc: BaseException) -> None:
    """Mask the string arguments of ``exc`` in place (what its message is usually made of):
    Celery stores ``exc.args`` in the result backend and formats the traceback and the
    ``task-failed`` event from them. An exception whose message comes from attributes other
    than its arguments keeps them (the task-failed event and Flower are masked anyway: see
    :mod:`workers.events`). Never raises."""
    try:
        if any(isinstance(arg, str) for arg in exc.args):
            exc.args = tuple(mask_text(a) if isinstance(a, str) else a for a in exc.args)
    except Exception:  # a read-only or odd args: leave the exception as it is
        return


def _error_text(exc: BaseException) -> str:
    return mask_text(f"{type(exc).__name__}: {exc}")[:4000]


def _failure_reason(exc: BaseException) -> str:
    if isinstance(exc, OutOfMemory | MemoryError):
        return OUT_OF_MEMORY
    if isinstance(exc, ValidationError):
        return "validation_error"
    if isinstance(exc, PermanentError):
        return "permanent_error"
    return "unexpected_error"


class PoisonedMessage(PermanentError):
    """A message was delivered more than ``QUANTBEAT_MAX_ATTEMPTS`` times (it keeps killing or
    timing out its worker); it is dead-lettered instead of being run again."""


class OutOfMemory(PermanentError):
    """The task ran out of memory (``MemoryError``: its process reached its address-space cap,
    ``QUANTBEAT_CHILD_MAX_BYTES``); it is dead-lettered ``out_of_memory`` at once, since a
    retry would allocate as much again. Raised instead of the ``MemoryError`` itself, which
    Celery's main process would re-raise."""


#: Dead-letter reason of a task that raised MemoryError.
OUT_OF_MEMORY = "out_of_memory"


class RunLost(PermanentError):
    """The reaper gave this run up as lost (its worker died and the task is not idempotent);
    a late redelivery of its message fails with this instead of running."""


class QuantbeatTask(Task):  # type: ignore[misc]
    """Base class for quantbeat tasks (set as the app's ``task_cls``)."""

    #: Subclasses/decorators may narrow this; the default is the configured limit.
    max_retries: int | None = None
    #: Fixed waits before each retry (seconds), instead of the configured jittered exponential
    #: backoff; also sets ``max_retries`` to their number. The crypto jobs of seed 000 retry
    #: after 1 s, 2 s and 4 s. A server's Retry-After is still a floor.
    retry_delays: ClassVar[tuple[float, ...] | None] = None
    #: Results of a task are small summaries; the data lives in PostgreSQL.
    ignore_result = False
    #: Whether running the task twice is harmless (unique business keys, upserts): the reaper
    #: requeues an idempotent run its worker lost, and marks any other ``lost``.
    idempotent: ClassVar[bool] = True
    #: Executions beyond this many deliveries are dead-lettered without running (a message
    #: that keeps killing its worker must not loop forever). ``None``: QUANTBEAT_MAX_ATTEMPTS.
    max_attempts: ClassVar[int | None] = None
    #: Celery's worker-side request class: counts pool children SIGKILLed while running a
    #: task and dead-letters it at QUANTBEAT_MAX_CHILD_KILLS (see workers.request).
    Request = "workers.request:QuantbeatRequest"

    def __init__(self) -> None:
        super().__init__()
        if self.retry_delays is not None:
            self.max_retries = len(self.retry_delays)
        if self.max_retries is None:
            self.max_retries = get_settings().max_retries

    # -- execution ---------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        task_id: str | None = request.id
        if task_id is None or request.called_directly:
            # Called as a plain function (e.g. from another task's code): no history, no retry.
            return super().__call__(*args, **kwargs)

        t0 = time.perf_counter()
        # First, before the arguments are masked, recorded or counted.
        size, limit = arguments_size(args, kwargs), get_settings().max_message_bytes
        if size > limit:
            self._refuse_oversized(task_id, args, kwargs, size, limit)
        direct = direct_history()
        # The reaper may have given this non-idempotent run up (dead letter "worker_lost"); a
        # late redelivery of its message must not run it behind the operator's back. The
        # direct writer learns it from the start write itself (nothing is written then).
        lost = self._reaped_as_lost(task_id) if direct is None else False
        attempts: int | None = None
        if not lost:
            attempts, lost = self._record_start(direct, task_id, args, kwargs, _utcnow())
        if lost:
            log.warning("task.lost_not_run", task_id=task_id)
            raise RunLost(
                f"task {task_id} was marked lost by the reaper and is not run again; "
                "replay its dead letter (quantbeat dlq replay) to run it"
            )
        limit = self.max_attempts or get_settings().max_attempts
        if attempts is not None and attempts > limit:
            message = f"delivered {attempts} times (limit {limit}); not running it again"
            self._fail(task_id, args, kwargs, t0, "max_attempts_exceeded", message)
            # A failure, not Ignore: the caller waiting on the result learns what happened.
            raise PoisonedMessage(message)
        try:
            self._check_arguments(args, kwargs)
            owner = self._claim_beat_slot(task_id)
            if owner is not None and owner != task_id:
                # Another message already ran this schedule slot: a duplicate tick is a no-op.
                skipped = {"duplicate_of": owner, "beat_slot": self._beat_slot()}
                self._finish(task_id, "duplicate", t0, result=skipped)
                return skipped
            result = run_limited(self, super().__call__, args, kwargs, t0)
        except Retry as exc:  # the task body called self.retry() itself
            self._finish(task_id, "retrying", t0, error=_error_text(exc))
            raise
        except Ignore:
            self._finish(task_id, "ignored", t0)
            raise
        except Reject as exc:
            if exc.requeue:
                self._finish(task_id, "requeued", t0, error=_error_text(exc))
            else:
                self._fail(task_id, args, kwargs, t0, "rejected", _error_text(exc))
            raise
        except SoftTimeLimitExceeded as exc:
            self._fail(task_id, args, kwargs, t0, "timed_out", _error_text(exc), "timed_out")
            raise
        except MemoryError as exc:
            # Drop what the failed frames still hold before anything else allocates.
            traceback.clear_frames(exc.__traceback__)
            message = (
                f"{self.name} ran out of memory ({type(exc).__name__}: {exc or 'allocation failed'}"
                f"; the process' cap is QUANTBEAT_CHILD_MAX_BYTES={get_settings().child_max_bytes}"
                "); not retried"
            )
            self._fail(task_id, args, kwargs, t0, OUT_OF_MEMORY, mask_text(message)[:4000])
            raise OutOfMemory(message) from None
        except Exception as exc:
            # The result backend, the task-failed event and Flower keep its message.
            _mask_exception(exc)
            transient = as_transient(exc)
            if transient is not None:
                # Raises Retry, or records the exhausted retries and returns.
                self._retry_or_fail(task_id, args, kwargs, t0, exc, transient)
                raise
            self._fail(task_id, args, kwargs, t0, _failure_reason(exc), _error_text(exc))
            raise
        self._finish(task_id, "succeeded", t0, result=result)
        return result

    def _check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Bind the arguments to the task's signature before it runs, so a wrong argument name
        or count is the caller's error, not a ``TypeError`` from inside the task.

        Raises:
            quant.errors.ValidationError: the arguments do not fit (names the task, the
                problem and the task's parameters); dead-lettered ``validation_error``.
        """
        try:
            signature = inspect.signature(self.run)
        except (TypeError, ValueError):  # no introspectable signature: let the call decide
            return
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            names = ", ".join(signature.parameters) or "none"
            raise ValidationError(
                f"task {self.name}: {exc} (its parameters: {names})",
                field="arguments",
                value=sorted(kwargs),
            ) from None

    def _refuse_oversized(
        self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], size: int, limit: int
    ) -> None:
        """Dead-letter arguments of ``size`` bytes over ``limit`` (reason ``oversized``, a
        masked sample, never the arguments) and raise.

        Raises:
            quant.errors.ValidationError: always (names the task, the size and the limit).
        """
        exc = oversized_error(self.name, size, limit, where="the worker refused to run it")
        text = saferepr([list(args), dict(kwargs)], SAMPLE_CHARS)  # bounded, whatever the size
        payload = {
            "task": self.name,
            "id": task_id,
            "args": None,
            "kwargs": None,
            "queue": self._queue(),
            "retries": int(self.request.retries or 0),
            "body_bytes": size,
            "limit_bytes": limit,
            "body_sample": sample(text),
            "body_truncated": True,
        }
        log.error("task.oversized", size=size, limit=limit)
        _store_failure(
            task_name=self.name,
            task_id=task_id,
            args=None,
            kwargs=None,
            queue=payload["queue"],
            retries=payload["retries"],
            reason=OVERSIZED,
            error=_error_text(exc),
            payload=payload,
        )
        raise exc

    def retry_countdown(self, retries: int, retry_after: float | None = None) -> float:
        """Seconds before retry number ``retries + 1``: :attr:`retry_delays` when set (the
        server's ``retry_after`` a floor), else the configured jittered exponential backoff
        (:func:`workers.retry.backoff_delay`)."""
        if self.retry_delays is not None:
            fixed = self.retry_delays[min(retries, len(self.retry_delays) - 1)]
            return max(fixed, retry_after or 0.0)
        settings = get_settings()
        return backoff_delay(
            retries,
            base=settings.retry_backoff_base,
            cap=settings.retry_backoff_max,
            retry_after=retry_after,
        )

    def _retry_or_fail(
        self,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        t0: float,
        exc: Exception,
        transient: TransientError,
    ) -> None:
        retries = int(self.request.retries or 0)
        max_retries = self.max_retries if self.max_retries is not None else 0
        if retries >= max_retries:
            self._fail(task_id, args, kwargs, t0, "retries_exhausted", _error_text(exc))
            return  # the caller re-raises the original exception
        countdown = self.retry_countdown(retries, transient.retry_after)
        self._finish(task_id, "retrying", t0, error=_error_text(exc))
        log.warning(
            "task.retry",
            retries=retries + 1,
            max_retries=max_retries,
            countdown_s=round(countdown, 2),
            error=_error_text(exc),
        )
        try:
            raise self.retry(exc=exc, countdown=countdown, max_retries=max_retries)
        except Reject as rejected:
            # Celery could not publish the retry message; without this the task would vanish
            # with its row left at "retrying".
            error = f"{_error_text(exc)}; retry not published: {_error_text(rejected)}"
            self._fail(task_id, args, kwargs, t0, "retry_publish_failed", error)
            raise

    def _fail(
        self,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        t0: float,
        reason: str,
        error: str,
        state: str = "failed",
    ) -> None:
        """Record a final failure: a dead letter, then the job run's final state — in that
        order, so whoever sees the run ``failed`` also finds its dead letter."""
        self._dead_letter(task_id, args, kwargs, reason, error)
        self._finish(task_id, state, t0, error=error)

    # -- beat slots --------------------------------------------------------------------------
    def _beat_slot(self) -> tuple[str, str] | None:
        """``(entry, scheduled_for ISO)`` from the headers beat set (see workers.beat)."""
        request = self.request
        headers = request.headers or {}
        entry = request.get(BEAT_ENTRY_HEADER) or headers.get(BEAT_ENTRY_HEADER)
        slot = request.get(BEAT_SLOT_HEADER) or headers.get(BEAT_SLOT_HEADER)
        if not entry or not slot:
            return None
        return str(entry), str(slot)

    def _claim_beat_slot(self, task_id: str) -> str | None:
        """The task id that owns this message's beat slot (``None``: not sent by beat).

        Raises:
            quant.errors.ValidationError: the slot header is not an ISO datetime.
            sqlalchemy errors: the database is unreachable (transient: retried).
        """
        found = self._beat_slot()
        if found is None:
            return None
        entry, slot = found
        try:
            scheduled_for = dt.datetime.fromisoformat(slot)
        except ValueError:
            raise ValidationError(
                f"beat slot header {slot!r} of entry {entry!r} is not an ISO datetime",
                field="qb_beat_slot",
                value=slot,
            ) from None

        with session_scope() as session:
            return claim_slot(
                session,
                entry=entry,
                scheduled_for=scheduled_for,
                task_name=self.name,
                task_id=task_id,
            )

    # -- history -----------------------------------------------------------------------------
    def _queue(self) -> str | None:
        info = self.request.delivery_info or {}
        queue = info.get("routing_key") or info.get("queue")
        if queue:
            return str(queue)
        routed = queue_for(self.name)
        return routed.value if routed else None

    def _reaped_as_lost(self, task_id: str) -> bool:

        try:
            with session_scope() as session:
                return stored_job_state(session, task_id) == "lost"
        except Exception as exc:
            log.warning("job_run.state_not_read", error=_error_text(exc))
            return False

    def _record_start(
        self,
        direct: DirectHistory | None,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        started: dt.datetime,
    ) -> tuple[int | None, bool]:
        """Record this execution's start: ``(attempt, lost)`` — the attempt number (``None``
        when the database could not take it: it is written with the end instead) and whether
        the reaper marked the run lost (``direct`` only; nothing is written then)."""
        start = self._start_record(task_id, args, kwargs, started)
        self.request.qb_started_at = started
        self.request.qb_attempt = None
        self.request.qb_direct = False
        try:
            if direct is not None:
                try:
                    attempt = direct.start(**start)
                except Exception:
                    direct.drop()
                    raise
                if attempt is None:
                    return None, True
                self.request.qb_direct = True
            else:
                with session_scope() as session:
                    attempt = record_job_start(session, **start)
            self.request.qb_attempt = attempt
            return attempt, False
        except Exception as exc:
            log.warning("job_run.start_not_recorded", error=_error_text(exc))
            # Written with the end instead (see _finish): the database may be back by then,
            # and a finished execution must not be left without history.
            self.request.qb_pending_start = start
            return None, False

    def _start_record(
        self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], started: dt.datetime
    ) -> dict[str, Any]:
        """The keyword arguments of record_job_start for this execution (arguments masked)."""

        return {
            "task_id": task_id,
            "task_name": self.name,
            "queue": self._queue(),
            "args": mask_value(list(args)),
            "kwargs": mask_value(dict(kwargs)),
            "worker": self.request.hostname,
            "retries": int(self.request.retries or 0),
            "started_at": started,
        }

    def _finish(
        self,
        task_id: str,
        state: str,
        t0: float,
        *,
        error: str | None = None,
        result: Any = None,
    ) -> None:

        duration_ms = (time.perf_counter() - t0) * 1000.0
        log.info(
            "task.finished",
            metric_type="job",
            task=self.name,
            queue=self._queue(),
            duration_ms=round(duration_ms, 2),
            success=state in ("succeeded", "duplicate"),
            state=state,
            retries=int(self.request.retries or 0),
            error=error,
        )
        pending = getattr(self.request, "qb_pending_start", None)
        end = {
            "task_id": task_id,
            "state": state,
            "finished_at": _utcnow(),
            "duration_ms": duration_ms,
            "error": error,
            "result": _history_result(result),
        }
        self._store_end(pending, end)
        self.request.qb_pending_start = None

    def _store_end(self, pending: dict[str, Any] | None, end: dict[str, Any]) -> None:
        """Write the run's end (and its start, if still ``pending``) in one transaction; if
        the database cannot be reached, spool both for the reaper (never raises)."""
        state = end["state"]
        attempt = getattr(self.request, "qb_attempt", None)
        direct = direct_history() if getattr(self.request, "qb_direct", False) else None
        if direct is not None and pending is None and attempt is not None:
            try:
                direct.end(**end, attempt=attempt)
                return
            except Exception as exc:
                # once more through a session (and the spool if that fails too)
                direct.drop()
                log.warning("job_run.direct_end_failed", error=_error_text(exc))
        try:
            with session_scope() as session:
                attempt = getattr(self.request, "qb_attempt", None)
                if pending is not None:
                    attempt = record_job_start(session, **pending)
                record_job_end(session, **end, attempt=attempt)
        except Exception as exc:
            # The start (if still pending) and the end go to the spool together; the reaper
            # writes them once the database is back, unless a later execution is recorded.
            started_at = getattr(self.request, "qb_started_at", None)
            spooled = spool.write(
                SPOOL_JOB_RUN, {"start": pending, "end": {**end, "started_at": started_at}}
            )
            log.warning(
                "job_run.end_not_recorded",
                state=state,
                error=_error_text(exc),
                spooled=str(spooled) if spooled else None,
            )

    def _dead_letter(
        self,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        reason: str,
        error: str,
    ) -> None:
        _store_failure(
            task_name=self.name,
            task_id=task_id,
            args=args,
            kwargs=kwargs,
            queue=self._queue(),
            retries=int(self.request.retries or 0),
            reason=reason,
            error=error,
        )


#: Results larger than this (JSON bytes) are summarized in job history, not stored whole:
#: an indicator task returns thousands of values, the history needs only what happened.
MAX_HISTORY_RESULT_BYTES = 8_192


def _history_result(result: Any) -> Any:
    """The masked result to keep in ``job_runs.result``: small dicts/lists as they are,
    larger ones as ``{"omitted_bytes": n, "keys"|"items": …}``, anything else ``None``."""
    if not isinstance(result, dict | list):
        return None

    try:
        size = len(json.dumps(result, default=str))
    except (TypeError, ValueError):
        return None
    if size <= MAX_HISTORY_RESULT_BYTES:
        return mask_value(result)
    if isinstance(result, dict):
        return {"omitted_bytes": size, "keys": sorted(str(k) for k in result)[:50]}
    return {"omitted_bytes": size, "items": len(result)}


def _store_failure(
    *,
    task_name: str,
    task_id: str,
    args: Any,
    kwargs: Any,
    queue: str | None,
    retries: int | None,
    reason: str,
    error: str,
    job_state: str | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """Write a dead letter with the masked payload (``payload`` if given, else the masked
    arguments) — and, with ``job_state``, end the job run in the same transaction. Never
    raises: if the database is unreachable both go to the local spool (replayed by the reaper)
    and the payload is logged (masked), so it does not vanish."""

    now = _utcnow()
    if payload is None:
        payload = {
            "task": task_name,
            "id": task_id,
            "args": mask_value(list(args or ())),
            "kwargs": mask_value(dict(kwargs or {})),
            "queue": queue,
            "retries": retries,
        }
    job_end: dict[str, Any] | None = (
        None
        if job_state is None
        else {
            "task_id": task_id,
            "state": job_state,
            "finished_at": now,
            "duration_ms": None,
            "error": error,
        }
    )
    letter: dict[str, Any] = {
        "fingerprint": f"task:{task_id}",
        "task_id": task_id,
        "task_name": task_name,
        "payload": payload,
        "reason": reason,
        "error": error,
        "seen_at": now,
    }
    try:
        with session_scope() as session:
            if job_end is not None:
                record_job_end(session, **job_end)
            record_dead_letter(session, **letter)
    except Exception as exc:
        spooled = spool.write(SPOOL_DEAD_LETTER, {"letter": letter, "job_end": job_end})
        log.error(
            "dead_letter.not_recorded",
            reason=reason,
            payload=payload,
            error=_error_text(exc),
            spooled=str(spooled) if spooled else None,
        )


def record_failure_outside_task(
    *,
    task_name: str,
    task_id: str,
    args: Any,
    kwargs: Any,
    reason: str,
    error: str,
    state: str = "failed",
) -> None:
    """Record a final failure that the task itself could not record (its process was killed,
    e.g. by the hard time limit): the job run's state and a dead letter. Never raises."""
    queue = queue_for(task_name)
    _store_failure(
        task_name=task_name,
        task_id=task_id,
        args=args,
        kwargs=kwargs,
        queue=queue.value if queue else None,
        retries=None,
        reason=reason,
        error=error,
        job_state=state,
    )
