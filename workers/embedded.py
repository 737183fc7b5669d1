"""The embedded profile of ``quantbeat run``: the whole stack in one process.

A SQLite file under the data directory, kombu's in-memory broker and result backend, and a real
Celery worker (threads pool) consuming the ``io``, ``cpu`` and ``ai`` queues in a background
thread. Tasks go through the same path as in production — sent by name, JSON-serialized,
routed, executed with the base task's history and retry policy — only the transport differs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery._state import _set_task_join_will_block
from celery.result import allow_join_result
from celery.worker import WorkController
from celery.worker import state as worker_state

from db.engine import forget_engines
from quant.errors import ServiceUnavailable
from quantbeat.infra.settings import Settings
from workers.app import app

#: Seconds the embedded worker may take to start consuming.
START_TIMEOUT_S = 30.0
#: Seconds between polls of the in-memory queues and of an unfinished chord's results
#: (Celery's defaults: 1 s each, which made an idle wait of most hops of the pipeline).
EMBEDDED_POLL_S = 0.02


@contextmanager
def embedded_profile(settings: Settings) -> Iterator[None]:
    """Point the Celery app and the database engines at the embedded profile ``settings``
    select (see :func:`quantbeat.infra.profile.embedded_environment`) for the block —
    workers.app may have been imported under other settings — and put them back after it, so
    a process that ran something embedded (a test, a notebook) keeps its own broker."""
    saved = {
        key: app.conf.get(key)
        for key in ("broker_url", "result_backend", "broker_transport_options")
    }
    unlock = app.tasks["celery.chord_unlock"]
    saved_unlock_delay = unlock.default_retry_delay
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.result_backend,
        # kombu's in-memory transport polls its queues (default once a second): every hop of
        # a chain or chord would wait up to a second in an otherwise idle process.
        broker_transport_options={
            **(saved["broker_transport_options"] or {}),
            "polling_interval": EMBEDDED_POLL_S,
        },
    )
    # The in-memory result backend has no native chord support: Celery polls a chord's
    # header with celery.chord_unlock, retried every second by default.
    unlock.default_retry_delay = EMBEDDED_POLL_S
    _drop_connections()
    forget_engines()
    try:
        yield
    finally:
        app.conf.update(saved)
        unlock.default_retry_delay = saved_unlock_delay
        _drop_connections()
        forget_engines()


def _bound_waits(worker: Any, wait: float = 0.1) -> None:
    """Make the worker's consumer wait for messages at most ``wait`` seconds at a time.

    Celery's loop for transports without an event loop (kombu's in-memory one) asks for
    messages with a 2 s timeout and sees a stop request only between two asks, so stopping
    an idle embedded worker took 2 s (up to 4 s measured at the end of ``quantbeat run``).
    Bounded asks let it stop within ``wait``; the consumer's transport is wrapped on this
    instance only (a reconnection would fall back to 2 s)."""
    connection = getattr(getattr(worker, "consumer", None), "connection", None)
    transport = getattr(connection, "transport", None)
    if transport is None:
        return
    drain = transport.drain_events

    def drain_events(conn: Any, timeout: float | None = None) -> Any:
        return drain(conn, timeout=wait if timeout is None else min(timeout, wait))

    transport.drain_events = drain_events


def _drop_connections() -> None:
    """Forget the app's broker connection and producer pools and its result backend (built
    from the previous URLs); new ones are built from ``app.conf`` on next use."""
    # Not closed: another thread of this process may still hold a connection from them.
    app._pool = None  # rebuilt from app.conf on next use
    app.amqp._producer_pool = None
    # Celery caches the result backend on the app (or per thread when it is not thread-safe)
    app._backend_cache = None
    app._local = threading.local()


class _Controller(WorkController):  # type: ignore[misc]
    """A worker controller that reports when its consumer is ready."""

    def __init__(self, ready: threading.Event, **kwargs: Any) -> None:
        self._ready = ready
        super().__init__(**kwargs)

    def on_consumer_ready(self, consumer: Any) -> None:
        self._ready.set()


@contextmanager
def embedded_worker(concurrency: int = 2) -> Iterator[Any]:
    """Run a real Celery worker (threads pool, all three queues) in a background thread for
    the duration of the block; yields the worker controller.

    Two threads by default: SQLite has one writer and the GIL one Python thread, so a
    second thread overlaps one task's Python with another's SQLite write; with four, the
    extra threads only queued for the write lock (the first run's collection: 17.1 s with
    four threads, 14.0 s with two, measured).

    Raises:
        quant.errors.ServiceUnavailable: the worker stopped during start-up or did not start
            consuming within :data:`START_TIMEOUT_S`.
    """
    ready = threading.Event()
    # Pool threads resolve the app through Celery's *default* app (current_app is
    # thread-local); the worker CLI sets both, so do we.
    app.set_current()
    app.set_default()
    app.loader.import_default_modules()
    worker = _Controller(
        ready,
        app=app,
        pool="threads",
        concurrency=concurrency,
        hostname=f"embedded-{os.getpid()}@localhost",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel="WARNING",
        # No heartbeats: worker and client are this one process (and SQLite), so no one is
        # left to notice the worker's death (workers.heartbeat).
        quantbeat_heartbeat=False,
    )
    thread = threading.Thread(target=worker.start, name="quantbeat-embedded-worker", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.wait(0.1):
        # WorkController.start logs and swallows start-up errors, then returns: a dead thread
        # means the worker failed, and waiting longer would only hide that.
        if not thread.is_alive():
            raise ServiceUnavailable(
                f"the embedded worker stopped during start-up (exit code {worker.exitcode}); "
                "its log has the reason"
            )
        if time.monotonic() > deadline:
            raise ServiceUnavailable(
                f"the embedded worker did not start within {START_TIMEOUT_S:.0f} s"
            )
    _bound_waits(worker)
    try:
        # A worker in this process marks result.get() as blocking-inside-a-task; this thread
        # is not a task, it is the client waiting for the worker.
        with allow_join_result():
            yield worker
    finally:
        worker_state.should_terminate = 0
        thread.join(30)
        worker_state.should_terminate = None
        # The worker marked this process as one where result.get() would block a task;
        # the process is a client again.
        _set_task_join_will_block(False)
