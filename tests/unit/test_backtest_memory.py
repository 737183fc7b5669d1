"""The backtest memory estimate against the arrays a run really builds.

numpy reports its data allocations to tracemalloc, so the peak a strategy's signal builder
and the simulation reach is measured here on a small market and compared with the estimate.
"""

from __future__ import annotations

import datetime as dt
import functools
import multiprocessing
import tracemalloc
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from quant.backtest.engine import Market, simulate
from quant.backtest.memory import (
    CANDLE_ARRAYS,
    F8,
    MARKET_COLUMNS,
    estimate_backtest_bytes,
    human_bytes,
    max_sessions,
)
from quant.backtest.strategies import STRATEGIES, Strategy
from quant.errors import ValidationError
from quant.indicators import Candles
from quant.scans.inputs import FLOW_COLUMNS

N, M = 700, 24


def _market(n: int, m: int, seed: int = 1) -> Market:
    rng = np.random.default_rng(seed)
    close = 10_000 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, m)), axis=0))
    volume = rng.uniform(1e5, 1e6, (n, m))
    volume[rng.random((n, m)) < 0.05] *= 4  # volume spikes, so breakouts happen
    return Market(
        times=np.datetime64("2023-01-01") + np.arange(n),  # dates the sell-tax table covers
        symbols=tuple(f"KOSPI:{i:06d}" for i in range(m)),
        markets=("KOSPI",) * m,
        open=close * (1 + rng.normal(0, 0.005, (n, m))),
        high=close * 1.02,
        low=close * 0.98,
        close=close,
        volume=volume,
        traded_value=volume * close,
    )


def _flows(n: int, m: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    return {k: rng.normal(0, 1e9, (n, m)) for k in FLOW_COLUMNS}


def _estimate(strategy: Strategy, n: int, m: int):
    return estimate_backtest_bytes(
        n, m, signal_bytes_per_cell=strategy.signal_bytes_per_cell,
        flows=strategy.needs_flows, load_chunk=250,
    )  # fmt: skip


def test_market_and_flow_terms_are_the_nbytes_of_the_arrays_a_run_holds():
    market = _market(N, M)
    held = sum(market.column(c).nbytes for c in ("open", "high", "low", "close", "volume",
                                                   "traded_value"))  # fmt: skip
    estimate = _estimate(STRATEGIES["closing_bet"], N, M)
    assert estimate.market == held
    assert estimate.flows == sum(a.nbytes for a in _flows(N, M).values())
    assert _estimate(STRATEGIES["sma_crossover"], N, M).flows == 0


def test_the_loading_term_covers_every_instruments_candles_next_to_the_aligned_columns():
    n, m = 300, 10
    prices = ("open", "high", "low", "close", "volume", "traded_value")
    times = np.datetime64("2020-01-01") + np.arange(n)
    frames = [
        Candles.from_columns(times, unit="D", **{k: np.ones(n) for k in prices}) for _ in range(m)
    ]
    candle_bytes = sum(getattr(f, k).nbytes for f in frames
                       for k in ("time", "open", "high", "low", "close", "volume",
                                 "traded_value"))  # fmt: skip
    assert candle_bytes == n * m * CANDLE_ARRAYS * F8
    estimate = _estimate(STRATEGIES["sma_crossover"], n, m)
    assert estimate.loading >= candle_bytes + n * m * MARKET_COLUMNS * F8


def _measure(name: str, m: int) -> tuple[int, int]:
    """(bytes a run of strategy ``name`` on an N × ``m`` market held at its peak, the
    estimate's running term), measured with tracemalloc."""
    strategy = STRATEGIES[name]
    market = _market(N, m)
    flows = _flows(N, m) if strategy.needs_flows else None
    # once before measuring: first calls import modules and fill caches (not per-run memory)
    simulate(market, strategy.signals(market, None, flows), strategy.execution)
    held = sum(market.column(c).nbytes for c in ("open", "high", "low", "close", "volume",
                                                   "traded_value"))  # fmt: skip
    held += sum(a.nbytes for a in (flows or {}).values())
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        signals = strategy.signals(market, None, flows)
        simulate(market, signals, strategy.execution)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return held + peak, _estimate(strategy, N, m).running


#: The product's strategies (tests register test strategies in the same registry: one of
#: them kills its own process by design).
PRODUCT_STRATEGIES = sorted(name for name in STRATEGIES if not name.startswith("test_"))


def _measure_all() -> dict[tuple[str, int], tuple[int, int]]:
    return {(name, m): _measure(name, m) for name in PRODUCT_STRATEGIES for m in (1, M)}


@functools.cache
def _measured() -> dict[tuple[str, int], tuple[int, int]]:
    """Every case measured once, in a fresh process: tracemalloc counts every thread's
    allocations, and the suite's process may run threads left by other tests."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measure_all).result(timeout=300)


@pytest.mark.parametrize("name", PRODUCT_STRATEGIES)
@pytest.mark.parametrize("m", [1, M])
def test_the_estimate_bounds_the_measured_peak_of_signals_and_simulation(name: str, m: int):
    measured, running = _measured()[(name, m)]
    assert measured <= running, (name, m, measured, running)
    # and not so loose that it refuses what fits: within 3x of what was measured
    assert running <= 3 * measured, (name, m, measured, running)


def test_sessions_are_bounded_by_weekdays_on_krx_and_by_calendar_days_elsewhere():
    first, last = dt.date(2026, 11, 2), dt.date(2026, 11, 15)  # Monday .. Sunday, 2 weeks
    assert max_sessions(first, last, ["KOSPI", "KOSDAQ"]) == 10
    assert max_sessions(first, last, ["UPBIT"]) == 14
    assert max_sessions(first, last, ["KOSPI", "UPBIT"]) == 14
    assert max_sessions(dt.date(2026, 11, 6), dt.date(2026, 11, 9), ["KOSPI"]) == 2  # Fri..Mon
    with pytest.raises(ValidationError, match="before its start"):
        max_sessions(last, first, ["KOSPI"])


def test_thirty_years_of_five_thousand_instruments_is_far_above_a_gibibyte():
    bars = max_sessions(dt.date(1996, 1, 1), dt.date(2025, 12, 31), ["KOSPI"])
    estimate = estimate_backtest_bytes(
        bars, 5_000, signal_bytes_per_cell=40, flows=False, load_chunk=250
    )
    assert estimate.market == bars * 5_000 * 48  # about 1.9 GB of market columns alone
    assert estimate.peak > 4 * 2**30
    assert human_bytes(estimate.peak).endswith("GiB")


def test_bad_counts_are_refused():
    with pytest.raises(ValidationError, match="instruments must be >= 0"):
        estimate_backtest_bytes(10, -1, signal_bytes_per_cell=1, flows=False, load_chunk=1)
    with pytest.raises(ValidationError, match="load_chunk"):
        estimate_backtest_bytes(10, 1, signal_bytes_per_cell=1, flows=False, load_chunk=0)


def test_human_bytes():
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 2**30) == "3.0 GiB"
