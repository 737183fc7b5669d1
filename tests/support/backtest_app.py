"""The test worker app plus test-only backtest strategies, for a prefork ``cpu`` worker:

* ``test_slow`` — SMA crossover signals, but each instrument takes ``sleep`` seconds (a
  stand-in for an expensive scan), reporting progress between instruments;
* ``test_endless`` — never finishes (until a time limit or cancel stops it);
* ``test_stubborn`` — never finishes and swallows the soft time limit, so only the hard limit
  (which kills its pool child) stops it.

Start with ``celery -A tests.support.backtest_app worker -P prefork -Q cpu``; tests import
this module too, so the client validates specs against the same registry.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from quant.backtest.engine import ExecutionConfig, Market, Signals
from quant.backtest.strategies import STRATEGIES, Progress, Strategy, sma_crossover
from tests.support.worker_app import app

__all__ = ["app"]


def _slow(
    market: Market,
    params: Mapping[str, Any],
    flows: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> Signals:
    m = len(market.symbols)
    for c in range(m):
        time.sleep(float(params["sleep"]))
        if progress is not None:
            progress(c + 1, m)
    return sma_crossover(market, {"fast": 5, "slow": 15})


def _endless(
    market: Market,
    params: Mapping[str, Any],
    flows: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> Signals:
    m = len(market.symbols)
    while True:
        time.sleep(0.05)
        if progress is not None:
            progress(0, m)


def _stubborn(
    market: Market,
    params: Mapping[str, Any],
    flows: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> Signals:
    from celery.exceptions import SoftTimeLimitExceeded

    while True:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            continue


STRATEGIES["test_slow"] = Strategy(
    name="test_slow",
    title="test: slow SMA crossover",
    build=_slow,
    defaults={"sleep": 0.2},
    execution=ExecutionConfig(fill="next_open"),
)
STRATEGIES["test_endless"] = Strategy(
    name="test_endless",
    title="test: never ends",
    build=_endless,
    defaults={},
    execution=ExecutionConfig(fill="next_open"),
)
STRATEGIES["test_stubborn"] = Strategy(
    name="test_stubborn",
    title="test: never ends, ignores the soft time limit",
    build=_stubborn,
    defaults={},
    execution=ExecutionConfig(fill="next_open"),
)
