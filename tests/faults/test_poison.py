"""Scenario 8 (issue 9): poison messages — invalid JSON, an unknown task, a body that is not
Celery's protocol, and a real task called with arguments that fail validation. The worker keeps
answering ping and running tasks, and each message is in the dead-letter table (the same
undecodable body sent twice is one letter with two occurrences). ``quantbeat dlq`` then lists,
shows, refuses to replay and purges those letters.

Runs on the session worker (tests/support/services.py: real worker subprocess, PostgreSQL,
Redis)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu.connection import Connection
from kombu.entity import Exchange
from kombu.messaging import Producer
from sqlalchemy import select

from db.engine import session_scope
from db.models import DeadLetter
from quant.errors import ValidationError
from quantbeat.cli import main as cli
from tests.conftest import TEST_BROKER_URL
from tests.faults.outcomes import Outcome
from tests.integration.helpers import eventually, job_run

pytestmark = pytest.mark.integration


def _letters() -> list[DeadLetter]:
    with session_scope() as session:
        rows = list(session.execute(select(DeadLetter).order_by(DeadLetter.id)).scalars())
        session.expunge_all()
        return rows


def _letter(letter_id: int) -> DeadLetter:
    with session_scope() as session:
        row = session.get(DeadLetter, letter_id)
        assert row is not None
        session.expunge(row)
        return row


def _publish_raw(body: bytes | str, headers: dict[str, Any] | None = None) -> None:
    """Publish a message to the io queue as kombu sends it, bypassing Celery's task protocol."""
    with Connection(TEST_BROKER_URL) as conn:
        producer = Producer(conn.channel(), exchange=Exchange("quantbeat", type="direct"))
        producer.publish(
            body,
            routing_key="io",
            content_type="application/json",
            content_encoding="utf-8",
            headers=headers or {},
        )


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _wait_failed(result: Any, expected: type[BaseException], timeout: float = 60) -> BaseException:
    """Wait for a task to fail; return the exception re-raised from its stored result."""
    try:
        result.get(timeout=timeout)
    except CeleryTimeout:
        pytest.fail("the task never finished")
    except expected as exc:
        return exc
    pytest.fail("the task succeeded")


def test_poison_messages_are_dead_lettered_and_the_worker_keeps_going(
    celery_app: Any,
    worker: Any,
    clean_db: str,
    capsys: pytest.CaptureFixture[str],
    outcome: Callable[[Outcome], None],
) -> None:
    pid = worker.proc.pid
    unknown = celery_app.send_task(
        "quantbeat.ops.no_such_task", args=[7], kwargs={"password": "hunter2"}
    )
    garbage = b'{"not json' + uuid.uuid4().hex.encode()
    _publish_raw(garbage)
    _publish_raw(garbage)  # the same body again: another occurrence of the same letter
    # A known task whose body is not [args, kwargs, embed]: stock Celery 5.7 stops the whole
    # worker on this one (ValueError while building the request).
    bad_id = str(uuid.uuid4())
    _publish_raw(
        json.dumps({"foo": 1}),
        headers={"task": "quantbeat.ops.test_flaky", "id": bad_id, "lang": "py"},
    )
    # A real task with an argument that fails validation: fails fast, naming the value.
    invalid_args = celery_app.send_task(
        "quantbeat.collect.daily_candles", kwargs={"trade_date": "2026-02-30"}
    )
    sent = 5  # messages

    error = _wait_failed(invalid_args, ValidationError)
    assert "trade_date" in str(error)
    assert "2026-02-30" in str(error)
    run = job_run(invalid_args.id)
    assert (run.state, run.attempts) == ("failed", 1)

    reasons = {"unknown_task", "undecodable", "invalid_message", "validation_error"}
    letters = eventually(
        _letters,
        lambda rows: {r.reason for r in rows} >= reasons and any(r.occurrences == 2 for r in rows),
        timeout=20,
    )
    by_reason = {r.reason: r for r in letters}
    # which message each letter stands for, and how many times it was seen
    accounted = {
        "unknown task": by_reason.get("unknown_task"),
        "invalid JSON": by_reason.get("undecodable"),
        "invalid body": by_reason.get("invalid_message"),
        "invalid arguments": by_reason.get("validation_error"),
    }
    found = sum(letter.occurrences for letter in accounted.values() if letter is not None)
    # The worker is alive (the same process): it answers ping and still runs tasks.
    alive = worker.proc.poll() is None and worker.proc.pid == pid
    pong = celery_app.control.ping(destination=[worker.hostname], timeout=5)
    ran = celery_app.send_task("quantbeat.ops.test_flaky", kwargs={"fail_times": 0}).get(timeout=30)
    outcome(
        Outcome(
            number=8,
            scenario="Poison messages",
            sent=sent,
            completed=found,
            duplicates=len(letters) - len(accounted),
            lost=sent - found,
            notes=(
                "invalid JSON ×2 (one letter, 2 occurrences), unknown task, invalid body, "
                "invalid arguments; the worker answered ping and ran a task afterwards"
                if alive and pong
                else "the worker did not survive"
            ),
        )
    )
    assert set(by_reason) == reasons, worker.log()
    assert (found, len(letters)) == (sent, len(accounted)), letters
    assert alive, worker.log()
    assert pong
    assert ran == {"retries": 0}

    lost = by_reason["unknown_task"]
    assert (lost.task_id, lost.task_name) == (unknown.id, "quantbeat.ops.no_such_task")
    assert lost.payload["args"] == [7]
    assert lost.payload["kwargs"] == {"password": "***"}
    assert "NotRegistered" in (lost.error or "")

    undecodable = by_reason["undecodable"]
    assert undecodable.occurrences == 2
    assert undecodable.fingerprint.startswith("body:")
    assert undecodable.payload["body"] == garbage.decode()
    assert undecodable.payload["content_type"] == "application/json"
    assert undecodable.payload["queue"] == "io"
    assert "DecodeError" in (undecodable.error or "")

    invalid = by_reason["invalid_message"]
    assert (invalid.task_id, invalid.task_name) == (bad_id, "quantbeat.ops.test_flaky")
    assert invalid.payload["body"] == {"foo": 1}
    assert "a mapping without 'args'" in (invalid.error or "")

    rejected = by_reason["validation_error"]
    assert (rejected.task_id, rejected.task_name) == (
        invalid_args.id,
        "quantbeat.collect.daily_candles",
    )

    # quantbeat dlq: list, show, refuse to replay what cannot run, purge
    code, out, _ = _cli(capsys, "dlq", "list", "--json")
    assert code == 0
    listed = {row["id"]: row for row in json.loads(out)}
    assert set(listed) == {r.id for r in letters}
    assert listed[undecodable.id]["occurrences"] == 2

    code, out, _ = _cli(capsys, "dlq", "list", "--reason", "unknown_task", "--since", "1h")
    assert code == 0
    assert "quantbeat.ops.no_such_task" in out
    assert "undecodable" not in out

    code, out, _ = _cli(capsys, "dlq", "show", str(invalid.id))
    assert code == 0
    assert bad_id in out
    assert '"foo": 1' in out  # the payload, pretty-printed

    code, _, err = _cli(capsys, "dlq", "replay", str(lost.id))
    assert code == cli.EXIT_USAGE
    assert f"dead letter {lost.id}" in err
    assert "not registered" in err
    code, _, err = _cli(capsys, "dlq", "replay", str(undecodable.id))
    assert code == cli.EXIT_USAGE
    assert "could not be decoded" in err
    assert _letter(lost.id).replays == 0

    code, _, err = _cli(capsys, "dlq", "purge", "--reason", "undecodable")
    assert code == cli.EXIT_USAGE
    assert "--yes" in err
    code, out, _ = _cli(capsys, "dlq", "purge", "--reason", "undecodable", "--yes")
    assert (code, out.strip()) == (0, "deleted 1 dead letter(s)")
    code, out, _ = _cli(capsys, "dlq", "purge", "--id", str(lost.id), "--yes")
    assert (code, out.strip()) == (0, "deleted 1 dead letter(s)")
    assert {r.id for r in _letters()} == {invalid.id, rejected.id}
