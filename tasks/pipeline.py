"""Pipelines (``io`` queue): tasks that start a chain of other tasks and return its id.

Beat schedules single tasks; a pipeline task turns one tick into a Celery chain, so each step
runs on its own queue (collection on ``io``, indicators and scans on ``cpu``) and starts only
after the previous one succeeded. A failed step stops the chain; it is recorded (job history, dead
letters) like any task failure. The steps are defined once, in :mod:`quantbeat.services.pipeline`.
"""

from __future__ import annotations

from typing import Any

from quantbeat.services.args import parse_date, parse_krx_markets
from quantbeat.services.pipeline import launch_pipeline, launch_window
from workers.app import app


@app.task(name="quantbeat.pipeline.closing_window", idempotent=False)
def closing_window(trade_date: str | None = None) -> dict[str, Any]:
    """In the buy window (``QUANTBEAT_CLOSING_BET_AT``, 15:10 KST): take the snapshot, decide
    the closing bet from the day so far (``preliminary`` signals), analyse the news of all its
    candidates and decide again with their scores — all before the 15:20 closing auction.
    ``trade_date`` defaults to today (KST). Returns ``{"chain", "steps"}``. Not idempotent
    (a second execution starts a second chain)."""
    return launch_window(trade_date)


def _checked(trade_date: str | None, market: str | None) -> str | None:
    if trade_date is not None:
        parse_date(trade_date, field="trade_date")
    return parse_krx_markets(market)[0].value if market is not None else None


@app.task(name="quantbeat.pipeline.krx_close", idempotent=False)
def krx_close(trade_date: str | None = None, market: str | None = None) -> dict[str, Any]:
    """After the KRX close (15:40): collect the day's candles, precompute the scan
    indicators for the whole universe (``quantbeat.indicators.precompute``), collect news,
    then start the VCP scan, which reads the indicators from the cache and, when it finishes,
    starts the AI analysis of its top candidates. ``trade_date`` defaults to the latest closed
    session (incremental collection), ``market`` to both KRX markets. Returns ``{"chain":
    <last task id>, "steps": [...]}``. Not idempotent (a second execution starts a second
    chain): a run whose worker died is marked lost by the reaper, not requeued.
    """
    return launch_pipeline("krx_close", trade_date, _checked(trade_date, market))


@app.task(name="quantbeat.pipeline.krx_flows", idempotent=False)
def krx_flows(trade_date: str | None = None, market: str | None = None) -> dict[str, Any]:
    """After KRX publishes investor flows (18:10): collect them and the news, then start the
    closing-bet scan (its supply component needs the day's foreign and institution figures);
    its top candidates are analysed, and the scan re-run with their news scores. Returns
    ``{"chain", "steps"}`` like :func:`krx_close`; not idempotent either."""
    return launch_pipeline("krx_flows", trade_date, _checked(trade_date, market))
