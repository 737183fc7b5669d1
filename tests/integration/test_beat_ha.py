"""Beat safety through real processes: celery-redbeat beats, a real worker, PostgreSQL.

* Two beats for two minutes on a once-a-minute schedule execute the job exactly once per
  minute — with redbeat's lock (the deployment), and with the lock disabled so that only the
  PostgreSQL ``(entry, scheduled_for)`` key prevents double runs (beat_experiment.py).
* A duplicated beat message (same entry and scheduled time, new task id) is a no-op.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import BEAT_EXPERIMENT

pytestmark = pytest.mark.integration


def test_duplicate_beat_message_is_a_no_op(celery_app: Any, clean_db: str) -> None:
    from db.engine import get_engine

    slot = dt.datetime(2026, 11, 20, 6, 40, tzinfo=dt.UTC).isoformat()
    headers = {"qb_beat_entry": "itest-dup", "qb_beat_slot": slot}
    ids = [str(uuid.uuid4()) for _ in range(3)]
    results = [
        celery_app.send_task(
            "quantbeat.ops.test_flaky", args=[0], task_id=task_id, headers=headers
        ).get(timeout=30)
        for task_id in ids
    ]
    assert results[0] == {"retries": 0}, results
    assert results[1]["duplicate_of"] == ids[0]
    assert results[2]["duplicate_of"] == ids[0]
    with get_engine(clean_db).connect() as conn:
        states: dict[str, str] = dict(
            conn.execute(
                text("SELECT task_id, state FROM job_runs WHERE task_id = ANY(:ids)"),
                {"ids": ids},
            ).all()
        )
        claims = (
            conn.execute(text("SELECT task_id FROM beat_slots WHERE entry = 'itest-dup'"))
            .scalars()
            .all()
        )
    assert states == {ids[0]: "succeeded", ids[1]: "duplicate", ids[2]: "duplicate"}
    assert claims == [ids[0]]


def test_two_beats_run_each_minute_once(request: pytest.FixtureRequest) -> None:
    experiment: Any = request.config.stash.get(BEAT_EXPERIMENT, None)
    assert experiment is not None, "the beat experiment was not started at collection"
    outcome = experiment.finish()
    logs = outcome["logs"]
    per_group: dict[str, Counter[str]] = {}
    duplicates: Counter[str] = Counter()
    for run in outcome["executions"]:
        result = run["result"] or {}
        entry = result.get("entry") or "?"
        if run["state"] == "duplicate":
            duplicates[entry] += 1
            continue
        assert run["state"] == "succeeded", (run, logs.get("worker"))
        per_group.setdefault(entry, Counter())[result["slot"]] += 1
    for group in ("locked", "unlocked"):
        entry = f"every-minute-{group}"
        slots = per_group.get(entry, Counter())
        twice = {slot: n for slot, n in slots.items() if n > 1}
        assert not twice, f"{group}: slots executed more than once: {twice}"
        minutes = sorted(dt.datetime.fromisoformat(s) for s in slots)
        # 150 s of beats cover at least two whole minutes: two consecutive slots at least.
        assert len(minutes) >= 2, (group, minutes, logs)
        gaps = {b - a for a, b in itertools.pairwise(minutes)}
        assert gaps == {dt.timedelta(minutes=1)}, f"{group}: a minute was skipped: {minutes}"
    locked_beats = [logs.get(f"locked-{n}", "") for n in (1, 2)]
    # With the lock, only one of the two beats ever sent anything.
    assert sum("beat.send" in log or "Sending due task" in log for log in locked_beats) == 1, (
        locked_beats
    )
    print(
        "beat experiment:",
        {g: len(c) for g, c in per_group.items()},
        "duplicates suppressed:",
        dict(duplicates),
    )
