"""The /api/v1 read routes (signals, closing bet, track record, portfolios) through a
TestClient on PostgreSQL and Redis, over data the services made: simulated KOSPI and KOSDAQ
bars and flows, the signal-history backfill, the 15:10 buy-window decisions of two days, the
evening closing-bet and VCP scans on a real worker, the track record and a paper portfolio.
Every answer is checked against the stored rows."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from db.engine import get_engine, session_scope
from db.reference import store_gate
from db.snapshots import store_snapshots
from quantbeat.api.app import create_app
from quantbeat.infra.settings import get_settings
from quantbeat.services import api_keys, closing_window, portfolio, signal_history, track_record
from quantbeat.services.indicators import forget_service, indicator_cache
from quantbeat.services.scans import candidates
from quantbeat.services.strategies import scan_strategy_names

pytestmark = pytest.mark.integration

KST = ZoneInfo("Asia/Seoul")
FIRST, PREV, DAY = dt.date(2026, 6, 15), dt.date(2026, 11, 19), dt.date(2026, 11, 20)
AT = dt.time(15, 10)
API = "/api/v1"


def _rows(sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with session_scope() as session:
        return [tuple(r) for r in session.execute(text(sql), params)]


def _snapshots_from_bars(day: dt.date) -> None:
    """A 15:10 snapshot of every instrument equal to its bar of ``day``."""
    taken = dt.datetime.combine(day, AT, tzinfo=KST).astimezone(dt.UTC)
    rows = [
        {"trade_date": day, "taken_at": taken, "instrument_id": i, "open": o, "high": h,
         "low": lo, "close": c, "volume": v, "value": val, "source": "simulated",
         "simulated": True}
        for i, o, h, lo, c, v, val in _rows(
            "SELECT instrument_id, open, high, low, close, volume, traded_value "
            "FROM daily_candles WHERE trade_date = :d", d=day)
    ]  # fmt: skip
    with session_scope() as session:
        store_snapshots(session, rows)


def _scan(celery_app: Any, strategy: str) -> int:
    started = celery_app.send_task(
        "quantbeat.scans.run", kwargs={"strategy": strategy, "trade_date": DAY.isoformat()}
    ).get(timeout=60)
    done = celery_app.AsyncResult(started["chord"]).get(timeout=120)
    assert done["state"] == "completed"
    return int(done["run_id"])


@pytest.fixture(scope="module")
def seeded(database: str, celery_app: Any) -> dict[str, Any]:
    """Simulated KOSPI and KOSDAQ bars and flows from FIRST to DAY (the first instrument a
    textbook closing-bet day on DAY: +15 % on 8× volume, 2조 KRW traded), a GREEN gate at
    15:00 on DAY, the backfilled signals through PREV, preliminary decisions at 15:10 on PREV
    and DAY, the evening closing-bet and VCP scans of DAY, the track record through DAY and
    a paper portfolio stepped through it."""
    from db.models import Base
    from tasks.collect import daily_range

    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with get_engine(database).begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    daily_range(FIRST.isoformat(), DAY.isoformat())
    daily_range(FIRST.isoformat(), DAY.isoformat(), dataset="flows")
    ((ident, prev_close, volume),) = _rows(
        "SELECT d.instrument_id, d.close, (SELECT avg(volume) FROM daily_candles a WHERE "
        "a.instrument_id = d.instrument_id AND a.trade_date < :day) FROM daily_candles d "
        "WHERE d.trade_date = :prev ORDER BY d.instrument_id LIMIT 1",
        day=DAY, prev=PREV)  # fmt: skip
    with session_scope() as session:
        session.execute(
            text("UPDATE daily_candles SET open = :o, high = :c, low = :o, close = :c, "
                 "volume = :v, traded_value = 2e12 WHERE instrument_id = :i AND trade_date = :d"),
            {"o": prev_close * 1.01, "c": prev_close * 1.15, "v": float(volume) * 8, "i": ident,
             "d": DAY},
        )  # fmt: skip
        store_gate(
            session,
            trade_date=DAY,
            as_of=dt.datetime.combine(DAY, dt.time(15, 0), tzinfo=KST),
            fields={"phase": "snapshot", "color": "GREEN", "score": 75.0, "reason": "test",
                    "usdkrw": 1390.0, "fx_warning": False, "components": {}, "sectors": {},
                    "kodex_status": None, "params": {}, "simulated": True},
        )  # fmt: skip
    forget_service()
    indicator_cache().clear()
    backfilled = signal_history.backfill(FIRST, PREV)
    for day in (PREV, DAY):
        _snapshots_from_bars(day)
        closing_window.preliminary_scan(
            "closing_bet", day, as_of=dt.datetime.combine(day, AT, tzinfo=KST)
        )
    runs = {name: _scan(celery_app, name) for name in ("closing_bet", "vcp")}
    track_record.update(DAY)
    # the backfilled history is of the final phase
    portfolio.create("api-paper", capital=100_000_000, start_date=FIRST,
                     rules={"phases": {"closing_bet": "final"}})  # fmt: skip
    portfolio.update(DAY)
    return {"textbook": int(ident), "runs": runs, "backfilled": backfilled}


@pytest.fixture(scope="module")
def client(seeded: dict[str, Any]) -> Iterator[TestClient]:
    token, _ = api_keys.create("api-reads", ["read"], rate_per_minute=100_000)
    with TestClient(create_app(get_settings())) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        yield c


def _ok(client: TestClient, path: str, **params: Any) -> Any:
    r = client.get(f"{API}{path}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _problem(client: TestClient, path: str, status: int, **params: Any) -> dict[str, Any]:
    r = client.get(f"{API}{path}", params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    return body


def _field(client: TestClient, path: str, field: str, **params: Any) -> str:
    """The 422's detail; its first error names ``field``."""
    body = _problem(client, path, 422, **params)
    assert body["errors"][0]["field"] == field, body
    return str(body["detail"])


@pytest.mark.parametrize(
    "path",
    ["/signals/latest", "/signals", "/signals/1", "/closing-bet/latest", "/closing-bet/dates",
     "/closing-bet/2026-11-20", "/track-record", "/portfolios", "/portfolios/api-paper",
     "/portfolios/api-paper/positions", "/portfolios/api-paper/equity"],
)  # fmt: skip
def test_every_read_needs_a_key(client: TestClient, path: str) -> None:
    r = client.get(f"{API}{path}", headers={"Authorization": ""})
    assert r.status_code == 401
    assert "API key is required" in r.json()["detail"]


def test_latest_signals_are_each_strategys_last_run_ranked(
    client: TestClient, seeded: dict[str, Any]
) -> None:
    found = _ok(client, "/signals/latest")
    assert found["simulated"] is True
    by_name = {s["strategy"]: s for s in found["strategies"]}
    # every registered strategy in registration order (the worker app registers test ones)
    assert list(by_name) == list(scan_strategy_names())
    assert list(by_name)[:2] == ["vcp", "closing_bet"]
    bet = by_name["closing_bet"]
    # the evening scan started after the 15:10 decision: it is the latest run
    assert (bet["run_id"], bet["trade_date"], bet["phase"]) == (
        seeded["runs"]["closing_bet"], DAY.isoformat(), "final")  # fmt: skip
    ranked = candidates("closing_bet", DAY)
    assert [(s["rank"], s["id"], s["instrument"]) for s in bet["signals"]] == [
        (c.rank, c.signal_id, c.instrument) for c in ranked
    ]
    assert bet["count"] == len(ranked) >= 1
    assert bet["signals"][0]["grade"] == "S"  # the textbook day ranks first
    assert all(s["simulated"] and s["phase"] == "final" for s in bet["signals"])
    assert by_name["vcp"]["run_id"] == seeded["runs"]["vcp"]

    only = _ok(client, "/signals/latest", strategy="closing_bet", min_grade="S")
    assert [s["strategy"] for s in only["strategies"]] == ["closing_bet"]
    assert {s["grade"] for s in only["strategies"][0]["signals"]} == {"S"}
    # min_grade reads a grade on its own ladder: a VCP signal is never "at least A"
    assert _ok(client, "/signals/latest", min_grade="A")["strategies"][0]["signals"] == []
    market = bet["signals"][0]["market"]
    same = _ok(client, "/signals/latest", strategy="closing_bet", market=market)
    assert {s["market"] for s in same["strategies"][0]["signals"]} == {market}
    assert (
        _ok(client, "/signals/latest", strategy="vcp", min_grade="A")["strategies"][0]["signals"]
        == []
    )

    for name in ("nope", "closing-bet"):  # the registered name exactly
        assert f"unknown strategy {name!r}" in _field(
            client, "/signals/latest", "query.strategy", strategy=name
        )
    for bad in ("KONEX", "kospi"):
        assert "'KOSPI' or 'KOSDAQ'" in _field(
            client, "/signals/latest", "query.market", market=bad
        )
    assert "Textbook" in _field(client, "/signals/latest", "query.min_grade", min_grade="AA")


def _walk(client: TestClient, limit: int, **filters: Any) -> list[int]:
    """Every page's ids, following next_cursor."""
    ids: list[int] = []
    cursor = None
    for _ in range(1000):
        more: dict[str, str] = {"cursor": cursor} if cursor else {}
        page = _ok(client, "/signals", limit=limit, **filters, **more)
        assert len(page["items"]) <= limit
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
        assert len(page["items"]) == limit
    raise AssertionError("pagination did not end")


def test_signals_page_through_every_row_once_in_order(
    client: TestClient, seeded: dict[str, Any]
) -> None:
    stored = [i for (i,) in _rows("SELECT id FROM signals ORDER BY trade_date DESC, id DESC")]
    assert len(stored) > 40
    assert _walk(client, 17) == stored
    assert _walk(client, 500) == stored

    bets = _rows(
        "SELECT s.id, s.grade, i.market FROM signals s JOIN instruments i ON i.id = "
        "s.instrument_id WHERE s.strategy = 'closing_bet' AND s.phase = 'final' "
        "ORDER BY s.trade_date DESC, s.id DESC"
    )
    grade, market = bets[0][1], bets[0][2]
    wanted = [i for i, g, m in bets if g == grade and m == market]
    assert _walk(client, 3, strategy="closing_bet", grade=grade, market=market,
                 phase="final") == wanted  # fmt: skip
    day = _ok(client, "/signals", date=DAY.isoformat(), limit=500)
    assert {i["trade_date"] for i in day["items"]} == {DAY.isoformat()}
    assert {i["phase"] for i in day["items"]} == {"final", "preliminary"}
    assert day["next_cursor"] is None
    assert _ok(client, "/signals", date="2020-01-02") == {
        "items": [], "next_cursor": None, "simulated": True}  # fmt: skip

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    for bad in ("!!!", "e30", b64(b"[1,2]"), b64(b'["2026-11-20"]'), b64(b'["2026-13-01",5]'),
                b64(b'["2026-11-20",0]'), b64(b'["2026-11-20",true]'), b64(b"\xff\xfe"),
                b64(b'["2026-11-20",9223372036854775808]')):  # fmt: skip
        assert "not a cursor" in _field(client, "/signals", "query.cursor", cursor=bad)
    _field(client, "/signals", "query.cursor", cursor="")
    _field(client, "/signals", "query.limit", limit=0)
    _field(client, "/signals", "query.limit", limit=501)
    _field(client, "/signals", "query.date", date="2026-02-30")
    _field(client, "/signals", "query.phase", phase="evening")
    assert "S, A, B, C, got 'Z'" in _field(client, "/signals", "query.grade", grade="Z")
    assert _ok(client, "/signals", grade="S", strategy="vcp")["items"] == []
    _field(client, "/signals", "query.strategy", strategy="legacy")


def test_a_signal_shows_its_outcome_levels_and_latest_snapshot(
    client: TestClient, seeded: dict[str, Any]
) -> None:
    ((sid, entry),) = _rows(
        "SELECT id, entry_price FROM signals WHERE instrument_id = :i AND trade_date = :d "
        "AND phase = 'preliminary'", i=seeded["textbook"], d=DAY)  # fmt: skip
    ((last, taken),) = _rows(
        "SELECT close, taken_at FROM intraday_snapshots WHERE instrument_id = :i "
        "ORDER BY taken_at DESC LIMIT 1", i=seeded["textbook"])  # fmt: skip
    one = _ok(client, f"/signals/{sid}")
    assert (one["id"], one["strategy"], one["phase"], one["grade"]) == (
        sid, "closing_bet", "preliminary", one["grade"])  # fmt: skip
    assert one["grade"] in ("S", "A")
    assert one["entry_price"] == pytest.approx(entry)
    assert one["stop"] == pytest.approx(entry * 0.97)
    assert one["target"] == pytest.approx(entry * 1.05)
    assert one["inputs"]["traded_value_krw"] == 2e12
    assert one["gate"] == "GREEN"
    snap = one["snapshot"]
    assert snap["last"] == pytest.approx(last)
    assert dt.datetime.fromisoformat(snap["taken_at"]) == taken
    assert snap["vs_entry"] == pytest.approx(last / entry - 1.0)
    assert one["simulated"] is True
    # followed through DAY: entered at the close of DAY, nothing after it read yet
    assert one["outcome"]["state"] in ("pending", "open")

    ((closed, net, reason),) = _rows(
        "SELECT signal_id, net_return, reason FROM signal_outcomes WHERE state = 'closed' "
        "ORDER BY signal_id LIMIT 1")  # fmt: skip
    done = _ok(client, f"/signals/{closed}")["outcome"]
    assert (done["state"], done["reason"]) == ("closed", reason)
    assert done["net_return"] == pytest.approx(net)

    assert "no signal 999999999" in _problem(client, "/signals/999999999", 404)["detail"]
    _field(client, "/signals/0", "path.signal_id")
    _field(client, "/signals/9223372036854775808", "path.signal_id")
    _field(client, "/signals/abc", "path.signal_id")


def test_the_closing_bet_days_and_grade_cards(client: TestClient, seeded: dict[str, Any]) -> None:
    days = _ok(client, "/closing-bet/dates")
    assert days["simulated"] is True
    assert days["items"] == [
        {"trade_date": DAY.isoformat(), "phases": ["final", "preliminary"]},
        {"trade_date": PREV.isoformat(), "phases": ["preliminary"]},
    ]
    assert _ok(client, "/closing-bet/dates", limit=1)["items"][0]["trade_date"] == DAY.isoformat()

    latest = _ok(client, "/closing-bet/latest")
    assert (latest["trade_date"], latest["phase"], latest["run_id"]) == (
        DAY.isoformat(), "final", seeded["runs"]["closing_bet"])  # fmt: skip
    assert latest == _ok(client, f"/closing-bet/{DAY}")
    assert latest["tradeable"] is False  # decided after the close
    finals = _rows("SELECT id FROM signals WHERE trade_date = :d AND phase = 'final' AND "
                   "strategy = 'closing_bet'", d=DAY)  # fmt: skip
    assert sorted(c["signal_id"] for c in latest["cards"]) == sorted(i for (i,) in finals)

    early = _ok(client, f"/closing-bet/{DAY}", phase="preliminary")
    assert early == _ok(client, "/closing-bet/latest", phase="preliminary")
    assert early["phases"] == ["final", "preliminary"]
    assert early["tradeable"] is True
    assert dt.datetime.fromisoformat(early["decided_at"]) == dt.datetime.combine(
        DAY, AT, tzinfo=KST
    )
    assert (early["gate"]["color"], early["gate"]["simulated"]) == ("GREEN", True)
    first = early["cards"][0]
    assert first["rank"] == 1
    assert first["grade"] in ("S", "A")
    assert first["stop"] == pytest.approx(first["entry"] * 0.97)
    assert first["target"] == pytest.approx(first["entry"] * 1.05)
    assert first["reasons"]
    assert first["gate"] == "GREEN"
    assert first["news"] is None  # no AI analysis ran
    assert [c["signal_id"] for c in early["cards"]] == [
        c.signal_id for c in candidates("closing_bet", DAY, phase="preliminary")
    ]
    # PREV has only the buy-window decision: it is the default there
    assert _ok(client, f"/closing-bet/{PREV}")["phase"] == "preliminary"

    missing = _problem(client, f"/closing-bet/{PREV}", 404, phase="final")["detail"]
    assert "not collected yet" in missing
    assert PREV.isoformat() in missing
    assert "not collected yet" in _problem(client, "/closing-bet/2020-01-02", 404)["detail"]
    _field(client, f"/closing-bet/{DAY}", "query.phase", phase="evening")
    _field(client, "/closing-bet/yesterday", "path.date")
    _field(client, "/closing-bet/dates", "query.limit", limit=0)


def test_the_track_record_gives_kpis_by_strategy_and_grade(
    client: TestClient, seeded: dict[str, Any]
) -> None:
    found = _ok(client, "/track-record")
    assert found["simulated"] is True
    assert found["groups"] == track_record.report(by="strategy")["groups"]
    closed = _rows(
        "SELECT s.strategy, s.phase, coalesce(s.grade, 'unknown'), count(*) FROM "
        "signal_outcomes o JOIN signals s ON s.id = o.signal_id WHERE o.state = 'closed' "
        "GROUP BY 1, 2, 3")  # fmt: skip
    assert closed
    counts = {
        (name if phase == "final" else f"{name} ({phase})", grade): n
        for name, phase, grade, n in closed
    }
    assert {
        (name, grade): kpis["count"]
        for name, grades in found["grades"].items()
        for grade, kpis in grades.items()
        if kpis["count"]
    } == counts
    for name, grades in found["grades"].items():
        assert sum(k["count"] for k in grades.values()) == found["groups"][name]["count"]

    bets = _ok(client, "/track-record", strategy="closing_bet", since=PREV.isoformat())
    assert bets["strategy"] == "closing_bet"
    assert bets["since"] == PREV.isoformat()
    assert set(bets["groups"]) <= {"closing_bet", "closing_bet (preliminary)"}
    assert "unknown strategy" in _field(client, "/track-record", "query.strategy", strategy="x")


def test_portfolios_positions_and_equity(client: TestClient, seeded: dict[str, Any]) -> None:
    listed = _ok(client, "/portfolios")
    assert [p["name"] for p in listed["items"]] == ["api-paper"]
    assert listed["simulated"] is True
    one = _ok(client, "/portfolios/api-paper")
    described = portfolio.describe("api-paper")
    assert one["through"] == DAY.isoformat() == described["through"]
    assert one["equity"] == pytest.approx(described["equity"])
    assert one["return"] == pytest.approx(described["return"])
    assert one["entries"] == described["entries"] > 0

    every = _ok(client, "/portfolios/api-paper/positions")["items"]
    opened = _ok(client, "/portfolios/api-paper/positions", state="open")["items"]
    shut = _ok(client, "/portfolios/api-paper/positions", state="closed")["items"]
    assert {p["state"] for p in opened} <= {"open"}
    assert {p["state"] for p in shut} == {"closed"}
    assert sorted(p["signal_id"] for p in every) == sorted(p["signal_id"] for p in opened + shut)
    assert len(every) == one["entries"]
    assert [p["signal_id"] for p in opened] == [p["signal_id"] for p in one["open"]]

    equity = _ok(client, "/portfolios/api-paper/equity")
    assert equity["simulated"] is True
    days = equity["items"]
    assert len(days) == one["days"]
    assert days[-1]["trade_date"] == DAY.isoformat()
    assert days[-1]["equity"] == pytest.approx(one["equity"])
    for d in days:
        assert d["equity"] == pytest.approx(d["cash"] + d["market_value"])
    late = _ok(client, "/portfolios/api-paper/equity", since=PREV.isoformat())["items"]
    assert [d["trade_date"] for d in late] == [PREV.isoformat(), DAY.isoformat()]

    assert "no portfolio named 'nope'" in _problem(client, "/portfolios/nope", 404)["detail"]
    _problem(client, "/portfolios/nope/positions", 404)
    _problem(client, "/portfolios/nope/equity", 404)
    _field(client, "/portfolios/-bad", "path.name")
    _field(client, "/portfolios/api-paper/positions", "query.state", state="gone")
    _field(client, "/portfolios/api-paper/equity", "query.since", since="soon")
