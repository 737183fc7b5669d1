"""A SIMULATED market the dashboard tests render: everything emptied, then

* the paper-portfolio test's seed (tests/integration/test_portfolio.py ``_seed``): 25
  simulated instruments, their bars from 2026-01-02 to 2026-06-30, about four signals a
  session (VCP final, closing bet preliminary) — followed by the real track record update;
* on the last session: closing-bet ``final`` signals with their exit plan, one with an AI
  analysis and a news item, and the completed closing-bet scan runs of both phases (the
  preliminary one decided at 15:10 KST); a completed VCP scan run;
* the reference series collected from the simulated source and the Market Gate computed
  (tests/integration/test_market_gate.py does it with a fake source; the simulated one needs
  no network);
* a paper portfolio stepped through the span; a failed and a succeeded job today and a dead
  letter; a completed backtest run with its equity curve.

Returns the facts the tests look for on the pages.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text

from db.backtests import claim, create_run, store_result
from db.engine import get_engine, session_scope
from db.models import (
    AiAnalysis,
    Base,
    DeadLetter,
    Instrument,
    JobRun,
    NewsItem,
    NewsMention,
    Signal,
)
from db.scans import finish_run, replace_signals, start_run
from quantbeat.services import market, portfolio, track_record
from tests.integration.test_portfolio import START, _seed

END = dt.date(2026, 6, 30)
#: The reference series are collected from here (the gate needs a year of history).
REFERENCE_FROM = dt.date(2025, 6, 2)
PORTFOLIO = "dash-paper"
BACKTEST_ID = "d" * 32
NEWS_TITLE = "SIMULATED 뉴스: 대규모 수주 공시"
CATALYST = "SIMULATED catalyst: record order backlog"


def empty(database: str) -> None:
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with get_engine(database).begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def _closing_final(day: dt.date) -> list[dict[str, Any]]:
    """Three graded closing-bet candidates of ``day`` at their close, with exit plans."""
    with session_scope() as session:
        rows = session.execute(
            text(
                "SELECT i.id, i.ticker, c.close FROM instruments i JOIN daily_candles c "
                "ON c.instrument_id = i.id WHERE c.trade_date = :d ORDER BY i.id LIMIT 3"
            ),
            {"d": day},
        ).all()
        chosen = []
        for (ident, ticker, close), grade, score in zip(
            rows, ("S", "A", "B"), (19, 15, 12), strict=True
        ):
            chosen.append(
                {
                    "instrument_id": int(ident),
                    "ticker": ticker,
                    "score": float(score),
                    "grade": grade,
                    "entry_price": float(close),
                    "status": "positive",
                    "reasons": [f"SIMULATED reason {grade}: +8.1% on 3.2x volume"],
                    "inputs": {
                        "exit_plan": {
                            "take_profit": round(close * 1.05, 1),
                            "stop_loss": round(close * 0.97, 1),
                        }
                    },
                    "gate": "GREEN",
                }
            )
        replace_signals(session, trade_date=day, strategy="closing_bet", covered=[],
                        rows=chosen, source="test", phase="final")  # fmt: skip
        first = chosen[0]["instrument_id"]
        news = NewsItem(
            key="f" * 64,
            source="simulated-news",
            url="https://example.invalid/news/1",
            title=NEWS_TITLE,
            summary="",
            published_at=dt.datetime.combine(day, dt.time(1, 0), tzinfo=dt.UTC),
            simulated=True,
        )
        session.add(news)
        session.flush()
        session.add(NewsMention(news_id=news.id, instrument_id=first))
        session.add(
            AiAnalysis(
                instrument_id=first,
                trade_date=day,
                strategy="closing_bet",
                model="offline",
                prompt_version="test",
                analyzer="offline",
                status="succeeded",
                sentiment=0.6,
                confidence=0.8,
                news_score=2,
                catalyst=CATALYST,
                news_count=1,
            )
        )
    return chosen


def _closing_runs(day: dt.date) -> dict[str, int]:
    """The completed closing-bet runs of ``day``: the buy-window (preliminary) decision at
    15:10 KST and the evening (final) one — what the API's and the page's decisions read."""
    runs = {}
    as_of = dt.datetime.combine(day, dt.time(15, 10), tzinfo=ZoneInfo("Asia/Seoul"))
    with session_scope() as session:
        for phase, params in (
            ("preliminary", {"phase": "preliminary", "as_of": as_of.isoformat()}),
            ("final", {"markets": ["KOSPI", "KOSDAQ"]}),
        ):
            count = session.execute(
                select(func.count()).where(
                    Signal.strategy == "closing_bet",
                    Signal.trade_date == day,
                    Signal.phase == phase,
                )
            ).scalar_one()
            run_id = start_run(session, strategy="closing_bet", trade_date=day, params=params,
                               total=25, chunks=1, data_version=None)  # fmt: skip
            session.execute(
                text("UPDATE scan_runs SET scanned = 25, candidates = :n WHERE id = :i"),
                {"n": count, "i": run_id},
            )
            finish_run(session, run_id, state="completed")
            runs[phase] = run_id
    return runs


def _vcp_run() -> dict[str, Any]:
    """A completed scan run of VCP on its latest signal day."""
    with session_scope() as session:
        day = session.execute(
            select(Signal.trade_date)
            .where(Signal.strategy == "vcp")
            .order_by(Signal.trade_date.desc())
            .limit(1)
        ).scalar_one()
        count = len(
            session.execute(
                select(Signal.id).where(Signal.strategy == "vcp", Signal.trade_date == day)
            ).all()
        )
        run_id = start_run(session, strategy="vcp", trade_date=day, params={"markets": ["KOSPI"]},
                           total=25, chunks=1, data_version=None)  # fmt: skip
        session.execute(
            text("UPDATE scan_runs SET scanned = 25, candidates = :n WHERE id = :i"),
            {"n": count, "i": run_id},
        )
        finish_run(session, run_id, state="completed")
        tickers = [
            t
            for (t,) in session.execute(
                select(Instrument.ticker)
                .join(Signal, Signal.instrument_id == Instrument.id)
                .where(Signal.strategy == "vcp", Signal.trade_date == day)
            ).all()
        ]
    return {"day": day, "run_id": run_id, "count": count, "tickers": tickers}


def _jobs() -> None:
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        session.add_all(
            [
                JobRun(task_id="dash-failed-1", task_name="quantbeat.collect.daily_candles",
                       queue="io", args=[], kwargs={}, state="failed", attempts=4, retries=3,
                       worker="w1@test", started_at=now, finished_at=now, duration_ms=12.0,
                       error="TransientError: SIMULATED provider timeout"),
                JobRun(task_id="dash-ok-1", task_name="quantbeat.market.gate", queue="io",
                       args=[], kwargs={}, state="succeeded", attempts=1, retries=0,
                       worker="w1@test", started_at=now, finished_at=now, duration_ms=40.0),
                DeadLetter(fingerprint="dash-dl-1", task_id="dash-failed-1",
                           task_name="quantbeat.collect.daily_candles", payload={"args": []},
                           reason="retries_exhausted",
                           error="TransientError: SIMULATED provider timeout", occurrences=1,
                           first_seen=now, last_seen=now),
            ]
        )  # fmt: skip


def _backtest() -> None:
    """A completed run (its result stored as a worker stores it) with a rising curve."""
    days = [dt.date(2026, 3, 2) + dt.timedelta(days=i) for i in range(40)]
    with session_scope() as session:
        create_run(session, BACKTEST_ID, strategy="sma_crossover",
                   spec={"strategy": "sma_crossover", "instruments": ["KOSPI:900000"],
                         "start": "2026-03-02", "end": "2026-04-10", "label": "dash test"},
                   total=1)  # fmt: skip
        attempt, _ = claim(session, BACKTEST_ID) or (0, False)
        store_result(
            session,
            BACKTEST_ID,
            attempt=attempt,
            metrics={"total_return": 0.0425, "cagr": 0.31, "sharpe": 1.87,
                     "max_drawdown": -0.021, "win_rate": 0.6, "trades": 5},
            summary={"initial_cash": 100_000_000.0, "final_equity": 104_250_000.0},
            trades=[],
            equity=[(d, 100_000_000.0 + i * 109_000.0, 1) for i, d in enumerate(days)],
            data_version="test",
            total=1,
        )  # fmt: skip


def seed(database: str) -> dict[str, Any]:
    """Empty the database and store the market described in the module; returns
    ``{"end", "closing": [candidates], "closing_runs": {phase: run id}, "vcp": {...},
    "gate": {...}, "portfolio": {...}, "track": report}``."""
    empty(database)
    sessions = _seed(end=END)
    last = sessions[-1]
    track_record.update(last)
    closing = _closing_final(last)
    closing_runs = _closing_runs(last)
    vcp = _vcp_run()
    market.collect_reference(REFERENCE_FROM, last)
    gate = market.compute_gate(last)
    portfolio.create(PORTFOLIO, capital=100_000_000, start_date=START)
    portfolio.update(last)
    _jobs()
    _backtest()
    return {
        "end": last,
        "closing": closing,
        "closing_runs": closing_runs,
        "vcp": vcp,
        "gate": gate,
        "portfolio": portfolio.describe(PORTFOLIO),
        "track": track_record.report(by="strategy"),
    }
