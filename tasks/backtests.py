"""Backtest tasks (``cpu`` queue): one run per task, and the nightly walk-forward backtest
of each strategy's own signals. See :mod:`quantbeat.services.backtests` for the run's life cycle."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from quant.errors import ValidationError
from quantbeat.services import backtests
from quantbeat.services.args import parse_date
from workers.app import app
from workers.base import on_child_killed, on_hard_time_limit, on_worker_lost

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@app.task(name="quantbeat.backtest.run")
def run(run_id: str) -> dict[str, Any]:
    """Execute the queued backtest ``run_id``
    (see :func:`quantbeat.services.backtests.execute_run`):
    progress and the cancel flag in Redis, the result in PostgreSQL. Idempotent: a finished
    run is skipped, a redelivered one is taken over and stores one result. The soft and hard
    time limits come from the run's spec (sent with the message)."""
    if not isinstance(run_id, str) or not run_id:
        raise ValidationError(f"run_id must be a run id string, got {run_id!r}", field="run_id")
    return backtests.execute_run(run_id)


@on_hard_time_limit("quantbeat.backtest.run")
def run_killed(args: Any, kwargs: Any) -> None:
    """The hard time limit killed the child running ``run`` (called in the worker's main
    process with the task's arguments): the run is recorded ``timed_out``."""
    backtests.on_hard_time_limit(args, kwargs)


@on_worker_lost("quantbeat.backtest.run")
def run_lost(
    session: Session, args: Any, kwargs: Any, outcome: str, reason: str
) -> Callable[[], None] | None:
    """The reaper gives up a run whose worker died (``outcome``: requeued or lost): the run's
    row follows in the reaper's transaction, its live state after the commit
    (:func:`quantbeat.services.backtests.on_worker_lost`)."""
    return backtests.on_worker_lost(session, args, kwargs, outcome, reason)


@on_child_killed("quantbeat.backtest.run")
def run_out_of_memory(args: Any, kwargs: Any) -> None:
    """The children running ``run`` kept being SIGKILLed (the OOM killer): the run is
    recorded ``failed`` when its message is dead-lettered."""
    backtests.on_child_killed(args, kwargs)


@app.task(name="quantbeat.backtest.nightly")
def nightly(trade_date: str | None = None, days: int | None = None) -> dict[str, Any]:
    """The nightly walk-forward backtest: one run per scheduled scan strategy, trading its
    own daily signals over the listed KRX universe for the ``days`` calendar days (default
    ``QUANTBEAT_BACKTEST_NIGHTLY_DAYS``) up to ``trade_date`` (default: the latest KRX
    session) — no instrument is chosen by that day's candidates
    (:func:`quantbeat.services.backtests.nightly_backtests`). Returns ``{"trade_date",
    "runs": {strategy: run_id | None}, "errors": {strategy: message}}``."""
    day = None if trade_date is None else parse_date(trade_date, field="trade_date")
    return backtests.nightly_backtests(day, days)
