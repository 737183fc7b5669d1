"""Backtest tasks (``cpu`` queue): one run per task, and the nightly backtest of the day's
signals. See :mod:`quantbeat.services.backtests` for the run's life cycle."""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from quant.errors import ValidationError
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import latest_krx_session
from quantbeat.services.args import parse_date
from workers.app import app

log = structlog.get_logger(__name__)


@app.task(name="quantbeat.backtest.run")
def run(run_id: str) -> dict[str, Any]:
    """Execute the queued backtest ``run_id``
    (see :func:`quantbeat.services.backtests.execute_run`):
    progress and the cancel flag in Redis, the result in PostgreSQL. Idempotent: a finished
    run is skipped, a redelivered one is taken over and stores one result. The soft and hard
    time limits come from the run's spec (sent with the message)."""
    from quantbeat.services.backtests import execute_run

    if not isinstance(run_id, str) or not run_id:
        raise ValidationError(f"run_id must be a run id string, got {run_id!r}", field="run_id")
    return execute_run(run_id)


@app.task(name="quantbeat.backtest.nightly")
def nightly(trade_date: str | None = None, days: int | None = None) -> dict[str, Any]:
    """Backtest the day's signals per scan strategy: for ``vcp`` and ``closing_bet``, the
    instruments that were candidates on ``trade_date`` (default: the latest KRX session), over
    the last ``days`` calendar days (default ``QUANTBEAT_BACKTEST_NIGHTLY_DAYS``). Submits one
    run per strategy that has candidates; returns ``{strategy: run_id | None}``."""
    from quant.backtest.strategies import FOR_SCAN
    from quantbeat.services.backtests import submit_backtest
    from quantbeat.services.scans import candidates

    settings = get_settings()
    day = (
        parse_date(trade_date, field="trade_date")
        if trade_date is not None
        else latest_krx_session(settings)
    )
    span = days if days is not None else settings.backtest_nightly_days
    if not isinstance(span, int) or isinstance(span, bool) or not 30 <= span <= 7_300:
        raise ValidationError(f"days must be an integer in [30, 7300], got {days!r}", field="days")
    runs: dict[str, str | None] = {}
    for scan, strategy in FOR_SCAN.items():
        names = [c.instrument for c in candidates(scan, day)]
        if not names:
            runs[strategy] = None
            continue
        runs[strategy] = submit_backtest(
            {
                "strategy": strategy,
                "instruments": names,
                "start": (day - dt.timedelta(days=span)).isoformat(),
                "end": day.isoformat(),
                "label": f"nightly {scan} signals of {day.isoformat()}",
            },
            origin="beat",
            app=app,
        )
    log.info("backtest.nightly", trade_date=day.isoformat(), runs=runs)
    return {"trade_date": day.isoformat(), "runs": runs}
