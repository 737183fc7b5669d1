"""Reference series and the Market Gate against PostgreSQL (issue 17, item 1 and 3): bars
collected from a reference source are checked, stored once and re-runs change nothing; the
stored gate equals :func:`quant.gate.market_gate` on the same arrays; a missing input stores
an UNKNOWN gate with its reason; a colour change records one ``gate_changed`` event; the
``quantbeat.market.gate`` task runs on a real worker; and ``quantbeat gate`` / ``sectors``
print the stored gate, labelled simulated."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from db.engine import session_scope
from db.models import (
    DataRejection,
    Event,
    MarketGateRow,
    ReferenceBar,
    ReferenceSeriesRow,
)
from quant.gate import DEFAULT_SECTOR_ETFS, GateParams, Series, market_gate
from quant.market.types import REFERENCE_BAR_COLUMNS, USDKRW, ReferenceSeries
from quantbeat.cli import main as cli
from quantbeat.infra.sources import krx_calendar
from quantbeat.services import market

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 20)
FIRST = dt.date(2025, 9, 1)


class FakeReference:
    """A reference source of deterministic bars for every KRX session: each series a
    seeded random walk; ``fx`` sets the USD/KRW close of chosen days; ``without`` drops
    series; ``bad`` makes one bar's high fall below its low."""

    name = "simulated-reference-test"
    simulated = True

    def __init__(self) -> None:
        self.fx: dict[dt.date, float] = {}
        self.without: set[str] = set()
        self.bad: tuple[str, dt.date] | None = None
        self.calls = 0

    def walk(self, code: str, sessions: Sequence[dt.date]) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(abs(hash(code)) % (2**32) if code != USDKRW else 7)
        all_days = krx_calendar().sessions(FIRST, DAY)
        steps = rng.normal(0.0006, 0.01, len(all_days))
        level = 1_350.0 if code == USDKRW else 1_000.0
        close = level * np.exp(np.cumsum(steps * (0.3 if code == USDKRW else 1.0)))
        volume = rng.uniform(1e6, 3e6, len(all_days))
        at = {d: i for i, d in enumerate(all_days)}
        idx = [at[d] for d in sessions]
        return close[idx], volume[idx]

    def reference_bars(
        self, start: dt.date, end: dt.date, series: Sequence[ReferenceSeries]
    ) -> pd.DataFrame:
        self.calls += 1
        sessions = krx_calendar().sessions(start, end)
        rows: list[dict[str, Any]] = []
        for s in sorted(series, key=lambda s: s.code):
            if s.code in self.without or not sessions:
                continue
            close, volume = self.walk(s.code, sessions)
            for day, c, v in zip(sessions, close, volume, strict=True):
                c = self.fx.get(day, c) if s.code == USDKRW else c
                fx = s.code == USDKRW
                rows.append(
                    {
                        "code": s.code,
                        "trade_date": day,
                        "open": c * 0.999,
                        "high": c * 1.01,
                        "low": c * 0.99 if (s.code, day) != self.bad else c * 1.02,
                        "close": c,
                        "volume": np.nan if fx else v,
                        "value": np.nan if fx else v * c,
                    }
                )
        return pd.DataFrame(rows, columns=list(REFERENCE_BAR_COLUMNS))


@pytest.fixture
def source(clean_db: str, monkeypatch: pytest.MonkeyPatch) -> FakeReference:
    fake = FakeReference()
    monkeypatch.setattr(market, "reference_source", lambda settings: fake)
    return fake


def _count(model: Any) -> int:
    with session_scope() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_bars_are_checked_stored_once_and_rerun_changes_nothing(source: FakeReference):
    source.bad = ("091160", dt.date(2026, 11, 19))
    first = market.collect_reference(dt.date(2026, 10, 1), DAY)
    sessions = len(krx_calendar().sessions(dt.date(2026, 10, 1), DAY))
    series = len(market.configured_series())
    assert series == 3 + len(DEFAULT_SECTOR_ETFS) + 1
    assert first["bars"]["inserted"] == series * sessions - 1
    assert first["rejected"] == 1
    assert first["simulated"] is True
    with session_scope() as session:
        rejection = session.execute(select(DataRejection)).scalar_one()
        assert rejection.dataset == "reference_bars"
        assert rejection.ticker == "091160"
        assert rejection.reason == "high_below_low"
        assert "091160 at 2026-11-19: high" in rejection.detail
    again = market.collect_reference(dt.date(2026, 10, 1), DAY)
    assert again["bars"] == {"inserted": 0, "updated": 0, "unchanged": series * sessions - 1}
    # Incremental: after the latest stored session nothing is asked for.
    calls = source.calls
    assert market.collect_reference(end=DAY)["bars"]["inserted"] == 0
    assert source.calls == calls
    with session_scope() as session:
        fx = session.execute(
            select(ReferenceBar.volume, ReferenceBar.value, ReferenceSeriesRow.simulated)
            .join(ReferenceSeriesRow, ReferenceSeriesRow.id == ReferenceBar.series_id)
            .where(ReferenceSeriesRow.code == USDKRW)
        ).all()
    assert len(fx) == sessions
    assert set(fx) == {(None, None, True)}  # an exchange rate has no volume


def _arrays(source: FakeReference, code: str, sessions: list[dt.date]) -> Series:
    close, volume = source.walk(code, sessions)
    return Series(close, volume)


def test_the_stored_gate_equals_the_pure_gate_and_sectors_are_ranked(source: FakeReference):
    market.collect_reference(FIRST, DAY)
    stored = market.compute_gate(DAY)
    sessions = krx_calendar().sessions(DAY - dt.timedelta(days=520), DAY)[-market.GATE_SESSIONS :]
    fx = source.walk(USDKRW, sessions)[0]
    expected = market_gate(
        kospi=_arrays(source, "1001", sessions),
        kosdaq=_arrays(source, "2001", sessions),
        usdkrw=fx,
    )
    assert stored["color"] == expected.color
    assert stored["score"] == pytest.approx(expected.score, abs=0.01)
    assert stored["usdkrw"] == pytest.approx(fx[-1])
    assert stored["simulated"] is True
    assert stored["kodex_status"] in ("RISK_ON", "RISK_OFF", "NEUTRAL")
    ranked = [s for s in stored["sectors"]["sectors"] if s["rank"] is not None]
    assert len(ranked) == len(DEFAULT_SECTOR_ETFS)
    scores = [s["score"] for s in ranked]
    assert scores == sorted(scores, reverse=True)
    assert stored["sectors"]["strongest"] == ranked[0]["name"]
    assert stored["sectors"]["weakest"] == ranked[-1]["name"]
    assert stored["params"]["fx_red"] == 1450.0
    # Recomputing the same moment replaces the row.
    market.compute_gate(DAY)
    assert _count(MarketGateRow) == 1


def test_missing_usdkrw_stores_an_unknown_gate_with_the_reason(source: FakeReference):
    source.without = {USDKRW}
    market.collect_reference(FIRST, DAY)
    stored = market.compute_gate(DAY)
    assert stored["color"] == "UNKNOWN"
    assert stored["score"] is None
    assert "no USD/KRW rate" in stored["reason"]
    assert market.gate_report(DAY)["color"] == "UNKNOWN"


def test_a_colour_change_records_one_event(source: FakeReference):
    day1 = krx_calendar().previous_session(DAY - dt.timedelta(days=1))
    source.fx = {day1: 1_300.0, DAY: 1_460.0}  # the day after: at or above 1450 → RED
    market.collect_reference(FIRST, DAY)
    lenient = GateParams(yellow=0.0)  # no score is RED: only the FX override can be
    before = market.compute_gate(day1, params=lenient)
    assert before["color"] in ("GREEN", "YELLOW"), before["reason"]
    after = market.compute_gate(DAY, params=lenient)
    assert after["color"] == "RED"
    assert "USD/KRW 1,460.0 ≥ 1,450" in after["reason"]
    market.compute_gate(DAY, params=lenient)  # again: the same event, kept once
    with session_scope() as session:
        found = list(session.execute(select(Event).where(Event.type == "gate.changed")).scalars())
    assert len(found) == 1
    event = found[0]
    assert event.version == 2
    assert event.trade_date == DAY
    assert event.payload["previous"] == before["color"]
    assert event.payload["current"] == "RED"
    assert event.simulated is True
    # Back under the warning level the next session would change it again; the same colour
    # twice records nothing.
    assert market.compute_gate(day1, params=lenient)["color"] == before["color"]


def test_a_day_that_is_not_a_session_is_refused(source: FakeReference):
    with pytest.raises(Exception, match="2026-11-22 is not a KRX session"):
        market.compute_gate(dt.date(2026, 11, 22))


def test_the_cli_prints_the_stored_gate_and_sectors_labelled_simulated(
    source: FakeReference, capsys: pytest.CaptureFixture[str]
):
    assert cli.main(["gate", "--date", DAY.isoformat()]) == cli.EXIT_USAGE  # not found: 2
    assert "no Market Gate stored for 2026-11-20" in capsys.readouterr().err
    market.collect_reference(FIRST, DAY)
    market.compute_gate(DAY)
    assert cli.main(["gate", "--date", DAY.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "SIMULATED Market Gate 2026-11-20" in out
    assert "SIMULATED USD/KRW" in out
    assert "KOSPI" in out
    assert cli.main(["gate", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trade_date"] == DAY.isoformat()
    assert data["simulated"] is True
    assert cli.main(["sectors"]) == 0
    out = capsys.readouterr().out
    assert "SIMULATED sectors of 2026-11-20" in out
    assert "반도체" in out
    assert "SIMULATED strongest:" in out


def test_the_gate_task_runs_on_a_worker(source: FakeReference, celery_app: Any, worker: Any):
    market.collect_reference(FIRST, DAY)
    result = celery_app.send_task("quantbeat.market.gate", kwargs={"trade_date": DAY.isoformat()})
    found = result.get(timeout=60)
    assert found["trade_date"] == DAY.isoformat()
    assert found["simulated"] is True
    assert found["color"] in ("GREEN", "YELLOW", "RED")
    sunday = celery_app.send_task("quantbeat.market.gate", kwargs={"trade_date": "2026-11-22"})
    assert sunday.get(timeout=60) == {
        "trade_date": "2026-11-22",
        "skipped": "not a KRX session: no gate",
    }


def test_the_gate_at_a_snapshot_reads_the_day_so_far(source: FakeReference):
    """Through the previous session from the daily bars, the session's bar from each index's
    latest snapshot at or before the moment: a 15:00 snapshot with KOSPI and KOSDAQ down 8 %
    on the day turns the trend and MACD components against them."""
    from zoneinfo import ZoneInfo

    from db.reference import ensure_series
    from db.snapshots import store_snapshots
    from quant.market.types import ReferenceKind

    previous = krx_calendar().previous_session(DAY - dt.timedelta(days=1))
    market.collect_reference(FIRST, previous)
    at = dt.datetime(2026, 11, 20, 15, 0, tzinfo=ZoneInfo("Asia/Seoul"))
    sessions = krx_calendar().sessions(FIRST, previous)
    with session_scope() as session:
        ids = ensure_series(
            session,
            [ReferenceSeries(c, ReferenceKind.INDEX, n) for c, n in (("1001", "KOSPI"),
                                                                     ("2001", "KOSDAQ"))],
            source="test",
            simulated=True,
        )  # fmt: skip
        rows = []
        for code in ("1001", "2001"):
            last = float(source.walk(code, sessions)[0][-1]) * 0.92
            rows.append(
                {
                    "trade_date": DAY,
                    "taken_at": at.astimezone(dt.UTC),
                    "series_id": ids[code],
                    "open": last / 0.92,
                    "high": last / 0.92,
                    "low": last,
                    "close": last,
                    "volume": 1e6,
                    "value": None,
                    "source": "test",
                    "simulated": True,
                }
            )
        store_snapshots(session, rows)
    intraday = market.compute_gate(DAY, as_of=at, phase="snapshot")
    assert intraday["phase"] == "snapshot"
    assert intraday["as_of"] == at.astimezone(dt.UTC).isoformat()
    kospi = intraday["components"]["KOSPI"]["readings"]
    assert kospi["close"] == pytest.approx(rows[0]["close"], rel=1e-6)
    # The change over the RS window (20 sessions) ends at the snapshot's price, not at a
    # daily close (its sign depends on the walk, whose seed varies with the process).
    walked = source.walk("1001", sessions)[0]
    now, before = float(walked[-1]) * 0.92, float(walked[-GateParams().rs_sessions])
    expected = (now / before - 1) * 100  # readings keep 4 decimals
    assert kospi["change_pct"] == pytest.approx(expected, abs=1e-3)
    # the gate of the same session as of an earlier moment (before the snapshot) has no bar of
    # the day: UNKNOWN, saying so
    early = market.compute_gate(DAY, as_of=at - dt.timedelta(hours=1), phase="snapshot")
    assert early["color"] == "UNKNOWN"
    assert "no KOSPI (nor KODEX 200) bars" in early["reason"]
