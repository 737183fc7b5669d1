"""The API's indicator, analysis, data-status and admin routes over real PostgreSQL, Redis
and a real Celery worker: indicator misses computed by the cpu worker then served from the
cache, a batch answering each item on its own, stored analyses and news with their
simulated flags, the data status page (freshness, latest data, gaps, jobs), keyset-paginated
job history, and a dead letter replayed through the API and run again by the worker."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, text

from db.ai import store_news
from db.candles import load_candles, resolve_instrument
from db.engine import session_scope
from db.jobs import record_job_end, record_job_start
from db.models import DailyCandle, DeadLetter, Instrument, JobAttempt, JobRun, NewsItem
from quant.errors import ValidationError
from quant.indicators import compute
from quant.news import LocalFileSource, SimulatedNewsSource, match_instruments
from quantbeat.api.app import create_app
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import latest_krx_session
from quantbeat.services import api_keys
from quantbeat.services.ai import analyze
from quantbeat.services.indicators import cache_stats, forget_service, indicator_cache
from tests.integration.helpers import dead_letter, eventually, job_run, small_kospi_history

pytestmark = pytest.mark.integration

FAKE_KEY = "AIzaSyD-" + "q" * 31


@pytest.fixture(scope="module")
def end() -> dt.date:
    """The latest closed KRX session: the seeded history ends there, so the data status
    judges it fresh."""
    return latest_krx_session(get_settings())


SECRET_IN_URL = "s3cr3tT0kenValue42"


def _store_news(names: list[str], end: dt.date, tmp: Path) -> None:
    """The simulated news source's items of ``end`` about ``names[:3]`` (every instrument
    gets news: rate 1), and one item of a local feed (not simulated) about ``names[0]``
    whose link carries a token."""
    with session_scope() as session:
        ids = {name: resolve_instrument(session, name)[0] for name in names}
        companies = {i: n for i, n in session.execute(select(Instrument.id, Instrument.name))}
    simulated = SimulatedNewsSource(
        [(name, companies[ids[name]]) for name in names[:3]], day=end, rate=1.0
    ).fetch()
    feed = tmp / "local.jsonl"
    ticker = names[0].split(":")[1]
    feed.write_text(
        f'{{"url": "https://news.example.invalid/a?access_token={SECRET_IN_URL}", '
        f'"title": "{ticker} 수주 공시", "summary": "contract", '
        f'"published_at": "{end.isoformat()}T02:00:00Z"}}\n',
        encoding="utf-8",
    )
    local = match_instruments(LocalFileSource(feed).fetch().items, {names[0]: [ticker]})
    with session_scope() as session:
        assert store_news(session, simulated.items, ids, simulated=True)["new"] >= 3
        assert store_news(session, local, ids)["new"] == 1


@pytest.fixture(scope="module")
def names(database: str, end: dt.date, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """About 40 sessions of simulated KOSPI candles up to ``end`` (every table emptied
    first), news of ``end`` and three offline analyses of ``end`` that read it."""
    first = end - dt.timedelta(days=60)
    found = small_kospi_history(database, first.isoformat(), end.isoformat(), universe_size=20)
    assert len(found) >= 5
    _store_news(found, end, tmp_path_factory.mktemp("news"))
    for name in found[:3]:
        analyze(name, end, "closing_bet")  # no Gemini key in tests: the offline analyzer
    forget_service()
    indicator_cache().clear()
    return found


@pytest.fixture(scope="module")
def keys(names: list[str]) -> dict[str, str]:
    """A read-only key and an admin key (created after the tables were emptied)."""
    tag = uuid.uuid4().hex[:6]
    read, _ = api_keys.create(f"reader-{tag}", ["read"], rate_per_minute=100_000)
    admin, _ = api_keys.create(f"admin-{tag}", ["admin"], rate_per_minute=100_000)
    return {"read": read, "admin": admin}


@pytest.fixture(scope="module")
def client(keys: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(get_settings())) as c:
        yield c


def _get(client: TestClient, key: str, url: str, **params: Any) -> Any:
    return client.get(url, params=params, headers={"Authorization": f"Bearer {key}"})


def _field(response: Any) -> str:
    body = response.json()
    assert response.headers["content-type"].startswith("application/problem+json"), body
    return str(body["errors"][0]["field"])


# --- indicators -------------------------------------------------------------------------------
def test_an_indicator_is_computed_by_the_worker_then_served_from_the_cache(
    celery_app, client, keys, names, end
):
    name = names[0]
    url = f"/api/v1/indicators/{name}"
    query = {"indicator": "rsi", "param": "period=14", "end": end.isoformat(), "limit": 40}
    first = _get(client, keys["read"], url, **query)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["source"] == "computed"
    assert body["request"]["params"] == {"period": 14}
    with session_scope() as session:
        ident, _ = resolve_instrument(session, name)
        candles = load_candles(session, ident, "1d", end=end, limit=40)
    expected = compute("rsi", candles, {"period": 14})["rsi"]
    got = np.array([np.nan if v is None else v for v in body["values"]["rsi"]])
    np.testing.assert_allclose(got, expected, equal_nan=True)
    assert body["time"][-1] == end.isoformat()

    again = _get(client, keys["read"], url, **query)
    assert again.status_code == 200
    assert again.json()["source"] == "cache"
    assert again.json()["values"] == body["values"]

    bad = _get(client, keys["read"], url, **{**query, "param": "period=-3"})
    assert bad.status_code == 422
    assert _field(bad) == "query.param.period"
    unknown = _get(client, keys["read"], "/api/v1/indicators/KOSPI:999999", indicator="rsi")
    assert unknown.status_code == 404
    assert "KOSPI:999999" in unknown.json()["detail"]

    stats = _get(client, keys["read"], "/api/v1/cache/stats")
    assert stats.status_code == 200
    counters = stats.json()
    assert counters["hits"] >= 1
    assert counters["misses"] >= 1
    assert counters == cache_stats().as_dict()


def test_a_batch_answers_every_item_on_its_own_and_more_than_ten_is_refused(
    celery_app, client, keys, names, end
):
    ticker = names[1].split(":")[1]
    requests = [
        {"instrument": names[1], "indicator": "sma", "params": {"period": 5}, "limit": 30},
        {"instrument": "KOSPI:999999", "indicator": "sma"},
        {"instrument": names[1], "indicator": "no_such_indicator"},
        {"instrument": ticker, "indicator": "ema", "end": end.isoformat(), "limit": 30},
        {"instrument": names[2], "indicator": "rsi", "limit": -1},
    ]
    answer = client.post(
        "/api/v1/indicators/batch",
        json={"requests": requests},
        headers={"X-API-Key": keys["read"]},
    )
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [i["ok"] for i in items] == [True, False, False, True, False]
    assert len(items[0]["values"]["sma"]) == 30
    assert items[3]["request"]["instrument"] == names[1]  # the bare ticker, resolved
    assert items[1]["error"]["type"] == "NotFound"
    assert items[2]["error"]["field"] == "requests[2].indicator"
    assert items[4]["error"]["field"] == "requests[4].limit"

    eleven = [{"instrument": names[0], "indicator": "sma"}] * 11
    refused = client.post(
        "/api/v1/indicators/batch", json={"requests": eleven}, headers={"X-API-Key": keys["read"]}
    )
    assert refused.status_code == 422
    assert _field(refused) == "body.requests"


# --- analyses and news ------------------------------------------------------------------------
def test_stored_analyses_and_news_carry_their_simulated_flags(client, keys, names, end):
    found = _get(client, keys["read"], "/api/v1/analyses")
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["trade_date"] == end.isoformat()
    assert {i["instrument"] for i in body["items"]} == set(names[:3])
    assert all(
        i["simulated"] and i["offline"] and i["status"] == "succeeded" for i in body["items"]
    )
    assert body["simulated"] is True
    scores = [i["news_score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)

    same = _get(
        client, keys["read"], "/api/v1/analyses", date=end.isoformat(), strategy="Closing-Bet"
    )
    assert len(same.json()["items"]) == 3
    other = _get(client, keys["read"], "/api/v1/analyses", strategy="vcp")
    assert other.status_code == 200
    assert other.json()["items"] == []
    bad = _get(client, keys["read"], "/api/v1/analyses", strategy="no_such_strategy")
    assert bad.status_code == 422
    assert _field(bad) == "query.strategy"

    one = _get(client, keys["read"], f"/api/v1/analyses/{names[0]}")
    assert one.status_code == 200, one.text
    detail = one.json()
    assert (detail["instrument"], detail["trade_date"]) == (names[0], end.isoformat())
    assert [a["strategy"] for a in detail["analyses"]] == ["closing_bet"]
    assert all(names[0] in n["instruments"] for n in detail["news"])
    assert {n["simulated"] for n in detail["news"]} == {True, False}
    assert detail["analyses"][0]["news_count"] == len(detail["news"])
    never = _get(client, keys["read"], f"/api/v1/analyses/{names[4]}")
    assert never.status_code == 404
    assert names[4] in never.json()["detail"]

    news = _get(client, keys["read"], "/api/v1/news", date=end.isoformat())
    assert news.status_code == 200, news.text
    items = news.json()["items"]
    with session_scope() as session:
        stored = session.execute(select(func.count()).select_from(NewsItem)).scalar_one()
    assert len(items) == stored  # every item was published on that day (KST)
    assert news.json()["simulated"] is True
    flags = {i["source"]: i["simulated"] for i in items}
    assert flags == {"simulated": True, "local": False}
    (local,) = [i for i in items if i["source"] == "local"]
    assert local["instruments"] == [names[0]]
    assert SECRET_IN_URL not in news.text
    stamps = [i["published_at"] for i in items]
    assert stamps == sorted(stamps, reverse=True)
    assert _get(client, keys["read"], "/api/v1/news").json() == news.json()  # default: newest day
    empty = _get(client, keys["read"], "/api/v1/news", date="2001-01-02")
    assert (empty.status_code, empty.json()["items"]) == (200, [])


# --- data status --------------------------------------------------------------------------------
def test_the_data_status_reports_freshness_latest_data_gaps_and_jobs(client, keys, names, end):
    with session_scope() as session:
        days = sorted(
            session.execute(select(DailyCandle.trade_date).distinct()).scalars(), reverse=True
        )
        hole = days[5]
        ident, _ = resolve_instrument(session, names[3])
        session.execute(
            delete(DailyCandle).where(
                DailyCandle.instrument_id == ident, DailyCandle.trade_date == hole
            )
        )
    found = _get(client, keys["read"], "/api/v1/data/status", sessions=20)
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["freshness"]["details"]["candles"]["latest"] == end.isoformat()
    assert body["latest"]["candles"] == {"latest": end.isoformat(), "simulated": True}
    assert body["latest"]["analyses"]["latest"] == end.isoformat()
    assert body["simulated"] is True
    candles = body["gaps"]["candles"]
    assert (candles["sessions"], candles["end"]) == (20, end.isoformat())
    assert {
        "instrument": names[3],
        "first": hole.isoformat(),
        "last": hole.isoformat(),
        "missing": 1,
    } in candles["gaps"]
    assert body["gaps"]["crypto"]["dataset"] == "crypto-60m"
    since = dt.datetime.fromisoformat(body["jobs"]["since"])
    with session_scope() as session:
        states = dict(
            session.execute(
                select(JobRun.state, func.count())
                .where(JobRun.started_at >= since)
                .group_by(JobRun.state)
            ).all()
        )
    assert body["jobs"]["states"] == states
    assert body["jobs"]["total"] == sum(states.values())

    # read-only: the gap is still there, nothing was queued to fill it
    with session_scope() as session:
        still = session.execute(
            select(func.count()).where(
                DailyCandle.instrument_id == ident, DailyCandle.trade_date == hole
            )
        ).scalar_one()
    assert still == 0
    wide = _get(client, keys["read"], "/api/v1/data/status", sessions=261)
    assert wide.status_code == 422
    assert _field(wide) == "query.sessions"


# --- admin --------------------------------------------------------------------------------------
def _empty_history() -> None:
    with session_scope() as session:
        for model in (JobAttempt, JobRun, DeadLetter):
            session.execute(delete(model))


def test_jobs_are_paged_without_duplicates_and_need_the_admin_scope(celery_app, client, keys):
    _empty_history()
    flaky = celery_app.send_task(
        "quantbeat.ops.test_flaky", kwargs={"fail_times": 1, "api_key": FAKE_KEY}
    )
    assert flaky.get(timeout=60) == {"retries": 1}
    # 24 more runs, 6 of them started at the very same instant (ties broken by row id)
    base = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with session_scope() as session:
        for i in range(24):
            started = base if i < 6 else base + dt.timedelta(seconds=i)
            task_id = f"seeded-{i:02d}-{uuid.uuid4().hex[:6]}"
            record_job_start(
                session,
                task_id=task_id,
                task_name="quantbeat.ops.test_once",
                queue="io",
                args=[f"m{i}"],
                kwargs={},
                worker="seed@localhost",
                retries=0,
                started_at=started,
            )
            state = "failed" if i % 4 == 0 else "succeeded"
            record_job_end(
                session,
                task_id=task_id,
                state=state,
                finished_at=started + dt.timedelta(seconds=1),
                duration_ms=1000.0,
                error="boom" if state == "failed" else None,
            )
    # Only this test's runs (quantbeat.ops.*): follow-up tasks of other tests (indicator
    # prefetches) may still be recorded meanwhile.
    ours = "quantbeat.ops.*"
    with session_scope() as session:
        expected = list(
            session.execute(
                select(JobRun.task_id)
                .where(JobRun.task_name.like("quantbeat.ops.%"))
                .order_by(JobRun.started_at.desc(), JobRun.id.desc())
            ).scalars()
        )
    assert len(expected) == 25

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 7, "task": ours}
        if cursor:
            params["cursor"] = cursor
        page = _get(client, keys["admin"], "/api/v1/jobs", **params)
        assert page.status_code == 200, page.text
        seen += [item["task_id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert seen == expected  # every run once, in order
    assert pages == 4

    failed = _get(client, keys["admin"], "/api/v1/jobs", state="failed", task=ours, limit=500)
    failed = failed.json()
    assert len(failed["items"]) == 6
    assert failed["next_cursor"] is None
    flaky_only = _get(client, keys["admin"], "/api/v1/jobs", task="quantbeat.ops.test_f*").json()
    assert [i["task_id"] for i in flaky_only["items"]] == [flaky.id]

    shown = _get(client, keys["admin"], f"/api/v1/jobs/{flaky.id}")
    assert shown.status_code == 200, shown.text
    job = shown.json()
    assert job["kwargs"] == {"fail_times": 1, "api_key": "***"}
    assert [(e["attempt"], e["state"]) for e in job["executions"]] == [
        (1, "retrying"),
        (2, "succeeded"),
    ]
    assert FAKE_KEY not in shown.text
    assert _get(client, keys["admin"], "/api/v1/jobs/no-such-task").status_code == 404

    forged = base64.urlsafe_b64encode(b'["yesterday", 3]').decode().rstrip("=")
    for bad in ("!!!", forged, base64.urlsafe_b64encode(b"[1, 2]").decode()):
        refused = _get(client, keys["admin"], "/api/v1/jobs", cursor=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert _field(refused) == "query.cursor"
    assert _get(client, keys["admin"], "/api/v1/jobs", limit=501).status_code == 422

    denied = _get(client, keys["read"], "/api/v1/jobs")
    assert denied.status_code == 403
    assert "lacks the scope 'admin'" in denied.json()["detail"]
    assert _get(client, keys["read"], "/api/v1/dead-letters").status_code == 403


def test_a_dead_letter_is_replayed_through_the_api_and_runs_again(celery_app, client, keys):
    _empty_history()
    gate = f"g-{uuid.uuid4().hex[:8]}"
    failing = celery_app.send_task(
        "quantbeat.ops.test_gated", args=[gate], kwargs={"failure": "validation"}
    )
    secret = celery_app.send_task(
        "quantbeat.ops.test_gated",
        args=[f"{gate}-masked"],
        kwargs={"failure": "validation", "api_key": FAKE_KEY},
    )
    for result in (failing, secret):
        with pytest.raises(ValidationError):
            result.get(timeout=60)
    letter = eventually(lambda: dead_letter(failing.id), lambda row: row is not None)
    masked = eventually(lambda: dead_letter(secret.id), lambda row: row is not None)
    assert letter is not None
    assert masked is not None

    listed = _get(client, keys["admin"], "/api/v1/dead-letters", reason="validation_error")
    assert listed.status_code == 200, listed.text
    assert {r["id"] for r in listed.json()} == {letter.id, masked.id}
    assert FAKE_KEY not in listed.text

    redis.Redis.from_url(get_settings().redis_url).set(f"test:gate:{gate}", 1, ex=600)
    replayed = client.post(
        f"/api/v1/dead-letters/{letter.id}/replay", headers={"X-API-Key": keys["admin"]}
    )
    assert replayed.status_code == 202, replayed.text
    body = replayed.json()
    assert body["task_id"] != failing.id
    assert body["task_name"] == "quantbeat.ops.test_gated"
    assert replayed.headers["location"] == body["status_url"] == f"/api/v1/jobs/{body['task_id']}"
    assert celery_app.AsyncResult(body["task_id"]).get(timeout=30) == {"gate": gate, "retries": 0}
    assert job_run(body["task_id"]).state == "succeeded"
    assert _get(client, keys["admin"], body["status_url"]).json()["state"] == "succeeded"
    with session_scope() as session:
        stored = session.get(DeadLetter, letter.id)
        assert stored is not None
        assert (stored.replays, stored.replayed_task_id) == (1, body["task_id"])

    refused = client.post(
        f"/api/v1/dead-letters/{masked.id}/replay", headers={"X-API-Key": keys["admin"]}
    )
    assert refused.status_code == 409
    assert "kwargs.api_key" in refused.json()["detail"]
    missing = client.post(
        "/api/v1/dead-letters/999999/replay", headers={"X-API-Key": keys["admin"]}
    )
    assert missing.status_code == 404
    denied = client.post(
        f"/api/v1/dead-letters/{letter.id}/replay", headers={"X-API-Key": keys["read"]}
    )
    assert denied.status_code == 403


def test_instruments_seeded_here_are_the_simulated_market(names):
    """The simulated flags above hold because the seeded instruments are simulated ones."""
    with session_scope() as session:
        sources = set(
            session.execute(select(Instrument.source).where(Instrument.market == "KOSPI")).scalars()
        )
        assert sources == {"simulated"}
        assert session.execute(text("SELECT count(*) FROM ai_analyses")).scalar_one() == 3
