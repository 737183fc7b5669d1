"""The reaper: job runs left ``started`` by a worker that died.

A worker killed mid-task (SIGKILL, OOM, a lost host) leaves its job run in ``started``. With
Redis as the broker its message comes back only after the visibility timeout (hours); with a
lost host and no ``reject_on_worker_lost`` it may not come back at all. Every five minutes
(beat entry ``reap-orphans``) :func:`reap` looks for runs that have been ``started`` for at
least ``QUANTBEAT_REAPER_GRACE`` seconds and that no live worker is running:

* the task is **idempotent** (every quantbeat task is, unless it says ``idempotent=False``)
  and its stored arguments are complete → it is sent again with the same task id
  (``requeued``; the redelivered execution counts as another attempt in the same row);
* otherwise → the run is marked ``lost`` (a failure) with a dead letter (reason
  ``worker_lost``) for an operator to replay; a late redelivery of its message is not run.

If the workers cannot be inspected (broker down) nothing is reaped: a run is only declared
orphaned when the live workers have said they are not running it.

**Dead workers, within a minute.** Every worker records a heartbeat (:mod:`workers.heartbeat`).
Every 15 s (beat entry ``reap-dead-workers``) :func:`reap_dead_workers` gives up, at once and
without asking anyone, the runs ``started`` on a worker whose heartbeat is older than
``QUANTBEAT_WORKER_DEAD_AFTER`` (or that stopped, or restarted since the run started). Runs of
a worker that never wrote a heartbeat keep the inspect-and-grace pass above. A task may
register a hook (:func:`workers.base.on_worker_lost`) so its own records follow: a backtest
run goes back to ``queued`` (requeued) or ``failed`` (lost).

Before reaping, :func:`housekeeping` replays this host's spool (:func:`replay_spool`): the
job-history and dead-letter records workers could not write while the database was down
(:mod:`quantbeat.infra.spool`), so a run whose end waited in the spool is not reaped as
orphaned.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import select

from db.beat import prune_slots
from db.engine import session_scope
from db.heartbeats import prune_heartbeats, runs_on_dead_workers
from db.jobs import apply_spooled, contains_escape, end_if_still_started
from db.models import JobRun
from quant.errors import ValidationError
from quantbeat.infra import spool
from quantbeat.infra.masking import MASK
from quantbeat.infra.settings import get_settings
from quantbeat.services.outbox import sweep as sweep_outbox
from workers.app import app as worker_app
from workers.base import record_failure_outside_task, worker_lost_handler

log = structlog.get_logger("quantbeat.services.reaper")

#: Claims of beat slots are kept this long (they only need to outlive a duplicate tick).
BEAT_SLOT_RETENTION = dt.timedelta(days=30)
#: Heartbeat rows of workers not seen for this long are deleted (their runs were reaped).
HEARTBEAT_RETENTION = dt.timedelta(days=7)


@dataclass
class ReapReport:
    """What one pass did: task ids requeued and marked lost, runs still running, and runs
    that ended while the workers were asked (left alone)."""

    checked: int = 0
    requeued: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    running: int = 0
    finished: int = 0
    skipped_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "requeued": self.requeued,
            "lost": self.lost,
            "running": self.running,
            "finished": self.finished,
            "skipped_reason": self.skipped_reason,
        }


def contains_mask(value: Any) -> bool:
    """Whether a stored (masked) payload had a value replaced by the mask."""
    if isinstance(value, str):
        return MASK in value
    if isinstance(value, dict):
        return any(contains_mask(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_mask(v) for v in value)
    return False


def _live_tasks(app: Any, timeout: float) -> tuple[set[str], set[str]] | None:
    """(names of live workers, ids of tasks they are running or hold), or ``None`` when the
    workers cannot be asked (broker unreachable)."""
    try:
        inspect = app.control.inspect(timeout=timeout)
        pings = app.control.ping(timeout=timeout) or []
        active = inspect.active() or {}
        reserved = inspect.reserved() or {}
    except Exception as exc:
        log.warning("reaper.inspect_failed", error=f"{type(exc).__name__}: {exc}")
        return None
    workers = {name for reply in pings for name in reply}
    workers |= set(active) | set(reserved)
    ids = {
        str(task.get("id"))
        for listing in (active, reserved)
        for tasks in listing.values()
        for task in tasks or ()
    }
    return workers, ids


def reap(
    app: Any,
    *,
    grace: float,
    now: dt.datetime | None = None,
    own_task_id: str | None = None,
    inspect_timeout: float = 2.0,
) -> ReapReport:
    """One pass over job runs ``started`` at least ``grace`` seconds ago (see the module).

    Raises:
        sqlalchemy errors: the database is unreachable (the task retries).
    """
    now = now or dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(seconds=grace)
    with session_scope() as session:
        rows = [
            (r.task_id, r.task_name, r.worker, r.args, r.kwargs, r.attempts)
            for r in session.execute(
                select(JobRun).where(JobRun.state == "started", JobRun.started_at < cutoff)
            ).scalars()
        ]
    report = ReapReport(checked=len(rows))
    rows = [r for r in rows if r[0] != own_task_id]
    if not rows:
        return report
    live = _live_tasks(app, inspect_timeout)
    if live is None:
        report.skipped_reason = "workers could not be inspected (broker unreachable?)"
        return report
    workers, running = live
    for task_id, task_name, worker, args, kwargs, attempts in rows:
        if task_id in running:
            report.running += 1
            continue
        why = (
            f"worker {worker} is gone"
            if worker not in workers
            else f"worker {worker} is alive but not running it"
        )
        _give_up(app, report, task_id, task_name, args, kwargs, attempts, why)
    return report


def _give_up(
    app: Any,
    report: ReapReport,
    task_id: str,
    task_name: str,
    args: Any,
    kwargs: Any,
    attempts: int,
    why: str,
) -> None:
    """Requeue (idempotent, arguments complete) or mark lost the orphaned run ``task_id``
    that was read ``started`` on attempt ``attempts``, telling the task's worker-lost hook
    (:func:`workers.base.on_worker_lost`); counted in ``report``."""
    task = app.tasks.get(task_name)
    idempotent = bool(getattr(task, "idempotent", False)) if task is not None else False
    masked = contains_mask(args) or contains_mask(kwargs)
    escaped = contains_escape(args) or contains_escape(kwargs)
    if idempotent and not masked and not escaped:
        # Marked before sending (the new execution's own "started" must not be
        # overwritten), and only if it is still the run that was read: one that ended
        # while the workers were asked is left alone.
        # The task's hook (the run's own records) changes in the claim's transaction, before
        # the new execution starts.
        claimed = _claim(
            task_id, attempts, "requeued", f"reaped: {why}; requeued (idempotent)",
            task_name=task_name, args=args, kwargs=kwargs, reason=why,
        )  # fmt: skip
        if not claimed:
            report.finished += 1
            return
        app.send_task(task_name, args=list(args or ()), kwargs=dict(kwargs or {}), task_id=task_id)
        report.requeued.append(task_id)
        log.warning("reaper.requeued", task_id=task_id, task=task_name, reason=why)
        return
    if masked:
        because = "its arguments were stored masked"
    elif escaped:
        because = "its arguments held characters stored escaped (NUL)"
    else:
        because = "it is not idempotent" if task is not None else "the task is not registered"
    error = f"reaped: {why}; not requeued because {because}"
    claimed = _claim(
        task_id, attempts, "lost", error,
        task_name=task_name, args=args, kwargs=kwargs, reason=error,
    )  # fmt: skip
    if not claimed:
        report.finished += 1
        return
    record_failure_outside_task(
        task_name=task_name,
        task_id=task_id,
        args=args,
        kwargs=kwargs,
        reason="worker_lost",
        error=error,
        state="lost",
    )
    report.lost.append(task_id)
    log.error("reaper.lost", task_id=task_id, task=task_name, reason=why, because=because)


def reap_dead_workers(
    app: Any,
    *,
    dead_after: float | None = None,
    own_task_id: str | None = None,
) -> ReapReport:
    """Requeue or mark lost, at once, every job run ``started`` on a worker whose heartbeat
    says it is dead (:func:`db.heartbeats.runs_on_dead_workers`: no heartbeat for
    ``dead_after`` seconds, default ``QUANTBEAT_WORKER_DEAD_AFTER``; stopped; or restarted
    since). No grace and no inspection: a dead worker runs nothing. Runs of workers without a
    heartbeat are left to :func:`reap`. Each run is given up once (the conditional claim of
    :func:`db.jobs.end_if_still_started`), whichever pass gets it first.

    Raises:
        sqlalchemy errors: the database is unreachable (the task retries).
    """
    limit = get_settings().worker_dead_after if dead_after is None else dead_after
    with session_scope() as session:
        orphans = runs_on_dead_workers(session, dead_after=limit)
    report = ReapReport(checked=len(orphans))
    for orphan in orphans:
        if orphan.task_id == own_task_id:
            continue
        _give_up(
            app,
            report,
            orphan.task_id,
            orphan.task_name,
            orphan.args,
            orphan.kwargs,
            orphan.attempts,
            orphan.reason,
        )
    return report


def dead_workers_pass(
    dead_after: float | None = None, *, own_task_id: str | None = None
) -> dict[str, Any]:
    """One pass of the beat entry ``reap-dead-workers`` through :data:`workers.app.app`
    (:func:`reap_dead_workers`); returns :meth:`ReapReport.as_dict`.

    Raises:
        sqlalchemy errors: the database is unreachable (the task retries).
    """
    return reap_dead_workers(worker_app, dead_after=dead_after, own_task_id=own_task_id).as_dict()


def _claim(
    task_id: str,
    attempts: int,
    state: str,
    error: str,
    *,
    task_name: str,
    args: Any,
    kwargs: Any,
    reason: str,
) -> bool:
    """End the orphan's run with ``state`` (``requeued`` or ``lost``) if it is still the
    ``started`` run that was read (see :func:`db.jobs.end_if_still_started`) and, in the same
    transaction, let the task's worker-lost hook (:func:`workers.base.on_worker_lost`) bring
    the run's own records along, so no reader sees the job given up while those records
    still say running. The hook's after-commit action (live state outside the database)
    runs once committed. A failing hook is rolled back to its savepoint and logged: the job
    history is right either way. Returns whether this call ended the run."""
    handler = worker_lost_handler(task_name)
    after: Callable[[], None] | None = None
    with session_scope() as session:
        ended = end_if_still_started(
            session,
            task_id=task_id,
            attempts=attempts,
            state=state,
            error=error,
            finished_at=dt.datetime.now(dt.UTC),
        )
        if not ended:
            return False
        if handler is not None:
            try:
                with session.begin_nested():
                    after = handler(session, args, kwargs, state, reason)
            except Exception as exc:
                _hook_failed(task_name, state, exc)
    if after is not None:
        try:
            after()
        except Exception as exc:
            _hook_failed(task_name, state, exc)
    return True


def _hook_failed(task_name: str, outcome: str, exc: Exception) -> None:
    log.error(
        "reaper.worker_lost_hook_failed",
        task=task_name,
        outcome=outcome,
        error=f"{type(exc).__name__}: {exc}"[:500],
    )


def parse_dead_after(value: object) -> float | None:
    """The dead-after limit in seconds (``None``: ``QUANTBEAT_WORKER_DEAD_AFTER``).

    Raises:
        quant.errors.ValidationError: not a finite number of seconds of at least 2.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(
            f"dead_after must be a number of seconds, got {value!r}",
            field="dead_after",
            value=value,
        )
    if value < 2:
        raise ValidationError(
            f"dead_after must be at least 2 seconds, got {value!r}", field="dead_after", value=value
        )
    return float(value)


def parse_grace(value: object) -> float:
    """The reaper's grace in seconds: ``None`` means ``QUANTBEAT_REAPER_GRACE``.

    Raises:
        quant.errors.ValidationError: not a finite, non-negative number of seconds.
    """
    if value is None:
        return float(get_settings().reaper_grace)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))  # an int may exceed float
    ):
        raise ValidationError(
            f"grace must be a number of seconds, got {value!r}", field="grace", value=value
        )
    if value < 0:
        raise ValidationError(
            f"grace must not be negative, got {value!r}", field="grace", value=value
        )
    try:
        return float(value)
    except OverflowError:
        raise ValidationError(
            "grace must be a finite number of seconds, got an integer beyond a float's range",
            field="grace",
            value=None,
        ) from None


def _apply_spooled(kind: str, record: dict[str, Any]) -> bool:
    with session_scope() as session:
        return apply_spooled(session, kind, record)


def replay_spool(directory: Path | None = None) -> dict[str, Any]:
    """Write the records waiting in the local spool (default ``<QUANTBEAT_DATA_DIR>/spool``)
    into the database, each in its own transaction, idempotently (a record already written is
    not written again); corrupt files are kept aside in ``spool/corrupt/``. Returns
    :meth:`quantbeat.infra.spool.ReplayReport.as_dict`. Never raises for a record: one whose
    write fails (the database is still down) stays for the next pass."""
    return spool.replay(_apply_spooled, directory=directory).as_dict()


def housekeeping(
    grace: float, *, own_task_id: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """One pass of the beat entry ``reap-orphans`` through :data:`workers.app.app`: replay
    this host's spool (:func:`replay_spool`), publish the outbox messages their clients did
    not (:func:`quantbeat.services.outbox.sweep`), then :func:`reap` with ``grace`` seconds
    (skipping ``own_task_id``, the running pass itself; runs of dead workers first, see
    :func:`reap_dead_workers`), then delete beat-slot claims older than
    :data:`BEAT_SLOT_RETENTION` and heartbeats older than :data:`HEARTBEAT_RETENTION`.
    Returns :meth:`ReapReport.as_dict` plus ``spool`` (the replay's report), ``outbox`` (the
    sweep's), ``pruned_slots`` and ``pruned_heartbeats`` (rows deleted).

    Raises:
        sqlalchemy errors: the database is unreachable (the task retries).
    """
    now = now or dt.datetime.now(dt.UTC)
    spooled = replay_spool()
    swept = sweep_outbox(app=worker_app, now=now)
    dead = reap_dead_workers(worker_app, own_task_id=own_task_id)
    report = reap(worker_app, grace=grace, now=now, own_task_id=own_task_id)
    report.requeued = dead.requeued + report.requeued
    report.lost = dead.lost + report.lost
    report.finished += dead.finished
    with session_scope() as session:
        pruned = prune_slots(session, before=now - BEAT_SLOT_RETENTION)
        gone = prune_heartbeats(session, before=now - HEARTBEAT_RETENTION)
    return {
        **report.as_dict(),
        "spool": spooled,
        "outbox": swept,
        "pruned_slots": pruned,
        "pruned_heartbeats": gone,
    }
