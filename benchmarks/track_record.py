"""The track record's speed (issue 18 item 8), on its own scratch PostgreSQL database.

Data (SIMULATED, built once and kept): 2,700 instruments (KOSPI and KOSDAQ) with five years of
daily bars (a geometric random walk on the weekday calendar, with an occasional zero-volume
halt day — generated numbers, not prices), and signals on every session: 10 final and 10
preliminary closing bets, 5 VCP breakouts, 25 forming VCP candidates and 2 legacy signals,
on random instruments (about 65,000 signals).

Measured:

- ``recompute_5y``: :func:`quantbeat.services.track_record.recompute` from an empty
  ``signal_outcomes`` (every signal back to its unfollowed birth row) over every signal
  through the day before the last session (reads, rules, every row written);
- ``daily_update``: then :func:`~quantbeat.services.track_record.update` for the last session:
  every open and pending signal and the day's new ones, over the 2,700-instrument universe;
- a re-run of that update (idempotent: nothing written).

References in the same run: the rule kernel alone (:func:`quant.outcomes.follow` over the
same signals with their bars already in memory) and a bare bulk read of the same candles
(:func:`db.outcomes.load_bars`), so the ratios show where the time goes.

Run: ``.venv/bin/python benchmarks/track_record.py`` (``QUANTBEAT_BENCH_DATABASE_URL``,
default ``postgresql+psycopg://postgres@127.0.0.1:5432/quantbeat_bench_track``). Building
the data takes about a minute the first time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

URL = os.environ.get(
    "QUANTBEAT_BENCH_DATABASE_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/quantbeat_bench_track",
)
os.environ["QUANTBEAT_DATABASE_URL"] = URL

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _support import ensure_database  # noqa: E402
from sqlalchemy import text  # noqa: E402

INSTRUMENTS = 2_700
#: Five years inside the dated tax table (it starts 2023-01-01); simulated, so the future is fine.
FIRST, LAST = dt.date(2023, 1, 2), dt.date(2027, 12, 31)
PER_SESSION = {"closing_bet": 10, "closing_bet/preliminary": 10, "vcp/breakout": 5,
               "vcp/forming": 25, "legacy": 2}  # fmt: skip
SEED = 18


def _sessions() -> list[dt.date]:
    days, day = [], FIRST
    while day <= LAST:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def build() -> int:
    """Create the simulated instruments, bars and signals unless they are there; returns the
    number of signals."""
    from db import migrate
    from db.bulk import copy_rows
    from db.engine import session_scope

    migrate.upgrade(URL)
    with session_scope() as session:
        have = session.execute(text("SELECT count(*) FROM signals")).scalar_one()
        if have:
            return int(have)
    t0 = time.perf_counter()
    rng = np.random.default_rng(SEED)
    days = _sessions()
    n, m = len(days), INSTRUMENTS
    with session_scope() as session:
        candles = session.execute(text("SELECT count(*) FROM daily_candles")).scalar_one()
    signals_only = candles == n * m  # bars built by a run that stopped before the signals
    if not signals_only:
        with session_scope() as session:
            session.execute(text("TRUNCATE instruments RESTART IDENTITY CASCADE"))
            copy_rows(
                session,
                "instruments",
                pd.DataFrame(
                    {
                        "market": ["KOSPI" if i % 3 else "KOSDAQ" for i in range(m)],
                        "ticker": [f"{i:06d}" for i in range(m)],
                        "name": [f"SIM {i}" for i in range(m)],
                        "currency": "KRW",
                        "listing_status": "listed",
                        "source": "simulated",
                    }
                ),
            )
    # a random walk per instrument: daily log returns N(0.0003, 0.02), ranges ±1.5 %
    steps = rng.normal(0.0003, 0.02, size=(n, m))
    close = 10_000 * np.exp(np.cumsum(steps, axis=0))
    open_ = close * np.exp(rng.normal(0, 0.01, size=(n, m)))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.015, size=(n, m))))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.015, size=(n, m))))
    volume = rng.lognormal(12, 0.5, size=(n, m))
    halted = rng.random((n, m)) < 0.0005
    volume[halted] = 0.0
    for a in (open_, high, low):
        a[halted] = close[halted]
    frame = pd.DataFrame(
        {
            "instrument_id": np.tile(np.arange(1, m + 1), n),
            "trade_date": np.repeat(np.array(days, dtype="datetime64[D]"), m),
            "open": open_.ravel(),
            "high": high.ravel(),
            "low": low.ravel(),
            "close": close.ravel(),
            "volume": volume.ravel(),
            "traded_value": (volume * close).ravel(),
            "source": "simulated",
        }
    )
    frame["trade_date"] = frame["trade_date"].dt.date
    if not signals_only:
        with session_scope() as session:
            copy_rows(session, "daily_candles", frame)
    signals = []
    for t, day in enumerate(days):
        chosen = iter(rng.choice(m, size=sum(PER_SESSION.values()), replace=False))
        for kind, count in PER_SESSION.items():
            for c in (next(chosen) for _ in range(count)):
                price = float(close[t, c])
                strategy, _, flavour = kind.partition("/")
                row = {"trade_date": day, "strategy": strategy, "instrument_id": int(c) + 1,
                       "score": 10.0, "grade": "A", "entry_price": price, "status": None,
                       "reasons": None, "inputs": None, "source": "benchmark", "gate": "GREEN",
                       "phase": "preliminary" if flavour == "preliminary" else "final"}  # fmt: skip
                if strategy == "vcp":
                    pivot = price * (0.98 if flavour == "breakout" else 1.03)
                    row.update(entry_price=pivot, status=flavour if flavour == "breakout" else
                               "forming", inputs={"pivot": pivot, "stop": pivot * 0.93,
                               "breakout": flavour == "breakout"})  # fmt: skip
                signals.append(row)
    table = pd.DataFrame(signals)
    table["reasons"] = None
    table["inputs"] = [None if v is None else json.dumps(v) for v in table["inputs"]]
    with session_scope() as session:
        copy_rows(session, "signals", table)
        session.execute(text("ANALYZE"))
    print(f"built {m:,} instruments × {n:,} sessions and {len(signals):,} SIMULATED signals "
          f"in {time.perf_counter() - t0:.0f} s")  # fmt: skip
    return len(signals)


def kernel_alone(as_of: dt.date) -> tuple[float, float, int]:
    """(seconds of follow() alone, seconds of the bare bulk read, signals) over every signal
    with its bars in memory, as the service reads them."""
    from db.engine import session_scope
    from db.outcomes import load_bars, market_sessions, signals_to_follow
    from quant.outcomes import FINISHED, follow
    from quantbeat.services import track_record as tr

    with session_scope() as session:
        signals = signals_to_follow(
            session, through=as_of, current_rules=set(), finished=FINISHED, everything=True
        )
        by: dict[int, list[Any]] = {}
        for s in signals:
            by.setdefault(s.instrument_id, []).append(s)
        starts = {i: tr._start(g) for i, g in by.items()}
        sessions = market_sessions(
            session, {s.market for s in signals}, min(starts.values()), as_of
        )
        t0 = time.perf_counter()
        loaded = load_bars(session, starts, as_of)
        read = time.perf_counter() - t0
    bars = {i: tr._bars(sessions[g[0].market], starts[i], loaded.get(i)) for i, g in by.items()}
    views = [(tr._view(s), bars[s.instrument_id]) for s in signals]
    t0 = time.perf_counter()
    for view, b in views:
        follow(view, b, through=as_of)
    return time.perf_counter() - t0, read, len(signals)


def main() -> None:
    ensure_database(URL)
    from db.engine import session_scope
    from quantbeat.services import track_record as tr

    total = build()
    days = _sessions()
    last, before = days[-1], days[-2]
    with session_scope() as session:
        # every signal back to its birth row (not followed yet), as if just stored
        session.execute(text("TRUNCATE signal_outcomes"))
        session.execute(
            text(
                "INSERT INTO signal_outcomes (signal_id, rules, state) "
                "SELECT id, '', 'pending' FROM signals"
            )
        )
    tr.update(before, strategy="__warm_up__")  # imports, calendar, connections

    t0 = time.perf_counter()
    full = tr.recompute(before)
    recompute_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    daily = tr.update(last)
    daily_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = tr.update(last)
    again_s = time.perf_counter() - t0
    kernel_s, read_s, followed = kernel_alone(before)

    print(f"SIMULATED data: {INSTRUMENTS:,} instruments, {len(days):,} sessions, {total:,} signals")
    print(f"recompute through {before}: {full['followed']:,} signals, "
          f"{full['inserted'] + full['updated']:,} rows "
          f"written, states {full['states']}: {recompute_s:.2f} s")  # fmt: skip
    print(
        f"  reference: the rule kernel alone over the same {followed:,} signals "
        f"{kernel_s:.2f} s; a bare bulk read of their candles {read_s:.2f} s "
        f"(recompute = {recompute_s / max(kernel_s + read_s, 1e-9):.1f}× kernel + read)"
    )
    print(
        f"daily update {last}: {daily['followed']:,} open/pending/new signals, "
        f"{daily['inserted']:,} new and {daily['updated']:,} changed rows: {daily_s:.2f} s"
    )
    print(f"re-run of the update: {again['followed']:,} followed, {again['inserted']} new, "
          f"{again['updated']} changed: {again_s:.2f} s")  # fmt: skip
    print(f"goal daily_update: {daily_s:.2f} s (target < 5 s) "
          f"{'met' if daily_s < 5 else 'missed'}")  # fmt: skip
    print(f"goal recompute_5y: {recompute_s:.2f} s (target < 60 s) "
          f"{'met' if recompute_s < 60 else 'missed'}")  # fmt: skip


if __name__ == "__main__":
    main()
