"""Notifications through the real session worker (``io`` queue), PostgreSQL and Redis, to
local servers speaking each provider's documented API (tests/support/fake_notify.py): the
Telegram Bot API, Slack and Discord webhooks, a real SMTP server (aiosmtpd, STARTTLS and
AUTH) and a receiver verifying Standard Webhooks signatures.

Events are recorded as services record them (:func:`quantbeat.services.notify.record` in a
transaction); the commit wakes the dispatcher. Each fake counts what it received: every
message arrives once, whatever is retried or dispatched again.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from db.engine import session_scope
from db.models import NotificationDelivery, NotificationSubscription
from db.notify import add_subscription
from quantbeat.services import notify
from tests.support import notify_env
from tests.support.fake_notify import (
    FakeDiscord,
    FakeSlack,
    FakeTelegram,
    SmtpServer,
    WebhookReceiver,
)

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 20)
CHAT = notify_env.TELEGRAM_CHAT


def _signals(strategy: str = "closing_bet", n: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "strategy": strategy,
        "trade_date": DAY.isoformat(),
        "phase": "preliminary",
        "count": n,
        "gate": "GREEN",
        "tradeable": True,
        "signals": [
            {
                "code": f"00{i:04d}",
                "name": f"<테스트> & Co {i}",
                "market": "KOSPI",
                "grade": "SA"[i % 2],
                "entry": 10_000.0 + i,
                "stop": 9_700.0,
                "target": 10_500.0,
                "reasons": ["거래대금 상위", "외국인 순매수"],
                "news": "수주 *공시*",
            }
            for i in range(n)
        ],
        **extra,
    }


def _record(type_: str, payload: dict[str, Any], key: str, *, simulated: bool = True) -> str:
    with session_scope() as session:
        event_id = notify.record(
            session, type_, key=key, payload=payload, trade_date=DAY, simulated=simulated
        )
    assert event_id is not None
    return event_id


def _until(probe: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; ledger: {_ledger()}")


def _ledger() -> list[dict[str, Any]]:
    with session_scope() as session:
        rows = session.execute(
            select(NotificationDelivery, NotificationSubscription.name)
            .join(NotificationSubscription)
            .order_by(NotificationDelivery.id)
        ).all()
        return [
            {
                "subscription": name,
                "state": d.state,
                "attempts": d.attempts,
                "parts": (d.parts_sent, d.parts_total),
                "in_doubt": d.in_doubt,
                "error": d.last_error,
            }
            for d, name in rows
        ]


def _final(n: int) -> Callable[[], list[dict[str, Any]] | None]:
    def probe() -> list[dict[str, Any]] | None:
        rows = _ledger()
        done = [r for r in rows if r["state"] in ("sent", "failed")]
        return rows if len(rows) >= n and len(done) == len(rows) else None

    return probe


@pytest.fixture
def telegram(celery_app: Any, clean_db: str) -> Iterator[FakeTelegram]:
    with FakeTelegram(
        tokens=[notify_env.TELEGRAM_TOKEN], chats=[CHAT, "777"], port=notify_env.TELEGRAM_PORT
    ) as fake:
        yield fake


@pytest.fixture
def slack(celery_app: Any, clean_db: str) -> Iterator[FakeSlack]:
    with FakeSlack(port=notify_env.SLACK_PORT) as fake:
        fake.add_hook(notify_env.SLACK_PATH, "alerts")
        yield fake


@pytest.fixture
def discord(celery_app: Any, clean_db: str) -> Iterator[FakeDiscord]:
    with FakeDiscord(port=notify_env.DISCORD_PORT) as fake:
        fake.add_hook(notify_env.DISCORD_PATH, "signals")
        yield fake


@pytest.fixture
def smtp(celery_app: Any, clean_db: str) -> Iterator[SmtpServer]:
    server = SmtpServer(
        notify_env.CERT_DIR,
        security="starttls",
        user=notify_env.SMTP_USER,
        password=notify_env.SMTP_PASSWORD,
        port=notify_env.SMTP_PORT,
    )
    # the workers trust the CA file QUANTBEAT_SMTP_CA_FILE names: the fake's certificate
    assert server.ca_file is not None
    (notify_env.CERT_DIR / "cert.pem").write_bytes(Path(server.ca_file).read_bytes())
    with server:
        yield server


def test_one_event_reaches_every_channel_once_formatted_for_each(
    celery_app: Any,
    telegram: FakeTelegram,
    slack: FakeSlack,
    discord: FakeDiscord,
    smtp: SmtpServer,
) -> None:
    with WebhookReceiver(notify_env.WEBHOOK_SECRET) as hook:
        notify.add("tg", "telegram", target=CHAT, secret="tg_test")
        notify.add("slack", "slack", secret="slack_test", language="en")
        notify.add("discord", "discord", secret="discord_test")
        notify.add("mail", "email", target="trader@example.test", language="en")
        notify.add("hook", "webhook", target=hook.hook_url, secret="hook_test")
        event_id = _record("signals.published", _signals(), "it:closing:1")
        rows = _until(_final(5), "five deliveries")
        assert [r["state"] for r in rows] == ["sent"] * 5, rows
        assert hook.wait_received(1)
        # each provider got the message once, in its own markup, with the simulated label
        assert len(telegram.accepted) == 1
        text = telegram.accepted[0].text or ""
        assert text.startswith("[모의 데이터 SIMULATED] <b>종가베팅")
        assert "&lt;테스트&gt; &amp; Co 0" in text  # escaped for Telegram HTML
        assert len(slack.accepted) == 1
        assert (slack.accepted[0].text or "").startswith("[SIMULATED]")
        assert "&lt;테스트&gt; &amp; Co 0" in (slack.accepted[0].text or "")
        assert len(discord.accepted) == 1
        assert "\\*공시\\*" in (discord.accepted[0].text or "")  # markdown escaped
        assert smtp.wait_messages(1)
        mail = smtp.messages[0]
        assert str(mail["Subject"]).startswith("[SIMULATED] closing bet")
        assert mail["Message-ID"].startswith(f"<{event_id}.0.en@")
        assert smtp.logins == [notify_env.SMTP_USER]
        assert (hook.unique, hook.duplicates, hook.rejected) == (1, 0, [])
        body = hook.accepted[0].body
        assert isinstance(body, dict), body
        assert body["id"] == event_id
        assert body["type"] == "signals.published"
        # dispatching again (a redelivered or duplicated dispatch) sends nothing more
        for _ in range(3):
            celery_app.send_task("quantbeat.notify.dispatch", kwargs={"sweep": True}).get(
                timeout=30
            )
        for ident in {s.id for s in _subscriptions()}:
            celery_app.send_task("quantbeat.notify.deliver", args=[ident]).get(timeout=30)
        time.sleep(0.5)
        assert (len(telegram.received), len(slack.received), len(discord.received)) == (1, 1, 1)
        assert len(smtp.messages) == 1
        assert len(hook.received) == 1


def _subscriptions() -> list[NotificationSubscription]:
    with session_scope() as session:
        rows = list(session.execute(select(NotificationSubscription)).scalars())
        session.expunge_all()
        return rows


def test_a_429_storm_is_waited_out_in_order_and_each_message_sent_once(
    telegram: FakeTelegram,
) -> None:
    notify.add("tg", "telegram", target=CHAT, secret="tg_test", language="en")
    telegram.storm(3, retry_after=1)
    for i in range(3):
        _record("gate.changed", {"previous": "GREEN", "current": ["YELLOW", "RED", "GREEN"][i],
                                 "score": 50.0 - i}, f"it:gate:{i}")  # fmt: skip
    rows = _until(_final(3), "three deliveries", timeout=60)
    assert [r["state"] for r in rows] == ["sent"] * 3, rows
    statuses = [r.status for r in telegram.received]
    assert statuses == [429, 429, 429, 200, 200, 200], (statuses, rows)
    assert rows[0]["attempts"] >= 2, rows  # the storm hit the first one
    texts = [r.text or "" for r in telegram.accepted]
    assert len(texts) == 3
    order = [next(c for c in ("YELLOW", "RED", "GREEN") if "→ " in t and c in t.split("→")[1])
             for t in texts]  # fmt: skip
    assert order == ["YELLOW", "RED", "GREEN"]  # in event order, despite the retries
    assert telegram.violations == 0  # never above 1 message/s to the chat


def test_an_outage_is_retried_and_a_permanent_refusal_disables_only_its_subscription(
    telegram: FakeTelegram, slack: FakeSlack, discord: FakeDiscord
) -> None:
    notify.add("slack", "slack", secret="slack_test")
    notify.add("discord", "discord", secret="discord_test")
    notify.add("tg", "telegram", target=CHAT, secret="tg_test")
    slack.outage(500, n=2)
    discord.archive("signals")  # the webhook was deleted: 404 Unknown Webhook
    _record("gate.changed", {"previous": "GREEN", "current": "RED"}, "it:gate:outage")
    rows = _until(_final(3), "three deliveries", timeout=60)
    by_name = {r["subscription"]: r for r in rows}
    assert by_name["slack"]["state"] == "sent"
    assert by_name["slack"]["attempts"] == 3
    assert by_name["tg"]["state"] == "sent"
    assert by_name["tg"]["attempts"] == 1
    assert by_name["discord"]["state"] == "failed"
    assert "404" in by_name["discord"]["error"]
    views = {s.name: s for s in notify.listing()}
    assert not views["discord"].enabled
    assert "404" in (views["discord"].disabled_reason or "")
    assert views["slack"].enabled
    assert views["tg"].enabled
    # nothing more goes to the disabled subscription; the others keep receiving
    _record("gate.changed", {"previous": "RED", "current": "YELLOW"}, "it:gate:after")
    _until(lambda: len(telegram.accepted) == 2 and len(slack.accepted) == 2, "the next one")
    assert len(discord.accepted) == 0
    assert len(discord.received) == 1


def test_a_malformed_subscription_fails_clearly_sends_nothing_and_spares_the_others(
    telegram: FakeTelegram,
) -> None:
    notify.add("good", "telegram", target=CHAT, secret="tg_test")
    bad = [
        ("bad-secret", "777", "nope", {}),
        ("bad-chat", "not a chat", "tg_test", {}),
        ("bad-filter", "777", "tg_test", {"colour": "red"}),
    ]
    with session_scope() as session:  # as an older release or a hand edit could leave them
        for name, target, secret, filters in bad:
            values = {"name": name, "channel": "telegram", "target": target,
                      "secret_ref": secret, "filters": filters, "language": "ko"}  # fmt: skip
            add_subscription(session, values)
    _record("gate.changed", {"previous": "GREEN", "current": "RED"}, "it:gate:bad")
    rows = _until(_final(3), "the deliveries")
    by_name = {r["subscription"]: r for r in rows}
    assert by_name["good"]["state"] == "sent"
    assert by_name["bad-secret"]["state"] == "failed"
    assert "secret 'nope'" in by_name["bad-secret"]["error"]
    assert "QUANTBEAT_NOTIFY_SECRETS" in by_name["bad-secret"]["error"]
    assert by_name["bad-chat"]["state"] == "failed"
    assert "not a chat" in by_name["bad-chat"]["error"]
    views = {s.name: s for s in notify.listing()}
    assert not views["bad-filter"].enabled  # its filters do not parse: disabled, named
    assert "colour" in (views["bad-filter"].disabled_reason or "")
    assert [r.target for r in telegram.received] == [CHAT]  # only the good one was sent


def test_filters_choose_what_each_subscription_receives(telegram: FakeTelegram) -> None:
    notify.add("s-only", "telegram", target=CHAT, secret="tg_test", filters={"min_grade": "S"})
    notify.add("vcp", "telegram", target="777", secret="tg_test",
               filters={"event_types": ["signals.*"], "strategies": ["vcp"]})  # fmt: skip
    _record("signals.published", _signals(n=4), "it:closing:filters")
    _record("gate.changed", {"previous": "GREEN", "current": "RED"}, "it:gate:filters")
    rows = _until(_final(2), "the deliveries")
    assert {r["subscription"] for r in rows} == {"s-only"}  # vcp wants neither event
    closing = next(r.text for r in telegram.accepted if "종가베팅" in (r.text or ""))
    assert closing is not None
    assert "[S]" in closing
    assert "[A]" not in closing


def test_a_secret_never_reaches_the_tables_or_the_cli(telegram: FakeTelegram) -> None:
    notify.add("tg", "telegram", target=CHAT, secret="tg_test")
    telegram.blocked(CHAT)
    _record("gate.changed", {"previous": "GREEN", "current": "RED"}, "it:gate:secret")
    rows = _until(_final(1), "the delivery")
    assert rows[0]["state"] == "failed"
    with session_scope() as session:
        stored = json.dumps(
            [list(r) for r in session.execute(select(NotificationSubscription.__table__)).all()]
            + [list(r) for r in session.execute(select(NotificationDelivery.__table__)).all()],
            default=str,
        )
    assert notify_env.TELEGRAM_TOKEN not in stored
    assert notify_env.TELEGRAM_TOKEN.split(":")[1] not in stored


def test_stale_data_is_announced_once_per_dataset_and_day(telegram: FakeTelegram) -> None:
    from quantbeat.services import announce

    notify.add("ops", "telegram", target=CHAT, secret="tg_test", language="en",
               filters={"event_types": ["data.stale"]})  # fmt: skip
    first = announce.check_freshness(DAY)  # an empty database: nothing collected yet
    assert {k: v["lag_sessions"] for k, v in first["datasets"].items()} == {
        "daily_candles": 1,
        "investor_flows": 1,
    }
    assert all(v["event_id"] for v in first["datasets"].values())
    again = announce.check_freshness(DAY)
    assert all(v["event_id"] is None for v in again["datasets"].values())  # once a day
    _until(lambda: len(telegram.accepted) == 2, "the two stale-data messages")
    texts = " ".join(r.text or "" for r in telegram.accepted)
    assert texts.count("daily_candles") == 1, texts
    assert texts.count("investor_flows") == 1, texts
    time.sleep(0.5)
    assert len(telegram.received) == 2


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from quantbeat.cli import main as cli

    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_cli_adds_lists_tests_shows_history_and_removes(
    telegram: FakeTelegram, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _cli(capsys, "notify", "add", "x", "--channel", "pager")
    assert code == 2
    assert "channel must be one of telegram, slack, discord, email, webhook, file" in err
    assert "'pager'" in err
    code, _, err = _cli(capsys, "notify", "add", "x", "--channel", "telegram", "--target",
                        CHAT, "--secret", "nope")  # fmt: skip
    assert code == 2
    assert "secret 'nope'" in err
    assert "QUANTBEAT_NOTIFY_SECRETS" in err
    code, out, err = _cli(capsys, "notify", "add", "trader", "--channel", "telegram",
                          "--target", CHAT, "--secret", "tg_test", "--events",
                          "signals.*,daily.summary", "--min-grade", "a")  # fmt: skip
    assert code == 0, err
    assert "subscription trader added: telegram" in out
    code, out, _ = _cli(capsys, "notify", "list", "--json")
    assert code == 0
    (listed,) = json.loads(out)
    assert listed["secret_ref"] == "tg_test"
    assert listed["filters"]["min_grade"] == "A"
    assert notify_env.TELEGRAM_TOKEN not in out
    code, out, err = _cli(capsys, "notify", "test", "trader", "--note", "hello")
    assert code == 0, err
    assert "delivery sent after 1 attempt(s), parts 1/1" in out
    assert "hello" in (telegram.accepted[0].text or "")
    code, out, _ = _cli(capsys, "notify", "history", "trader", "--json")
    assert code == 0
    assert [r["type"] for r in json.loads(out)] == ["notify.test"]
    code, out, _ = _cli(capsys, "notify", "remove", "trader")
    assert code == 0
    assert notify.listing() == []
