"""The track record through a real worker on PostgreSQL: signals on a simulated market are
followed by ``quantbeat.track.update``; outcomes carry costs and the dated tax; a re-run and
a recompute change no row."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select, text

from db.engine import session_scope
from db.models import UNFOLLOWED_RULES, SignalOutcome
from db.scans import replace_signals
from quant.costs import Costs
from quantbeat.services import track_record
from tests.integration.helpers import small_kospi_history

pytestmark = pytest.mark.integration

FIRST, MIDDLE, LAST = dt.date(2025, 9, 1), dt.date(2025, 12, 10), dt.date(2026, 1, 30)


def _bars(ident: int) -> list[tuple[Any, ...]]:
    with session_scope() as session:
        return [
            tuple(r)
            for r in session.execute(
                text(
                    "SELECT trade_date, open, high, low, close, volume FROM daily_candles "
                    "WHERE instrument_id = :i ORDER BY trade_date"
                ),
                {"i": ident},
            )
        ]


@pytest.fixture(scope="module")
def market(database: str) -> dict[str, Any]:
    """Five months of simulated KOSPI bars (over the 2026-01-01 tax change) and signals on
    them: a closing bet every 5 sessions per instrument, a VCP breakout and a generic
    (legacy) signal per instrument."""
    names = small_kospi_history(database, FIRST.isoformat(), LAST.isoformat())
    with session_scope() as session:
        ids = [
            int(i)
            for i in session.execute(
                text("SELECT id FROM instruments WHERE market = 'KOSPI' ORDER BY id")
            ).scalars()
        ]
    bars = {i: _bars(i) for i in ids}
    per_day: dict[tuple[dt.date, str], list[dict[str, Any]]] = {}
    for ident, rows in bars.items():
        for n, (day, _o, _h, _l, close, volume) in enumerate(rows[60:], start=60):
            if not volume:
                continue
            if n % 5 == ident % 5:
                per_day.setdefault((day, "closing_bet"), []).append(
                    {"instrument_id": ident, "score": 10, "grade": "A", "entry_price": close,
                     "status": None, "reasons": ["test"], "inputs": {}, "gate": "GREEN"}
                )  # fmt: skip
            if n == 70 + ident % 7:
                per_day.setdefault((day, "vcp"), []).append(
                    {"instrument_id": ident, "score": 80, "grade": "Strong",
                     "entry_price": close * 0.98, "status": "breakout", "reasons": ["test"],
                     "inputs": {"pivot": close * 0.98, "stop": close * 0.93, "breakout": True}}
                )  # fmt: skip
            if n == 80 + ident % 3:
                per_day.setdefault((day, "legacy"), []).append(
                    {"instrument_id": ident, "score": None, "grade": None, "entry_price": close,
                     "status": "OPEN", "reasons": None, "inputs": None}
                )  # fmt: skip
    with session_scope() as session:
        for (day, strategy), chosen in per_day.items():
            replace_signals(session, trade_date=day, strategy=strategy, covered=[], rows=chosen,
                            source="test")  # fmt: skip
        count = session.execute(text("SELECT count(*) FROM signals")).scalar_one()
    assert count > 100
    return {"names": names, "bars": bars, "signals": int(count)}


def _outcomes(unfollowed: bool = False) -> list[SignalOutcome]:
    """The outcomes the track record computed (``unfollowed``: the rows signals were born
    with instead, not followed yet)."""
    followed = SignalOutcome.rules != UNFOLLOWED_RULES
    with session_scope() as session:
        query = select(SignalOutcome).where(~followed if unfollowed else followed)
        rows = list(session.execute(query).scalars())
        session.expunge_all()
        return rows


def _stamps() -> tuple[Any, ...]:
    with session_scope() as session:
        return tuple(
            session.execute(select(func.count(), func.max(SignalOutcome.updated_at))).one()
        )


def test_signals_are_followed_through_the_task_and_a_rerun_changes_nothing(
    celery_app: Any, market: dict[str, Any]
) -> None:
    first = celery_app.send_task(
        "quantbeat.track.update", kwargs={"as_of": MIDDLE.isoformat()}
    ).get(timeout=120)
    assert first["inserted"] > 0
    middle = {o.signal_id: o for o in _outcomes()}
    assert len(middle) == first["followed"]
    # every later signal has the row it was born with, not followed yet
    born = _outcomes(unfollowed=True)
    assert len(born) == market["signals"] - len(middle)
    assert {(o.state, o.evaluated_through) for o in born} == {("pending", None)}

    done = celery_app.send_task("quantbeat.track.update", kwargs={"as_of": LAST.isoformat()}).get(
        timeout=120
    )
    # every signal has an outcome; the unfinished ones of MIDDLE were followed further
    outcomes = _outcomes()
    assert len(outcomes) == market["signals"]
    assert _outcomes(unfollowed=True) == []
    assert done["updated"] > 0
    assert {o.state for o in outcomes} <= {"open", "pending", "closed", "expired", "void"}

    costs = Costs()
    with session_scope() as session:
        signal_of = {
            int(i): (s, d, m)
            for i, s, d, m in session.execute(
                text(
                    "SELECT s.id, s.strategy, s.trade_date, i.market FROM signals s "
                    "JOIN instruments i ON i.id = s.instrument_id"
                )
            )
        }
    closed = [o for o in outcomes if o.state == "closed"]
    assert len(closed) > 50
    years = set()
    for o in closed:
        strategy, day, mkt = signal_of[o.signal_id]
        assert o.entry_price
        assert o.exit_price
        assert o.exit_date
        assert o.gross_return is not None
        net, cost = costs.net_return(o.entry_price, o.exit_price, mkt, o.exit_date)
        assert o.net_return == pytest.approx(net)
        assert o.costs == pytest.approx(cost)
        # the tax of the exit date is in the cost: more than both sides' commission+slippage
        assert o.costs is not None
        assert o.costs > 2 * (costs.commission + costs.slippage)
        assert o.mfe is not None
        assert o.mfe >= 0
        assert o.mae is not None
        assert o.mae <= 0
        years.add(o.exit_date.year)
        if strategy == "closing_bet":
            # out on the next session with a bar of the instrument, held 2 sessions
            assert o.sessions_held == 2
            assert o.exit_date > day
            assert o.reason in {"gap_up", "gap_down", "stop_loss", "take_profit", "session_close"}
        if strategy == "legacy":
            assert o.reason in {"stop_loss", "max_hold"}
    assert years == {2025, 2026}  # exits on both sides of the tax change
    # the signals of the last session are open (their next session is not read yet)
    last_day = max(d for _, d, _ in signal_of.values())
    assert any(o.state == "open" for o in outcomes if signal_of[o.signal_id][1] == last_day)

    before = _stamps()
    again = celery_app.send_task("quantbeat.track.update", kwargs={"as_of": LAST.isoformat()}).get(
        timeout=120
    )
    assert (again["inserted"], again["updated"]) == (0, 0)
    redo = celery_app.send_task(
        "quantbeat.track.recompute", kwargs={"as_of": LAST.isoformat()}
    ).get(timeout=120)
    assert redo["followed"] == market["signals"]
    assert (redo["inserted"], redo["updated"], redo["unchanged"]) == (0, 0, market["signals"])
    assert _stamps() == before

    # the KPIs read the stored rows; the data is labelled simulated
    report = track_record.report(by="strategy")
    assert report["simulated"] is True
    assert set(report["groups"]) == {"closing_bet", "legacy", "vcp"}
    assert report["total"]["count"] == len(closed)


def test_older_rules_are_recomputed_by_the_update(celery_app: Any, market: dict[str, Any]) -> None:
    with session_scope() as session:
        session.execute(text("UPDATE signal_outcomes SET rules = 'closing_bet-v0.old' "
                             "WHERE state = 'closed' AND rules LIKE 'closing_bet-%'"))  # fmt: skip
        stale = session.execute(
            text("SELECT count(*) FROM signal_outcomes WHERE rules = 'closing_bet-v0.old'")
        ).scalar_one()
    assert stale > 0
    done = celery_app.send_task("quantbeat.track.update", kwargs={"as_of": LAST.isoformat()}).get(
        timeout=120
    )
    assert done["updated"] == stale
    with session_scope() as session:
        left = session.execute(
            text("SELECT count(*) FROM signal_outcomes WHERE rules = 'closing_bet-v0.old'")
        ).scalar_one()
    assert left == 0


def test_the_nightly_walk_forward_is_shown_as_expected_beside_the_realized(
    celery_app: Any, market: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from db.models import BacktestRun
    from quantbeat.cli import main as cli

    track_record.update(LAST)
    assert track_record.report()["expected"]["closing_bet"] is None  # no nightly run yet
    kpis = {"count": 40, "win_rate": 0.45, "mean_net_return": 0.004, "median_net_return": 0.001,
            "profit_factor": 1.3, "expectancy": 0.004, "max_consecutive_losses": 4}  # fmt: skip
    with session_scope() as session:
        for n, origin in enumerate(("beat", "api")):  # only beat's nightly runs count
            session.add(
                BacktestRun(
                    id=f"nightly-test-{n}", strategy="closing_bet", origin=origin,
                    state="completed", spec={"start": "2024-01-02", "end": "2025-12-30"},
                    summary={"trade_kpis": {**kpis, "count": 40 + n}},
                    submitted_at=dt.datetime(2026, 1, 5, 12, n, tzinfo=dt.UTC),
                )
            )  # fmt: skip
    try:
        found = track_record.report()["expected"]["closing_bet"]
        assert found["run_id"] == "nightly-test-0"
        assert found["kpis"]["count"] == 40
        assert cli.main(["track-record"]) == 0
        out = capsys.readouterr().out
        assert "expected for closing_bet (nightly walk-forward closing_bet 2024-01-02" in out
        assert "40 trades, win rate 45.0 %" in out
    finally:
        with session_scope() as session:
            session.execute(text("DELETE FROM backtest_runs WHERE id LIKE 'nightly-test-%'"))
