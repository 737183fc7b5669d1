"""The analysis service against a fake Gemini (in-thread, REST format), PostgreSQL and
Redis: results cached per (instrument, date, model, prompt version) with token counts,
throttling starts the shared cooldown, rejected requests and invalid output are recorded as
failed (not retried), the key never reaches the logs; news is stored once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import func, select, text

from db.ai import store_news
from db.candles import resolve_instrument
from db.engine import session_scope
from db.models import AiAnalysis, NewsItem, NewsMention
from quant.ai import GeminiAnalyzer
from quant.errors import RateLimited, ServiceUnavailable
from quant.news import LocalFileSource, match_instruments
from quantbeat.infra.ratelimit import WaitTooLong
from quantbeat.infra.settings import get_settings, reset_settings
from quantbeat.services.ai import analyze, limiter
from tests.integration.helpers import small_kospi_history
from tests.support import fake_gemini as fg

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 20)
KEY = "AIzaTESTKEY0123456789abcdefghijklmnopqrs"


@pytest.fixture(scope="module")
def names(database: str) -> list[str]:
    return small_kospi_history(database, "2026-11-10", DAY.isoformat())


@pytest.fixture
def fake(names: list[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[fg.FakeGemini]:
    # a quota these tests do not wait for: 600 requests a minute (0.1 s apart)
    monkeypatch.setenv("QUANTBEAT_GEMINI_RPM", "600")
    reset_settings()
    client = redis.Redis.from_url(get_settings().redis_url)
    for key in client.scan_iter("quantbeat:ai:*"):
        client.delete(key)
    with session_scope() as session:
        session.execute(text("DELETE FROM ai_analyses"))
    with fg.FakeGemini() as server:
        yield server
    monkeypatch.undo()
    reset_settings()


def _gemini(server: fg.FakeGemini) -> GeminiAnalyzer:
    return GeminiAnalyzer(KEY, "gemini-test", base_url=server.base_url, timeout=5.0)


def _rows() -> list[AiAnalysis]:
    with session_scope() as session:
        rows = list(session.execute(select(AiAnalysis).order_by(AiAnalysis.id)).scalars())
        for row in rows:
            session.expunge(row)
        return rows


def test_a_success_is_stored_with_its_tokens_and_then_served_from_the_cache(fake, names, capsys):
    fake.script(default=fg.ok(news_score=2, usage={"promptTokenCount": 321,
                                                   "candidatesTokenCount": 45,
                                                   "totalTokenCount": 366}))  # fmt: skip
    first = analyze(names[0], DAY, "closing_bet", analyzer=_gemini(fake))
    assert first["status"] == "succeeded"
    assert first["cached"] is False
    assert first["analyzer"] == "gemini"
    assert first["news_score"] == 2
    assert first["tokens"] == 366
    again = analyze(names[0], DAY, "closing_bet", analyzer=_gemini(fake))
    assert again["cached"] is True
    assert len(fake.log) == 1  # the second answer came from PostgreSQL, not the API
    (row,) = _rows()
    assert (row.prompt_tokens, row.output_tokens, row.total_tokens) == (321, 45, 366)
    assert row.model == "gemini-test"
    # the request carried the key; nothing printed or logged did
    assert fake.log[0].api_key == KEY
    out = capsys.readouterr()
    assert KEY not in out.out + out.err


def test_a_429_starts_the_shared_cooldown_and_nothing_is_sent_during_it(fake, names):
    fake.script(fg.status(429, retry_after=2), default=fg.ok())
    with pytest.raises(RateLimited) as info:
        analyze(names[1], DAY, "closing_bet", analyzer=_gemini(fake))
    assert info.value.retry_after == pytest.approx(2.0)
    assert 1.0 < limiter().cooldown_left() <= 2.0
    with pytest.raises(WaitTooLong):  # another instrument, another worker: held back
        analyze(names[2], DAY, "closing_bet", analyzer=_gemini(fake))
    assert len(fake.log) == 1
    assert _rows() == []  # a throttled attempt is retried by the task, not recorded


@pytest.mark.parametrize("code", [503, 504])
def test_unavailable_answers_are_transient_and_cool_down_too(fake, names, code):
    fake.script(fg.status(code), default=fg.ok())
    with pytest.raises(ServiceUnavailable):
        analyze(names[3], DAY, "closing_bet", analyzer=_gemini(fake))
    assert limiter().cooldown_left() > 0  # QUANTBEAT_AI_COOLDOWN when no Retry-After


@pytest.mark.parametrize(
    ("step", "needle"),
    [
        (fg.status(400, google_status="INVALID_ARGUMENT"), "400"),
        (fg.status(403, google_status="PERMISSION_DENIED"), "403"),
        (fg.status(404, google_status="NOT_FOUND"), "404"),
        (fg.malformed(), "JSON"),
        (fg.schema_violation("news_score", 7), "news_score"),
    ],
)
def test_rejected_requests_and_invalid_output_are_recorded_as_failed(fake, names, step, needle):
    fake.script(step, default=fg.ok(news_score=1))
    failed = analyze(names[4], DAY, "closing_bet", analyzer=_gemini(fake))
    assert failed["status"] == "failed"
    assert needle in failed["error"]
    assert KEY not in failed["error"]
    (row,) = _rows()
    assert row.status == "failed"
    # not retried by itself: one request; a later run succeeds and replaces the failure
    assert len(fake.log) == 1
    done = analyze(names[4], DAY, "closing_bet", analyzer=_gemini(fake))
    assert done["status"] == "succeeded"
    (row,) = _rows()
    assert row.status == "succeeded"
    assert row.error is None


def test_news_is_stored_once_per_article_with_its_mentions(names, tmp_path):

    ticker = names[0].split(":")[1]
    feed = tmp_path / "today.jsonl"
    feed.write_text(
        f'{{"url": "https://news.example.invalid/a?utm_source=x", "title": "{ticker} 수주 공시",'
        ' "summary": "contract", "published_at": "2026-11-20T01:00:00Z"}\n'
        '{"url": "https://news.example.invalid/a", "title": "duplicate of the same article",'
        ' "summary": "", "published_at": "2026-11-20T01:00:00Z"}\n'
        "not json\n",
        encoding="utf-8",
    )
    fetched = LocalFileSource(feed).fetch()
    assert len(fetched.rejected) == 1  # the bad line is recorded, the others kept
    with session_scope() as session:
        ident, _ = resolve_instrument(session, names[0])
        session.execute(text("DELETE FROM news_items"))
    items = match_instruments(fetched.items, {names[0]: [ticker]})
    for _ in range(2):
        with session_scope() as session:
            store_news(session, items, {names[0]: ident})
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(NewsItem)).scalar_one() == 1
        assert session.execute(select(func.count()).select_from(NewsMention)).scalar_one() == 1
