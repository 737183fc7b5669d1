"""Dead letters through a real worker, PostgreSQL and Redis: messages that can never run are
recorded by the worker's consumer (and the worker keeps going); ``quantbeat dlq`` lists, shows,
replays and purges them."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis
from kombu.connection import Connection
from kombu.entity import Exchange
from kombu.messaging import Producer
from sqlalchemy import select

from db.engine import session_scope
from db.models import DeadLetter
from quant.errors import ValidationError
from quantbeat import cli
from quantbeat.settings import get_settings
from tests.conftest import TEST_BROKER_URL
from tests.integration.helpers import dead_letter, eventually, job_run

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


def test_messages_that_cannot_run_are_dead_lettered_and_the_worker_keeps_going(
    celery_app, worker, clean_db, capsys
):
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

    letters = eventually(
        _letters,
        lambda rows: (
            {r.reason for r in rows} >= {"unknown_task", "undecodable", "invalid_message"}
            and any(r.occurrences == 2 for r in rows)
        ),
        timeout=20,
    )
    by_reason = {r.reason: r for r in letters}
    assert set(by_reason) == {"unknown_task", "undecodable", "invalid_message"}, worker.log()

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

    # The worker is alive: it answers ping and still runs tasks.
    assert celery_app.control.ping(destination=[worker.hostname], timeout=5)
    assert celery_app.send_task("quantbeat.ops.test_flaky", kwargs={"fail_times": 0}).get(
        timeout=30
    ) == {"retries": 0}

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
    assert [r.id for r in _letters()] == [invalid.id]


def _wait_failed(result: Any, expected: type[BaseException]) -> None:
    with pytest.raises(expected):
        result.get(timeout=60)


def test_a_replayed_letter_runs_again_and_a_masked_one_is_refused(celery_app, clean_db, capsys):
    gates = [f"g-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    exhausted = celery_app.send_task("quantbeat.ops.test_gated", args=[gates[0]])
    invalid = celery_app.send_task(
        "quantbeat.ops.test_gated", args=[gates[1]], kwargs={"failure": "validation"}
    )
    secret = celery_app.send_task(
        "quantbeat.ops.test_gated",
        args=[gates[2]],
        kwargs={"failure": "validation", "api_key": "AIza-not-a-real-key"},
    )
    from quant.errors import TransientError

    _wait_failed(exhausted, TransientError)
    _wait_failed(invalid, ValidationError)
    _wait_failed(secret, ValidationError)
    first, second, masked = (dead_letter(r.id) for r in (exhausted, invalid, secret))
    assert first is not None
    assert second is not None
    assert masked is not None
    assert (first.reason, second.reason) == ("retries_exhausted", "validation_error")

    # A letter with a masked argument is refused, and with it the whole explicit selection.
    code, _, err = _cli(capsys, "dlq", "replay", str(first.id), str(masked.id))
    assert code == cli.EXIT_USAGE
    assert f"dead letter {masked.id}" in err
    assert "kwargs.api_key" in err
    assert f"dead letter {first.id}" not in err

    client = redis.Redis.from_url(get_settings().redis_url)
    for gate in gates:
        client.set(f"test:gate:{gate}", 1, ex=600)

    code, out, _ = _cli(capsys, "dlq", "replay", str(first.id), str(second.id), "--dry-run")
    assert code == 0
    assert "would replay 2 dead letter(s)" in out
    assert _letter(first.id).replays == 0

    code, out, err = _cli(capsys, "dlq", "replay", str(first.id), str(second.id))
    assert code == 0, err
    for letter, gate in ((first, gates[0]), (second, gates[1])):
        stored = _letter(letter.id)
        assert stored.replays == 1
        assert stored.replayed_task_id is not None
        assert stored.replayed_task_id not in (exhausted.id, invalid.id)
        assert f"replayed dead letter {letter.id} as task {stored.replayed_task_id}" in out
        replayed = celery_app.AsyncResult(stored.replayed_task_id)
        assert replayed.get(timeout=30) == {"gate": gate, "retries": 0}
        assert job_run(stored.replayed_task_id).state == "succeeded"
    assert _letter(masked.id).replays == 0
