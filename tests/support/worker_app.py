"""The production Celery app plus a few test-only tasks, for integration tests that need to
observe the base task's retry, fail-fast and history behaviour through a real worker.

Start with ``celery -A tests.support.worker_app worker``. The tasks are named in the ``ops``
area so they route like production housekeeping tasks (``io`` queue).
"""

from __future__ import annotations

import time
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from quant.errors import PermanentError, TransientError
from workers.app import app

__all__ = ["app"]


@app.task(name="quantbeat.ops.test_flaky", bind=True)
def flaky(self: Any, fail_times: int, **secrets: Any) -> dict[str, Any]:
    """Raise TransientError on the first ``fail_times`` executions, then succeed."""
    retries = int(self.request.retries or 0)
    if retries < fail_times:
        raise TransientError(f"simulated transient failure {retries + 1}/{fail_times}")
    return {"retries": retries}


@app.task(name="quantbeat.ops.test_permanent")
def permanent(reason: str) -> None:
    """Always fail with a PermanentError."""
    raise PermanentError(f"simulated permanent failure: {reason}")


@app.task(name="quantbeat.ops.test_infra_down")
def infra_down() -> None:
    """Always fail the way a dropped database connection does (OperationalError)."""
    from sqlalchemy.exc import OperationalError

    raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


@app.task(name="quantbeat.ops.test_gated", bind=True, max_retries=1)
def gated(self: Any, gate: str, failure: str = "transient", **secrets: Any) -> dict[str, Any]:
    """Fail while the Redis key ``test:gate:<gate>`` is unset, then succeed: with
    ``failure="transient"`` by TransientError (one retry, then dead-lettered as
    ``retries_exhausted``), otherwise by ValidationError (dead-lettered at once). Opening the gate
    makes a replay of the dead letter succeed."""
    import redis

    from quant.errors import ValidationError
    from quantbeat.infra.settings import get_settings

    if not redis.Redis.from_url(get_settings().redis_url).exists(f"test:gate:{gate}"):
        if failure == "transient":
            raise TransientError(f"gate {gate} is closed")
        raise ValidationError(f"gate {gate} is closed", field="gate", value=gate)
    return {"gate": gate, "retries": int(self.request.retries or 0)}


@app.task(name="quantbeat.ops.test_once", idempotent=False)
def once(marker: str) -> dict[str, str]:
    """A task that declares itself not idempotent (the reaper must not requeue it)."""
    return {"marker": marker}


@app.task(name="quantbeat.ops.test_self_retry", bind=True)
def self_retry(self: Any) -> dict[str, Any]:
    """Call ``self.retry`` from the task body once (as a rate limiter would), then succeed."""
    if not self.request.retries:
        raise self.retry(countdown=0.2, max_retries=1)
    return {"retries": int(self.request.retries)}


@app.task(name="quantbeat.backtest.test_sleep")
def sleep(seconds: float, ignore_soft_limit: bool = False) -> dict[str, float]:
    """Sleep (a stand-in for a long backtest). With ``ignore_soft_limit`` it swallows the soft
    time limit and keeps going until the hard limit kills its process."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            if not ignore_soft_limit:
                raise
    return {"slept": seconds}


@app.task(name="quantbeat.backtest.test_own_limits", soft_time_limit=7, time_limit=9)
def own_limits() -> None:
    """Declares its own time limits (the family's must not override them)."""


def _register_test_strategies() -> None:
    """A scan strategy whose signal rows cannot be stored for tickers divisible by 7 (a grade
    longer than the column): the chunks holding one fail permanently, the others succeed."""
    from quant.scans.inputs import ScanInputs
    from quantbeat.services.strategies import Evaluation, ScanStrategy, Strategy, register

    def overlong_grade(inputs: ScanInputs) -> Evaluation:
        ticker = inputs.instrument.split(":")[1]
        bad = ticker.isdigit() and int(ticker) % 7 == 0
        return Evaluation(candidate=True, score=1.0, grade="X" * 40 if bad else "ok")

    register(
        ScanStrategy(
            name="test_overlong_grade",
            label="test_overlong_grade",
            evaluator=Strategy(overlong_grade),
            scheduled=False,
        )
    )

    def flaky_once(inputs: ScanInputs) -> Evaluation:
        """The instrument named in Redis key ``test:flaky-once:target`` fails transiently the
        first time it is scanned (so its chunk is retried once)."""
        import redis

        from quant.errors import ServiceUnavailable
        from quantbeat.infra.settings import get_settings

        client = redis.Redis.from_url(get_settings().redis_url)
        target = client.get("test:flaky-once:target")
        mine = isinstance(target, bytes) and target.decode() == inputs.instrument
        if mine and client.incr("test:flaky-once:count") == 1:
            raise ServiceUnavailable(f"simulated outage while scanning {inputs.instrument}")
        return Evaluation(candidate=True, score=2.0, grade="ok")

    register(
        ScanStrategy(
            name="test_flaky_once",
            label="test_flaky_once",
            evaluator=Strategy(flaky_once),
            scheduled=False,
        )
    )

    def always_down(inputs: ScanInputs) -> Evaluation:
        from quant.errors import ServiceUnavailable

        raise ServiceUnavailable(f"simulated lasting outage while scanning {inputs.instrument}")

    register(
        ScanStrategy(
            name="test_always_down",
            label="test_always_down",
            evaluator=Strategy(always_down),
            scheduled=False,
        )
    )


_register_test_strategies()


@app.task(name="quantbeat.ops.test_type_error")
def type_error(value: int) -> int:
    """Fail with a TypeError raised inside the task body (a bug, not a bad argument name)."""
    return value + "1"  # type: ignore[operator]
