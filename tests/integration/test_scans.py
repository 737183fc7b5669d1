"""Universe scans through a real worker: the chord of chunks, the run's coverage, signals
replaced (never duplicated) on a re-run."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import func, select, text

from db.candles import universe
from db.engine import get_engine, session_scope
from db.models import ScanRun, Signal
from quantbeat.services.indicators import forget_service, indicator_cache

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 20)
FIRST = dt.date(2026, 9, 15)


@pytest.fixture(scope="module")
def members(database: str) -> list[tuple[int, str]]:
    """About 45 sessions of simulated KOSPI candles and flows up to DAY, and one instrument
    made a textbook closing-bet day: +15 % on 8x volume and 2조 KRW traded."""
    from db.models import Base
    from tasks.collect import daily_range

    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with get_engine(database).begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    daily_range(FIRST.isoformat(), DAY.isoformat(), market="KOSPI")
    daily_range(FIRST.isoformat(), DAY.isoformat(), market="KOSPI", dataset="flows")
    with session_scope() as session:
        found = universe(session, ["KOSPI"])
        ident = found[0][0]
        prev = session.execute(
            text(
                "SELECT close, volume FROM daily_candles WHERE instrument_id = :i "
                "AND trade_date < :d ORDER BY trade_date DESC LIMIT 1"
            ),
            {"i": ident, "d": DAY},
        ).one()
        avg_volume = session.execute(
            text(
                "SELECT avg(volume) FROM (SELECT volume FROM daily_candles WHERE instrument_id "
                "= :i AND trade_date < :d ORDER BY trade_date DESC LIMIT 20) v"
            ),
            {"i": ident, "d": DAY},
        ).scalar_one()
        close = prev.close * 1.15
        volume = float(avg_volume) * 8
        session.execute(
            text(
                "UPDATE daily_candles SET open = :o, high = :h, low = :l, close = :c, "
                "volume = :v, traded_value = 2e12 WHERE instrument_id = :i AND trade_date = :d"
            ),
            {
                "o": prev.close * 1.01,
                "h": close,
                "l": prev.close,
                "c": close,
                "v": volume,
                "i": ident,
                "d": DAY,
            },
        )
    forget_service()
    indicator_cache().clear()
    return found


def _signals(strategy: str) -> list[tuple[int, str | None, float | None]]:
    with session_scope() as session:
        return [
            (r.instrument_id, r.grade, r.score)
            for r in session.execute(
                select(Signal).where(Signal.trade_date == DAY, Signal.strategy == strategy)
            ).scalars()
        ]


def test_a_closing_bet_scan_covers_the_universe_and_replaces_its_signals(celery_app, members):
    started = celery_app.send_task(
        "quantbeat.scans.run",
        kwargs={
            "strategy": "closing_bet",
            "trade_date": DAY.isoformat(),
            "market": "KOSPI",
            "chunk_size": 40,
        },
    ).get(timeout=60)
    assert started["total"] == len(members)
    assert started["chunks"] == -(-len(members) // 40)
    final = celery_app.AsyncResult(started["chord"]).get(timeout=120)
    assert final["state"] == "completed"
    assert final["scanned"] + final["failed"] <= final["total"]
    assert final["scanned"] == len(members)  # everyone has bars that day
    assert final["coverage"] == f"{len(members)}/{len(members)}"

    first = _signals("closing_bet")
    assert final["candidates"] == len(first)
    from quantbeat.services.scans import candidates

    ranked = candidates("closing-bet", DAY)
    assert ranked[0].instrument == members[0][1]  # the S grade ranks first
    order = {"S": 0, "A": 1, "B": 2, "C": 3}
    assert [order[c.grade or "C"] for c in ranked] == sorted(order[c.grade or "C"] for c in ranked)
    textbook = members[0][0]
    assert textbook in {i for i, _, _ in first}
    with session_scope() as session:
        row = session.execute(
            select(Signal).where(Signal.instrument_id == textbook, Signal.trade_date == DAY)
        ).scalar_one()
        assert row.grade == "S"
        assert row.reasons
        assert isinstance(row.reasons, list)
        used = row.inputs
        assert isinstance(used, dict)
        assert used["traded_value_krw"] == 2e12
        assert used["news"] == "no news analysed"
        assert row.entry_price == pytest.approx(used["exit_plan"]["stop_loss"] / 0.97)
        assert row.gate is None  # no Market Gate computed for the day yet

    # With a gate stored for the day, the next run's signals carry its colour.
    from db.reference import store_gate

    with session_scope() as session:
        store_gate(
            session,
            trade_date=DAY,
            as_of=dt.datetime(2026, 11, 20, 6, 30, tzinfo=dt.UTC),
            fields={"phase": "daily", "color": "YELLOW", "score": 55.0, "reason": "test",
                    "usdkrw": 1390.0, "fx_warning": False, "components": {}, "sectors": {},
                    "kodex_status": None, "params": {}, "simulated": True},
        )  # fmt: skip
    again = celery_app.send_task(
        "quantbeat.scans.run",
        kwargs={"strategy": "closing_bet", "trade_date": DAY.isoformat(), "market": "KOSPI"},
    ).get(timeout=60)
    celery_app.AsyncResult(again["chord"]).get(timeout=120)
    assert sorted(_signals("closing_bet")) == sorted(first)  # replaced, not duplicated
    with session_scope() as session:
        gates = set(
            session.execute(
                select(Signal.gate).where(
                    Signal.trade_date == DAY, Signal.strategy == "closing_bet"
                )
            ).scalars()
        )
    assert gates == {"YELLOW"}
    with session_scope() as session:
        runs = session.execute(
            select(func.count()).select_from(ScanRun).where(ScanRun.state == "completed")
        ).scalar_one()
        assert runs >= 2
        run = session.get(ScanRun, again["run_id"])
        assert run is not None
        assert run.data_version
        assert run.data_version.startswith("candles=")
        assert run.duration_ms is not None


def test_an_unknown_strategy_is_rejected_with_the_known_ones(celery_app, members):
    from quant.errors import ValidationError

    with pytest.raises(ValidationError, match="closing_bet"):
        celery_app.send_task(
            "quantbeat.scans.run", kwargs={"strategy": "nope", "trade_date": DAY.isoformat()}
        ).get(timeout=60)


def test_the_cli_runs_a_scan_and_prints_the_ranked_candidates(celery_app, members, capsys):
    from quantbeat.cli import main as cli

    code = cli.main(["scan", "closing-bet", "--date", DAY.isoformat(), "--market", "KOSPI"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"closing_bet scan of {DAY}: {len(members)}/{len(members)} instruments" in out
    assert members[0][1] in out  # the textbook candidate is listed
    assert cli.main(["scan", "closing-bet", "--date", DAY.isoformat(), "--show", "--json"]) == 0
    shown = capsys.readouterr().out
    assert '"grade": "S"' in shown
    assert cli.main(["scan", "nope"]) == cli.EXIT_USAGE
    assert "closing_bet" in capsys.readouterr().err


def test_a_chunk_that_fails_for_good_leaves_the_run_completed_with_its_coverage(
    celery_app, members
):
    size = 5
    chunks = [members[i : i + size] for i in range(0, len(members), size)]
    bad = [c for c in chunks if any(int(name.split(":")[1]) % 7 == 0 for _, name in c)]
    assert bad
    assert len(bad) < len(chunks)
    started = celery_app.send_task(
        "quantbeat.scans.run",
        kwargs={
            "strategy": "test_overlong_grade",
            "trade_date": DAY.isoformat(),
            "market": "KOSPI",
            "chunk_size": size,
        },
    ).get(timeout=60)
    final = celery_app.AsyncResult(started["chord"]).get(timeout=120)
    assert final["state"] == "completed"
    assert final["chunks_failed"] == len(bad)
    failed_instruments = sum(len(c) for c in bad)
    assert final["failed"] == failed_instruments
    assert final["scanned"] == len(members) - failed_instruments
    assert final["coverage"] == f"{len(members) - failed_instruments}/{len(members)}"
    assert "value too long" in final["error"]
    with session_scope() as session:
        stored = session.execute(
            select(func.count())
            .select_from(Signal)
            .where(Signal.strategy == "test_overlong_grade", Signal.trade_date == DAY)
        ).scalar_one()
    assert stored == len(members) - failed_instruments  # the good chunks' signals landed


def test_a_chunk_failing_transiently_is_retried_and_the_run_covers_everything(celery_app, members):
    import redis

    from quantbeat.infra.settings import get_settings

    client = redis.Redis.from_url(get_settings().redis_url)
    client.delete("test:flaky-once:count")
    client.set("test:flaky-once:target", members[0][1], ex=600)
    started = celery_app.send_task(
        "quantbeat.scans.run",
        kwargs={
            "strategy": "test_flaky_once",
            "trade_date": DAY.isoformat(),
            "market": "KOSPI",
            "chunk_size": 20,
        },
    ).get(timeout=60)
    final = celery_app.AsyncResult(started["chord"]).get(timeout=180)
    assert final["state"] == "completed"
    assert final["coverage"] == f"{len(members)}/{len(members)}"
    assert final["failed"] == 0
    assert final["chunks_failed"] == 0
    assert int(client.get("test:flaky-once:count") or 0) == 2  # failed once, then succeeded
    with session_scope() as session:
        attempts = session.execute(
            text(
                "SELECT attempts, state FROM job_runs WHERE task_name = 'quantbeat.scans.chunk' "
                "AND args::text LIKE '%test_flaky_once%' ORDER BY attempts DESC"
            )
        ).all()
    assert len(attempts) == started["chunks"]
    assert [tuple(a) for a in attempts[:2]] == [(2, "succeeded"), (1, "succeeded")]
    with session_scope() as session:
        stored = session.execute(
            select(func.count())
            .select_from(Signal)
            .where(Signal.strategy == "test_flaky_once", Signal.trade_date == DAY)
        ).scalar_one()
    assert stored == len(members)  # the retried chunk wrote its signals once


def test_the_precompute_caches_the_universe_ratings_the_scan_reads(celery_app, members):
    import pandas as pd

    from quantbeat.infra.cache import LocalCache, SafeCache
    from quantbeat.services.indicators import invalidate_stored
    from quantbeat.services.scans import _ratings_field, universe_name, universe_ratings

    cache = indicator_cache()
    cache.clear()
    summary = celery_app.send_task(
        "quantbeat.indicators.precompute",
        kwargs={"trade_date": DAY.isoformat(), "market": "KOSPI"},
    ).get(timeout=120)
    assert summary["rs_ratings"] is True
    cached = universe_ratings(cache, members, DAY, ["KOSPI"])
    fresh = universe_ratings(SafeCache(LocalCache()), members, DAY)  # from the database
    assert cached == fresh
    assert set(cached[0]) == {name for _, name in members}
    lookup = [(universe_name(["KOSPI"]), "1d", [_ratings_field(DAY)])]
    assert cache.peek_many(lookup)[0][0] is not None
    market, ticker = members[3][1].split(":")
    invalidate_stored(pd.DataFrame({"market": [market], "ticker": [ticker]}))
    assert cache.peek_many(lookup)[0][0] is None  # new candles: the ratings are stale


def test_a_chunk_that_exhausts_its_retries_fails_the_run_through_the_error_callback(
    celery_app, members
):
    from tests.integration.helpers import eventually

    started = celery_app.send_task(
        "quantbeat.scans.run",
        kwargs={
            "strategy": "test_always_down",
            "trade_date": DAY.isoformat(),
            "market": "KOSPI",
            "chunk_size": 100,
        },
    ).get(timeout=60)

    def state() -> str:
        with session_scope() as session:
            run = session.get(ScanRun, started["run_id"])
            assert run is not None
            return run.state

    assert eventually(state, lambda s: s != "running", timeout=90) == "failed"
    with session_scope() as session:
        run = session.get(ScanRun, started["run_id"])
        assert run is not None
        assert "simulated lasting outage" in (run.error or "")
        assert run.finished_at is not None


def test_the_closing_bet_uses_the_ai_news_score(celery_app, members):
    """An analysed candidate's news score enters the closing bet: 0 (no news) fails its hard
    filter; news that mentions it, analysed again, brings it back with its news points."""
    import datetime as dt

    from db.ai import store_news
    from db.models import AiAnalysis
    from quant.ai import OfflineAnalyzer
    from quant.news import NewsItem
    from quantbeat.services.ai import analyze

    def rescan() -> None:
        started = celery_app.send_task(
            "quantbeat.scans.run",
            kwargs={"strategy": "closing_bet", "trade_date": DAY.isoformat(), "market": "KOSPI"},
        ).get(timeout=60)
        celery_app.AsyncResult(started["chord"]).get(timeout=120)

    textbook, name = members[0]
    with session_scope() as session:
        session.execute(text("DELETE FROM ai_analyses"))
    rescan()
    assert textbook in {i for i, _, _ in _signals("closing_bet")}
    first = analyze(name, DAY, "closing_bet", analyzer=OfflineAnalyzer())
    assert first["status"] == "succeeded"
    assert first["news_score"] == 0  # no news stored for it
    assert analyze(name, DAY, "closing_bet", analyzer=OfflineAnalyzer())["cached"] is True
    rescan()
    assert textbook not in {i for i, _, _ in _signals("closing_bet")}  # news > 0 is required

    item = NewsItem(
        source="local",
        url=f"https://news.example.invalid/{name}",
        title=f"{name} 대규모 공급 계약 수주",
        summary="record contract win",
        published_at=dt.datetime.combine(DAY, dt.time(1, 0), dt.UTC),
        instruments=(name,),
    )
    with session_scope() as session:
        store_news(session, [item], {name: textbook})
    again = analyze(name, DAY, "closing_bet", analyzer=OfflineAnalyzer(), force=True)
    assert again["news_score"] >= 1
    rescan()
    with session_scope() as session:
        row = session.execute(
            select(Signal).where(
                Signal.instrument_id == textbook,
                Signal.trade_date == DAY,
                Signal.strategy == "closing_bet",
            )
        ).scalar_one()
        used = row.inputs
        assert isinstance(used, dict)
        assert used["components"]["news"] == again["news_score"]
        assert used["news"] != "no news analysed"
        count = session.execute(
            select(func.count()).where(AiAnalysis.instrument_id == textbook)
        ).scalar_one()
        assert count == 1  # cached per (instrument, date, model, prompt version)


def test_stored_strategy_parameters_apply_to_the_next_run(celery_app, members):
    """`quantbeat settings set strategy.closing_bet ...` reaches the worker's scan at once
    (the change bumps the generation the worker's settings cache checks)."""
    from quantbeat.cli.main import main
    from quantbeat.services.settings_store import unset_setting

    textbook = members[0][0]
    assert main(["settings", "set", "strategy.closing_bet", '{"min_traded_value_krw": 3e12}']) == 0
    assert main(["settings", "set", "strategy.closing_bet", '{"min_traded_valu": 1}']) == 2
    try:
        time.sleep(1)  # the worker's cache checks the generation every 0.5 s in tests
        started = celery_app.send_task(
            "quantbeat.scans.run",
            kwargs={"strategy": "closing_bet", "trade_date": DAY.isoformat(), "market": "KOSPI"},
        ).get(timeout=60)
        final = celery_app.AsyncResult(started["chord"]).get(timeout=120)
        assert final["state"] == "completed"
        assert textbook not in {i for i, _, _ in _signals("closing_bet")}
        with session_scope() as session:
            run = session.get(ScanRun, started["run_id"])
            assert run is not None
            assert run.params["overrides"] == {"min_traded_value_krw": 3e12}
    finally:
        unset_setting("strategy.closing_bet")
    time.sleep(1)
    again = celery_app.send_task(
        "quantbeat.scans.run",
        kwargs={"strategy": "closing_bet", "trade_date": DAY.isoformat(), "market": "KOSPI"},
    ).get(timeout=60)
    celery_app.AsyncResult(again["chord"]).get(timeout=120)
    assert textbook in {i for i, _, _ in _signals("closing_bet")}
