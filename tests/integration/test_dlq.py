"""Dead letters through a real worker, PostgreSQL and Redis: ``quantbeat dlq replay`` runs a
replayed letter again and refuses one with a masked argument. (Messages that can never run —
and ``dlq list``/``show``/``purge`` on them — are fault scenario 8: tests/faults/test_poison.py.)"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis

from db.engine import session_scope
from db.models import DeadLetter
from quant.errors import ValidationError
from quantbeat.cli import main as cli
from quantbeat.infra.settings import get_settings
from tests.integration.helpers import dead_letter, job_run

pytestmark = pytest.mark.integration


def _letter(letter_id: int) -> DeadLetter:
    with session_scope() as session:
        row = session.get(DeadLetter, letter_id)
        assert row is not None
        session.expunge(row)
        return row


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


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
    # each is announced once (job.dead_lettered in the event outbox), its error masked
    from db.events import events

    with session_scope() as session:
        told = {e.payload["task_id"]: e.payload for e in events(session, type="job.dead_lettered")}
    assert told[exhausted.id]["error_type"] == "retries_exhausted"
    assert told[secret.id]["dead_letter_id"] == masked.id
    assert "AIza-not-a-real-key" not in str(told)

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
