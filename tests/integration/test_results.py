"""Result waits that survive a missed pub/sub message (workers.results.SlicedResult), on the
real Redis result backend: a result stored without its pub/sub message — what a waiter sees
when the message is missed — is found by quantbeat's handle within a slice, while Celery's
own handle waits out its whole timeout."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import redis
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout

from tests.conftest import TEST_RESULT_BACKEND
from workers.app import QuantbeatCelery
from workers.results import SLICE_S

pytestmark = pytest.mark.integration


def _client(cls: type[Celery]) -> Celery:
    client = cls("results-client")
    client.config_from_object("celeryconfig")
    client.conf.update(broker_url="memory://", result_backend=TEST_RESULT_BACKEND)
    return client


def _store_silently(task_id: str, after_s: float) -> threading.Thread:
    """Store a SUCCESS result for ``task_id`` after ``after_s`` without publishing it."""

    def run() -> None:
        time.sleep(after_s)
        meta: dict[str, object] = {
            "status": "SUCCESS",
            "result": {"ok": 1},
            "traceback": None,
            "children": [],
            "date_done": None,
            "task_id": task_id,
        }
        redis.Redis.from_url(TEST_RESULT_BACKEND).set(
            f"celery-task-meta-{task_id}", json.dumps(meta), ex=300
        )

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_result_stored_without_its_message_is_found_within_a_slice():
    client = _client(QuantbeatCelery)
    task_id = str(uuid.uuid4())
    writer = _store_silently(task_id, 0.5)
    # Celery's own handle raises at this timeout (next test); this one finds the result
    assert client.AsyncResult(task_id).get(timeout=SLICE_S + 2) == {"ok": 1}
    writer.join()


def test_celerys_own_handle_misses_it_which_is_what_the_slices_are_for():
    client = _client(Celery)
    task_id = str(uuid.uuid4())
    writer = _store_silently(task_id, 0.5)
    with pytest.raises(CeleryTimeout):
        client.AsyncResult(task_id).get(timeout=SLICE_S + 2)
    writer.join()


def test_a_result_that_never_comes_still_raises_celerys_timeout():
    client = _client(QuantbeatCelery)
    with pytest.raises(CeleryTimeout):
        client.AsyncResult(str(uuid.uuid4())).get(timeout=SLICE_S * 1.5)
