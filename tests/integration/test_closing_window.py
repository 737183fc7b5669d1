"""The closing bet decided in the buy window (issue 17 item 4), against PostgreSQL and a real
worker: bars through the previous session plus the 15:10 snapshot give the day's
``preliminary`` signals — entry at the snapshot's last price, the gate of that moment —
without touching the ``final`` ones, and the two phases can be compared."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from db.engine import get_engine, session_scope
from db.models import ScanRun, Signal
from db.reference import store_gate
from db.snapshots import store_snapshots
from quant.errors import ValidationError
from quantbeat.services import closing_window
from quantbeat.services.scans import candidates

pytestmark = pytest.mark.integration

KST = ZoneInfo("Asia/Seoul")
DAY = dt.date(2026, 11, 20)
FIRST = dt.date(2026, 9, 15)
AT = dt.datetime(2026, 11, 20, 15, 10, tzinfo=KST)


@pytest.fixture(scope="module")
def history(database: str) -> dict[str, Any]:
    """Simulated KOSPI candles and flows through DAY − 1; every instrument but the last gets
    a 15:10 snapshot equal to a quiet day, and the first a textbook closing-bet day so far
    (+15 % on 8× volume, 2조 KRW traded)."""
    from db.candles import universe
    from db.models import Base
    from tasks.collect import daily_range

    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with get_engine(database).begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    previous = DAY - dt.timedelta(days=1)
    daily_range(FIRST.isoformat(), previous.isoformat(), market="KOSPI")
    daily_range(FIRST.isoformat(), previous.isoformat(), market="KOSPI", dataset="flows")
    with session_scope() as session:
        members = universe(session, ["KOSPI"])
        last = {
            int(i): (float(c), float(v))
            for i, c, v in session.execute(
                text(
                    "SELECT DISTINCT ON (instrument_id) instrument_id, close, volume "
                    "FROM daily_candles ORDER BY instrument_id, trade_date DESC"
                )
            ).all()
        }
        rows = []
        for n, (ident, _name) in enumerate(members[:-1]):
            close, volume = last[ident]
            if n == 0:
                bar = (close * 1.01, close * 1.15, close, close * 1.15, volume * 8, 2e12)
            else:
                bar = (close, close * 1.005, close * 0.995, close, volume, volume * close)
            o, h, lo, c, v, val = bar
            rows.append({"trade_date": DAY, "taken_at": AT.astimezone(dt.UTC),
                         "instrument_id": ident, "open": o, "high": h, "low": lo, "close": c,
                         "volume": v, "value": val, "source": "t", "simulated": True})  # fmt: skip
        store_snapshots(session, rows)
        store_gate(
            session,
            trade_date=DAY,
            as_of=dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC),  # 15:00 KST
            fields={"phase": "snapshot", "color": "GREEN", "score": 75.0, "reason": "test",
                    "usdkrw": 1390.0, "fx_warning": False, "components": {}, "sectors": {},
                    "kodex_status": None, "params": {}, "simulated": True},
        )  # fmt: skip
    return {"members": members, "textbook": members[0], "close": rows[0]["close"]}


def test_the_window_decision_stores_preliminary_signals_from_the_snapshot(
    history: dict[str, Any], celery_app: Any, worker: Any
):
    found = celery_app.send_task(
        "quantbeat.scans.preliminary",
        kwargs={"trade_date": DAY.isoformat(), "as_of": AT.isoformat()},
    ).get(timeout=120)
    members = history["members"]
    assert found["phase"] == "preliminary"
    assert found["total"] == len(members)
    assert found["missing"] == 1  # the instrument without a snapshot
    assert found["scanned"] == len(members) - 1
    assert found["gate"] == "GREEN"
    assert found["tradeable"] is True
    ranked = candidates("closing_bet", DAY, phase="preliminary")
    assert ranked
    first = ranked[0]
    ident, name = history["textbook"]
    assert first.instrument == name
    # S or A: today's investor flows are unknown at 15:10 (those through the previous session
    # count), so the supply points may differ from the evening decision's
    assert first.grade in ("S", "A")
    assert first.gate == "GREEN"
    assert first.entry_price == pytest.approx(history["close"])  # the snapshot's last price
    assert first.inputs["traded_value_krw"] == 2e12
    assert candidates("closing_bet", DAY) == []  # no final decision yet
    with session_scope() as session:
        run = session.get(ScanRun, found["run_id"])
        assert run is not None
        assert run.params["phase"] == "preliminary"
        assert run.data_version == f"snapshot={AT.astimezone(dt.UTC).isoformat()}"
    # Re-deciding replaces the preliminary rows; a final row for the same instrument is
    # another row, and the comparison shows both.
    again = closing_window.preliminary_scan("closing_bet", DAY, as_of=AT)
    assert again["candidates"] == found["candidates"]
    with session_scope() as session:
        session.add(Signal(trade_date=DAY, strategy="closing_bet", instrument_id=ident,
                           score=9.0, grade="A", source="scan", phase="final"))  # fmt: skip
    compared = closing_window.compare_phases("closing_bet", DAY)
    assert compared["kept"][0] == {"instrument": name, "preliminary": first.grade, "final": "A"}
    assert compared["final"] == 1
    assert len(compared["lost"]) == compared["preliminary"] - 1
    with session_scope() as session:
        preliminary = session.execute(
            select(Signal).where(Signal.trade_date == DAY, Signal.phase == "preliminary")
        ).scalars()
        assert len(list(preliminary)) == found["candidates"]


def test_a_decision_before_any_snapshot_finds_nothing_and_after_the_auction_is_flagged(
    history: dict[str, Any],
):
    early = closing_window.preliminary_scan(
        "closing_bet", DAY, as_of=dt.datetime(2026, 11, 20, 10, 0, tzinfo=KST)
    )
    assert early["missing"] == len(history["members"])
    assert early["candidates"] == 0
    assert early["gate"] is None  # the gate was computed at 15:00, after this moment
    late = closing_window.preliminary_scan(
        "closing_bet", DAY, as_of=dt.datetime(2026, 11, 20, 15, 25, tzinfo=KST)
    )
    assert late["tradeable"] is False
    assert late["candidates"] >= 1
    closing_window.preliminary_scan("closing_bet", DAY, as_of=AT)  # leave the 15:10 decision


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"day": dt.date(2026, 11, 21)}, "2026-11-21 is not a KRX session"),
        ({"day": DAY, "as_of": dt.datetime(2026, 11, 20, 15, 10)}, "as_of must be timezone-aware"),
        ({"day": DAY, "as_of": dt.datetime(2026, 11, 19, 15, 10, tzinfo=KST)}, "is not on"),
    ],
)
def test_bad_moments_are_refused(history: dict[str, Any], kwargs: dict[str, Any], words: str):
    with pytest.raises(ValidationError, match=words):
        closing_window.preliminary_scan("closing_bet", **kwargs)


def test_the_decision_time_is_a_setting():
    assert closing_window.decision_time(DAY) == AT


def test_the_cli_shows_the_preliminary_candidates(
    history: dict[str, Any], capsys: pytest.CaptureFixture[str]
):
    from quantbeat.cli import main as cli

    closing_window.preliminary_scan("closing_bet", DAY, as_of=AT)
    argv = ["scan", "closing_bet", "--show", "--phase", "preliminary", "--date", DAY.isoformat()]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert history["textbook"][1] in out
    assert cli.main(["scan", "closing_bet", "--phase", "preliminary"]) == cli.EXIT_USAGE
    assert "--phase preliminary goes with --show" in capsys.readouterr().err
    # the two decisions side by side: every preliminary candidate is kept or lost, every
    # final one kept or added
    assert cli.main(["scan", "closing_bet", "--compare", "--date", DAY.isoformat(), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["preliminary"] >= 1
    assert len(found["kept"]) + len(found["lost"]) == found["preliminary"]
    assert len(found["kept"]) + len(found["added"]) == found["final"]
    assert cli.main(["scan", "closing_bet", "--compare", "--date", DAY.isoformat()]) == 0
    text_out = capsys.readouterr().out
    assert f"{found['preliminary']} preliminary (15:10)" in text_out
    assert text_out.startswith("SIMULATED ")
