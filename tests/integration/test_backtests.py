"""Backtest runs through a real prefork cpu worker, PostgreSQL and Redis: validation before
enqueue, results stored once, a cancel recorded only in PostgreSQL, concurrent runs, a run
cancelled while queued, reports and the nightly task. Progress with ETA and a cancel while
running, time limits, and runs whose worker or pool child was killed are fault scenarios:
tests/faults/test_worker_faults.py."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import func, select

from db.backtests import create_run
from db.engine import session_scope
from db.models import BacktestEquity, BacktestRun, BacktestTrade
from quant.backtest.strategies import get as get_strategy
from quant.errors import ValidationError
from quantbeat.cli import main as cli
from quantbeat.infra.settings import reset_settings
from quantbeat.services import backtests
from tests.conftest import TEST_REDIS_URL
from tests.integration.conftest import WorkerProcess, start_worker
from tests.integration.helpers import (
    backtest_row,
    backtest_rows_stored,
    eventually,
    sessions_since,
    small_kospi_history,
)
from workers.app import QuantbeatCelery as Celery  # result waits that re-read the store

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 20)
FIRST = dt.date(2026, 5, 4)
BROKER, BACKEND = f"{TEST_REDIS_URL}/11", f"{TEST_REDIS_URL}/12"
FINAL = ("completed", "failed", "cancelled", "timed_out")


@pytest.fixture(scope="module")
def names(database: str) -> list[str]:
    """About 140 sessions of simulated KOSPI candles for a 40-instrument universe (its
    KOSPI part: a dozen or more instruments)."""
    found = small_kospi_history(database, FIRST.isoformat(), DAY.isoformat())
    assert len(found) >= 12
    return found


def _client() -> Celery:
    """A client of the test worker's broker; the production app (shared by the session's
    other workers) is left alone."""
    client = Celery("backtest-client")
    client.config_from_object("celeryconfig")
    client.conf.update(broker_url=BROKER, result_backend=BACKEND)
    return client


CLIENT = _client()


@pytest.fixture(scope="module")
def cpu_worker(
    names: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A prefork worker (4 children) on the cpu queue, with the test strategies."""
    import tests.support.backtest_app  # noqa: F401  (the test strategies, for validation)

    for url in (BROKER, BACKEND):
        redis.Redis.from_url(url).flushdb()
    proc = start_worker(
        "tests.support.backtest_app",
        queues="cpu",
        tmp_dir=tmp_path_factory.mktemp("backtest-worker"),
        env={"QUANTBEAT_BROKER_URL": BROKER, "QUANTBEAT_RESULT_BACKEND": BACKEND},
        pool="prefork",
    )
    try:
        proc.wait_ready(CLIENT)
        yield proc
    finally:
        proc.stop()


def _submit(spec: dict[str, object]) -> str:
    return backtests.submit_backtest(spec, app=CLIENT)


def _spec(names: list[str], strategy: str = "sma_crossover", **extra: object) -> dict[str, object]:
    return {
        "strategy": strategy,
        "instruments": names,
        "start": "2026-07-01",
        "end": DAY.isoformat(),
        **extra,
    }


def test_a_run_completes_and_stores_metrics_trades_and_equity(cpu_worker, names):
    run_id = _submit(_spec(names[:5], initial_cash=50_000_000.0))
    final = backtests.wait(run_id, timeout=60)
    assert final["state"] == "completed", final
    assert final["progress"] == 1.0
    assert final["instruments"] == "5/5"
    trades, days = backtest_rows_stored(run_id)
    summary, metrics = final["summary"], final["metrics"]
    assert days == summary["sessions"] == sessions_since("2026-07-01")
    assert trades == summary["closed_trades"] + summary["open_trades"]
    assert metrics["trades"] == summary["closed_trades"]
    assert metrics["total_return"] == pytest.approx(summary["final_equity"] / 50_000_000.0 - 1)
    with session_scope() as session:
        last = session.execute(
            select(BacktestEquity.equity)
            .where(BacktestEquity.run_id == run_id)
            .order_by(BacktestEquity.day.desc())
            .limit(1)
        ).scalar_one()
        pnl = session.execute(
            select(func.sum(BacktestTrade.pnl)).where(BacktestTrade.run_id == run_id)
        ).scalar_one()
    assert last == pytest.approx(summary["final_equity"])
    # every trade's pnl (closed and open, marked at the last close) adds up to the change
    assert 50_000_000.0 + float(pnl or 0.0) == pytest.approx(last, rel=1e-9)
    run = backtest_row(run_id)
    assert run.attempts == 1
    assert run.data_version
    assert run.spec["instruments"] == names[:5]
    listed = backtests.list_backtests(limit=50)
    assert run_id in [r["run_id"] for r in listed]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strategy": "nope"}, "unknown strategy 'nope'"),
        ({"start": "2026-11-20", "end": "2026-11-01"}, "must be before end"),
        ({"end": "2099-01-01"}, "in the future"),
        ({"instruments": ["KOSPI:999999", "NOPE"]}, "unknown instrument(s)"),
        ({"params": {"fast": 50, "slow": 20}}, "fast < slow"),
        ({"params": {"speed": 1}}, "no parameter 'speed'"),
        ({"execution": {"fees": 0.5}}, "fees must be in"),
        ({"initial_cash": -1}, "initial_cash"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_an_invalid_spec_is_rejected_before_anything_is_enqueued(
    cpu_worker, names, change, message
):
    with session_scope() as session:
        before = session.execute(select(func.count()).select_from(BacktestRun)).scalar_one()
    with pytest.raises(ValidationError) as info:
        _submit({**_spec(names[:2]), **change})
    assert message in str(info.value)
    with session_scope() as session:
        after = session.execute(select(func.count()).select_from(BacktestRun)).scalar_one()
    assert after == before


@pytest.fixture
def small_memory_limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """QUANTBEAT_BACKTEST_MAX_BYTES at its floor (1 MiB) in this process."""
    monkeypatch.setenv("QUANTBEAT_BACKTEST_MAX_BYTES", str(2**20))
    reset_settings()
    yield 2**20
    monkeypatch.undo()
    reset_settings()


def _run_count() -> int:
    with session_scope() as session:
        return int(session.execute(select(func.count()).select_from(BacktestRun)).scalar_one())


def test_a_spec_above_the_memory_limit_is_refused_at_submit_naming_estimate_limit_and_span(
    cpu_worker, names, small_memory_limit, capsys
):
    spec = _spec(names[:12], start="2016-01-04")
    estimate = backtests.memory_estimate(
        get_strategy("sma_crossover"), names[:12], dt.date(2016, 1, 4), DAY
    )
    assert estimate.peak > small_memory_limit
    before = _run_count()
    with pytest.raises(ValidationError) as info:
        _submit(spec)
    message = str(info.value)
    assert f"{estimate.peak:,} B" in message
    assert "QUANTBEAT_BACKTEST_MAX_BYTES=1,048,576" in message
    assert "12 instruments" in message
    assert f"2016-01-04 … {DAY}" in message
    assert _run_count() == before  # nothing recorded, nothing enqueued

    # the CLI says the same and exits 2, like every invalid spec
    code = cli.main(
        ["backtest", "submit", "sma_crossover", *names[:12], "--start", "2016-01-04",
         "--end", DAY.isoformat()]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE, err
    assert "QUANTBEAT_BACKTEST_MAX_BYTES" in err
    assert _run_count() == before

    # a short span of the same instruments fits
    small = backtests.memory_estimate(
        get_strategy("sma_crossover"), names[:2], dt.date(2026, 11, 2), DAY
    )
    assert small.peak < small_memory_limit


def test_the_worker_checks_the_memory_limit_again_before_loading(names, small_memory_limit):
    """A run submitted under a larger limit fails (before loading anything) once the limit
    is lowered: the check in the worker's code path, called as the task body calls it."""
    run_id = f"memtest{time.time_ns()}"
    spec = {**_spec(names[:12], start="2016-01-04"), "soft_time_limit": 60, "time_limit": 70}
    with session_scope() as session:
        create_run(session, run_id, strategy="sma_crossover", spec=spec, total=12)
    result = backtests.execute_run(run_id)
    assert result["state"] == "failed"
    assert "QUANTBEAT_BACKTEST_MAX_BYTES" in result["error"]
    run = backtest_row(run_id)
    assert run.state == "failed"
    assert "estimated" in (run.error or "")
    assert "12 instruments" in (run.error or "")


def test_a_cancel_recorded_only_in_postgresql_still_ends_the_run_cancelled(cpu_worker, names):
    """If Redis lost the cancel flag, the run finishes its work but stores nothing and ends
    cancelled: the flag in PostgreSQL is checked before the result is stored."""
    from db.backtests import request_cancel

    run_id = _submit(_spec(names[:4], "test_slow", params={"sleep": 0.3}))
    eventually(lambda: backtest_row(run_id).state, lambda s: s == "running", timeout=30)
    with session_scope() as session:
        assert request_cancel(session, run_id) == "running"  # no Redis flag set
    final = backtests.wait(run_id, timeout=60)
    assert final["state"] == "cancelled", final
    assert backtest_rows_stored(run_id) == (0, 0)


def test_many_runs_at_once_and_a_queued_run_cancelled_before_it_starts(cpu_worker, names):
    ids = [_submit(_spec(names[i : i + 4], "test_slow", params={"sleep": 0.5})) for i in range(6)]
    # four children: two runs wait in the queue; cancel the last one while it is queued
    queued = eventually(
        lambda: [i for i in ids if backtest_row(i).state == "queued"],
        lambda q: bool(q) and sum(backtest_row(i).state == "running" for i in ids) == 4,
        timeout=20,
    )
    victim = queued[-1]
    assert backtests.cancel(victim, wait=0, app=CLIENT) == "cancelled"
    finals = {i: backtests.wait(i, timeout=60)["state"] for i in ids if i != victim}
    assert set(finals.values()) == {"completed"}, finals
    time.sleep(1.0)
    run = backtest_row(victim)
    assert run.state == "cancelled"
    assert run.attempts == 0  # never started
    assert backtest_rows_stored(victim) == (0, 0)


def test_the_report_is_written_from_the_stored_result(cpu_worker, names, tmp_path):
    run_id = _submit(_spec(names[:3]))
    assert backtests.wait(run_id, timeout=60)["state"] == "completed"
    files = backtests.write_report(run_id, directory=tmp_path)
    html = files.html.read_text(encoding="utf-8")
    assert run_id in html
    assert "data:image/png;base64," in html
    assert names[0] in html or "3 instruments" in html
    assert files.png is not None
    assert files.png.read_bytes().startswith(b"\x89PNG")


def _previous_session(day: dt.date) -> dt.date:
    from db.models import DailyCandle

    with session_scope() as session:
        found = session.execute(
            select(func.max(DailyCandle.trade_date)).where(DailyCandle.trade_date < day)
        ).scalar_one()
    assert found is not None
    return found


def _add_candidate(name: str, day: dt.date) -> None:
    from db.candles import resolve_instrument
    from db.models import Signal

    with session_scope() as session:
        ident, _ = resolve_instrument(session, name)
        session.add(Signal(trade_date=day, strategy="closing_bet", instrument_id=ident,
                           score=9.0, grade="A", source="scan"))  # fmt: skip


def _result(run_id: str) -> tuple[list[dict[str, object]], list[tuple[dt.date, float, int]]]:
    from db.backtests import load_equity, load_trades

    with session_scope() as session:
        return load_trades(session, run_id), load_equity(session, run_id)


def test_a_candidate_chosen_on_the_last_day_changes_no_earlier_day_s_backtest_result(
    cpu_worker, names, monkeypatch
):
    """Issue 18 item 3, done-when: the nightly backtest walks forward over the universe on
    each strategy's own daily signals. Run up to the session before ``DAY`` and again with
    ``DAY`` added (same start), where ``DAY``'s candidate differs from the day before's:
    every trade closed and every equity value up to the earlier day is identical, and the
    positions open then were entered identically. (The nightly this replaces backtested
    the day's candidates: a different last-day candidate changed the whole history.)"""
    import tasks.backtests

    before = _previous_session(DAY)
    _add_candidate(names[0], before)
    _add_candidate(names[5], DAY)  # the last day chooses another candidate
    monkeypatch.setattr(backtests, "worker_app", CLIENT)
    span = 120
    short = tasks.backtests.nightly(before.isoformat(), days=span)
    long = tasks.backtests.nightly(DAY.isoformat(), days=span + (DAY - before).days)
    assert short["errors"] == long["errors"] == {}
    assert (
        set(short["runs"]) == set(long["runs"]) == {"vcp_breakout", "closing_bet", "crypto_trend"}
    )
    _assert_crypto_leg(short["runs"]["crypto_trend"], before, span)
    closed_before = 0
    for strategy, run_id in short["runs"].items():
        if strategy == "crypto_trend":
            continue
        other = long["runs"][strategy]
        assert run_id is not None
        assert other is not None
        assert backtests.wait(run_id, timeout=120)["state"] == "completed"
        assert backtests.wait(other, timeout=120)["state"] == "completed"
        a, b = backtest_row(run_id), backtest_row(other)
        # the universe, not the day's candidates; the same start
        assert sorted(a.spec["instruments"]) == sorted(b.spec["instruments"]) == sorted(names)
        assert a.spec["start"] == b.spec["start"] == (before - dt.timedelta(days=span)).isoformat()
        assert a.origin == "beat"
        trades_a, equity_a = _result(run_id)
        trades_b, equity_b = _result(other)
        assert equity_a[-1][0] == before
        assert equity_b[-1][0] == DAY
        assert equity_a == equity_b[: len(equity_a)]  # every earlier equity value identical
        closed_a = [t for t in trades_a if t["exit_time"] is not None]
        closed_b = [t for t in trades_b if t["exit_time"] is not None
                    and dt.date.fromisoformat(str(t["exit_time"])) <= before]  # fmt: skip
        assert closed_a == closed_b  # every trade closed by then identical, field by field
        entered = {(t["symbol"], t["entry_time"], t["entry_price"], t["quantity"])
                   for t in trades_b if t not in closed_b}  # fmt: skip
        for t in trades_a:
            if t["exit_time"] is None:
                assert (t["symbol"], t["entry_time"], t["entry_price"], t["quantity"]) in entered
        closed_before += len(closed_a)
        # the track record's KPI terms, for the side-by-side view
        expected = backtests.nightly_expectations(strategy, before, span)
        assert expected["state"] == "completed"
        assert expected["kpis"]["count"] == len(closed_a)
    assert closed_before > 0  # the comparison covered trades, not an empty history
    # Idempotent: the same day again names the same runs, neither recorded nor sent again.
    again = tasks.backtests.nightly(before.isoformat(), days=span)
    assert again["runs"] == short["runs"]
    assert all(backtest_row(r).attempts == 1 for r in short["runs"].values() if r)
    with session_scope() as session:
        nightly_rows = session.execute(
            select(func.count()).select_from(BacktestRun).where(BacktestRun.origin == "beat")
        ).scalar_one()
    assert nightly_rows == 6


def _assert_crypto_leg(run_id: str | None, day: dt.date, span: int) -> None:
    """The crypto signal's daily leg in the nightly run: UPBIT:KRW-BTC on every UTC day up to
    the day before the KRX session (its UTC day is still open at 20:30 KST), its daily bars
    collected by the nightly itself, annualized over 365 days."""
    import itertools
    import math

    import numpy as np

    assert run_id is not None
    assert backtests.wait(run_id, timeout=120)["state"] == "completed"
    row = backtest_row(run_id)
    assert row.spec is not None
    assert row.summary is not None
    assert row.metrics is not None
    assert row.spec["instruments"] == ["UPBIT:KRW-BTC"]
    end = day - dt.timedelta(days=1)
    assert row.spec["end"] == end.isoformat()
    assert row.summary["periods_per_year"] == 365
    _trades, equity = _result(run_id)
    days = [d for d, _, _ in equity]
    assert days[-1] == end
    assert all((b - a).days == 1 for a, b in itertools.pairwise(days))  # weekends too
    assert len(days) == span + 1
    values = np.array([e for _, e, _ in equity])
    returns = values / np.concatenate(([row.summary["initial_cash"]], values[:-1])) - 1.0
    if returns.std(ddof=1) > 0:
        expected = returns.mean() / returns.std(ddof=1) * math.sqrt(365)
        assert row.metrics["sharpe"] == pytest.approx(expected, rel=1e-6)


def _unreachable_client() -> Celery:
    """A client whose broker refuses connections (nothing listens on port 1)."""
    client = Celery("backtest-client-down")
    client.config_from_object("celeryconfig")
    client.conf.update(
        broker_url="redis://127.0.0.1:1/0",
        result_backend=BACKEND,
        broker_connection_timeout=1,
        broker_connection_retry=False,
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.1},
    )
    return client


def test_a_run_committed_while_the_broker_is_down_is_published_by_the_sweep(cpu_worker, names):
    """Transactional outbox: the run and its message commit together; the publication
    fails (broker unreachable), the run stays queued with its message waiting, health says
    so, and the reaper's sweep publishes it — the run then completes, once."""
    from db.models import OutboxMessage
    from quantbeat.services import health, outbox

    down = _unreachable_client()
    run_id = backtests.submit_backtest(_spec(names[:3]), app=down)
    task_id = f"backtest-{run_id}"
    assert backtest_row(run_id).state == "queued"
    with session_scope() as session:
        row = session.execute(
            select(OutboxMessage).where(OutboxMessage.task_id == task_id)
        ).scalar_one()
        assert row.published_at is None
        assert row.publish_attempts == 1
        assert row.last_error is not None
        assert "Error" in row.last_error, row.last_error
        assert row.args == [run_id]
        assert row.options["time_limit"] > row.options["soft_time_limit"] > 0
    # Nothing reached the real broker: the worker has not seen it.
    time.sleep(1.0)
    assert backtest_row(run_id).attempts == 0

    # Before the grace the sweep leaves it (its client may still be publishing) ...
    assert outbox.sweep(app=CLIENT, grace=3600) == {"published": [], "failed": {}}
    # ... and health warns about it once the grace is over.
    waiting, oldest = outbox.unpublished(older_than=0)
    assert waiting >= 1
    assert oldest is not None
    found = health.assess_outbox(waiting, oldest, dt.datetime.now(dt.UTC), 0)
    assert found.status == health.Status.WARNING
    assert f"{waiting} committed task message(s) not yet published" in found.message

    # A sweep through a broker that is still down keeps it waiting and counts the attempt.
    assert task_id in outbox.sweep(app=down, grace=0)["failed"]
    swept = outbox.sweep(app=CLIENT, grace=0)
    assert task_id in swept["published"]
    final = backtests.wait(run_id, timeout=90)
    assert final["state"] == "completed", final
    assert final["attempts"] == 1
    with session_scope() as session:
        row = session.execute(
            select(OutboxMessage).where(OutboxMessage.task_id == task_id)
        ).scalar_one()
        assert row.published_at is not None
        assert row.publish_attempts == 3
        assert row.last_error is None
    # Published: a later sweep sends nothing again.
    assert task_id not in outbox.sweep(app=CLIENT, grace=0)["published"]


def test_a_run_is_recorded_with_its_message_or_not_at_all(cpu_worker, names, monkeypatch):
    """The message is written in the run's transaction: when that transaction fails,
    neither the run nor its message exists, and nothing is sent."""
    from db import outbox as db_outbox
    from db.models import OutboxMessage

    def broken(session, **kwargs):
        raise RuntimeError("simulated failure writing the outbox row")

    monkeypatch.setattr(backtests, "add_message", broken)
    with session_scope() as session:
        before = session.execute(select(func.count()).select_from(BacktestRun)).scalar_one()
        messages = session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
    with pytest.raises(RuntimeError, match="simulated failure"):
        backtests.submit_backtest(_spec(names[:2]), app=CLIENT)
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(BacktestRun)).scalar_one() == before
        assert (
            session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
            == messages
        )
    assert db_outbox.add_message is not broken
