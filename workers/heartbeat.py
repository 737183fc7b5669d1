"""Worker heartbeats: how a whole-worker kill is noticed within a minute (issue 16).

:class:`Heartbeat` is a worker bootstep (added to :data:`workers.app.app`'s worker
blueprint): the worker's main process starts a daemon thread that upserts the worker's
``worker_heartbeats`` row (name, host, pid, pool, queues, started_at, seen_at; see
:mod:`db.heartbeats`) every ``QUANTBEAT_HEARTBEAT_INTERVAL`` seconds. It runs in the main
process, so it works the same for the prefork and threads pools, and it beats while a warm
shutdown lets the pool finish its tasks; when the worker has shut down
(``worker_shutdown``) the row is marked stopped. A ``kill -9`` of the whole worker stops
the beats: the reaper (beat entry ``reap-dead-workers``) then finds its job runs on a worker
not seen for ``QUANTBEAT_WORKER_DEAD_AFTER`` seconds and requeues them at once.

A failing write (database down) is logged once per outage and retried at the next beat; it
never stops the thread or the worker. Heartbeats are off with an interval of 0, on a SQLite
database (the embedded profile: worker and client are one process, there is no one to
notice its death) and for a worker controller built with ``quantbeat_heartbeat=False``.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from typing import Any

import structlog
from celery import bootsteps
from celery.signals import worker_shutdown

from db.engine import session_scope
from db.heartbeats import beat, mark_stopped
from quantbeat.infra.forkstate import after_fork
from quantbeat.infra.settings import get_settings

log = structlog.get_logger("quantbeat.heartbeat")


def heartbeats_enabled(database_url: str, interval: float) -> bool:
    """Whether a worker on ``database_url`` beats every ``interval`` seconds (0: never)."""
    return interval > 0 and not database_url.startswith("sqlite")


def pool_name(pool_cls: Any) -> str | None:
    """``prefork``, ``threads``, … from the worker's pool class (or its name)."""
    if pool_cls is None:
        return None
    if isinstance(pool_cls, str):
        return pool_cls.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    module = getattr(pool_cls, "__module__", "") or ""
    return module.rsplit(".", 1)[-1] or getattr(pool_cls, "__name__", None)


class Beater:
    """The heartbeat thread of one worker incarnation.

    ``write`` is called with the row's fields every ``interval`` seconds, first at once;
    ``stop`` is called with ``worker=…, incarnation=…`` once by :meth:`stop`. Both default to the
    database functions; exceptions they raise are logged, never propagated.
    """

    def __init__(
        self,
        *,
        worker: str,
        queues: list[str],
        pool: str | None,
        interval: float,
        write: Any = None,
        stop: Any = None,
    ) -> None:
        self.fields: dict[str, Any] = {
            "worker": worker,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "incarnation": uuid.uuid4().hex,
            "pool": pool,
            "queues": queues,
            "started_at": dt.datetime.now(dt.UTC),
        }
        self.interval = interval
        self._write = write or _write_beat
        self._mark_stopped = stop or _mark_stopped
        self._stop = threading.Event()
        self._failing = False
        self.beats = 0
        self._thread = threading.Thread(
            target=self._run, name=f"quantbeat-heartbeat-{worker}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def beat_once(self) -> bool:
        """One heartbeat; returns whether it was recorded."""
        try:
            self._write(**self.fields)
        except Exception as exc:
            if not self._failing:
                log.warning(
                    "heartbeat.not_recorded",
                    worker=self.fields["worker"],
                    error=f"{type(exc).__name__}: {exc}"[:500],
                )
            self._failing = True
            return False
        if self._failing:
            log.info("heartbeat.recorded_again", worker=self.fields["worker"])
        self._failing = False
        self.beats += 1
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self.beat_once()
            self._stop.wait(self.interval)

    def stop(self, *, mark: bool = True, timeout: float = 10.0) -> None:
        """Stop beating and (``mark``) record that this incarnation stopped cleanly."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if not mark:
            return
        try:
            self._mark_stopped(worker=self.fields["worker"], incarnation=self.fields["incarnation"])
        except Exception as exc:
            log.warning(
                "heartbeat.stop_not_recorded",
                worker=self.fields["worker"],
                error=f"{type(exc).__name__}: {exc}"[:500],
            )


def _write_beat(**fields: Any) -> None:
    with session_scope() as session:
        beat(session, **fields)


def _mark_stopped(*, worker: str, incarnation: str) -> None:
    with session_scope() as session:
        mark_stopped(session, worker=worker, incarnation=incarnation)


#: The beaters running in this process (one per worker controller), stopped at shutdown.
_running: dict[int, Beater] = {}
_running_lock = threading.Lock()


@after_fork
def _forget_parent_beaters() -> None:
    """A pool child inherits the parent's beaters without their threads: it must never mark
    the parent stopped."""
    with _running_lock:
        _running.clear()


class Heartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """The worker bootstep that runs a :class:`Beater` in the worker's main process."""

    label = "Heartbeat"
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, quantbeat_heartbeat: bool = True, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        settings = get_settings()
        self.interval = settings.heartbeat_interval
        self.enabled = quantbeat_heartbeat and heartbeats_enabled(
            settings.database_url, self.interval
        )
        self.beater: Beater | None = None

    def start(self, parent: Any) -> None:
        if not self.enabled:
            return
        queues = sorted(parent.app.amqp.queues.consume_from or {})
        beater = Beater(
            worker=parent.hostname,
            queues=queues,
            pool=pool_name(getattr(parent, "pool_cls", None)),
            interval=self.interval,
        )
        beater.start()
        self.beater = beater
        with _running_lock:
            _running[id(parent)] = beater
        log.info("heartbeat.started", worker=parent.hostname, interval_s=self.interval)

    def stop(self, parent: Any) -> None:
        # Not here: a warm shutdown stops this step before the pool has finished its tasks,
        # and they must not look orphaned meanwhile. The worker_shutdown receiver stops it.
        return None

    def terminate(self, parent: Any) -> None:
        return None


@worker_shutdown.connect
def _stop_heartbeats(sender: Any = None, **_: Any) -> None:
    """The worker has shut down (its pool finished or was terminated): stop its beats and
    mark it stopped, so the reaper need not wait for the beats to go stale."""
    with _running_lock:
        beater = _running.pop(id(sender), None)
    if beater is not None:
        beater.stop()
