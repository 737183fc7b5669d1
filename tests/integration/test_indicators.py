"""Indicators end to end: PostgreSQL candles, the Redis cache, a real worker on the cpu queue,
the batch task, invalidation by collection, the precompute chain and the CLI."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis
from sqlalchemy import select, text
from structlog.testing import capture_logs

import quantbeat.services.indicators as module
from db.candles import load_candles, resolve_instrument, universe
from db.engine import get_engine, session_scope
from db.models import AiAnalysis, Base, Instrument, ScanRun
from quant.errors import ValidationError
from quant.indicators import SCAN_BARS, SCAN_SET, IndicatorRequest, compute
from quantbeat.cli import main as cli
from quantbeat.infra.cache import CacheStats, Entry, Read, RedisCache, SafeCache, decode_series
from quantbeat.infra.settings import get_settings
from quantbeat.services.indicators import (
    IndicatorService,
    forget_service,
    get_indicator,
    get_indicators,
    indicator_cache,
    service,
)
from quantbeat.services.scans import candidates
from tasks.collect import daily_candles, daily_range
from tests.conftest import TEST_REDIS_URL
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 20)
FIRST = dt.date(2026, 9, 1)


@pytest.fixture(scope="module")
def history(database: str) -> list[tuple[int, str]]:
    """About 55 sessions of simulated KOSPI candles up to DAY (collected in-process by the
    production task body), and an empty cache."""

    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with get_engine(database).begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    daily_range(FIRST.isoformat(), DAY.isoformat(), market="KOSPI")
    with session_scope() as session:
        members = universe(session, ["KOSPI"])
    assert len(members) > 50
    return members


@pytest.fixture
def cache(history: list[tuple[int, str]]) -> Iterator[SafeCache]:
    forget_service()
    c = indicator_cache()
    c.clear()
    yield c
    forget_service()


def _db_values(instrument: str, name: str, params: dict[str, object], limit: int) -> Any:
    with session_scope() as session:
        ident, _ = resolve_instrument(session, instrument)
        candles = load_candles(session, ident, "1d", end=DAY, limit=limit)
    return compute(name, candles, params)


def test_a_miss_is_computed_by_a_cpu_worker_then_served_from_the_cache(celery_app, cache, history):
    instrument = history[0][1]
    first = get_indicator(instrument, "rsi", {"period": 14}, end=DAY, limit=40)
    assert first.source == "computed"
    expected = _db_values(instrument, "rsi", {"period": 14}, 40)
    np.testing.assert_array_equal(first.values["rsi"], expected["rsi"])
    assert len(first.time) == 40
    assert first.time[-1] == np.datetime64(DAY)

    second = get_indicator(instrument, "rsi", {"period": 14}, end=DAY, limit=40)
    assert second.source == "cache"
    np.testing.assert_array_equal(second.values["rsi"], expected["rsi"])

    stats = cache.stats()
    # The client's lookup counted the miss; the worker's re-check did not count again.
    assert (stats.hits, stats.misses) == (1, 1)
    assert stats.candle_misses == 1


def test_the_key_does_not_depend_on_parameter_order_or_defaults(celery_app, cache, history):
    instrument = history[1][1]
    a = get_indicator(instrument, "bbands", {"stddev": 2, "period": 20}, end=DAY, limit=50)
    b = get_indicator(instrument, "bbands", {"period": 20}, end=DAY, limit=50)
    c = get_indicator(instrument, "bbands", None, end=DAY, limit=50)
    assert (a.source, b.source, c.source) == ("computed", "cache", "cache")
    other = get_indicator(instrument, "bbands", {"stddev": 2.5}, end=DAY, limit=50)
    assert other.source == "computed"


def test_values_are_compact_binary_in_redis(cache, history):
    instrument = history[2][1]
    result = service().compute(IndicatorRequest.create(instrument, "macd", end=DAY, limit=50))
    client = redis.Redis.from_url(get_settings().redis_url)
    raw: Any = client.hget(
        f"qb:ind:{instrument}:1d", f"i|*..{DAY}#50|macd|fast=12,signal=9,slow=26"
    )
    assert raw is not None
    n = len(result.time)
    # time + 3 outputs at 8 bytes each, plus a header of a few dozen bytes
    assert 8 * n * 4 <= len(raw) <= 8 * n * 4 + 64
    _times, values = decode_series(raw)
    np.testing.assert_array_equal(values["hist"], result.values["hist"])
    assert client.ttl(f"qb:ind:{instrument}:1d") <= get_settings().cache_ttl["1d"]


def test_storing_new_candles_invalidates_the_instruments_entries(cache, history):

    instrument = history[3][1]
    earlier = DAY - dt.timedelta(days=1)  # Thursday
    req = IndicatorRequest.create(instrument, "sma", {"period": 5}, limit=30)
    with session_scope() as session:
        session.execute(text("DELETE FROM daily_candles WHERE trade_date = :d"), {"d": DAY})
    before = service().compute(req)
    assert before.time[-1] == np.datetime64(earlier)
    assert service().compute(req).source == "cache"

    summary = daily_candles(trade_date=DAY.isoformat(), market="KOSPI")
    assert summary["candles"]["inserted"] > 0

    after = service().compute(req)
    assert after.source == "computed"
    assert after.time[-1] == np.datetime64(DAY)
    assert cache.stats().invalidated >= 2  # the indicator entry and the candle entry


def test_a_write_computed_from_old_candles_is_dropped_after_an_invalidation(cache, history):
    instrument = history[4][1]
    # Its own key prefix: prefetch tasks of earlier tests cannot touch these counters.
    backend = RedisCache(redis.Redis.from_url(get_settings().redis_url), prefix="qb:test-stale")
    backend.clear()
    entry = Entry.indicator(instrument, "1d", "*..*#10", "sma", "period=5,source='close'")
    (read,) = backend.get_many([entry])
    assert read.value is None
    backend.invalidate([instrument])  # new candles land while the reader computes
    assert backend.put_many([(entry, b"stale", read.generation)]) == 0
    assert backend.get_many([entry])[0].value is None
    assert backend.stats().stale_writes == 1
    (fresh,) = backend.get_many([entry])
    assert backend.put_many([(entry, b"fresh", fresh.generation)]) == 1


def test_the_batch_answers_each_item_dedups_and_isolates_failures(celery_app, cache, history):
    a, b = history[5][1], history[6][1]
    requests = [
        {"instrument": a, "indicator": "rsi", "end": DAY.isoformat(), "limit": 40},
        {"instrument": a, "indicator": "atr", "end": DAY.isoformat(), "limit": 40},
        {"instrument": a, "indicator": "nope"},
        {"instrument": "KOSPI:999999", "indicator": "rsi"},
        {"instrument": b, "indicator": "sma", "params": {"period": 10}, "limit": 40},
        {"instrument": a, "indicator": "rsi", "end": DAY.isoformat(), "limit": 40},
    ]
    out: list[Any] = get_indicators(requests)
    assert [getattr(o, "source", None) for o in out] == [
        "computed",
        "computed",
        None,
        None,
        "computed",
        "computed",
    ]
    assert out[2]["error"]["type"] == "ValidationError"
    assert out[2]["error"]["field"] == "requests[2].indicator"
    assert out[3]["error"]["type"] == "NotFound"
    np.testing.assert_array_equal(out[0].values["rsi"], out[5].values["rsi"])
    np.testing.assert_array_equal(
        out[0].values["rsi"], _db_values(a, "rsi", {"period": 14}, 40)["rsi"]
    )
    stats = cache.stats()
    # rsi (once, deduplicated), atr, sma: three entries computed; a's candles loaded once.
    assert stats.candle_misses == 2
    again: list[Any] = get_indicators(requests[:2])
    assert [o.source for o in again] == ["cache", "cache"]


def test_a_batch_of_more_than_ten_is_rejected_whole(cache, history):

    with pytest.raises(ValidationError, match="1 to 10"):
        get_indicators([{"instrument": history[0][1], "indicator": "rsi"}] * 11)


def test_items_past_the_batch_timeout_get_a_timeout_error_and_still_fill_the_cache(cache, history):
    @contextmanager
    def slow_sessions():
        time.sleep(0.5)
        with session_scope() as session:
            yield session

    svc = IndicatorService(cache, slow_sessions, batch_timeout=0.2)
    instrument = history[7][1]
    item = {"instrument": instrument, "indicator": "obv", "end": DAY.isoformat(), "limit": 30}
    t0 = time.monotonic()
    (answer,) = svc.compute_batch([item])
    assert time.monotonic() - t0 < 0.45
    assert answer["ok"] is False
    assert answer["error"]["type"] == "TimeoutError"
    time.sleep(1.5)  # the work went on in the background
    (later,) = svc.compute_batch([item])
    assert later["source"] == "cache"


def test_a_cache_outage_falls_back_to_the_database_with_a_warning(history):
    dead = SafeCache(
        RedisCache(redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)),
        retry_after=60,
    )
    svc = IndicatorService(dead)
    instrument = history[8][1]
    with capture_logs() as logs:
        first = svc.compute(IndicatorRequest.create(instrument, "ema", end=DAY, limit=30))
        second = svc.compute(IndicatorRequest.create(instrument, "ema", end=DAY, limit=30))
    assert (first.source, second.source) == ("computed", "computed")
    np.testing.assert_array_equal(
        first.values["ema"], _db_values(instrument, "ema", {"period": 20}, 30)["ema"]
    )
    warnings = [e for e in logs if e["event"] == "cache.unavailable"]
    assert len(warnings) == 1  # once per outage, not once per request
    assert warnings[0]["log_level"] == "warning"
    assert dead.stats().errors >= 1


def test_precompute_stores_what_an_on_demand_request_would_compute(cache, history):
    members = history[:20]
    summary = service().precompute(members, end=DAY, bars=SCAN_BARS)
    assert summary["with_bars"] == 20
    assert summary["series"] == 20 * len(SCAN_SET)
    assert summary["stored"] == 20 * (len(SCAN_SET) + 1)
    no_cache = IndicatorService(SafeCache(_NoCache()))
    for _ident, name in members[:3]:
        for indicator, params in SCAN_SET:
            req = IndicatorRequest.create(name, indicator, dict(params), end=DAY, limit=SCAN_BARS)
            cached = service().compute(req)
            assert cached.source == "cache", (name, indicator)
            fresh = no_cache.compute(req)
            for output, values in fresh.values.items():
                np.testing.assert_array_equal(cached.values[output], values)


class _NoCache:
    name = "none"

    def get_many(self, entries, *, count=True, count_candles=True):

        return [Read(None, 0) for _ in entries]

    def peek_many(self, groups):
        return [[None] * len(fields) for _, _, fields in groups]

    def put_many(self, items):
        return 0

    def generations(self, instruments):
        return [0 for _ in instruments]

    def invalidate(self, instruments):
        return 0

    def stats(self):

        return CacheStats(backend=self.name)

    def clear(self):
        pass


def test_the_krx_close_pipeline_chains_collection_precompute_and_the_vcp_scan(
    celery_app, cache, history
):

    sent = celery_app.send_task(
        "quantbeat.pipeline.krx_close", kwargs={"trade_date": DAY.isoformat(), "market": "KOSPI"}
    )
    started = sent.get(timeout=60)
    assert started["steps"] == [
        "quantbeat.collect.daily_candles",
        "quantbeat.market.collect_reference",
        "quantbeat.market.gate",
        "quantbeat.indicators.precompute",
        "quantbeat.news.collect",
        "quantbeat.track.update",
        "quantbeat.scans.run",
    ]
    scan = celery_app.AsyncResult(started["chain"]).get(timeout=120)
    # the Market Gate of the day was computed before the scan, which stores its colour
    from quantbeat.services.market import gate_report

    gate = gate_report(DAY)
    assert gate["simulated"] is True
    assert gate["color"] in ("GREEN", "YELLOW", "RED", "UNKNOWN")
    assert (scan["strategy"], scan["trade_date"]) == ("vcp", DAY.isoformat())
    assert scan["total"] == len(history)
    done = celery_app.AsyncResult(scan["chord"]).get(timeout=120)
    assert done["state"] == "completed"
    assert done["scanned"] == len(history)
    with session_scope() as session:
        run = session.get(ScanRun, scan["run_id"])
        assert run is not None
        assert run.state == "completed"
    # ... and the finished scan started the analysis of its top candidates (offline here)
    analysis = celery_app.AsyncResult(done["analysis"]).get(timeout=60)
    assert analysis["strategy"] == "vcp"

    top = [c.instrument for c in candidates("vcp", DAY, limit=5)]
    assert analysis["instruments"] == top  # the top QUANTBEAT_AI_TOP_N (5) candidates
    assert bool(analysis["chord"]) == bool(top)
    if top:
        finished = celery_app.AsyncResult(analysis["chord"]).get(timeout=120)
        assert finished["analysed"] == len(analysis["instruments"])
        with session_scope() as session:
            rows = session.execute(
                select(AiAnalysis.analyzer, AiAnalysis.status).where(AiAnalysis.trade_date == DAY)
            ).all()
        assert len(rows) == len(analysis["instruments"])
        assert set(rows) == {("offline", "succeeded")}
    # the precompute step ran before the scan: the scan indicators are cached
    instrument = history[10][1]
    hit = get_indicator(instrument, "rs_raw", {}, end=DAY, limit=SCAN_BARS)
    assert hit.source == "cache"


def test_the_cli_prints_values_and_names_a_bad_parameter(cache, history, capsys):
    instrument = history[0][1]
    code = cli.main(
        ["indicators", "get", instrument, "rsi", "-p", "period=9", "--end", str(DAY), "--inline"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"rsi(period=9) of {instrument}" in out
    assert str(DAY) in out

    code = cli.main(["indicators", "get", instrument, "rsi", "-p", "bogus=1", "--inline"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert "bogus" in err
    assert "period" in err  # the known parameters are listed

    assert cli.main(["indicators", "cache", "--json"]) == 0
    assert '"hit_rate"' in capsys.readouterr().out


def test_the_cli_exits_2_naming_an_unknown_instrument(celery_app, cache, history, capsys):
    """Like an invalid backtest spec: the user named something that does not exist (exit 2,
    not 5 "the work failed"), in this process and through a cpu worker."""
    for extra in (["--inline"], []):
        code = cli.main(["indicators", "get", "KOSPI:999999", "rsi", *extra])
        err = capsys.readouterr().err
        assert code == cli.EXIT_USAGE, (extra, err)
        assert "KOSPI:999999" in err


def test_the_redis_test_url_is_the_one_in_use():
    # Guards the fixtures above: the cache under test is the test Redis, database 6.
    assert get_settings().redis_url == f"{TEST_REDIS_URL}/6"


def test_a_miss_prefetches_the_default_indicators_over_the_same_candles(cache, history):
    instrument = history[11][1]
    svc = IndicatorService(cache, prefetch=["macd", "obv"])
    req = IndicatorRequest.create(instrument, "rsi", end=DAY, limit=45)
    assert svc.compute(req).source == "computed"
    for name in ("macd", "obv"):
        other = svc.compute(IndicatorRequest.create(instrument, name, end=DAY, limit=45))
        assert other.source == "cache", name
        np.testing.assert_array_equal(
            next(iter(other.values.values())),
            next(iter(_db_values(instrument, name, {}, 45).values())),
        )
    # not prefetched: a non-default parameter, and indicators outside the list
    assert svc.compute(IndicatorRequest.create(instrument, "atr", end=DAY, limit=45)).source == (
        "computed"
    )
    no_prefetch = IndicatorService(cache)
    req2 = IndicatorRequest.create(instrument, "rsi", end=DAY, limit=46)
    no_prefetch.compute(req2)
    again = no_prefetch.compute(IndicatorRequest.create(instrument, "macd", end=DAY, limit=46))
    assert again.source == "computed"


def test_a_worker_miss_sends_the_prefetch_as_a_follow_up_task(celery_app, cache, history):

    instrument = history[12][1]
    assert get_indicator(instrument, "sma", {"period": 7}, end=DAY, limit=44).source == ("computed")
    entry = Entry.indicator(instrument, "1d", f"*..{DAY}#44", "macd", "fast=12,signal=9,slow=26")
    found = eventually(lambda: cache.get_many([entry], count=False)[0].value, bool, timeout=20)
    assert found is not None
    assert get_indicator(instrument, "macd", None, end=DAY, limit=44).source == "cache"


def test_one_failing_indicator_does_not_fail_its_neighbours_in_a_group(cache, history, monkeypatch):

    real = module.compute  # type: ignore[attr-defined]

    def broken(name, candles, params=None):
        if name == "obv":
            raise RuntimeError("obv broke")
        return real(name, candles, params)

    monkeypatch.setattr(module, "compute", broken)
    svc = IndicatorService(cache, prefetch=["obv"])  # a failing prefetch is only logged
    instrument = history[13][1]
    day = DAY.isoformat()
    answers = svc.compute_batch(
        [
            {"instrument": instrument, "indicator": "rsi", "end": day, "limit": 30},
            {"instrument": instrument, "indicator": "obv", "end": day, "limit": 30},
        ]
    )
    assert answers[0]["ok"] is True
    assert answers[1]["ok"] is False
    assert answers[1]["error"] == {"type": "RuntimeError", "message": "obv broke"}
    with pytest.raises(RuntimeError, match="obv broke"):
        svc.compute(IndicatorRequest.create(instrument, "obv", end=DAY, limit=31))


def test_a_lost_generation_never_lets_a_stale_write_in(cache, history):
    client = redis.Redis.from_url(get_settings().redis_url)
    backend = RedisCache(client, prefix="qb:test-gen")
    backend.clear()
    instrument = history[14][1]
    entry = Entry.indicator(instrument, "1d", "*..*#10", "obv", "")
    (read,) = backend.get_many([entry])
    client.delete(f"qb:test-gen:gen:{instrument}")  # evicted, expired or lost in a restart
    assert backend.put_many([(entry, b"stale", read.generation)]) == 0
    (again,) = backend.get_many([entry])
    assert again.generation > read.generation  # a new generation, never an old one again
    assert backend.put_many([(entry, b"fresh", again.generation)]) == 1
    backend.invalidate([instrument])
    assert backend.generations([instrument])[0] > again.generation


def test_an_unreachable_cache_at_invalidation_queues_a_retrying_task(
    celery_app, cache, history, monkeypatch
):

    instrument = history[15][1]
    assert service().compute(IndicatorRequest.create(instrument, "rsi", limit=20)).source == (
        "computed"
    )
    dead = SafeCache(
        RedisCache(redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2))
    )
    monkeypatch.setattr(module, "indicator_cache", lambda settings=None: dead)
    market, ticker = instrument.split(":")
    assert module.invalidate_stored(pd.DataFrame({"market": [market], "ticker": [ticker]})) is None
    monkeypatch.undo()

    def invalidated() -> int:
        return int(cache.stats().invalidated)

    assert eventually(invalidated, lambda n: n >= 1, timeout=20) >= 1
    assert service().compute(IndicatorRequest.create(instrument, "rsi", limit=20)).source == (
        "computed"
    )


def test_a_bare_ticker_resolves_to_the_listed_instrument(cache, history):

    market, ticker = history[16][1].split(":")
    with session_scope() as session:
        session.add(
            Instrument(
                market="KOSDAQ",
                ticker=ticker,
                name="moved to KOSPI",
                listing_status="delisted",
                source="test",
            )
        )
    try:
        result = service().compute(IndicatorRequest.create(ticker, "sma", end=DAY, limit=20))
        assert result.request.instrument == f"{market}:{ticker}"
    finally:
        with session_scope() as session:
            session.execute(
                text("DELETE FROM instruments WHERE market = 'KOSDAQ' AND ticker = :t"),
                {"t": ticker},
            )


def test_the_batch_api_sends_validated_json_whatever_the_caller_passed(celery_app, cache, history):
    instrument = history[17][1]
    out: list[Any] = get_indicators(
        [
            {
                "instrument": instrument,
                "indicator": "sma",
                "params": {"period": np.int64(12)},
                "end": DAY,
                "limit": np.int64(30),
            }
        ]
    )
    assert out[0].source == "computed"
    assert out[0].request.params == {"period": 12, "source": "close"}
