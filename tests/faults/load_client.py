"""One client process of the load scenario (tests/faults/test_load.py, issue 9 scenario 11).

Run as ``python -m tests.faults.load_client --threads N --seconds S --seed K --end 2026-11-20
--out results.json`` with ``QUANTBEAT_*`` pointing at the test's own broker, result backend,
cache and database. The process imports and warms up, creates ``results.json.ready``, waits
for the line ``{"instruments": ["KOSPI:000020", …]}`` on stdin, then runs ``N`` client threads
for ``S`` seconds. Each thread loops over requests through quantbeat's public client API,
nothing test-specific:

* an indicator request (:func:`quantbeat.services.indicators.get_indicator`): popular indicators
  (become cache hits, answered in the client) or a long tail of parameters (misses, computed
  by a ``cpu`` worker);
* now and then a batch of three (:func:`quantbeat.services.indicators.get_indicators`, one
  ``compute_batch`` task for the misses);
* now and then a small backtest (:func:`quantbeat.services.backtests.submit_backtest`, then
  :func:`quantbeat.services.backtests.wait` until a final state).

No new request starts after ``S`` seconds; requests in flight are awaited (each within
:data:`REQUEST_TIMEOUT_S`). The output file holds every request's record (kind, latency in
seconds, ok, source or error, the backtest run id) and the process's CPU time, as JSON.
Exit status 0 unless the process itself broke (request errors are records, not crashes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import resource
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Seconds a client waits for one answer before counting the request as failed.
REQUEST_TIMEOUT_S = 30.0
#: Share of requests that are backtests, and batches of three indicators.
BACKTEST_SHARE = 0.1
BATCH_SHARE = 0.1
#: Bars per indicator request (the longest period below leaves finite last values).
LIMIT = 80
#: Indicators clients keep asking for: cache hits once computed.
POPULAR: tuple[tuple[str, dict[str, object] | None], ...] = (
    ("rsi", {"period": 14}),
    ("macd", None),
    ("bbands", None),
    ("sma", {"period": 20}),
    ("ema", {"period": 20}),
    ("atr", None),
)
#: Long-tail requests: one of these with a random period in [2, 50] (mostly misses).
TAIL = ("sma", "ema", "rsi")
#: Backtest spec: SMA crossover over a few instruments and a few months.
BACKTEST_INSTRUMENTS = 3
BACKTEST_DAYS = 60


@dataclass
class Record:
    """One request: ``kind`` ``indicator``/``batch``/``backtest``; ``latency_s`` from the
    call to its answer; ``detail``: the source(s) when ok, else the error."""

    kind: str
    latency_s: float
    ok: bool
    detail: str
    run_id: str | None = None


def _check(result: Any) -> str:
    """The result's source if it holds values (:data:`LIMIT` bars, a finite last value per
    output); raises AssertionError otherwise."""
    from quantbeat.services.indicators import IndicatorResult

    if not isinstance(result, IndicatorResult):
        raise AssertionError(f"not values: {result!r}"[:300])
    if len(result.time) != LIMIT or not result.values:
        raise AssertionError(f"{len(result.time)} bars for {result.request.to_json()}")
    for name, values in result.values.items():
        if len(values) != len(result.time) or not math.isfinite(float(values[-1])):
            raise AssertionError(f"{name} of {result.request.to_json()} ends in {values[-1]}")
    return result.source


class Client:
    """One simulated user: a closed loop of requests (the next one as soon as the last is
    answered, no think time) with its own random stream."""

    def __init__(self, seed: int, instruments: list[str], end: str, deadline: float) -> None:
        self.rng = random.Random(seed)
        self.instruments = instruments
        self.end = end
        self.deadline = deadline
        self.records: list[Record] = []
        self.pending_run: str | None = None  # the run id of the backtest in flight

    def indicator_args(self) -> dict[str, Any]:
        instrument = self.rng.choice(self.instruments)
        if self.rng.random() < 0.5:
            name, params = self.rng.choice(POPULAR)
        else:
            name, params = self.rng.choice(TAIL), {"period": self.rng.randint(2, 50)}
        return {"instrument": instrument, "indicator": name, "params": params}

    def one_indicator(self) -> str:
        from quantbeat.services.indicators import get_indicator

        a = self.indicator_args()
        result = get_indicator(
            a["instrument"],
            a["indicator"],
            a["params"],
            end=self.end,
            limit=LIMIT,
            timeout=REQUEST_TIMEOUT_S,
        )
        return _check(result)

    def batch(self) -> str:
        from quantbeat.services.indicators import get_indicators

        requests = [{**self.indicator_args(), "end": self.end, "limit": LIMIT} for _ in range(3)]
        answers = get_indicators(requests, timeout=REQUEST_TIMEOUT_S)
        if len(answers) != len(requests):
            raise AssertionError(f"{len(answers)} answers to {len(requests)} requests")
        return ",".join(_check(a) for a in answers)

    def backtest(self) -> str:
        from quantbeat.services.backtests import submit_backtest, wait

        end = dt.date.fromisoformat(self.end)
        spec = {
            "strategy": "sma_crossover",
            "instruments": self.rng.sample(self.instruments, BACKTEST_INSTRUMENTS),
            "start": (end - dt.timedelta(days=BACKTEST_DAYS)).isoformat(),
            "end": self.end,
            "params": {"fast": 5, "slow": 20},
            "label": "load test",
        }
        run_id = submit_backtest(spec, origin="load-test")
        self.pending_run = run_id
        final = wait(run_id, timeout=REQUEST_TIMEOUT_S)  # polls every 0.1 s, as a client would
        if final["state"] != "completed":
            raise AssertionError(f"run {run_id} ended {final['state']}: {final['error']}")
        return "completed"

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            roll = self.rng.random()
            if roll < BACKTEST_SHARE:
                kind, request = "backtest", self.backtest
            elif roll < BACKTEST_SHARE + BATCH_SHARE:
                kind, request = "batch", self.batch
            else:
                kind, request = "indicator", self.one_indicator
            self.pending_run = None
            started = time.perf_counter()
            try:
                ok, detail = True, request()
            except Exception as exc:  # every failure is a record: the test asserts none
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            latency = time.perf_counter() - started
            self.records.append(Record(kind, latency, ok, detail[:500], self.pending_run))


def _warm_up() -> None:
    """Imports, the cache and live-state clients and the database pool, before the clock
    starts (the candles may still be loading meanwhile)."""
    from sqlalchemy import text

    from db.engine import session_scope
    from quantbeat.services.backtests import state_store
    from quantbeat.services.indicators import service
    from workers.app import app

    service().cache.generations(["KOSPI:000020"])
    state_store()
    with session_scope() as session:
        session.execute(text("SELECT 1"))
    app.connection_for_write().ensure_connection(max_retries=3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--end", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from quantbeat.infra.logging import configure_logging

    configure_logging("WARNING")  # to stderr: warnings and errors only
    _warm_up()
    Path(args.out + ".ready").touch()
    # The test says go (with the instruments) once the candles are in and everyone is ready.
    instruments = json.loads(sys.stdin.readline())["instruments"]
    deadline = time.monotonic() + args.seconds
    clients = [
        Client(args.seed * 1_000 + i, instruments, args.end, deadline) for i in range(args.threads)
    ]
    threads = [threading.Thread(target=c.run, name=f"client-{i}") for i, c in enumerate(clients)]
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(
            {
                "wall_s": time.monotonic() - started,
                "cpu_s": usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime,
                "records": [asdict(r) for c in clients for r in c.records],
            },
            fh,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
