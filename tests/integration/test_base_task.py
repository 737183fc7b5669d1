"""The base task's contract through a real worker: retry only transient errors, fail fast on
permanent ones, record history and dead letters, mask secrets."""

from __future__ import annotations

import pytest
from celery.exceptions import TimeoutError as CeleryTimeout

from quant.errors import PermanentError, TransientError
from quantbeat.infra.settings import get_settings
from tests.integration.helpers import dead_letter, job_run

pytestmark = pytest.mark.integration

FAKE_KEY = "AIzaSyD-" + "x" * 31


def _wait_failed(result, expected: type[BaseException], timeout=60):
    """Wait for a task to fail; return the exception re-raised from its stored result."""
    try:
        result.get(timeout=timeout)
    except CeleryTimeout:
        pytest.fail("the task never finished")
    except expected as exc:
        return exc
    pytest.fail("the task succeeded")


def test_transient_errors_are_retried_until_success(celery_app, clean_db):
    result = celery_app.send_task(
        "quantbeat.ops.test_flaky", kwargs={"fail_times": 2, "api_key": FAKE_KEY}
    )
    assert result.get(timeout=60) == {"retries": 2}
    run = job_run(result.id)
    assert (run.state, run.attempts, run.retries) == ("succeeded", 3, 2)
    assert run.kwargs == {"fail_times": 2, "api_key": "***"}
    assert dead_letter(result.id) is None


def test_exhausted_retries_fail_and_are_dead_lettered(celery_app, clean_db):
    max_retries = get_settings().max_retries
    result = celery_app.send_task(
        "quantbeat.ops.test_flaky", kwargs={"fail_times": 99, "password": "hunter2"}
    )
    error = _wait_failed(result, TransientError)
    assert "simulated transient failure" in str(error)
    run = job_run(result.id)
    assert (run.state, run.attempts) == ("failed", max_retries + 1)
    letter = dead_letter(result.id)
    assert letter is not None
    assert letter.reason == "retries_exhausted"
    assert letter.payload["kwargs"] == {"fail_times": 99, "password": "***"}
    assert letter.payload["task"] == "quantbeat.ops.test_flaky"


def test_permanent_errors_fail_at_once(celery_app, clean_db):
    result = celery_app.send_task("quantbeat.ops.test_permanent", args=["bad row"])
    _wait_failed(result, PermanentError)
    run = job_run(result.id)
    assert (run.state, run.attempts) == ("failed", 1)
    assert "simulated permanent failure: bad row" in (run.error or "")
    letter = dead_letter(result.id)
    assert letter is not None
    assert letter.reason == "permanent_error"
    assert letter.payload["args"] == ["bad row"]


def test_infrastructure_errors_count_as_transient(celery_app, clean_db):
    result = celery_app.send_task("quantbeat.ops.test_infra_down")
    _wait_failed(result, Exception)  # sqlalchemy's OperationalError, as rebuilt by Celery
    run = job_run(result.id)
    assert run.attempts == get_settings().max_retries + 1
    letter = dead_letter(result.id)
    assert letter is not None
    assert letter.reason == "retries_exhausted"


def test_worker_logs_are_json_with_task_context_and_masked_secrets(celery_app, worker, clean_db):
    result = celery_app.send_task(
        "quantbeat.ops.test_flaky", kwargs={"fail_times": 1, "api_key": FAKE_KEY}
    )
    result.get(timeout=60)
    mine = [line for line in worker.json_lines() if line.get("task_id") == result.id]
    metrics = [line for line in mine if line.get("metric_type") == "job"]
    assert [m["state"] for m in metrics] == ["retrying", "succeeded"]
    for m in metrics:
        assert m["task_name"] == m["task"] == "quantbeat.ops.test_flaky"
        assert m["queue"] == "io"
        assert m["duration_ms"] >= 0
    assert metrics[-1]["success"] is True
    assert metrics[-1]["retries"] == 1
    assert FAKE_KEY not in worker.full_log()


def test_a_retry_raised_by_the_task_body_is_recorded(celery_app, worker, clean_db):
    result = celery_app.send_task("quantbeat.ops.test_self_retry")
    assert result.get(timeout=60) == {"retries": 1}
    run = job_run(result.id)
    assert (run.state, run.attempts) == ("succeeded", 2)
    states = [
        line["state"]
        for line in worker.json_lines()
        if line.get("task_id") == result.id and line.get("metric_type") == "job"
    ]
    assert states == ["retrying", "succeeded"]


def test_a_message_delivered_too_often_is_dead_lettered_without_running(celery_app, clean_db):
    import datetime as dt
    import uuid

    from db.engine import session_scope
    from db.jobs import record_job_start
    from workers.base import PoisonedMessage

    limit = get_settings().max_attempts
    task_id = str(uuid.uuid4())
    with session_scope() as session:  # as if it had already been delivered `limit` times
        for _ in range(limit):
            record_job_start(
                session,
                task_id=task_id,
                task_name="quantbeat.ops.test_flaky",
                queue="io",
                args=[],
                kwargs={},
                worker="earlier",
                retries=0,
                started_at=dt.datetime.now(dt.UTC),
            )
    result = celery_app.send_task(
        "quantbeat.ops.test_flaky", kwargs={"fail_times": 0}, task_id=task_id
    )
    error = _wait_failed(result, PoisonedMessage)
    assert f"delivered {limit + 1} times" in str(error)
    run = job_run(task_id)
    assert (run.state, run.attempts) == ("failed", limit + 1)
    assert run.result is None  # the task body never ran
    letter = dead_letter(task_id)
    assert letter is not None
    assert letter.reason == "max_attempts_exceeded"


def test_secrets_in_arguments_never_reach_the_result_backend(celery_app, clean_db):
    import redis

    from tests.conftest import TEST_RESULT_BACKEND

    result = celery_app.send_task(
        "quantbeat.ops.test_flaky", kwargs={"fail_times": 0, "api_key": FAKE_KEY}
    )
    result.get(timeout=60)
    client = redis.Redis.from_url(TEST_RESULT_BACKEND)
    keys = list(client.scan_iter("*"))
    assert any(result.id.encode() in k for k in keys)  # the result is there ...
    for key in keys:
        if client.type(key) == b"string":
            assert FAKE_KEY.encode() not in (client.get(key) or b"")  # ... without the secret


def test_a_wrong_argument_name_is_a_validation_error_naming_it(celery_app, clean_db):
    """kwargs that do not bind to the task's parameters fail before the body runs, as the
    caller's error (dead letter ``validation_error``, not ``unexpected_error``)."""
    from quant.errors import ValidationError

    result = celery_app.send_task(
        "quantbeat.collect.daily_candles", kwargs={"trade_date": "2026-11-20", "markte": "KOSPI"}
    )
    error = _wait_failed(result, ValidationError)
    assert "'markte'" in str(error)
    assert "quantbeat.collect.daily_candles" in str(error)
    assert "market" in str(error)  # the parameters it does take are listed
    run = job_run(result.id)
    assert (run.state, run.attempts) == ("failed", 1)
    letter = dead_letter(result.id)
    assert letter is not None
    assert letter.reason == "validation_error"

    # a TypeError raised inside the task body stays what it is: a bug
    inside = celery_app.send_task("quantbeat.ops.test_type_error", args=[1])
    _wait_failed(inside, TypeError)
    bug = dead_letter(inside.id)
    assert bug is not None
    assert bug.reason == "unexpected_error"
    # as does a missing argument
    missing = celery_app.send_task("quantbeat.ops.test_type_error")
    assert "missing a required argument: 'value'" in str(_wait_failed(missing, ValidationError))


def test_an_unrunnable_message_fails_the_waiting_clients_result(celery_app, clean_db):
    """``undecodable`` and ``invalid_message`` dead letters with a task id also store a
    FAILURE result: ``AsyncResult.get()`` raises instead of waiting for ever."""
    import json
    import uuid

    from kombu.connection import Connection
    from kombu.entity import Exchange
    from kombu.messaging import Producer

    from quant.errors import ValidationError
    from tests.conftest import TEST_BROKER_URL

    undecodable_id, invalid_id = str(uuid.uuid4()), str(uuid.uuid4())
    with Connection(TEST_BROKER_URL) as conn:
        producer = Producer(conn.channel(), exchange=Exchange("quantbeat", type="direct"))
        bodies = ((b'{"not json', undecodable_id), (json.dumps({"foo": 1}), invalid_id))
        for body, task_id in bodies:
            producer.publish(
                body,
                routing_key="io",
                content_type="application/json",
                content_encoding="utf-8",
                headers={"task": "quantbeat.ops.test_flaky", "id": task_id, "lang": "py"},
            )
    for task_id, reason in ((undecodable_id, "undecodable"), (invalid_id, "invalid_message")):
        error = _wait_failed(celery_app.AsyncResult(task_id), ValidationError, timeout=60)
        assert f"({reason}, dead-lettered)" in str(error)
        letter = dead_letter(task_id)
        assert letter is not None
        assert letter.reason == reason
