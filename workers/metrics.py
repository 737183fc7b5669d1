"""Prometheus metrics of a Celery worker, connected to Celery signals when :mod:`workers.app`
is imported.

* per task execution (in the process that runs it): ``quantbeat_task_total``,
  ``quantbeat_task_duration_seconds``, ``quantbeat_tasks_running``, retries and failures by
  reason (see :mod:`quantbeat.infra.metrics`). Failures only the main process sees — a hard time
  limit killing the pool child, a lost child, a rejected message — are counted there.
* at scrape time, in the worker's main process: ``quantbeat_worker_up{worker}`` (1),
  ``quantbeat_queue_length{queue}`` for every quantbeat queue (waiting messages, read from
  the broker with a short timeout) and ``quantbeat_broker_up`` (whether that read worked);
  and what the layers above add (:func:`add_collector`: the deployment's operational state
  for alerts, :mod:`quantbeat.services.ops_metrics`).
* the HTTP endpoint: ``http://<address>:<QUANTBEAT_METRICS_PORT>/metrics`` (default 9808;
  ``quantbeat worker --metrics-port``; 0 turns it off), served by the main process once the
  worker is ready, on ``QUANTBEAT_METRICS_ADDRESS`` (else ``QUANTBEAT_BIND_ADDRESS``: 127.0.0.1
  by default, ``quantbeat worker --metrics-address``; a Prometheus on another host or
  container needs ``0.0.0.0`` or the worker's own address). Two workers on one host need
  different ports. A port that cannot be bound is logged (``metrics.server_unavailable``)
  and the worker runs on without it.

A prefork worker keeps its values in prometheus_client's multiprocess files, one directory per
node under ``QUANTBEAT_METRICS_DIR`` (default ``<QUANTBEAT_DATA_DIR>/prometheus``), emptied
when the worker starts and removed when it stops; counters therefore start from zero with
each worker start, as Prometheus expects of a restarted target. Threads and solo pools run in
one process and expose its values directly.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool
from celery.exceptions import (
    Reject,
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
    WorkerLostError,
)
from celery.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    task_revoked,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from prometheus_client import start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import mark_process_dead

from quant.errors import PermanentError, TransientError, ValidationError
from quantbeat.infra import metrics
from quantbeat.infra.settings import get_settings
from workers.base import PoisonedMessage
from workers.queues import Queue, queue_for
from workers.retry import as_transient

log = structlog.get_logger(__name__)

#: Seconds a scrape may spend reading queue lengths from the broker (connect and each read).
QUEUE_LENGTH_TIMEOUT = 2.0

ALL_QUEUES: tuple[str, ...] = tuple(q.value for q in Queue)
_KNOWN_QUEUES = frozenset(ALL_QUEUES)
_STATES = frozenset({"success", "failure", "retry", "ignored", "rejected", "revoked"})


# --- labels -------------------------------------------------------------------------------------
def task_name(task: Any) -> str:
    """The task's registered name (bounded by the app's task registry)."""
    return str(getattr(task, "name", None) or "unknown")


def queue_label(name: str, request: Any = None) -> str:
    """The queue a task was delivered from (its routing key), else the queue its name routes
    to; names outside the quantbeat queues become ``other`` (bounded label values)."""
    info = getattr(request, "delivery_info", None) or {}
    queue = (info.get("routing_key") or info.get("queue")) if isinstance(info, dict) else None
    if not queue:
        routed = queue_for(name)
        queue = routed.value if routed else None
    return queue if queue in _KNOWN_QUEUES else "other"


def failure_reason(exc: BaseException | None) -> str:
    """The ``reason`` label of a final failure
    (one of :data:`quantbeat.infra.metrics.FAILURE_REASONS`);
    the same vocabulary as the dead letters' reasons."""

    if isinstance(exc, TimeLimitExceeded):
        return "hard_time_limit"
    if isinstance(exc, SoftTimeLimitExceeded):
        return "timed_out"
    if isinstance(exc, WorkerLostError):
        return "worker_lost"
    if isinstance(exc, Reject):
        return "rejected"
    if isinstance(exc, PoisonedMessage):
        return "max_attempts_exceeded"
    if isinstance(exc, ValidationError):
        return "validation_error"
    if isinstance(exc, PermanentError):
        return "permanent_error"
    if isinstance(exc, TransientError) or (exc is not None and as_transient(exc) is not None):
        # The base task retries transient errors; one that ends a task used up its retries.
        return "retries_exhausted"
    return "unexpected_error"


# --- per task -----------------------------------------------------------------------------------
_started: dict[tuple[str, int], tuple[float, str]] = {}


@task_prerun.connect
def _task_started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None:
        return
    queue = queue_label(task_name(task), getattr(task, "request", None))
    _started[(task_id, threading.get_ident())] = (time.perf_counter(), queue)
    metrics.record_running(queue, +1)


@task_postrun.connect
def _task_finished(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    if task_id is None:
        return
    name = task_name(task)
    started = _started.pop((task_id, threading.get_ident()), None)
    if started is None:
        queue, duration = queue_label(name, getattr(task, "request", None)), None
    else:
        t0, queue = started
        duration = time.perf_counter() - t0
        metrics.record_running(queue, -1)
    label = (state or "").lower()
    metrics.record_task(name, queue, label if label in _STATES else "other", duration)


@task_retry.connect
def _task_retried(sender: Any = None, **_: Any) -> None:
    metrics.record_retry(task_name(sender))


#: Task ids whose death the main process already counted (bounded, oldest dropped).
_counted_deaths: OrderedDict[str, None] = OrderedDict()
_counted_deaths_lock = threading.Lock()
_COUNTED_DEATHS_MAX = 1024


def _first_report_of_death(task_id: str | None) -> bool:
    """Celery 5.7 sends ``task_failure`` twice for a hard time limit (from the timeout handler
    and again from the pool's error callback): count a task id once."""
    if task_id is None:
        return True
    with _counted_deaths_lock:
        if task_id in _counted_deaths:
            return False
        _counted_deaths[task_id] = None
        while len(_counted_deaths) > _COUNTED_DEATHS_MAX:
            _counted_deaths.popitem(last=False)
    return True


@task_failure.connect
def _task_failed(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    **_: Any,
) -> None:
    name = task_name(sender)
    if isinstance(exception, TimeLimitExceeded | WorkerLostError):
        # Sent by the main process for a child that died mid-task: the child's postrun never
        # ran, so the execution is counted here.
        if not _first_report_of_death(task_id):
            return
        request = getattr(sender, "request", None)
        metrics.record_task(name, queue_label(name, request), "failure")
    metrics.record_failure(name, failure_reason(exception))


@task_revoked.connect
def _task_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    name = task_name(sender)
    metrics.record_task(name, queue_label(name, request), "revoked")


# --- scrape-time gauges -------------------------------------------------------------------------
def _not_found(exc: BaseException) -> bool:
    """A passive declare's "no such queue" (AMQP 404; Redis' virtual channel says the same)."""
    return getattr(exc, "code", None) == 404 or "NOT_FOUND" in str(exc)


def queue_lengths(app: Any, queues: Sequence[str], timeout: float) -> dict[str, int]:
    """Messages waiting in each of ``queues`` on ``app``'s broker (Redis: the lengths of the
    queue's lists, every priority included; AMQP: a passive declare's message count). A queue
    the broker does not know (Redis keeps no empty list) has 0. Messages reserved by workers
    but not acknowledged are not waiting and are not counted.

    Raises:
        Exception: the broker's connection or channel errors (after at most about
            ``timeout`` seconds per round trip).
    """
    conn = app.connection_for_read(
        connect_timeout=timeout,
        transport_options={"socket_timeout": timeout, "socket_connect_timeout": timeout},
    )
    try:
        conn.ensure_connection(max_retries=0)  # fail now rather than retry for seconds
        out: dict[str, int] = {}
        for queue in queues:
            channel = conn.channel()
            try:
                out[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except conn.channel_errors as exc:
                if not _not_found(exc):
                    raise
                out[queue] = 0
            finally:
                try:
                    channel.close()
                except Exception:  # an AMQP channel closed by the broker after a 404
                    log.debug("metrics.channel_close_failed", queue=queue)
        return out
    finally:
        conn.release()


class WorkerCollector:
    """``quantbeat_worker_up``, ``quantbeat_queue_length`` and ``quantbeat_broker_up``,
    computed at each scrape in the worker's main process."""

    def __init__(
        self,
        app: Any,
        nodename: str,
        *,
        queues: Sequence[str] = ALL_QUEUES,
        timeout: float = QUEUE_LENGTH_TIMEOUT,
    ) -> None:
        self.app = app
        self.nodename = nodename
        self.queues = tuple(queues)
        self.timeout = timeout
        self._broker_ok = True

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "quantbeat_worker_up",
            "1 while the worker's main process serves its metrics.",
            labels=["worker"],
        )
        up.add_metric([self.nodename], 1.0)
        yield up
        lengths: dict[str, int] = {}
        try:
            lengths = queue_lengths(self.app, self.queues, self.timeout)
            ok = True
        except Exception as exc:
            ok = False
            if self._broker_ok:  # log state changes, not every scrape
                log.warning(
                    "metrics.queue_lengths_unavailable", error=f"{type(exc).__name__}: {exc}"
                )
        if ok and not self._broker_ok:
            log.info("metrics.queue_lengths_available")
        self._broker_ok = ok
        length = GaugeMetricFamily(
            "quantbeat_queue_length",
            "Messages waiting in the broker queue (every worker reports every queue: "
            "aggregate with max by (queue)).",
            labels=["queue"],
        )
        for queue, count in lengths.items():
            length.add_metric([queue], float(count))
        yield length
        broker = GaugeMetricFamily(
            "quantbeat_broker_up",
            "1 if the queue lengths could be read from the broker at this scrape, else 0.",
        )
        broker.add_metric([], 1.0 if ok else 0.0)
        yield broker


#: Collectors the layers above add to every worker's ``/metrics`` (``tasks.ops`` adds the
#: deployment's operational state, :class:`quantbeat.services.ops_metrics.OpsCollector`);
#: added at import, before the worker is ready and serves.
_extra_collectors: list[Any] = []


def add_collector(collector: Any) -> None:
    """Serve ``collector`` (an object with ``collect()``) on this process's worker
    ``/metrics`` endpoint, next to :class:`WorkerCollector`; call before the worker is
    ready. Adding the same collector twice adds it once."""
    if collector not in _extra_collectors:
        _extra_collectors.append(collector)


# --- the worker's lifecycle -----------------------------------------------------------------------
@dataclass
class _State:
    port: int = 0
    #: The address the endpoint listens on (``Settings.listen_address("metrics")``).
    address: str = "127.0.0.1"
    #: The multiprocess directory (prefork) or None (one process).
    directory: Path | None = None
    server: Any = None


_state = _State()


def _is_prefork(pool_cls: Any) -> bool:

    try:
        cls = get_implementation(pool_cls)
    except Exception:
        return False
    return isinstance(cls, type) and issubclass(cls, TaskPool)


@worker_init.connect
def _prepare(sender: Any = None, **_: Any) -> None:
    """Main process, before the pool forks: choose the port and, for prefork, the shared
    multiprocess directory (values created in any process after this land there)."""

    settings = get_settings()
    _state.port = settings.metrics_port
    _state.address = settings.listen_address("metrics")
    if not _state.port or sender is None:
        return
    if _is_prefork(getattr(sender, "pool_cls", None)):
        root = settings.metrics_dir or settings.data_dir / "prometheus"
        directory = metrics.node_directory(root, str(sender.hostname))
        try:
            metrics.enable_multiprocess(directory)
        except OSError as exc:
            log.warning(
                "metrics.server_unavailable",
                port=_state.port,
                reason=f"cannot prepare {directory}: {exc}",
            )
            _state.port = 0
            return
        _state.directory = directory


@worker_ready.connect
def _serve(sender: Any = None, **_: Any) -> None:
    """Main process, once the worker consumes: start the ``/metrics`` endpoint."""
    if not _state.port or sender is None or _state.server is not None:
        return

    registry = metrics.exposition_registry(_state.directory)
    registry.register(WorkerCollector(sender.app, str(sender.hostname)))
    for collector in _extra_collectors:
        registry.register(collector)
    try:
        # prometheus_client's own default address is 0.0.0.0 (every interface).
        _state.server, _thread = start_http_server(
            _state.port, addr=_state.address, registry=registry
        )
    except OSError as exc:
        log.warning(
            "metrics.server_unavailable",
            address=_state.address,
            port=_state.port,
            reason=str(exc),
        )
        return
    log.info(
        "metrics.serving",
        address=_state.address,
        port=_state.port,
        path="/metrics",
        multiprocess_dir=str(_state.directory) if _state.directory else None,
    )


@worker_process_init.connect
def _in_child(**_: Any) -> None:
    """A pool child forked after the server started inherited its listening socket: close
    this process's copy (the main process keeps serving)."""
    if _state.server is not None:
        with contextlib.suppress(OSError):
            _state.server.socket.close()
        _state.server = None


@worker_process_shutdown.connect
def _child_exits(pid: int | None = None, **_: Any) -> None:
    """Drop the exiting child's live gauges (a killed child's are dropped at the next
    scrape instead)."""
    if _state.directory is not None and pid is not None:
        with contextlib.suppress(OSError):
            mark_process_dead(pid, str(_state.directory))


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    """Main process, after the pool stopped: stop serving and remove the node's directory."""
    server, _state.server = _state.server, None
    if server is not None:
        server.shutdown()
        server.server_close()
    directory, _state.directory = _state.directory, None
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
