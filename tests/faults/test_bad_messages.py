"""Scenarios 14 and 15 (issue 16): bad messages among good ones on the session's io worker
(tests/support/services.py: a real worker subprocess, PostgreSQL, Redis).

14. **Oversized and long arguments.** A 5 MB argument sent by name with every client-side
    check bypassed (a raw kombu publish), and a 40,000-character argument under the size limit
    (it froze a worker for about five minutes when masking was quadratic), published between
    good tasks. The oversized message is dead-lettered ``oversized`` unread, the long one runs;
    every good task runs once.
15. **NUL characters.** Arguments with NUL (``\\u0000``) in values and keys, one task that
    fails and one that succeeds, between good tasks: both leave a job run and the failing one
    a dead letter, the NUL escaped; every good task runs once.

After publishing each bad message the test pings the worker (1 s timeout) and records the
slowest answer: the worker must answer within 1 s of receiving any of them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from db.engine import session_scope
from db.models import DeadLetter, JobRun
from tests.conftest import TEST_BROKER_URL
from tests.faults.outcomes import Outcome
from tests.integration.helpers import eventually
from tests.support.messages import publish_task

pytestmark = pytest.mark.integration

GOOD = 10
FIVE_MB = 5 * 1024 * 1024


def _ping_s(app: Any, hostname: str) -> float:
    """Seconds until the worker answers ping (``inf`` when it did not within 1 s)."""
    started = time.monotonic()
    replies = app.control.ping(destination=[hostname], timeout=1.0)
    took = time.monotonic() - started
    return took if replies else float("inf")


def _runs(task_ids: list[str]) -> dict[str, JobRun]:
    with session_scope() as session:
        rows = list(session.execute(select(JobRun).where(JobRun.task_id.in_(task_ids))).scalars())
        session.expunge_all()
    return {r.task_id: r for r in rows}


def _letters(task_ids: list[str]) -> dict[str, DeadLetter]:
    with session_scope() as session:
        rows = list(
            session.execute(select(DeadLetter).where(DeadLetter.task_id.in_(task_ids))).scalars()
        )
        session.expunge_all()
    return {str(r.task_id): r for r in rows}


def _good(app: Any, n: int) -> list[str]:
    return [app.send_task("quantbeat.ops.test_flaky", args=[0]).id for _ in range(n)]


def _good_outcome(ids: list[str]) -> tuple[int, int, int]:
    """(completed, duplicated, lost) of the good tasks: each must have succeeded once."""
    runs = _runs(ids)
    completed = sum(1 for i in ids if i in runs and runs[i].state == "succeeded")
    duplicated = sum(1 for i in ids if i in runs and runs[i].attempts > 1)
    return completed, duplicated, len(ids) - completed


def _all_succeeded(app: Any, ids: list[str]) -> None:
    for task_id in ids:
        assert app.AsyncResult(task_id).get(timeout=60) == {"retries": 0}


def test_oversized_and_long_arguments_among_good_tasks(
    celery_app: Any, worker: Any, clean_db: str, outcome: Callable[[Outcome], None]
) -> None:
    good = _good(celery_app, GOOD)
    oversized = str(uuid.uuid4())
    size = publish_task(
        TEST_BROKER_URL,
        "quantbeat.ops.test_flaky",
        oversized,
        [0],
        {"note": "token=" + "A" * FIVE_MB},
    )
    pings = [_ping_s(celery_app, worker.hostname)]
    good += _good(celery_app, GOOD)
    long_id = str(uuid.uuid4())
    publish_task(TEST_BROKER_URL, "quantbeat.ops.test_flaky", long_id, [0], {"note": "x" * 40_000})
    pings.append(_ping_s(celery_app, worker.hostname))
    good += _good(celery_app, GOOD)

    _all_succeeded(celery_app, good)
    assert celery_app.AsyncResult(long_id).get(timeout=60) == {"retries": 0}
    letter = eventually(
        lambda: _letters([oversized]).get(oversized), lambda r: r is not None, timeout=15
    )
    assert letter is not None, worker.log()
    assert letter.reason == "oversized"
    assert letter.payload["body_bytes"] == size
    assert len(json.dumps(letter.payload)) < 4_000
    assert oversized not in _runs([oversized])  # never started, never counted
    runs = _runs([long_id])
    assert runs[long_id].state == "succeeded"
    assert runs[long_id].attempts == 1
    assert max(pings) < 1.0, pings

    completed, duplicated, lost = _good_outcome(good)
    assert (completed, duplicated, lost) == (len(good), 0, 0)
    outcome(
        Outcome(
            number=14,
            scenario="Oversized (5 MB) and long (40,000 characters) arguments among good tasks",
            sent=len(good) + 2,
            completed=completed + 2,
            duplicates=duplicated,
            lost=lost,
            recovery_s=None,
            notes=(
                f"5 MB message ({size:,} bytes, client checks bypassed) dead-lettered "
                f"oversized unread, no job run; the 40,000-character one ran once; "
                f"{completed}/{len(good)} good tasks ran once; slowest ping after a bad "
                f"message {max(pings) * 1000:.0f} ms"
            ),
        )
    )


def test_nul_characters_among_good_tasks(
    celery_app: Any, worker: Any, clean_db: str, outcome: Callable[[Outcome], None]
) -> None:
    good = _good(celery_app, GOOD)
    failing = celery_app.send_task("quantbeat.ops.test_permanent", args=["bad\x00input"]).id
    pings = [_ping_s(celery_app, worker.hostname)]
    good += _good(celery_app, GOOD)
    passing = celery_app.send_task(
        "quantbeat.ops.test_flaky", args=[0], kwargs={"note\x00": "a\x00b"}
    ).id
    pings.append(_ping_s(celery_app, worker.hostname))
    good += _good(celery_app, GOOD)

    _all_succeeded(celery_app, good)
    assert celery_app.AsyncResult(passing).get(timeout=60) == {"retries": 0}
    with pytest.raises(Exception, match="simulated permanent failure"):
        celery_app.AsyncResult(failing).get(timeout=60)
    runs = eventually(
        lambda: _runs([failing, passing]),
        lambda found: (
            found.get(failing) is not None
            and found[failing].state == "failed"
            and found.get(passing) is not None
            and found[passing].state == "succeeded"
        ),
        timeout=15,
    )
    assert runs[failing].args == ["bad\\u0000input"]
    assert runs[passing].kwargs == {"note\\u0000": "a\\u0000b"}
    letters = eventually(lambda: _letters([failing]), lambda found: failing in found, timeout=15)
    assert letters[failing].reason == "permanent_error"
    assert letters[failing].payload["args"] == ["bad\\u0000input"]
    assert "not_recorded" not in worker.full_log()
    assert max(pings) < 1.0, pings

    completed, duplicated, lost = _good_outcome(good)
    assert (completed, duplicated, lost) == (len(good), 0, 0)
    outcome(
        Outcome(
            number=15,
            scenario="NUL characters in arguments among good tasks",
            sent=len(good) + 2,
            completed=completed + 2,
            duplicates=duplicated,
            lost=lost,
            recovery_s=None,
            notes=(
                "a failing and a succeeding task with NUL in values and keys: both job runs "
                "and the dead letter recorded, NUL stored as \\u0000 (no *_not_recorded); "
                f"{completed}/{len(good)} good tasks ran once; slowest ping after a bad "
                f"message {max(pings) * 1000:.0f} ms"
            ),
        )
    )
