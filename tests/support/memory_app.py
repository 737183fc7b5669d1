"""The backtest test app plus tasks and strategies that run out of memory, for a prefork
worker whose children are capped (``QUANTBEAT_CHILD_MAX_BYTES``):

* ``quantbeat.backtest.test_allocate(mib)`` — allocates ``mib`` MiB (numpy) and returns the
  bytes it got; beyond the cap the allocation raises MemoryError;
* ``quantbeat.backtest.test_kill_self(marker)`` — counts its execution in Redis
  (``test:kill-self:<marker>``, QUANTBEAT_REDIS_URL), then SIGKILLs the process running it,
  as the kernel's OOM killer would;
* strategy ``test_allocate`` — a backtest whose signal builder allocates ``mib`` MiB;
* strategy ``test_oom_killed`` — a backtest whose signal builder SIGKILLs its process.

Start with ``celery -A tests.support.memory_app worker -P prefork -Q cpu``; tests import this
module too, so the client validates specs against the same registry.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from typing import Any

import numpy as np
import redis

from quant.backtest.engine import ExecutionConfig, Market, Signals
from quant.backtest.strategies import STRATEGIES, Progress, Strategy, sma_crossover
from quantbeat.infra.settings import get_settings
from tests.support.backtest_app import app

__all__ = ["app"]


def _allocate(mib: int) -> int:
    block = np.ones(mib * 2**20 // 8)  # touched: really resident, not only reserved
    return int(block.nbytes)


@app.task(name="quantbeat.backtest.test_allocate")
def allocate(mib: int) -> int:
    """Allocate ``mib`` MiB; returns the bytes allocated."""
    return _allocate(mib)


@app.task(name="quantbeat.backtest.test_kill_self")
def kill_self(marker: str) -> None:
    """Count the execution, then SIGKILL this process. Never returns."""
    client = redis.Redis.from_url(get_settings().redis_url)
    client.incr(f"test:kill-self:{marker}")
    client.expire(f"test:kill-self:{marker}", 3600)
    client.close()
    os.kill(os.getpid(), signal.SIGKILL)


def _allocating(
    market: Market,
    params: Mapping[str, Any],
    flows: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> Signals:
    _allocate(int(params["mib"]))
    return sma_crossover(market, {"fast": 5, "slow": 15})


def _oom_killed(
    market: Market,
    params: Mapping[str, Any],
    flows: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> Signals:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


STRATEGIES["test_allocate"] = Strategy(
    name="test_allocate",
    title="test: allocates a lot",
    build=_allocating,
    defaults={"mib": 64},
    execution=ExecutionConfig(fill="next_open"),
)
STRATEGIES["test_oom_killed"] = Strategy(
    name="test_oom_killed",
    title="test: killed as by the OOM killer",
    build=_oom_killed,
    defaults={},
    execution=ExecutionConfig(fill="next_open"),
)
