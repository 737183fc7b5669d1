"""A day of the crypto jobs through the real session worker, PostgreSQL, Redis and the
notification dispatcher (issue 23, its "done when"): on the SIMULATED crypto market, every
hour of a day the volatility check, the hourly signal and the paper order sync run as tasks;
the signals, alerts and paper orders land in PostgreSQL, each alert reaches a local Telegram
Bot API server exactly once, and the paper portfolio's book is the replay of its ledger.
Running the day again adds nothing and sends nothing.

The Gemini path is checked against a local server speaking the Gemini REST API: its
structured answer becomes the stored signal; an unusable answer falls back to the offline
rules with a flag."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import func, insert, select, update

from db.engine import session_scope
from db.models import CryptoBook, CryptoOrder, CryptoSignal, DailyCandle, Event, IntradayCandle
from quant.ai.gemini import GeminiAnalyzer
from quant.crypto.paper import Fill, PaperRules, fill_price, replay
from quant.errors import RateLimited
from quantbeat.infra.settings import get_settings, reset_settings
from quantbeat.services import notify
from quantbeat.services.ai import limiter
from tests.support import notify_env
from tests.support.fake_gemini import FakeGemini, ok, schema_violation, status
from tests.support.fake_notify import FakeTelegram

pytestmark = pytest.mark.integration

#: A day of the SIMULATED market whose signals buy in its first hour and sell at its end (the
#: offline rules follow the daily trend, so most days keep one action throughout).
DAY = dt.datetime(2026, 11, 26, 0, tzinfo=dt.UTC)
CHAT = notify_env.TELEGRAM_CHAT
#: Low enough that a random walk has unusual hours in a day, high enough that most are not.
SIGMA = 1.5
RULES = PaperRules()  # the sync's defaults (QUANTBEAT_CRYPTO_PAPER_CAPITAL unset)


@pytest.fixture
def telegram(celery_app: Any, clean_db: str) -> Iterator[FakeTelegram]:
    with FakeTelegram(
        tokens=[notify_env.TELEGRAM_TOKEN], chats=[CHAT], port=notify_env.TELEGRAM_PORT
    ) as fake:
        yield fake


def _run(celery_app: Any, task: str, **kwargs: Any) -> dict[str, Any]:
    result: dict[str, Any] = celery_app.send_task(task, kwargs=kwargs).get(timeout=180)
    return result


def _hour(celery_app: Any, end: dt.datetime) -> tuple[dict[str, Any], ...]:
    at = end.isoformat()
    check = _run(celery_app, "quantbeat.crypto.volatility_check", at=at, sigma=SIGMA)
    signal = _run(celery_app, "quantbeat.crypto.signal", at=at)
    sync = _run(celery_app, "quantbeat.crypto.order_sync", at=at)
    return check, signal, sync


def _count(model: Any, *where: Any) -> int:
    with session_scope() as session:
        return int(
            session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()
        )


def test_a_day_of_crypto_jobs_lands_alerts_once_and_reconciles(
    celery_app: Any, telegram: FakeTelegram
) -> None:
    notify.add("ops", "telegram", target=CHAT, secret="tg_test", language="en",
               filters={"event_types": ["crypto.volatility", "crypto.signal"]})  # fmt: skip
    # the day's 24 hours, and the next hour, which fills the day's last order
    hours = [DAY + dt.timedelta(hours=h) for h in range(1, 26)]
    results = [_hour(celery_app, end) for end in hours]

    checks, signals, syncs = zip(*results, strict=True)
    assert all(r["simulated"] for r in signals)
    decided = [s["signals"]["KRW-BTC"] for s in signals]
    assert all(d["action"] in ("BUY", "SELL", "HOLD") for d in decided), decided[0]
    assert all(d["new"] for d in decided)
    assert all(d["analyst"] == "offline" for d in decided)  # no Gemini key on the worker
    assert _count(CryptoSignal) == len(hours)
    # what each signal read was collected through the collectors: daily bars too
    assert _count(DailyCandle) >= 100
    with session_scope() as session:
        intervals = dict(
            session.execute(
                select(IntradayCandle.interval, func.count()).group_by(IntradayCandle.interval)
            ).all()
        )
    assert intervals["60m"] >= 30 * 24
    assert intervals["240m"] >= 100

    # the track record: every signal older than an hour has its 1-hour return
    with session_scope() as session:
        rows = list(session.execute(select(CryptoSignal).order_by(CryptoSignal.at)).scalars())
        session.expunge_all()
    assert all(r.return_1h is not None for r in rows[:-1])
    # the first signal is a day old at the last hour: followed to its end
    assert rows[0].return_24h is not None
    assert rows[0].followed_at is not None
    assert all(r.return_24h is None and r.followed_at is None for r in rows[1:])

    # paper orders: one per BUY/SELL signal, each filled at the open of its next bar or
    # rejected by a named rule; nothing pending but the last hour's
    trades = [r for r in rows if r.action in ("BUY", "SELL")]
    assert trades, "a day of the simulated market gave no BUY or SELL"
    with session_scope() as session:
        orders = list(session.execute(select(CryptoOrder).order_by(CryptoOrder.id)).scalars())
        bars = {
            ts: o
            for ts, o in session.execute(
                select(IntradayCandle.ts, IntradayCandle.open).where(
                    IntradayCandle.interval == "60m"
                )
            ).all()
        }
        book = session.get(CryptoBook, "crypto-paper")
        session.expunge_all()
    assert len(orders) == len(trades)
    assert {o.state for o in orders} <= {"filled", "rejected", "pending"}
    assert all(o.reason for o in orders if o.state == "rejected")
    assert all(
        o.requested_at >= hours[-1] - dt.timedelta(hours=1) for o in orders if o.state == "pending"
    )
    filled = [o for o in orders if o.state == "filled"]
    assert {o.side for o in filled} == {"buy", "sell"}  # a round trip
    assert {o.reason for o in orders if o.state == "rejected"} <= {"holding", "no position"}
    for o in filled:
        assert o.filled_at == o.requested_at  # the bar starting when the signal was decided
        assert o.fill_price == pytest.approx(fill_price(o.side, bars[o.filled_at], RULES))
        assert o.body is not None
        assert o.body["market"] == "KRW-BTC"
        assert o.body["side"] == ("bid" if o.side == "buy" else "ask")

    # the book is the replay of its ledger, and every sync found it so
    assert book is not None
    ledger = replay(
        book.capital,
        [
            Fill(
                "KRW-BTC",
                o.side,
                float(o.filled_volume or 0),
                float(o.fill_price or 0),
                float(o.fee or 0),
            )
            for o in sorted(filled, key=lambda x: (x.filled_at, x.id))
        ],
    )
    assert book.cash == pytest.approx(ledger.cash)
    assert book.fees == pytest.approx(ledger.fees)
    assert book.realized == pytest.approx(ledger.realized)
    held = ledger.positions.get("KRW-BTC")
    assert book.positions.get("KRW-BTC", {}).get("volume", 0.0) == pytest.approx(
        held.volume if held else 0.0
    )
    assert all(s["drift"] == [] for s in syncs)
    assert book.realized != 0.0
    assert book.fees > 0.0
    assert sum(s["filled"] for s in syncs) == len(filled)

    # alerts: one event per unusual hour and per BUY/SELL signal, each delivered once
    unusual = sum(c["alerts"] for c in checks)
    with session_scope() as session:
        kinds = dict(session.execute(select(Event.type, func.count()).group_by(Event.type)).all())
    assert kinds.get("crypto.volatility", 0) == unusual
    assert kinds.get("crypto.signal", 0) == len(trades)
    expected = unusual + len(trades)
    deadline = time.monotonic() + 60
    while len(telegram.accepted) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(telegram.accepted) == expected
    assert all((m.text or "").startswith("[SIMULATED]") for m in telegram.accepted)

    # the day again: nothing new stored, nothing sent, the book unchanged
    again = [_hour(celery_app, end) for end in hours[::6]]
    assert not any(s["signals"]["KRW-BTC"]["new"] for _, s, _ in again)
    assert sum(c["alerts"] for c, _, _ in again) == 0
    assert all(y["placed"] == 0 and y["filled"] == 0 and y["drift"] == [] for _, _, y in again)
    assert _count(CryptoSignal) == len(hours)
    assert _count(CryptoOrder) == len(orders)
    time.sleep(1.0)
    assert len(telegram.received) == expected

    # a book changed behind the ledger's back is reported and put back to the replay
    with session_scope() as session:
        session.execute(
            update(CryptoBook).where(CryptoBook.portfolio == "crypto-paper").values(cash=1.0)
        )
    mended = _run(celery_app, "quantbeat.crypto.order_sync", at=hours[-1].isoformat())
    assert any(d.startswith("cash: stored 1.00 KRW, ledger ") for d in mended["drift"]), mended
    assert mended["cash"] == pytest.approx(ledger.cash)
    again_sync = _run(celery_app, "quantbeat.crypto.order_sync", at=hours[-1].isoformat())
    assert again_sync["drift"] == []

    # a signal stored late (dated before the ledger's last fill) is refused, not sized on
    # a book that already holds later fills
    with session_scope() as session:
        first = session.execute(select(CryptoSignal).order_by(CryptoSignal.at)).scalars().first()
        assert first is not None
        late = {c.name: getattr(first, c.name) for c in CryptoSignal.__table__.columns}
        late.pop("id")
        session.execute(
            insert(CryptoSignal).values(
                {**late, "strategy": "crypto_ai_late", "action": "SELL", "confidence": 0.9}
            )
        )
    refused = _run(celery_app, "quantbeat.crypto.order_sync", at=hours[-1].isoformat())
    assert (refused["placed"], refused["rejected"], refused["drift"]) == (1, 1, [])
    with session_scope() as session:
        reason = session.execute(
            select(CryptoOrder.reason).order_by(CryptoOrder.id.desc()).limit(1)
        ).scalar_one()
    assert reason == "late signal"


def test_gemini_decides_the_signal_and_an_unusable_answer_falls_back(
    clean_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quantbeat.services.crypto_signals import generate_signals

    # the shared quota, at a pace this test does not wait for (600 a minute)
    monkeypatch.setenv("QUANTBEAT_GEMINI_RPM", "600")
    reset_settings()
    client = redis.Redis.from_url(get_settings().redis_url)
    for key in client.scan_iter("quantbeat:ai:*"):
        client.delete(key)

    answer = {
        "action": "SELL",
        "confidence": 0.66,
        "reasons": ["The daily trend is down and the hourly MACD turned negative."],
        "risk_flags": ["thin weekend liquidity"],
    }
    with FakeGemini(api_key="test-key") as fake:
        fake.script(ok(answer=answer), schema_violation("action", "SHORT"), status(429, 7))
        analyzer = GeminiAnalyzer("test-key", "gemini-test", base_url=fake.base_url, timeout=10)
        first = generate_signals(DAY + dt.timedelta(hours=5), ["KRW-BTC"], analyzer=analyzer)
        second = generate_signals(DAY + dt.timedelta(hours=6), ["KRW-BTC"], analyzer=analyzer)
        again = generate_signals(DAY + dt.timedelta(hours=5), ["KRW-BTC"], analyzer=analyzer)
        # a 429: no signal for the hour yet (the task retries), and every worker cools down
        with pytest.raises(RateLimited):
            generate_signals(DAY + dt.timedelta(hours=7), ["KRW-BTC"], analyzer=analyzer)
        assert limiter().cooldown_left() > 5.0
        requests = fake.server.log_json(bodies=True)["requests"]
    one = first["signals"]["KRW-BTC"]
    assert (one["action"], one["confidence"], one["analyst"], one["model"]) == (
        "SELL", 0.66, "gemini", "gemini-test",
    )  # fmt: skip
    assert one["risk_flags"] == ["thin weekend liquidity"]
    two = second["signals"]["KRW-BTC"]
    assert two["analyst"] == "offline"
    assert two["risk_flags"][0] == "gemini answer unusable"
    assert again["signals"]["KRW-BTC"]["new"] is False  # stored: Gemini is not asked again
    assert len(requests) == 3  # the stored hour asked nobody; the 429 was one request
    config = requests[0]["body"]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert set(config["responseJsonSchema"]["properties"]) == {
        "action", "confidence", "reasons", "risk_flags",
    }  # fmt: skip
    prompt = requests[0]["body"]["contents"][0]["parts"][0]["text"]
    assert "KRW-BTC" in prompt
    assert "crypto-signal-v1" in prompt
    # both requests took a slot of the shared Gemini quota (the day's counter in Redis)
    assert sum(int(client.get(k) or 0) for k in client.scan_iter("quantbeat:ai:*:rpd:*")) == 3
    assert _count(CryptoSignal, CryptoSignal.at == DAY + dt.timedelta(hours=7)) == 0
    for key in client.scan_iter("quantbeat:ai:*"):  # the cooldown, for the tests after this
        client.delete(key)
    monkeypatch.undo()
    reset_settings()


def test_the_crypto_cli_queues_the_jobs_and_reads_what_they_stored(
    celery_app: Any, clean_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from quantbeat.cli import main as cli

    at = (DAY + dt.timedelta(hours=1)).isoformat()
    later = (DAY + dt.timedelta(hours=3)).isoformat()
    assert cli.main(["crypto", "volatility", "--at", at, "--sigma", "2"]) == 0
    assert cli.main(["crypto", "signal", "--at", at]) == 0
    assert cli.main(["crypto", "signal", "--at", later]) == 0
    assert cli.main(["crypto", "sync", "--at", later]) == 0
    assert cli.main(["crypto", "book"]) == 0
    assert cli.main(["crypto", "signals"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert any(ln.startswith(f"SIMULATED KRW-BTC at {at}: ") and "σ" in ln for ln in lines), out
    decided = [
        ln for ln in lines if ln.startswith("SIMULATED KRW-BTC at ") and " by offline " in ln
    ]
    assert len(decided) == 2, out
    assert any(
        "crypto paper portfolio crypto-paper (paper only, no live order" in ln for ln in lines
    ), out
    assert any(ln.startswith("SIMULATED sync at ") for ln in lines), out
    assert any(ln.startswith("SIMULATED track record BUY: 2 signals") for ln in lines), out
    # the same hour again is read back, not decided again
    assert cli.main(["crypto", "signal", "--at", at]) == 0
    assert "(stored before)" in capsys.readouterr().out
