"""Pipelines (``io`` queue): tasks that start a chain of other tasks and return its id.

Beat schedules single tasks; a pipeline task turns one tick into a Celery chain, so each step
runs on its own queue (collection on ``io``, indicators on ``cpu``) and starts only after the
previous one succeeded. A failed step stops the chain; it is recorded (job history, dead
letters) like any task failure.
"""

from __future__ import annotations

from typing import Any

from celery import chain

from tasks._args import parse_date, parse_krx_markets
from workers.app import app


@app.task(name="quantbeat.pipeline.krx_close")
def krx_close(trade_date: str | None = None, market: str | None = None) -> dict[str, Any]:
    """After the KRX close: collect the day's candles, then precompute the scan indicators
    for the whole universe (``quantbeat.indicators.precompute``), so that scans read cached
    values. ``trade_date`` defaults to the latest closed session (incremental collection),
    ``market`` to both KRX markets. Returns ``{"chain": <last task id>, "steps": [...]}``.
    """
    if trade_date is not None:
        parse_date(trade_date, field="trade_date")
    if market is not None:
        market = parse_krx_markets(market)[0].value
    steps = [
        app.signature(
            "quantbeat.collect.daily_candles",
            kwargs={"trade_date": trade_date, "market": market},
            immutable=True,
        ),
        app.signature(
            "quantbeat.indicators.precompute",
            kwargs={"trade_date": trade_date, "market": market},
            immutable=True,
        ),
    ]
    result = chain(*steps).apply_async()
    return {"chain": result.id, "steps": [s.task for s in steps]}
