"""Dead letters without services: what the worker's consumer stores about a bad message, and
which letters a replay refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kombu.message import Message
from structlog.testing import capture_logs

from db.models import DeadLetter
from quant.errors import ValidationError
from quantbeat.services.dlq import masked_fields, replay, replay_problem
from workers.consumer import (
    MAX_BODY_CHARS,
    describe_message,
    fingerprint,
    protocol1_problem,
    protocol2_problem,
    record_message,
)

TASK = "quantbeat.ops.example"
GOOD_HEADERS = {"task": TASK, "id": "abc", "retries": 0, "timelimit": [None, None]}


def _message(body: bytes | str, headers: dict[str, Any] | None = None, **kw: Any) -> Message:
    return Message(
        body=body,
        content_type=kw.get("content_type", "application/json"),
        content_encoding=kw.get("content_encoding", "utf-8"),
        headers=headers if headers is not None else {},
        delivery_info={"exchange": "quantbeat", "routing_key": "io"},
        accept=["application/json"],
    )


# --- the protocol check ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "body", "problem"),
    [
        (GOOD_HEADERS, [[1], {"a": 1}, {"callbacks": None}], None),
        (GOOD_HEADERS, [[], {}, None], None),
        (GOOD_HEADERS, {"args": [1], "kwargs": {}}, None),  # protocol-1 style body
        (GOOD_HEADERS, {"foo": 1}, "a mapping without 'args'"),
        (GOOD_HEADERS, [1, 2, 3], "embed (third item) must be a mapping"),
        (GOOD_HEADERS, [[1], {}], "got list of 2 items"),
        (GOOD_HEADERS, "text", "got str"),
        (GOOD_HEADERS, [{"a": 1}, {}, {}], "args must be a list, got dict"),
        (GOOD_HEADERS, [[], [], {}], "kwargs must be a mapping, got list"),
        ({**GOOD_HEADERS, "timelimit": 5}, [[], {}, {}], "headers['timelimit']"),
        ({**GOOD_HEADERS, "timelimit": [1, "x"]}, [[], {}, {}], "headers['timelimit']"),
        ({**GOOD_HEADERS, "timelimit": [30, 20]}, [[], {}, {}], None),
        ({**GOOD_HEADERS, "retries": "2"}, [[], {}, {}], "headers['retries']"),
        ({**GOOD_HEADERS, "retries": True}, [[], {}, {}], "headers['retries']"),
    ],
)
def test_protocol2_problem_names_what_is_wrong(
    headers: dict[str, Any], body: Any, problem: str | None
) -> None:
    found = protocol2_problem(headers, body)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"task": TASK, "id": "p1", "args": [1], "kwargs": {}}, None),
        ({"task": TASK, "id": "p1"}, None),  # args and kwargs default to empty
        ({"task": TASK, "args": [1]}, "body['id'] must be the task id"),
        ({"task": TASK, "id": "p1", "args": "x"}, "args must be a list"),
        ({"task": TASK, "id": "p1", "kwargs": [1]}, "kwargs must be a mapping"),
    ],
)
def test_protocol1_problem_names_what_is_wrong(body: dict[str, Any], problem: str | None) -> None:
    found = protocol1_problem(body)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


# --- what is stored about a bad message -----------------------------------------------------
def test_an_undecodable_body_is_kept_as_text_with_its_envelope() -> None:
    body = b'{"not json, password=hunter2 \xff'
    message = _message(body, {"task": TASK, "id": "t1", "argsrepr": "('hunter2',)"})
    payload = describe_message(message, reason="undecodable")
    assert payload["task"] == TASK
    assert payload["id"] == "t1"
    assert payload["args"] is None
    assert payload["kwargs"] is None
    assert payload["body"] == '{"not json, password=*** \\xff'  # masked, bytes escaped
    assert payload["body_bytes"] == len(body)
    assert payload["body_truncated"] is False
    assert (payload["content_type"], payload["content_encoding"]) == ("application/json", "utf-8")
    assert payload["queue"] == "io"
    assert "argsrepr" not in payload["headers"]  # an unmasked repr of the arguments
    json.dumps(payload)  # storable as JSON


def test_a_long_undecodable_body_is_truncated() -> None:
    payload = describe_message(_message("x" * (MAX_BODY_CHARS + 10)), reason="undecodable")
    assert len(payload["body"]) == MAX_BODY_CHARS
    assert payload["body_truncated"] is True
    assert payload["body_bytes"] == MAX_BODY_CHARS + 10


def test_an_unknown_task_keeps_its_masked_arguments_and_no_raw_body() -> None:
    body = json.dumps([["AIza" + "k" * 35], {"api_key": "s3cret", "n": 1}, {}])
    payload = describe_message(_message(body, dict(GOOD_HEADERS)), reason="unknown_task")
    assert payload["args"] == ["***"]
    assert payload["kwargs"] == {"api_key": "***", "n": 1}
    assert payload["retries"] == 0
    assert "body" not in payload
    assert "s3cret" not in json.dumps(payload)


def test_an_invalid_body_is_kept_decoded_and_masked() -> None:
    payload = describe_message(
        _message(json.dumps({"foo": 1, "token": "t"}), dict(GOOD_HEADERS)),
        reason="invalid_message",
    )
    assert payload["body"] == {"foo": 1, "token": "***"}
    assert payload["args"] is None


def test_fingerprints_identify_a_message_across_redeliveries() -> None:
    one = _message(b"garbage")
    assert fingerprint(one, reason="undecodable", task_id=None).startswith("body:")
    assert fingerprint(one, reason="undecodable", task_id=None) == fingerprint(
        _message(b"garbage"), reason="undecodable", task_id=None
    )
    assert fingerprint(one, reason="undecodable", task_id=None) != fingerprint(
        _message(b"garbage!"), reason="undecodable", task_id=None
    )
    assert fingerprint(one, reason="unknown_task", task_id="abc") == "task:abc"
    assert fingerprint(one, reason="unknown_task", task_id="x" * 65).startswith("body:")


def test_recording_never_raises_and_logs_the_masked_payload_when_the_database_is_down(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from db.engine import forget_engines
    from quantbeat.infra.settings import reset_settings

    monkeypatch.setenv("QUANTBEAT_DATABASE_URL", "postgresql+psycopg://u:pw@127.0.0.1:1/none")
    monkeypatch.setenv("QUANTBEAT_DB_POOL_TIMEOUT", "1")
    monkeypatch.setenv("QUANTBEAT_DATA_DIR", str(tmp_path))
    reset_settings()
    forget_engines()
    try:
        message = _message(b"{bad password=hunter2", {})
        with capture_logs() as logs:
            assert record_message(message, reason="undecodable", error="DecodeError: x") is None
    finally:
        monkeypatch.undo()
        reset_settings()
        forget_engines()
    (event,) = [e for e in logs if e["event"] == "dead_letter.not_recorded"]
    assert event["reason"] == "undecodable"
    assert event["payload"]["body"] == "{bad password=***"
    assert "hunter2" not in json.dumps(event, default=str)
    # ... and kept in the spool for the reaper, masked too
    (spooled,) = (tmp_path / "spool").glob("*.json")
    assert event["spooled"] == str(spooled)
    document = json.loads(spooled.read_text())
    assert document["kind"] == "dead_letter"
    assert document["record"]["letter"]["reason"] == "undecodable"
    assert document["record"]["letter"]["payload"]["body"] == "{bad password=***"
    assert "hunter2" not in spooled.read_text()


# --- replay refusals ----------------------------------------------------------------------------
def _letter(reason: str = "retries_exhausted", **payload: Any) -> DeadLetter:
    base = {"task": TASK, "id": "t1", "args": [1], "kwargs": {"n": 2}, "queue": "io"}
    return DeadLetter(
        id=7, task_name=payload.pop("task_name", TASK), reason=reason, payload={**base, **payload}
    )


def test_masked_fields_name_each_place() -> None:
    value = {"a": [1, "***"], "b": {"password": "***"}, "url": "redis://u:***@h", "ok": "x"}
    assert masked_fields(value, "kwargs") == [
        "kwargs.a[1]",
        "kwargs.b.password",
        "kwargs.url",
    ]


@pytest.mark.parametrize(
    ("letter", "expected"),
    [
        (_letter(), None),
        (_letter("validation_error", kwargs={}), None),
        (_letter("unknown_task", task_name="quantbeat.gone"), "'quantbeat.gone' is not registered"),
        (_letter("undecodable", args=None, kwargs=None), "could not be decoded"),
        (_letter("invalid_message", args=None), "holds no task arguments"),
        (_letter(kwargs={"api_key": "***"}), "kwargs.api_key was masked"),
        (_letter(args=["***", "***"]), "args[0], args[1] were masked"),
        (_letter("invalid_message", task_name=None, task=None), "names no task"),
        (_letter(kwargs={"market": "KOS\\u0000PI"}), "stored escaped"),
    ],
)
def test_replay_refuses_what_cannot_be_sent_faithfully(
    letter: DeadLetter, expected: str | None
) -> None:
    problem = replay_problem(letter, {TASK})
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert expected in problem
        assert problem.startswith("dead letter 7 ")


def test_replay_needs_a_selection() -> None:
    # Refused before any database or broker is touched.
    with pytest.raises(ValidationError, match="IDs, --all or --reason"):
        replay()
    with pytest.raises(ValidationError, match="not both"):
        replay(ids=[3], replay_all=True)
