"""The task-message size limit (workers.limits) at publish, in the consumer's dead letter and in
the base task, without services. The real worker is exercised by
tests/integration/test_hardening.py."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kombu.message import Message
from kombu.utils.json import dumps as kombu_dumps

from quant.errors import ValidationError
from quantbeat.infra.settings import get_settings, load_settings
from quantbeat.infra.settings import reset_settings as _reset
from workers import limits
from workers.app import app
from workers.consumer import describe_oversized

LIMIT = 262_144


def test_the_default_limit_is_256_kib_and_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().max_message_bytes == LIMIT
    assert load_settings(max_message_bytes=10_000).max_message_bytes == 10_000
    monkeypatch.setenv("QUANTBEAT_MAX_MESSAGE_BYTES", "100000")
    _reset()
    try:
        assert limits.max_message_bytes() == 100_000
    finally:
        monkeypatch.undo()
        _reset()
    assert get_settings().max_message_bytes == LIMIT


@pytest.mark.parametrize(
    "body",
    [
        ([1, "a"], {"k": None}, {"callbacks": None}),
        (["한국어" * 10], {}, None),
        (["\x00\u2028"], {"x": [1.5, True]}, {}),
    ],
)
def test_body_size_is_the_byte_length_kombu_publishes(body: Any) -> None:
    assert limits.body_size(body) == len(kombu_dumps(body).encode("utf-8"))


def test_arguments_size_of_non_json_arguments_is_zero() -> None:
    assert limits.arguments_size((object(),), {}) == 0
    assert limits.arguments_size(("ab",), {"c": 1}) == len('[["ab"], {"c": 1}]')


def test_publishing_an_oversized_message_raises_naming_task_size_and_limit() -> None:
    body: tuple[list[str], dict[str, Any], None] = (["x" * LIMIT], {}, None)
    size = limits.body_size(body)
    with pytest.raises(ValidationError) as caught:
        limits.check_publish("quantbeat.collect.daily_candles", body)
    text = str(caught.value)
    assert "'quantbeat.collect.daily_candles'" in text
    assert f"{size:,} bytes" in text
    assert f"({LIMIT:,} bytes)" in text
    assert "nothing was queued" in text
    assert caught.value.field == "message"
    limits.check_publish("quantbeat.collect.daily_candles", (["x" * 1000], {}, None))


def test_the_app_refuses_before_the_publish_hooks_and_the_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """workers.app sends through QuantbeatAMQP: the check runs before before_task_publish (the
    masking hook) runs, so nothing is published."""
    from celery.signals import before_task_publish

    hooked: list[str] = []

    def hook(sender: Any = None, **_: Any) -> None:
        hooked.append(sender)

    before_task_publish.connect(hook)
    try:
        with pytest.raises(ValidationError, match="exceeds QUANTBEAT_MAX_MESSAGE_BYTES"):
            app.send_task("quantbeat.ops.test_flaky", args=[0], kwargs={"blob": "y" * 300_000})
    finally:
        before_task_publish.disconnect(hook)
    assert hooked == []


def test_a_publish_check_of_5_mb_is_fast() -> None:
    body: tuple[list[str], dict[str, Any], None] = (["z" * 5_000_000], {}, None)
    started = time.perf_counter()
    with pytest.raises(ValidationError):
        limits.check_publish("quantbeat.ops.test_flaky", body)
    assert time.perf_counter() - started < 0.5


def test_the_sample_is_short_masked_and_only_a_prefix_is_read() -> None:
    raw = b'[["password=hunter2 ' + b"A" * 5_000_000 + b'"], {}, {}]'
    started = time.perf_counter()
    text = limits.sample(raw)
    assert time.perf_counter() - started < 0.1
    assert len(text) <= limits.SAMPLE_CHARS
    assert "hunter2" not in text
    assert text.startswith('[["password=***')
    assert limits.sample(b"\xff\xfeok") == "\\xff\\xfeok"


class _Undecodable(Message):
    def decode(self) -> Any:
        raise AssertionError("an oversized body must never be decoded")


def test_an_oversized_dead_letter_keeps_the_headers_and_a_masked_sample_never_the_body() -> None:
    body = json.dumps([["api_key=AIzaSySecret " + "B" * 1_000_000], {}, {}]).encode()
    message = _Undecodable(
        body=body,
        content_type="application/json",
        content_encoding="utf-8",
        headers={
            "task": "quantbeat.collect.daily_candles",
            "id": "abc",
            "retries": 0,
            "argsrepr": "x" * 10_000,
            "kwargsrepr": "{}",
        },
        delivery_info={"exchange": "quantbeat", "routing_key": "io"},
        accept=["application/json"],
    )
    payload = describe_oversized(message, size=len(body), limit=LIMIT)
    assert payload["task"] == "quantbeat.collect.daily_candles"
    assert payload["id"] == "abc"
    assert (payload["args"], payload["kwargs"]) == (None, None)
    assert payload["queue"] == "io"
    assert payload["body_bytes"] == len(body)
    assert payload["limit_bytes"] == LIMIT
    assert payload["body_truncated"] is True
    assert len(payload["body_sample"]) <= limits.SAMPLE_CHARS
    stored = json.dumps(payload)
    assert "AIzaSySecret" not in stored
    assert "argsrepr" not in payload["headers"]
    assert len(stored) < 2_000
