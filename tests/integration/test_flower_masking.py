"""Flower shows masked task arguments, results and errors (issue 16): a real `quantbeat flower`
(basic auth, 127.0.0.1, free port) and the session's real worker (task events on), tasks sent
with secrets in their arguments through the project's client (``workers.app``) and by name from
a bare Celery client in another process (no quantbeat code), then Flower's HTTP API read back:
``/api/tasks``, ``/api/task/info/<id>`` and the task page. No secret value may appear anywhere
in what Flower answers; the mask does. Each task's events (sent, received, started, succeeded
or failed) must have reached Flower, so the worker's own events are what is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery.events import EventReceiver

from quantbeat.infra.masking import MASK
from tests.conftest import TEST_BROKER_URL, TEST_RESULT_BACKEND
from tests.support.flower import CREDENTIALS, Flower, http_get, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

# Test-only tasks of tests/support/worker_app.py, routed to io: one succeeds and takes any
# keyword arguments, one always fails with its argument in the error message.
SUCCEEDS = "quantbeat.ops.test_flaky"
FAILS = "quantbeat.ops.test_permanent"

# A bare Celery client, as any other program could send a task by name: none of the project's
# publishing hooks run in it. It asks for task-sent events too (what the project's client does).
RAW_CLIENT = """
import json, sys
from celery import Celery
broker, backend, name, args, kwargs = sys.argv[1:6]
app = Celery("raw", broker=broker, backend=backend)
app.conf.task_send_sent_event = True
result = app.send_task(
    name, args=json.loads(args), kwargs=json.loads(kwargs), exchange="quantbeat", routing_key="io"
)
print(result.id)
"""


class Secrets:
    """Secret values unique to this run, and arguments that carry them."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:12]
        self.api_key = f"sk-live-XYZ{tag}k3y"
        self.password = f"pw{tag}Db"
        self.bearer = f"tok{tag}BearerValue"
        self.query_token = f"qt{tag}QueryValue"
        self.values = [self.api_key, self.password, self.bearer, self.query_token]

    def kwargs(self) -> dict[str, Any]:
        return {
            "api_key": self.api_key,
            "dsn": f"postgresql+psycopg://quant:{self.password}@db:5432/quantbeat",
            "header": f"Authorization: Bearer {self.bearer}",
            "url": f"https://api.example.com/v1/quote?token={self.query_token}&symbol=005930",
        }

    def reason(self) -> str:
        """An error message that quotes every secret (the failing task raises with it)."""
        kw = self.kwargs()
        return f"api_key={self.api_key} dsn={kw['dsn']} {kw['header']} url={kw['url']}"


def _raw_send(name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            RAW_CLIENT,
            TEST_BROKER_URL,
            TEST_RESULT_BACKEND,
            name,
            json.dumps(args),
            json.dumps(kwargs),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",  # nothing of the project on the path
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def flower(celery_app: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flower]:
    """A running Flower that receives events: it subscribes some time after it answers HTTP
    and events sent before that are lost, so probe tasks go until one is listed."""
    tmp_path = tmp_path_factory.mktemp("flower-masking")
    running = Flower(tmp_path, tmp_path / "state" / "flower.db")
    try:
        for _ in range(10):
            probe = celery_app.send_task(SUCCEEDS, args=[0])
            assert probe.get(timeout=60) == {"retries": 0}
            if running.wait_listed(probe.id, 3):
                break
        else:
            pytest.fail(f"flower never listed a task:\n{running.log()}")
        yield running
    finally:
        running.stop()


def _final(flower: Flower, task_id: str, state: str) -> dict[str, Any]:
    """The task's info once Flower has its final state and every worker event of it."""
    info: dict[str, Any] = {}

    def complete() -> bool:
        nonlocal info
        info = flower.api(f"/api/task/info/{task_id}") if task_id in flower.tasks() else {}
        return (
            info.get("state") == state
            and bool(info.get("received"))
            and bool(info.get("started"))
            and bool(info.get("succeeded" if state == "SUCCESS" else "failed"))
        )

    assert wait_for(complete, 60), f"{task_id}: {info}\n{flower.log()}"
    return info


def _assert_masked(secrets: Secrets, where: str, text: str) -> None:
    leaked = [value for value in secrets.values if value in text]
    assert not leaked, f"{where} shows {leaked}:\n{text[:3000]}"


def _check_everything_flower_shows(
    flower: Flower, secrets: Secrets, task_ids: list[str], fields: tuple[str, ...]
) -> None:
    listed = flower.tasks()
    for task_id in task_ids:
        info = flower.api(f"/api/task/info/{task_id}")
        for field in fields:  # the fields that carried secrets show the mask instead
            assert MASK in str(info.get(field)), (task_id, field, info.get(field))
        _assert_masked(secrets, f"/api/task/info/{task_id}", json.dumps(info))
        _assert_masked(secrets, f"/api/tasks[{task_id}]", json.dumps(listed[task_id]))
        # The result as the result backend keeps it (Flower reads it from Redis).
        stored = flower.api(f"/api/task/result/{task_id}")
        _assert_masked(secrets, f"/api/task/result/{task_id}", json.dumps(stored))
        status, page = http_get(f"{flower.base}/task/{task_id}", auth=CREDENTIALS)
        assert status == 200
        _assert_masked(secrets, f"/task/{task_id}", page.decode(errors="replace"))
    _assert_masked(secrets, "/api/tasks", json.dumps(listed))


def test_arguments_are_masked_in_flower(flower: Flower, celery_app: Any) -> None:
    secrets = Secrets()
    client = celery_app.send_task(SUCCEEDS, args=[0], kwargs=secrets.kwargs())
    assert client.get(timeout=60) == {"retries": 0}
    raw = _raw_send(SUCCEEDS, [0], secrets.kwargs())
    ids = [client.id, raw]
    for task_id in ids:
        info = _final(flower, task_id, "SUCCESS")
        assert info["name"] == SUCCEEDS
    _check_everything_flower_shows(flower, secrets, ids, ("kwargs",))


def test_errors_are_masked_in_flower(flower: Flower, celery_app: Any) -> None:
    secrets = Secrets()
    client = celery_app.send_task(FAILS, args=[secrets.reason()])
    with pytest.raises(Exception, match="simulated permanent failure"):
        client.get(timeout=60)
    raw = _raw_send(FAILS, [secrets.reason()], {})
    ids = [client.id, raw]
    for task_id in ids:
        info = _final(flower, task_id, "FAILURE")
        assert "PermanentError" in info["exception"]
    _check_everything_flower_shows(flower, secrets, ids, ("args", "exception", "traceback"))


class EventLog:
    """Every event on the test broker while it runs, as Celery's own receiver (no masking of
    its own) hands them over: what any event consumer other than Flower would see."""

    def __init__(self, app: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self._connection = app.connection_for_read()
        self._receiver = EventReceiver(
            self._connection, handlers={"*": self.events.append}, app=app
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        # Listening once the workers' heartbeats (every 2 s) come in.
        assert wait_for(lambda: bool(self.events), 30), "no event received"

    def _run(self) -> None:
        self._receiver.capture(limit=None, timeout=None, wakeup=True)

    def of(self, task_id: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e.get("uuid") == task_id]

    def stop(self) -> None:
        self._receiver.should_stop = True
        self._thread.join(10)
        self._connection.release()


def test_every_event_of_quantbeat_processes_is_masked(celery_app: Any, worker: Any) -> None:
    """The project's client and worker publish masked events, also for a task a bare client
    sent by name (only that client's own task-sent event is out of the project's hands)."""
    secrets = Secrets()
    log = EventLog(celery_app)
    try:
        client = celery_app.send_task(SUCCEEDS, args=[0], kwargs=secrets.kwargs())
        assert client.get(timeout=60) == {"retries": 0}
        raw = _raw_send(SUCCEEDS, [0], secrets.kwargs())
        failed = celery_app.send_task(FAILS, args=[secrets.reason()])
        with pytest.raises(Exception, match="simulated permanent failure"):
            failed.get(timeout=60)
        expected = {
            client.id: {"task-sent", "task-received", "task-started", "task-succeeded"},
            raw: {"task-received", "task-started", "task-succeeded"},
            failed.id: {"task-sent", "task-received", "task-started", "task-failed"},
        }

        def all_seen() -> bool:
            return all(
                wanted <= {e["type"] for e in log.of(task_id)}
                for task_id, wanted in expected.items()
            )

        assert wait_for(all_seen, 60), {t: [e["type"] for e in log.of(t)] for t in expected}
    finally:
        log.stop()
    for task_id in expected:
        for event in log.of(task_id):
            if task_id == raw and event["type"] == "task-sent":
                continue  # published by the bare client itself
            _assert_masked(secrets, f"{event['type']} of {task_id}", json.dumps(event))
    received = {t: next(e for e in log.of(t) if e["type"] == "task-received") for t in expected}
    assert MASK in received[client.id]["kwargs"]
    assert MASK in received[raw]["kwargs"]
    assert MASK in received[failed.id]["args"]
    failure = next(e for e in log.of(failed.id) if e["type"] == "task-failed")
    assert MASK in failure["exception"]
    assert MASK in failure["traceback"]
