"""Prometheus metrics: the recording functions, what the rate limiter and the cache record,
the failure-reason and queue labels, and multiprocess aggregation across forked processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from celery.exceptions import Reject, SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from quant.errors import PermanentError, ServiceUnavailable, ValidationError
from quantbeat.infra import metrics
from quantbeat.infra.cache import Entry, LocalCache, SafeCache, encode_series
from quantbeat.infra.ratelimit import LocalRateLimiter, WaitTooLong

ROOT = Path(__file__).resolve().parents[2]


def sample(name: str, **labels: str) -> float:
    """The current value of a sample in this process (0 when it does not exist yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- recording functions ----------------------------------------------------------------------
def test_record_cache_counts_hits_and_misses():
    hits = sample("quantbeat_cache_requests_total", cache="unit", result="hit")
    misses = sample("quantbeat_cache_requests_total", cache="unit", result="miss")
    metrics.record_cache("unit", True)
    metrics.record_cache("unit", False, 3)
    metrics.record_cache("unit", True, 0)  # nothing to count
    assert sample("quantbeat_cache_requests_total", cache="unit", result="hit") == hits + 1
    assert sample("quantbeat_cache_requests_total", cache="unit", result="miss") == misses + 3


def test_record_rate_limit_wait_observes_seconds():
    name = "quantbeat_rate_limit_wait_seconds"
    count = sample(f"{name}_count", limiter="unit")
    total = sample(f"{name}_sum", limiter="unit")
    at_once = sample(f"{name}_bucket", limiter="unit", le="0.0")
    metrics.record_rate_limit_wait("unit", 0.0)
    metrics.record_rate_limit_wait("unit", 0.75)
    metrics.record_rate_limit_wait("unit", -0.5)  # clock noise: no negative waits
    assert sample(f"{name}_count", limiter="unit") == count + 3
    assert sample(f"{name}_sum", limiter="unit") == pytest.approx(total + 0.75)
    assert sample(f"{name}_bucket", limiter="unit", le="0.0") == at_once + 2


def test_record_task_counts_state_and_duration():
    labels = {"task": "quantbeat.ops.unit", "queue": "io"}
    done = sample("quantbeat_task_total", state="success", **labels)
    observed = sample("quantbeat_task_duration_seconds_count", **labels)
    metrics.record_task("quantbeat.ops.unit", "io", "success", 0.2)
    metrics.record_task("quantbeat.ops.unit", "io", "success")  # duration unknown
    assert sample("quantbeat_task_total", state="success", **labels) == done + 2
    assert sample("quantbeat_task_duration_seconds_count", **labels) == observed + 1


def test_recording_never_raises(monkeypatch: pytest.MonkeyPatch):
    def broken(*_: Any) -> Any:
        raise OSError("metrics directory removed")

    monkeypatch.setattr(metrics.CACHE_REQUESTS, "labels", broken)
    monkeypatch.setattr(metrics.TASK_TOTAL, "labels", broken)
    metrics.record_cache("unit", True)
    metrics.record_task("quantbeat.ops.unit", "io", "success", 1.0)


def test_single_process_exposition_has_only_quantbeat_metrics():
    metrics.record_cache("unit", True)
    text = generate_latest(metrics.exposition_registry()).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "quantbeat_cache_requests" in names
    assert all(name.startswith("quantbeat_") for name in names), names


# --- what instrumented code records -----------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_local_rate_limiter_records_each_grant_and_its_wait():
    clock = FakeClock()
    limiter = LocalRateLimiter("unit-local", 2.0, max_wait=1.0, clock=clock, sleep=clock.sleep)
    name = "quantbeat_rate_limit_wait_seconds"
    limiter.acquire()  # at once
    limiter.acquire()  # after 0.5 s
    limiter.acquire()  # after 1.0 s (= max_wait)
    with pytest.raises(WaitTooLong):
        limiter.acquire()  # 1.5 s away: refused, which is not a wait
    assert clock.slept == [0.5, 1.0]
    assert sample(f"{name}_count", limiter="unit-local") == 3
    assert sample(f"{name}_sum", limiter="unit-local") == pytest.approx(1.5)
    assert sample(f"{name}_bucket", limiter="unit-local", le="0.0") == 1


def _blob() -> bytes:
    times = np.array(["2026-01-02"], dtype="datetime64[D]")
    return encode_series(times, {"value": np.array([1.0])})


def test_safe_cache_counts_indicator_and_candle_lookups():
    cache = SafeCache(LocalCache())
    hit = Entry.indicator("KRX:UNIT1", "1d", "r", "sma", "length=5")
    miss = Entry.indicator("KRX:UNIT1", "1d", "r", "ema", "length=5")
    candles = Entry.candles("KRX:UNIT1", "1d", "r")
    (generation,) = cache.generations(["KRX:UNIT1"])
    assert cache.put_many([(hit, _blob(), generation)]) == 1

    def counts() -> tuple[float, ...]:
        return tuple(
            sample("quantbeat_cache_requests_total", cache=c, result=r)
            for c in ("indicators", "candles")
            for r in ("hit", "miss")
        )

    before = counts()
    cache.get_many([hit, miss, candles])
    after = counts()
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 0, 1]
    cache.get_many([hit, candles], count=False, count_candles=False)  # a re-check: not counted
    assert counts() == after


def test_an_unavailable_cache_counts_misses():
    class Down(LocalCache):
        def get_many(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("cache down")

    cache = SafeCache(Down())
    entry = Entry.indicator("KRX:UNIT2", "1d", "r", "sma", "length=5")
    misses = sample("quantbeat_cache_requests_total", cache="indicators", result="miss")
    assert cache.get_many([entry])[0].value is None
    assert sample("quantbeat_cache_requests_total", cache="indicators", result="miss") == (
        misses + 1
    )


# --- labels -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeLimitExceeded(2), "hard_time_limit"),
        (SoftTimeLimitExceeded(), "timed_out"),
        (WorkerLostError("gone"), "worker_lost"),
        (Reject("bad", requeue=False), "rejected"),
        (ValidationError("bad value", field="x"), "validation_error"),
        (PermanentError("no"), "permanent_error"),
        (ServiceUnavailable("later"), "retries_exhausted"),
        (OperationalError("SELECT 1", {}, ConnectionRefusedError()), "retries_exhausted"),
        (KeyError("bug"), "unexpected_error"),
        (None, "unexpected_error"),
    ],
)
def test_failure_reasons(exc: BaseException | None, reason: str):
    from workers.metrics import failure_reason

    assert failure_reason(exc) == reason
    assert reason in metrics.FAILURE_REASONS


def test_poisoned_message_reason():
    from workers.base import PoisonedMessage
    from workers.metrics import failure_reason

    assert failure_reason(PoisonedMessage("delivered 9 times")) == "max_attempts_exceeded"


def test_queue_label_is_bounded():
    from workers.metrics import queue_label

    class Request:
        def __init__(self, info: Any) -> None:
            self.delivery_info = info

    assert queue_label("quantbeat.ops.x", Request({"routing_key": "ai"})) == "ai"
    assert queue_label("quantbeat.scans.vcp", Request(None)) == "cpu"  # routed by name
    assert queue_label("quantbeat.ops.x", Request({"routing_key": "tmp-1f3a"})) == "other"
    assert queue_label("thirdparty.task") == "other"


def test_worker_collector_reports_up_and_survives_an_unreachable_broker():
    from celery import Celery

    from workers.metrics import WorkerCollector

    app = Celery("unit", broker="redis://127.0.0.1:1/0")  # nothing listens on port 1
    collector = WorkerCollector(app, "unit@host", timeout=0.5)
    t0 = time.monotonic()
    families = {m.name: m for m in collector.collect()}
    assert time.monotonic() - t0 < 10, "a dead broker must not hang the scrape"
    up = families["quantbeat_worker_up"].samples
    assert [(s.labels, s.value) for s in up] == [({"worker": "unit@host"}, 1.0)]
    assert families["quantbeat_queue_length"].samples == []
    assert [s.value for s in families["quantbeat_broker_up"].samples] == [0.0]


def test_cli_refuses_a_bad_metrics_port():
    from quantbeat.cli.main import EXIT_USAGE, main

    assert main(["worker", "--metrics-port", "70000"]) == EXIT_USAGE


# --- multiprocess -----------------------------------------------------------------------------
# Runs in a fresh interpreter: multiprocess mode changes prometheus_client's global value class.
_MULTIPROCESS_SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing, os, sys
    from pathlib import Path

    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from quantbeat.infra import metrics

    path = Path(sys.argv[1])
    path.mkdir(parents=True)
    (path / "counter_999999.db").write_bytes(b"left by an earlier run")
    # Used before the switch (say, while settings were read): must not stay process-local,
    # or forked children would inherit the in-memory value and their counts would be lost.
    metrics.record_cache("indicators", True)
    metrics.enable_multiprocess(path)  # empties it
    assert not (path / "counter_999999.db").exists()

    def child(n, finish):
        metrics.record_running("cpu", +1)
        for _ in range(n):
            metrics.record_task("quantbeat.scans.unit", "cpu", "success", 0.3)
        metrics.record_cache("indicators", True, n)
        if finish:
            metrics.record_running("cpu", -1)
        os._exit(0)  # like a killed child: no clean-up of its own

    ctx = multiprocessing.get_context("fork")
    metrics.record_failure("quantbeat.scans.unit", "hard_time_limit")  # the main process
    procs = [ctx.Process(target=child, args=(n, n != 3)) for n in (1, 2, 3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()

    def scrape():
        text = generate_latest(metrics.exposition_registry(path)).decode()
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                key = s.name + json.dumps(s.labels, sort_keys=True)
                out[key] = s.value
        return out

    first = scrape()
    files = sorted(os.listdir(path))
    second = scrape()
    print(json.dumps({"first": first, "second": second, "files": files, "pid": os.getpid()}))
    """
)


def test_multiprocess_values_are_summed_and_dead_children_compacted(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-c", _MULTIPROCESS_SCRIPT, str(tmp_path / "node")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    first, second = report["first"], report["second"]

    def value(scrape: dict[str, float], name: str, **labels: str) -> float:
        return scrape.get(name + json.dumps(labels, sort_keys=True), 0.0)

    task = {"task": "quantbeat.scans.unit", "queue": "cpu"}
    for scrape in (first, second):  # compaction changes nothing in the totals
        assert value(scrape, "quantbeat_task_total", state="success", **task) == 6
        assert value(scrape, "quantbeat_task_duration_seconds_count", **task) == 6
        assert value(scrape, "quantbeat_task_duration_seconds_sum", **task) == pytest.approx(1.8)
        assert value(scrape, "quantbeat_task_duration_seconds_bucket", le="0.25", **task) == 0
        assert value(scrape, "quantbeat_task_duration_seconds_bucket", le="0.5", **task) == 6
        assert value(scrape, "quantbeat_task_duration_seconds_bucket", le="+Inf", **task) == 6
        assert (
            value(scrape, "quantbeat_cache_requests_total", cache="indicators", result="hit") == 6
        )
        reason = {"task": "quantbeat.scans.unit", "reason": "hard_time_limit"}
        assert value(scrape, "quantbeat_task_failures_total", **reason) == 1
        # The child that died with a task "running" left no stale gauge behind.
        assert value(scrape, "quantbeat_tasks_running", queue="cpu") == 0
    # The exited children's files were folded into archives; the main process keeps its own.
    pid = report["pid"]
    assert set(report["files"]) == {
        "counter_archive.db",
        "histogram_archive.db",
        f"counter_{pid}.db",
    }, report["files"]


def test_a_hard_time_limit_reported_twice_is_counted_once():
    """Celery sends task_failure twice for one hard time limit, from the main process."""
    from workers.metrics import _task_failed

    class Task:
        name = "quantbeat.backtest.unit_killed"
        request = None

    total = {"task": Task.name, "queue": "cpu", "state": "failure"}
    reason = {"task": Task.name, "reason": "hard_time_limit"}
    before = (
        sample("quantbeat_task_total", **total),
        sample("quantbeat_task_failures_total", **reason),
    )
    for _ in range(2):
        _task_failed(sender=Task(), task_id="unit-killed-1", exception=TimeLimitExceeded(2))
    _task_failed(sender=Task(), task_id="unit-killed-2", exception=TimeLimitExceeded(2))
    after = (
        sample("quantbeat_task_total", **total),
        sample("quantbeat_task_failures_total", **reason),
    )
    assert (after[0] - before[0], after[1] - before[1]) == (2, 2)
