"""The notification channel senders (quantbeat.infra.notify) against local fakes of the
providers (tests/support/fake_notify.py): Telegram, Slack and Discord webhooks, a Standard
Webhooks receiver, an aiosmtpd SMTP server (STARTTLS, implicit TLS, AUTH) and the file
channel. No internet, no database, no Redis: the fakes run in this process on 127.0.0.1.

Every failure test also checks that the secret (bot token, webhook URL, signing secret, SMTP
password) is nowhere in the error.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import pickle
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from quant.notify.events import Envelope, parse
from quant.notify.rendered import PART_LIMITS, Rendered
from quantbeat.infra.notify import NotifySettings, Sender, SendError, Sent, Target, sender_for
from quantbeat.infra.notify.base import REDACTED, secret_hash
from quantbeat.infra.notify.email import message_id
from quantbeat.infra.notify.webhook import body_of
from tests.support.fake_notify import (
    TELEGRAM_TOKEN,
    FakeDiscord,
    FakeSlack,
    FakeTelegram,
    SmtpServer,
    WebhookReceiver,
    _Limits,
    new_webhook_secret,
    telegram_html_error,
)

EVENT_ID = "5f0c2a7e-8a61-4d7c-9b1e-2f7f3c9d0a11"


@pytest.fixture
def envelope() -> Envelope:
    return parse(
        id=EVENT_ID,
        type="signals.published",
        version=1,
        at=dt.datetime(2026, 12, 1, 6, 10, tzinfo=dt.UTC),
        trade_date=dt.date(2026, 12, 1),
        simulated=True,
        payload={
            "strategy": "closing_bet",
            "trade_date": "2026-12-01",
            "phase": "preliminary",
            "count": 1,
            "signals": [{"code": "005930", "name": "삼성전자", "grade": "S", "entry": 71000}],
        },
    )


def rendered(channel: str, *parts: str, html: str | None = None) -> Rendered:
    return Rendered(
        channel=channel,
        language="ko",
        subject="[SIMULATED] closing_bet: 1 signal",
        parts=parts or ("[SIMULATED] 005930 삼성전자 S",),
        plain="[SIMULATED] closing_bet 2026-12-01\n005930 삼성전자 S @ 71,000",
        html=html,
    )


def settings(tmp_path: Path, **changes: object) -> NotifySettings:
    values: dict[str, object] = {"file_dir": str(tmp_path / "notify"), "timeout": 5.0}
    values.update(changes)
    return NotifySettings(**values)  # type: ignore[arg-type]


def send(sender: Sender, r: Rendered, envelope: Envelope, index: int = 0) -> Sent:
    return sender.send(r.parts[index], index=index, rendered=r, envelope=envelope)


def error_of(sender: Sender, r: Rendered, envelope: Envelope, index: int = 0) -> SendError:
    with pytest.raises(SendError) as caught:
        send(sender, r, envelope, index)
    return caught.value


def assert_no_secret(error: SendError, *secrets: str) -> None:
    shown = [str(error), error.reason, repr(error), str(error.args)]
    for secret in secrets:
        for text in shown:
            assert secret not in text, f"a secret leaked into {text!r}"
    # chained exceptions are printed with tracebacks: none may be kept
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- Telegram ------------------------------------------------------------------------------


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def tg_sender(fake: FakeTelegram, tmp_path: Path, chat: str = "12345", **changes: object):
    return sender_for(
        Target("telegram", chat, TELEGRAM_TOKEN),
        settings(tmp_path, telegram_api_url=fake.url, **changes),
    )


def test_telegram_sends_one_html_message(telegram, tmp_path, envelope):
    part = "<b>[SIMULATED]</b> 005930 삼성전자 &amp; <i>S</i> &lt;71,000&gt;"
    sent = send(tg_sender(telegram, tmp_path), rendered("telegram", part), envelope)
    assert sent == Sent(provider_ref="1")
    assert len(telegram.received) == len(telegram.accepted) == 1
    message = telegram.accepted[0]
    assert message.target == "12345"
    assert message.text == part
    assert message.path == f"/bot{TELEGRAM_TOKEN}/sendMessage"
    assert message.body == {
        "chat_id": 12345,
        "text": part,
        "parse_mode": "HTML",
        "disable_web_page_preview": True,
    }
    # a channel username goes as a string, a group id as a number; message ids count up
    sent = send(tg_sender(telegram, tmp_path, "@quantbeat_alerts"), rendered("telegram"), envelope)
    assert sent == Sent(provider_ref="2")
    assert telegram.accepted[1].body["chat_id"] == "@quantbeat_alerts"
    assert telegram.violations == 0


def test_telegram_429_is_transient_with_retry_after(telegram, tmp_path, envelope):
    telegram.storm(1, retry_after=7)
    error = error_of(tg_sender(telegram, tmp_path), rendered("telegram"), envelope)
    assert (error.permanent, error.retry_after, error.status, error.scope) == (
        False,
        7.0,
        429,
        "target",
    )
    assert error.reason == "telegram 429: Too Many Requests: retry after 7"
    assert_no_secret(error, TELEGRAM_TOKEN)
    assert telegram.accepted == []


def test_send_error_survives_pickling():
    error = SendError(
        "discord 429: slow", permanent=False, retry_after=1.5, status=429, scope="global"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.permanent, copy.retry_after, copy.status, copy.scope) == (
        "discord 429: slow",
        False,
        1.5,
        429,
        "global",
    )
    assert str(copy) == "discord 429: slow"


@pytest.mark.parametrize("status", [500, 502])
def test_telegram_outage_is_transient(telegram, tmp_path, envelope, status):
    telegram.outage(status, n=1)
    error = error_of(tg_sender(telegram, tmp_path), rendered("telegram"), envelope)
    assert (error.permanent, error.status, error.retry_after) == (False, status, None)
    assert_no_secret(error, TELEGRAM_TOKEN)
    # the outage is over: the next send goes through
    assert send(tg_sender(telegram, tmp_path), rendered("telegram"), envelope).provider_ref == "1"


def test_telegram_permanent_errors_carry_the_providers_reason(telegram, tmp_path, envelope):
    telegram.add_chat("777")
    telegram.blocked("777")
    cases = [
        (tg_sender(telegram, tmp_path, "999"), 400, "telegram 400: Bad Request: chat not found"),
        (
            tg_sender(telegram, tmp_path, "777"),
            403,
            "telegram 403: Forbidden: bot was blocked by the user",
        ),
    ]
    other_token = "999999:" + "B" * 35
    cases.append(
        (
            sender_for(
                Target("telegram", "12345", other_token),
                settings(tmp_path, telegram_api_url=telegram.url),
            ),
            401,
            "telegram 401: Unauthorized",
        )
    )
    for sender, status, reason in cases:
        error = error_of(sender, rendered("telegram"), envelope)
        assert (error.permanent, error.status, error.reason, error.retry_after) == (
            True,
            status,
            reason,
            None,
        )
        assert_no_secret(error, TELEGRAM_TOKEN, other_token)
    assert telegram.accepted == []


def test_telegram_network_errors_are_transient_and_hide_the_token(tmp_path, envelope):
    sender = sender_for(
        Target("telegram", "12345", TELEGRAM_TOKEN),
        settings(tmp_path, telegram_api_url=f"http://127.0.0.1:{closed_port()}"),
    )
    error = error_of(sender, rendered("telegram"), envelope)
    assert (error.permanent, error.status) == (False, None)
    assert error.reason.startswith("telegram: ConnectError")
    assert_no_secret(error, TELEGRAM_TOKEN)


def test_telegram_timeout_while_held_is_transient_and_the_message_still_lands(
    telegram, tmp_path, envelope
):
    """A request the provider holds past our timeout: we see a transient error, yet the
    provider delivers it once it answers (the duplicate a retry would then make)."""
    telegram.hold()
    sender = tg_sender(telegram, tmp_path, timeout=0.3)
    error = error_of(sender, rendered("telegram"), envelope)
    assert (error.permanent, error.reason) == (False, "telegram: timed out (ReadTimeout)")
    assert_no_secret(error, TELEGRAM_TOKEN)
    assert len(telegram.received) == 1
    assert telegram.accepted == []
    telegram.release()
    assert telegram.wait_accepted(1)


def test_telegram_hold_keeps_the_answer_until_release(telegram, tmp_path, envelope):
    telegram.hold()
    results: list[Sent] = []
    worker = threading.Thread(
        target=lambda: results.append(
            send(tg_sender(telegram, tmp_path), rendered("telegram"), envelope)
        )
    )
    worker.start()
    assert telegram.wait_received(1)
    assert telegram.accepted == []
    assert results == []
    telegram.release()
    worker.join(10)
    assert results == [Sent(provider_ref="1")]
    assert len(telegram.accepted) == 1


def test_httpx_log_records_never_show_the_token(telegram, tmp_path, envelope, caplog):
    with caplog.at_level(logging.INFO, logger="httpx"):
        send(tg_sender(telegram, tmp_path), rendered("telegram"), envelope)
    assert "HTTP Request: POST" in caplog.text  # httpx did log the request …
    assert TELEGRAM_TOKEN not in caplog.text  # … without its URL's path
    assert f"http://127.0.0.1/{REDACTED}" in caplog.text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<b>bold</b> <i>it</i> <u>u</u> <s>s</s> <code>x</code> <pre>y</pre>", None),
        ('<a href="https://example.com/?a=1&amp;b=2">link</a> <tg-spoiler>x</tg-spoiler>', None),
        ('<span class="tg-spoiler">x</span> <pre><code class="language-py">x</code></pre>', None),
        ("5 &lt; 6 &amp;&amp; 7 &gt; 6 &quot;q&quot; &#39;s&#x27;", None),
        ("<div>x</div>", 'unsupported start tag "div"'),
        ("<b>unclosed", 'can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>crossed</b></i>", "unmatched end tag"),
        ("a < b", "unsupported start tag"),
        ("fish & chips", "bare '&'"),
        ("&nbsp;", "bare '&'"),
        ('<b class="x">x</b>', 'unsupported attribute "class"'),
        ("<a>no href</a>", 'tag "a" must have an href'),
        ('<span class="red">x</span>', 'tag "span" must have class "tg-spoiler"'),
        ("</b>", 'unexpected end tag "b"'),
    ],
)
def test_fake_telegram_validates_html(text, problem):
    found = telegram_html_error(text)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_fake_telegram_refuses_bad_markup_and_bad_lengths(telegram, tmp_path, envelope):
    sender = tg_sender(telegram, tmp_path)
    error = error_of(sender, rendered("telegram", "<b>5 < 6</b>"), envelope)
    assert error.permanent
    assert error.status == 400
    assert error.reason.startswith("telegram 400: Bad Request: can't parse entities:")
    # a part over the limit or empty never leaves (the sender refuses it itself) …
    for part in ("x" * (PART_LIMITS["telegram"] + 1), "  "):
        assert error_of(sender, rendered("telegram", part), envelope).permanent
    assert len(telegram.received) == 1
    # … and the fake refuses them too
    with httpx.Client() as client:
        url = f"{telegram.url}/bot{TELEGRAM_TOKEN}/sendMessage"
        long = client.post(url, json={"chat_id": "-100123", "text": "x" * 4097}).json()
        empty = client.post(url, json={"chat_id": "-100123", "text": ""}).json()
    assert long["description"] == "Bad Request: message is too long"
    assert empty["description"] == "Bad Request: message text is empty"


def test_fake_telegram_enforces_the_per_chat_limit(telegram, tmp_path, envelope):
    private = tg_sender(telegram, tmp_path, "12345")
    group = tg_sender(telegram, tmp_path, "-100123")
    send(private, rendered("telegram"), envelope)
    send(group, rendered("telegram"), envelope)  # another chat: no violation
    assert telegram.violations == 0
    error = error_of(private, rendered("telegram"), envelope)  # the same chat, at once
    assert (error.status, error.permanent, error.retry_after) == (429, False, 1.0)
    assert telegram.violations == 1
    assert telegram.violation_log[0][1] == "chat:12345"


def test_fake_limits_sliding_windows():
    """The fake's limiter on a made-up clock: 20 per minute (a group) and 30 per second."""
    limits = _Limits(tolerance=0.05)
    limits.note(["group"], 0.0)
    for i in range(1, 20):
        limits.note(["group"], 3.0 * i)  # 20 messages, one every 3 s: 0 … 57
    assert limits.wait("group", 20, 60.0, 59.0) == pytest.approx(0.95)  # a 21st at 59 s
    assert limits.wait("group", 20, 60.0, 59.96) == 0.0  # within the tolerance
    assert limits.wait("group", 20, 60.0, 60.0) == 0.0
    for i in range(30):
        limits.note(["bot"], 100.0 + i * 0.01)
    assert limits.wait("bot", 30, 1.0, 100.5) > 0
    assert limits.wait("bot", 30, 1.0, 101.0) == 0.0


def test_telegram_rate_keys(tmp_path):
    fake_settings = settings(tmp_path)
    h = secret_hash(TELEGRAM_TOKEN)
    keys = {
        chat: sender_for(Target("telegram", chat, TELEGRAM_TOKEN), fake_settings).rate_keys()
        for chat in ("12345", "-100123", "@quantbeat_alerts")
    }
    assert keys["12345"] == [(f"telegram:bot:{h}", 30.0), (f"telegram:chat:{h}:12345", 1.0)]
    assert keys["-100123"][1][0] == f"telegram:chat:{h}:-100123"
    assert keys["-100123"][1][1] == pytest.approx(20 / 60)
    assert keys["@quantbeat_alerts"][1][1] == pytest.approx(20 / 60)
    for pairs in keys.values():
        for name, _ in pairs:
            assert TELEGRAM_TOKEN not in name
            assert TELEGRAM_TOKEN.split(":")[1] not in name


# -- Slack ---------------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def test_slack_posts_text_and_a_mrkdwn_section(slack, tmp_path, envelope):
    url = slack.new_hook("alerts")
    part = "*[SIMULATED]* 005930 삼성전자 S"
    sent = send(
        sender_for(Target("slack", None, url), settings(tmp_path)),
        rendered("slack", part),
        envelope,
    )
    assert sent == Sent(provider_ref=None)
    assert [(m.target, m.text) for m in slack.accepted] == [("alerts", part)]
    assert slack.accepted[0].body["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": part}}
    ]


def test_slack_429_uses_retry_after(slack, tmp_path, envelope):
    url = slack.new_hook()
    slack.storm(1, retry_after=30)
    error = error_of(
        sender_for(Target("slack", None, url), settings(tmp_path)), rendered("slack"), envelope
    )
    assert (error.permanent, error.retry_after, error.status, error.scope) == (
        False,
        30.0,
        429,
        "target",
    )
    assert_no_secret(error, url, url.rsplit("/", 1)[1])


def test_slack_outage_is_transient(slack, tmp_path, envelope):
    url = slack.new_hook()
    slack.outage(503)
    error = error_of(
        sender_for(Target("slack", None, url), settings(tmp_path)), rendered("slack"), envelope
    )
    assert (error.permanent, error.status) == (False, 503)
    assert_no_secret(error, url)


def test_slack_permanent_errors(slack, tmp_path, envelope):
    archived, prohibited = slack.new_hook("archived"), slack.new_hook("prohibited")
    slack.archive("archived")
    slack.prohibit("prohibited")
    unknown = slack.url + "/services/T0FAKE/Bnope/not-a-registered-token"
    expected = [
        (archived, 410, "slack 410: channel_is_archived"),
        (prohibited, 403, "slack 403: action_prohibited"),
        (unknown, 404, "slack 404: no_service"),
    ]
    for url, status, reason in expected:
        sender = sender_for(Target("slack", None, url), settings(tmp_path))
        error = error_of(sender, rendered("slack"), envelope)
        assert (error.permanent, error.status, error.reason) == (True, status, reason)
        assert_no_secret(error, url, url.rsplit("/", 1)[1])
    assert slack.accepted == []


def test_fake_slack_enforces_one_per_second_and_validates(slack, tmp_path, envelope):
    url = slack.new_hook()
    sender = sender_for(Target("slack", None, url), settings(tmp_path))
    send(sender, rendered("slack"), envelope)
    error = error_of(sender, rendered("slack"), envelope)
    assert (error.status, error.retry_after) == (429, 1.0)
    assert slack.violations == 1
    with httpx.Client() as client:
        assert client.post(url, content=b"not json").text == "invalid_payload"
        long = {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]}
        assert client.post(url, json=long).text == "invalid_blocks"


# -- Discord -------------------------------------------------------------------------------


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


def test_discord_posts_content_without_mentions_and_waits_for_the_id(discord, tmp_path, envelope):
    url = discord.new_hook("alerts")
    part = "**[SIMULATED]** 005930 삼성전자 S @everyone"
    sender = sender_for(Target("discord", None, url), settings(tmp_path))
    sent = send(sender, rendered("discord", part), envelope)
    assert sent.provider_ref is not None
    assert sent.provider_ref.isdigit()
    [message] = discord.accepted
    assert (message.target, message.text) == ("alerts", part)
    assert message.body == {"content": part, "allowed_mentions": {"parse": []}}
    assert message.status == 200  # ?wait=true: the message object came back


@pytest.mark.parametrize(("is_global", "scope"), [(True, "global"), (False, "target")])
def test_discord_429_carries_retry_after_and_scope(discord, tmp_path, envelope, is_global, scope):
    url = discord.new_hook()
    discord.storm(1, retry_after=1.5, global_=is_global)
    error = error_of(
        sender_for(Target("discord", None, url), settings(tmp_path)), rendered("discord"), envelope
    )
    assert (error.permanent, error.retry_after, error.status, error.scope) == (
        False,
        1.5,
        429,
        scope,
    )
    assert_no_secret(error, url, url.rsplit("/", 1)[1])


def test_discord_outage_is_transient(discord, tmp_path, envelope):
    url = discord.new_hook()
    discord.outage(502)
    error = error_of(
        sender_for(Target("discord", None, url), settings(tmp_path)), rendered("discord"), envelope
    )
    assert (error.permanent, error.status) == (False, 502)


def test_discord_permanent_errors(discord, tmp_path, envelope):
    url = discord.new_hook("gone")
    hook_id = url.split("/")[-2]
    wrong_token = f"{discord.url}/api/webhooks/{hook_id}/{'x' * 40}"
    unknown = f"{discord.url}/api/webhooks/42/{'y' * 40}"
    cases = [
        (wrong_token, 401, "discord 401: Invalid Webhook Token (code 50027)"),
        (unknown, 404, "discord 404: Unknown Webhook (code 10015)"),
    ]
    for target_url, status, reason in cases:
        sender = sender_for(Target("discord", None, target_url), settings(tmp_path))
        error = error_of(sender, rendered("discord"), envelope)
        assert (error.permanent, error.status, error.reason) == (True, status, reason)
        assert_no_secret(error, target_url, target_url.rsplit("/", 1)[1])
    discord.archive("gone")
    error = error_of(
        sender_for(Target("discord", None, url), settings(tmp_path)), rendered("discord"), envelope
    )
    assert (error.permanent, error.status) == (True, 404)


def test_discord_content_limit_on_both_sides(discord, tmp_path, envelope):
    url = discord.new_hook()
    sender = sender_for(Target("discord", None, url), settings(tmp_path))
    error = error_of(sender, rendered("discord", "x" * 2001), envelope)
    assert error.permanent
    assert discord.received == []
    with httpx.Client() as client:
        answer = client.post(url, params={"wait": "true"}, json={"content": "x" * 2001})
    assert answer.status_code == 400
    assert answer.json()["code"] == 50035


def test_fake_discord_enforces_its_bucket(tmp_path, envelope):
    with FakeDiscord(rate=(2, 2.0)) as fake:
        sender = sender_for(Target("discord", None, fake.new_hook()), settings(tmp_path))
        send(sender, rendered("discord"), envelope)
        send(sender, rendered("discord"), envelope)
        error = error_of(sender, rendered("discord"), envelope)
    assert (error.status, error.scope, error.permanent) == (429, "target", False)
    assert error.retry_after is not None
    assert 0 < error.retry_after <= 2.0
    assert fake.violations == 1


# -- generic webhooks ----------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as fake:
        yield fake


def test_webhook_is_signed_and_deduplicated_by_id(receiver, tmp_path, envelope):
    sender = sender_for(Target("webhook", receiver.hook_url, receiver.secret), settings(tmp_path))
    r = rendered("webhook", "part 0", "part 1")
    assert send(sender, r, envelope) == Sent(provider_ref=EVENT_ID)
    assert send(sender, r, envelope, index=1) == Sent(provider_ref=None)  # one POST per event
    assert send(sender, r, envelope) == Sent(provider_ref=EVENT_ID)  # a retry
    assert (receiver.unique, receiver.duplicates, receiver.rejected) == (1, 1, [])
    first = receiver.accepted[0]
    assert first.headers["webhook-id"] == EVENT_ID
    assert first.headers["content-type"] == "application/json"
    assert first.headers["webhook-signature"].startswith("v1,")
    assert abs(int(first.headers["webhook-timestamp"]) - first.at) < 5
    assert first.body == {
        "id": EVENT_ID,
        "type": "signals.published",
        "version": 1,
        "timestamp": "2026-12-01T06:10:00+00:00",
        "trade_date": "2026-12-01",
        "simulated": True,
        "data": envelope.payload.model_dump(mode="json"),
        "text": r.plain,
    }
    assert first.body["data"]["signals"][0]["name"] == "삼성전자"


def test_webhook_signed_with_another_secret_is_rejected(receiver, tmp_path, envelope):
    other = new_webhook_secret()
    sender = sender_for(Target("webhook", receiver.hook_url, other), settings(tmp_path))
    error = error_of(sender, rendered("webhook"), envelope)
    assert (error.permanent, error.status) == (True, 401)
    assert error.reason.startswith("webhook 401 from 127.0.0.1: invalid signature")
    assert receiver.unique == 0
    assert receiver.rejected == ["No matching signature found"]
    assert_no_secret(error, other, other.removeprefix("whsec_"), receiver.secret)


def test_webhook_tampered_body_fails_verification(receiver, tmp_path, envelope):
    sender = sender_for(Target("webhook", receiver.hook_url, receiver.secret), settings(tmp_path))
    r = rendered("webhook")
    body = body_of(r, envelope)
    headers = sender.headers(EVENT_ID, body, dt.datetime.now(dt.UTC))  # type: ignore[attr-defined]
    with httpx.Client() as client:
        good = client.post(receiver.hook_url, content=body, headers=headers)
        tampered = client.post(
            receiver.hook_url, content=body.replace(b"closing_bet", b"closing_bad"), headers=headers
        )
    assert (good.status_code, tampered.status_code) == (200, 401)
    assert receiver.unique == 1
    assert len(receiver.rejected) == 1


def test_webhook_transient_and_permanent_answers(receiver, tmp_path, envelope):
    sender = sender_for(Target("webhook", receiver.hook_url, receiver.secret), settings(tmp_path))
    receiver.storm(1, retry_after=12)
    receiver.outage(503)
    receiver.fail(410)
    storm = error_of(sender, rendered("webhook"), envelope)
    outage = error_of(sender, rendered("webhook"), envelope)
    gone = error_of(sender, rendered("webhook"), envelope)
    assert (storm.permanent, storm.retry_after, storm.status) == (False, 12.0, 429)
    assert (outage.permanent, outage.status) == (False, 503)
    assert (gone.permanent, gone.status, gone.retry_after) == (True, 410, None)
    for error in (storm, outage, gone):
        assert_no_secret(error, receiver.secret)
    assert receiver.unique == 0
    assert send(sender, rendered("webhook"), envelope).provider_ref == EVENT_ID
    assert receiver.unique == 1


def test_webhook_timeout_is_transient(receiver, tmp_path, envelope):
    receiver.hold()
    sender = sender_for(
        Target("webhook", receiver.hook_url, receiver.secret), settings(tmp_path, timeout=0.3)
    )
    error = error_of(sender, rendered("webhook"), envelope)
    receiver.release()
    assert (error.permanent, error.reason) == (False, "webhook: timed out (ReadTimeout)")


# -- e-mail --------------------------------------------------------------------------------

SMTP_USER, SMTP_PASSWORD = "quantbeat", "smtp-test-password"


def smtp_settings(server: SmtpServer, tmp_path: Path, **changes: object) -> NotifySettings:
    values: dict[str, object] = {
        "smtp_host": server.host,
        "smtp_port": server.port,
        "smtp_security": server.security,
        "smtp_user": SMTP_USER,
        "smtp_password": SMTP_PASSWORD,
        "smtp_from": "alerts@quantbeat.example",
        "smtp_ca_file": server.ca_file,
    }
    values.update(changes)
    return settings(tmp_path, **values)


@pytest.fixture
def smtp_starttls(tmp_path) -> Iterator[SmtpServer]:
    with SmtpServer(
        tmp_path / "tls", security="starttls", user=SMTP_USER, password=SMTP_PASSWORD
    ) as server:
        yield server


def test_email_over_starttls_with_auth(smtp_starttls, tmp_path, envelope):
    target = Target("email", "trader@example.com, desk@example.org")
    sender = sender_for(target, smtp_settings(smtp_starttls, tmp_path))
    r = rendered("email", "ignored", "also ignored", html="<p>[SIMULATED] <b>005930</b></p>")
    sent = send(sender, r, envelope)
    assert send(sender, r, envelope, index=1) == Sent(provider_ref=None)  # one message per event
    assert smtp_starttls.logins == [SMTP_USER]
    [message] = smtp_starttls.messages
    expected_id = f"<{EVENT_ID}.0.ko@quantbeat.example>"
    assert sent.provider_ref == expected_id == message["Message-ID"]
    assert message_id(envelope, 0, "ko", "alerts@quantbeat.example") == expected_id
    assert message["Subject"] == r.subject
    assert message["From"] == "alerts@quantbeat.example"
    assert message["To"] == "trader@example.com, desk@example.org"
    assert message["X-Quantbeat-Simulated"] == "yes"
    plain = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert plain.strip() == r.plain
    assert "<b>005930</b>" in message.get_body(("html",)).get_content()
    assert smtp_starttls.envelopes == [
        ("alerts@quantbeat.example", ["trader@example.com", "desk@example.org"])
    ]
    # a retry carries the same Message-ID, so the receiver can tell it is the same message
    send(sender, r, envelope)
    assert smtp_starttls.messages[1]["Message-ID"] == expected_id


def test_email_without_login_is_refused_by_a_server_requiring_auth(
    smtp_starttls, tmp_path, envelope
):
    sender = sender_for(
        Target("email", "trader@example.com"),
        smtp_settings(smtp_starttls, tmp_path, smtp_user=None, smtp_password=None),
    )
    error = error_of(sender, rendered("email"), envelope)
    assert (error.permanent, error.status) == (True, 530)
    assert smtp_starttls.messages == []


def test_email_wrong_password_is_permanent_and_not_shown(smtp_starttls, tmp_path, envelope):
    wrong = "wrong-password-123"
    sender = sender_for(
        Target("email", "trader@example.com"),
        smtp_settings(smtp_starttls, tmp_path, smtp_password=wrong),
    )
    error = error_of(sender, rendered("email"), envelope)
    assert (error.permanent, error.status) == (True, 535)
    assert "authentication failed" in error.reason
    assert_no_secret(error, wrong)
    # smtplib tries each mechanism the server offers (PLAIN, then LOGIN)
    assert smtp_starttls.auth_failures >= 1
    assert smtp_starttls.logins == []


def test_email_untrusted_certificate_is_permanent(smtp_starttls, tmp_path, envelope):
    sender = sender_for(
        Target("email", "trader@example.com"),
        smtp_settings(smtp_starttls, tmp_path, smtp_ca_file=None),
    )
    error = error_of(sender, rendered("email"), envelope)
    assert error.permanent
    assert "certificate is not trusted" in error.reason


def test_email_over_implicit_tls(tmp_path, envelope):
    with SmtpServer(
        tmp_path / "tls", security="tls", user=SMTP_USER, password=SMTP_PASSWORD
    ) as server:
        sender = sender_for(Target("email", "trader@example.com"), smtp_settings(server, tmp_path))
        sent = send(sender, rendered("email"), envelope)
        assert server.logins == [SMTP_USER]
        assert [m["Message-ID"] for m in server.messages] == [sent.provider_ref]


@pytest.mark.parametrize(
    ("stage", "code", "permanent"),
    [("rcpt", 451, False), ("rcpt", 550, True), ("data", 451, False), ("data", 550, True)],
)
def test_email_smtp_replies(tmp_path, envelope, stage, code, permanent):
    with SmtpServer(security="none", user=None) as server:
        server.reject(stage, code)
        sender = sender_for(
            Target("email", "trader@example.com"),
            smtp_settings(server, tmp_path, smtp_user=None, smtp_password=None),
        )
        error = error_of(sender, rendered("email"), envelope)
        assert (error.permanent, error.status) == (permanent, code)
        assert str(code) in error.reason
        assert server.messages == []
        send(sender, rendered("email"), envelope)  # the next attempt goes through
        assert len(server.messages) == 1


def test_email_connection_refused_is_transient(tmp_path, envelope):
    sender = sender_for(
        Target("email", "trader@example.com"),
        settings(tmp_path, smtp_host="127.0.0.1", smtp_port=closed_port(), smtp_security="none"),
    )
    error = error_of(sender, rendered("email"), envelope)
    assert (error.permanent, error.status) == (False, None)
    assert "ConnectionRefusedError" in error.reason


# -- file ----------------------------------------------------------------------------------


def test_file_channel_appends_json_lines(tmp_path, envelope):
    sender = sender_for(Target("file", "out/alerts.jsonl"), settings(tmp_path))
    r = rendered("file", "first part", "두 번째")
    assert send(sender, r, envelope) == Sent(provider_ref=None)
    send(sender, r, envelope, index=1)
    path = tmp_path / "notify" / "out" / "alerts.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {
            "event_id": EVENT_ID,
            "type": "signals.published",
            "part": 0,
            "subject": r.subject,
            "text": "first part",
            "simulated": True,
        },
        {
            "event_id": EVENT_ID,
            "type": "signals.published",
            "part": 1,
            "subject": r.subject,
            "text": "두 번째",
            "simulated": True,
        },
    ]


def test_file_channel_directory_in_the_way_is_permanent(tmp_path, envelope):
    (tmp_path / "notify" / "taken").mkdir(parents=True)
    sender = sender_for(Target("file", "taken"), settings(tmp_path))
    error = error_of(sender, rendered("file"), envelope)
    assert error.permanent
    assert "taken" in error.reason


# -- targets and limiter names -------------------------------------------------------------

SLACK_URL = "https://hooks.slack.com/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX"
DISCORD_URL = "https://discord.com/api/webhooks/123456789012345678/abcdefghijklmnopqrstuvwxyz0123"


@pytest.mark.parametrize(
    ("target", "named", "hidden"),
    [
        (Target("telegram", "abc", TELEGRAM_TOKEN), "'abc'", TELEGRAM_TOKEN),
        (
            Target("telegram", "12345", "not-a-token-at-all-secret"),
            "token is malformed",
            "not-a-token-at-all-secret",
        ),
        (Target("telegram", "12345", None), "no bot token", None),
        (Target("telegram", None, TELEGRAM_TOKEN), "no chat id", TELEGRAM_TOKEN),
        (
            Target("slack", None, "ftp://hooks.slack.com/services/T/B/SECRETPATH123"),
            "ftp://hooks.slack.com",
            "SECRETPATH123",
        ),
        (
            Target("slack", None, "http://hooks.slack.com/services/T/B/SECRETPATH123"),
            "must use https",
            "SECRETPATH123",
        ),
        (Target("discord", None, None), "no webhook URL", None),
        (
            Target("discord", None, "not a url with SECRETPATH123"),
            "is not an http(s) URL",
            "SECRETPATH123",
        ),
        (
            Target("webhook", "mailto:ops@example.com", new_webhook_secret()),
            "'mailto:ops@example.com'",
            None,
        ),
        (
            Target("webhook", "https://example.com/hook", "whsec_%%%notbase64"),
            "not valid base64",
            "%%%notbase64",
        ),
        (
            Target("webhook", "https://example.com/hook", "plainsecretvalue"),
            "malformed",
            "plainsecretvalue",
        ),
        (Target("email", "trader@example.com, not-an-address"), "'not-an-address'", None),
        (Target("email", " , "), "names no recipient", None),
        (Target("file", "../../etc/cron.d/x"), "'../../etc/cron.d/x'", None),
        (Target("fax", "123"), "'fax'", None),
    ],
)
def test_sender_for_rejects_malformed_targets(tmp_path, target, named, hidden):
    with pytest.raises(SendError) as caught:
        sender_for(target, settings(tmp_path, smtp_host="smtp.example.com"))
    error = caught.value
    assert error.permanent
    assert named in str(error)
    if hidden:
        assert_no_secret(error, hidden)
        assert hidden not in repr(target)


def test_email_settings_are_checked_when_the_sender_is_made(tmp_path):
    target = Target("email", "trader@example.com")
    with pytest.raises(SendError, match="no SMTP host configured"):
        sender_for(target, settings(tmp_path))
    missing = str(tmp_path / "missing-ca.pem")
    with pytest.raises(SendError, match=r"CA file .*missing-ca\.pem.* cannot be used") as caught:
        sender_for(target, settings(tmp_path, smtp_host="127.0.0.1", smtp_ca_file=missing))
    assert caught.value.permanent


def test_rate_keys_hold_no_secret(tmp_path):
    secret = new_webhook_secret()
    configured = settings(tmp_path, smtp_host="smtp.example.com", smtp_rate=2.0)
    cases = [
        (Target("slack", None, SLACK_URL), [(f"slack:{secret_hash(SLACK_URL)}", 1.0)]),
        (Target("discord", None, DISCORD_URL), [(f"discord:{secret_hash(DISCORD_URL)}", 1.0)]),
        (
            Target("webhook", "https://hooks.example.com/in/tok3n?key=abc", secret),
            [("webhook:hooks.example.com", 10.0)],
        ),
        (Target("email", "trader@example.com"), [("smtp:smtp.example.com", 2.0)]),
        (Target("file", "alerts.jsonl"), []),
    ]
    for target, expected in cases:
        keys = sender_for(target, configured).rate_keys()
        assert keys == expected
        for name, _ in keys:
            for secret_part in (
                SLACK_URL,
                "XXXXXXXXXXXXXXXX",
                DISCORD_URL,
                "abcdefghijklmn",
                secret,
                "tok3n",
            ):
                assert secret_part not in name
    assert "XXXX" not in repr(Target("slack", None, SLACK_URL))
