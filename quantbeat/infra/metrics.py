"""Prometheus metrics: definitions, cheap recording functions, and multiprocess support.

Any code may call the ``record_*`` functions; they never raise (a metrics fault is logged once
and otherwise ignored: metrics must never break work). In a process that nobody scrapes (the
CLI, beat, the embedded run) they only update in-memory values.

Metrics (every name starts with ``quantbeat_``; labels are bounded sets — task names, queue
names, limiter and cache names, reasons — never ids):

``quantbeat_task_total{task,queue,state}``
    counter: task executions by final Celery state of the execution (``success``, ``failure``,
    ``retry``, ``ignored``, ``rejected``, ``revoked``).
``quantbeat_task_duration_seconds{task,queue}``
    histogram: seconds from the start to the end of an execution (any state).
``quantbeat_task_retries_total{task}``
    counter: retries scheduled.
``quantbeat_task_failures_total{task,reason}``
    counter: final failures by reason (see :data:`FAILURE_REASONS`).
``quantbeat_tasks_running{queue}``
    gauge: executions in progress (summed over the live processes of a worker).
``quantbeat_rate_limit_wait_seconds{limiter}``
    histogram: seconds a granted caller waited for its turn (0 when granted at once).
``quantbeat_cache_requests_total{cache,result}``
    counter: cache lookups, ``result`` ``hit`` or ``miss``; hit rate =
    ``hit / (hit + miss)``.

Worker-level gauges computed at scrape time (``quantbeat_worker_up``, ``quantbeat_queue_length``,
``quantbeat_broker_up``) live in :mod:`workers.metrics`.

**Multiprocess mode.** A prefork worker's pool children are separate processes, so their values
are shared through prometheus_client's multiprocess mode: :func:`enable_multiprocess` (called in
the worker's main process before the pool forks) points every process at one directory of
memory-mapped files, and :class:`MultiProcessFiles` merges them at scrape time. Files of pool
children that have exited are folded into one archive file per metric type, so a worker that
recycles children (``QUANTBEAT_WORKER_MAX_TASKS_PER_CHILD``) does not accumulate files.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, mmap_dict, multiprocess
from prometheus_client import values as prometheus_values
from prometheus_client.metrics_core import Metric

log = structlog.get_logger(__name__)

# prometheus_client's multiprocess internals carry no type hints.
_MmapedDict: Any = mmap_dict.MmapedDict
_merge: Any = multiprocess.MultiProcessCollector.merge
_mark_process_dead: Any = multiprocess.mark_process_dead
_MultiProcessValue: Any = prometheus_values.MultiProcessValue

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Task durations span milliseconds (a database write) to an hour (a backtest).
TASK_DURATION_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
#: Waits are bounded by ``QUANTBEAT_RATE_LIMIT_MAX_WAIT`` (10 s by default); ``0`` counts the
#: grants that did not wait at all.
RATE_LIMIT_WAIT_BUCKETS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

#: Values of ``quantbeat_task_failures_total``'s ``reason`` label.
FAILURE_REASONS = (
    "validation_error",
    "permanent_error",
    "retries_exhausted",
    "max_attempts_exceeded",
    "timed_out",
    "hard_time_limit",
    "worker_lost",
    "rejected",
    "unexpected_error",
)

TASK_TOTAL = Counter(
    "quantbeat_task_total",
    "Task executions by the Celery state each execution ended in.",
    ["task", "queue", "state"],
)
TASK_DURATION = Histogram(
    "quantbeat_task_duration_seconds",
    "Seconds from the start to the end of a task execution, whatever its outcome.",
    ["task", "queue"],
    buckets=TASK_DURATION_BUCKETS,
)
TASK_RETRIES = Counter(
    "quantbeat_task_retries_total",
    "Task retries scheduled.",
    ["task"],
)
TASK_FAILURES = Counter(
    "quantbeat_task_failures_total",
    "Final task failures by reason.",
    ["task", "reason"],
)
TASKS_RUNNING = Gauge(
    "quantbeat_tasks_running",
    "Task executions in progress.",
    ["queue"],
    multiprocess_mode="livesum",
)
RATE_LIMIT_WAIT = Histogram(
    "quantbeat_rate_limit_wait_seconds",
    "Seconds a caller waited for a rate limiter's grant (0: granted at once).",
    ["limiter"],
    buckets=RATE_LIMIT_WAIT_BUCKETS,
)
CACHE_REQUESTS = Counter(
    "quantbeat_cache_requests_total",
    "Cache lookups by result (hit or miss).",
    ["cache", "result"],
)
NOTIFY_DELIVERIES = Counter(
    "quantbeat_notify_deliveries_total",
    "Notification delivery attempts by channel and outcome (sent, retrying, failed).",
    ["channel", "outcome"],
)
NOTIFY_UNCONFIRMED = Histogram(
    "quantbeat_notify_unconfirmed_seconds",
    "Seconds between a provider accepting a message part and the ledger recording it (the "
    "window in which a crash makes the part be sent again).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
API_REQUESTS = Counter(
    "quantbeat_api_requests_total",
    "HTTP API and dashboard requests by method, route template and status code.",
    ["method", "route", "status"],
)
API_DURATION = Histogram(
    "quantbeat_api_request_duration_seconds",
    "Seconds from receiving an HTTP request to sending its response's last byte, by route.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)

#: Every metric above, for single-process exposition.
ALL_METRICS = (
    TASK_TOTAL,
    TASK_DURATION,
    TASK_RETRIES,
    TASK_FAILURES,
    TASKS_RUNNING,
    RATE_LIMIT_WAIT,
    CACHE_REQUESTS,
    NOTIFY_DELIVERIES,
    NOTIFY_UNCONFIRMED,
    API_REQUESTS,
    API_DURATION,
)

_warned = False


def _failed(what: str, exc: BaseException) -> None:
    """Log the first metrics fault of this process; later ones are dropped silently."""
    global _warned
    if not _warned:
        _warned = True
        log.warning("metrics.record_failed", metric=what, error=f"{type(exc).__name__}: {exc}")


# --- recording ----------------------------------------------------------------------------------
def record_cache(cache: str, hit: bool, count: int = 1) -> None:
    """Count ``count`` lookups in cache ``cache`` (``"indicators"``, ``"settings"``...) as hits
    or misses. Never raises."""
    if count <= 0:
        return
    try:
        CACHE_REQUESTS.labels(cache, "hit" if hit else "miss").inc(count)
    except Exception as exc:
        _failed("cache", exc)


def record_rate_limit_wait(limiter: str, seconds: float) -> None:
    """Record that a caller of rate limiter ``limiter`` (a provider name) was granted its turn
    after waiting ``seconds`` (0: at once). Refusals are not waits and are not recorded here.
    Never raises."""
    try:
        RATE_LIMIT_WAIT.labels(limiter).observe(max(0.0, seconds))
    except Exception as exc:
        _failed("rate_limit_wait", exc)


def record_notification(channel: str, outcome: str) -> None:
    """Count one delivery attempt on ``channel`` that ended ``outcome`` (``sent``,
    ``retrying``, ``failed``). Never raises."""
    try:
        NOTIFY_DELIVERIES.labels(channel, outcome).inc()
    except Exception as exc:
        _failed("notify_deliveries", exc)


def record_unconfirmed(seconds: float) -> None:
    """Observe how long a provider's acceptance stayed unrecorded (seconds). Never raises."""
    try:
        NOTIFY_UNCONFIRMED.observe(max(0.0, seconds))
    except Exception as exc:
        _failed("notify_unconfirmed", exc)


def record_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one HTTP request to the API (``route``: its template, never the raw path, so
    ids do not explode the label set) and observe its duration."""
    try:
        API_REQUESTS.labels(method, route, str(status)).inc()
        API_DURATION.labels(method, route).observe(seconds)
    except Exception as exc:  # metrics must never fail a request
        _failed("api_request", exc)


def record_task(task: str, queue: str, state: str, duration: float | None = None) -> None:
    """Count one execution of ``task`` on ``queue`` that ended in ``state``; observe its
    ``duration`` (seconds) when known. Never raises."""
    try:
        TASK_TOTAL.labels(task, queue, state).inc()
        if duration is not None:
            TASK_DURATION.labels(task, queue).observe(max(0.0, duration))
    except Exception as exc:
        _failed("task", exc)


def record_retry(task: str) -> None:
    """Count one retry of ``task``. Never raises."""
    try:
        TASK_RETRIES.labels(task).inc()
    except Exception as exc:
        _failed("retry", exc)


def record_failure(task: str, reason: str) -> None:
    """Count one final failure of ``task`` (``reason`` from :data:`FAILURE_REASONS`). Never
    raises."""
    try:
        TASK_FAILURES.labels(task, reason).inc()
    except Exception as exc:
        _failed("failure", exc)


def record_running(queue: str, delta: int) -> None:
    """Add ``delta`` (+1 at a task's start, -1 at its end) to the tasks running on ``queue``.
    Never raises."""
    try:
        TASKS_RUNNING.labels(queue).inc(delta)
    except Exception as exc:
        _failed("running", exc)


# --- multiprocess mode --------------------------------------------------------------------------
def node_directory(root: Path, nodename: str) -> Path:
    """The multiprocess directory of worker ``nodename`` under ``root`` (one per node, so two
    workers on a host never share files)."""
    return root / re.sub(r"[^A-Za-z0-9_.@-]", "_", nodename)


def is_multiprocess() -> bool:
    """Whether values in this process are kept in multiprocess files."""
    return bool(getattr(prometheus_values.ValueClass, "_multiprocess", False))


def enable_multiprocess(path: Path) -> None:
    """Keep every metric value of this process, and of processes forked from it later, in
    memory-mapped files in ``path`` (emptied first).

    Call it in the main process before any child is forked. prometheus_client chooses its
    value class when it is imported, from ``PROMETHEUS_MULTIPROC_DIR``; this sets the variable
    (inherited by children) and switches the class, whichever happened first. Label sets of
    this module's metrics used before the call (in-process values) are dropped, so that every
    value from now on is kept in the files.

    Raises:
        OSError: ``path`` cannot be emptied or created.
    """
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    if not is_multiprocess():
        for metric in ALL_METRICS:
            metric.clear()  # before the variable is set: clear() warns in multiprocess mode
    os.environ[MULTIPROC_ENV] = str(path)
    if not is_multiprocess():
        prometheus_values.ValueClass = _MultiProcessValue()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


ARCHIVE = "archive"


class MultiProcessFiles:
    """Collector merging the multiprocess files in ``path`` at scrape time.

    Before merging, files of processes that no longer exist are cleaned up: their live gauges
    are dropped (also for a child killed without running its shutdown handler) and their
    counters and histograms are added into ``counter_archive.db``/``histogram_archive.db``,
    then removed — totals are unchanged, the file count stays bounded. Scrapes are serialized
    so that none sees a value both in the archive and in its original file.
    """

    def __init__(self, path: Path) -> None:
        if not path.is_dir():
            raise ValueError(f"multiprocess metrics directory {path} does not exist")
        self.path = path
        self._lock = threading.Lock()

    def _files(self) -> list[str]:
        return glob.glob(os.path.join(self.path, "*.db"))

    def compact(self) -> int:
        """Fold the files of exited processes into the archives; returns the processes
        cleaned up. Call with no other scrape running (``collect`` does)."""
        dead: dict[int, list[str]] = defaultdict(list)
        own = os.getpid()
        for name in self._files():
            pid_part = os.path.basename(name)[:-3].rsplit("_", 1)[-1]
            if not pid_part.isdigit():
                continue
            pid = int(pid_part)
            if pid != own and not _pid_alive(pid):
                dead[pid].append(name)
        for pid, names in dead.items():
            _mark_process_dead(pid, str(self.path))
            for name in names:
                typ = os.path.basename(name).split("_", 1)[0]
                if typ in ("counter", "histogram"):
                    self._archive(typ, name)
                elif os.path.exists(name):
                    # Non-live gauges keep the last value of a dead process: none is defined
                    # here, so its file can only be stale.
                    os.remove(name)
        return len(dead)

    def _archive(self, typ: str, name: str) -> None:
        archive = _MmapedDict(os.path.join(self.path, f"{typ}_{ARCHIVE}.db"))
        try:
            # Every key, zeros included: a histogram must keep all of its buckets.
            for key, value, _timestamp, _pos in _MmapedDict.read_all_values_from_file(name):
                current, _ = archive.read_value(key)
                archive.write_value(key, current + value, 0.0)
        finally:
            archive.close()
        os.remove(name)

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            try:
                self.compact()
            except Exception as exc:  # never lose a scrape to the housekeeping
                _failed("compact", exc)
            return list(_merge(self._files(), accumulate=True))


class _Metrics:
    """Collector yielding this module's metrics (single-process exposition)."""

    def collect(self) -> Iterator[Metric]:
        for metric in ALL_METRICS:
            yield from metric.collect()


def exposition_registry(multiprocess_path: Path | None = None) -> CollectorRegistry:
    """A registry for a ``/metrics`` endpoint: this module's metrics from the multiprocess
    files in ``multiprocess_path``, or from this process when it is ``None``."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_path is not None:
        registry.register(MultiProcessFiles(multiprocess_path))
    else:
        registry.register(_Metrics())
    return registry


__all__ = [
    "ALL_METRICS",
    "FAILURE_REASONS",
    "MultiProcessFiles",
    "enable_multiprocess",
    "exposition_registry",
    "is_multiprocess",
    "node_directory",
    "record_cache",
    "record_failure",
    "record_rate_limit_wait",
    "record_request",
    "record_retry",
    "record_running",
    "record_task",
]
