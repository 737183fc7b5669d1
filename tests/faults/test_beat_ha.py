"""Scenario 6 of issue 9 — two beat processes, each slot gets one execution — through real
processes: celery-redbeat beats, a real worker, PostgreSQL.

* Two beats for two minutes on a once-a-minute schedule execute the job exactly once per
  minute — with redbeat's lock (the deployment), and with the lock disabled so that only the
  PostgreSQL ``(entry, scheduled_for)`` key prevents double runs (beat_experiment.py, started
  in the background at collection by tests/conftest.py; this test runs last and records
  Outcome 6).
* A duplicated beat message (same entry and scheduled time, new task id) is a no-op.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import BEAT_EXPERIMENT
from tests.faults import beat_experiment
from tests.faults.outcomes import Outcome

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


#: Slots scheduled this close to the end of the run may not have been sent (beat wakes every
#: 5 s) or executed before the processes stopped: they are not counted as lost.
END_MARGIN = dt.timedelta(seconds=10)


def test_two_beats_run_each_minute_once(
    request: pytest.FixtureRequest, outcome: Callable[[Outcome], None]
) -> None:
    experiment: Any = request.config.stash.get(BEAT_EXPERIMENT, None)
    assert experiment is not None, "the beat experiment was not started at collection"
    result = experiment.finish()
    logs = result["logs"]
    stopped = dt.datetime.fromtimestamp(result["window"][1], tz=dt.UTC)
    ran_s = result["window"][1] - result["window"][0]
    per_group: dict[str, Counter[str]] = {}
    suppressed: Counter[str] = Counter()
    for run in result["executions"]:
        entry = (run["result"] or {}).get("entry") or "?"
        if run["state"] == "duplicate":
            suppressed[entry] += 1
            continue
        assert run["state"] == "succeeded", (run, logs.get("worker"))
        per_group.setdefault(entry, Counter())[run["result"]["slot"]] += 1

    twice: dict[str, dict[str, int]] = {}
    missed: dict[str, list[dt.datetime]] = {}
    minutes: dict[str, list[dt.datetime]] = {}
    for group in ("locked", "unlocked"):
        slots = per_group.get(f"every-minute-{group}", Counter())
        twice[group] = {slot: n for slot, n in slots.items() if n > 1}
        minutes[group] = sorted(dt.datetime.fromisoformat(s) for s in slots)
        # every minute from the first execution to the end of the run has one
        expected = []
        if minutes[group]:
            moment = minutes[group][0]
            while moment <= stopped - END_MARGIN:
                expected.append(moment)
                moment += dt.timedelta(minutes=1)
        missed[group] = [m for m in expected if m not in minutes[group]]

    duplicates = sum(n - 1 for slots in twice.values() for n in slots.values())
    lost = sum(len(m) for m in missed.values())
    outcome(
        Outcome(
            number=6,
            scenario="Two beat processes",
            sent=len(result["executions"]),
            completed=sum(len(m) for m in minutes.values()),
            duplicates=duplicates,
            lost=lost,
            notes=(
                f"2 beats locked + 2 unlocked for {ran_s / 60:.1f} min (at least "
                f"{beat_experiment.RUN_SECONDS:g} s: they run in the background until the "
                f"suite ends) on a once-a-minute schedule; {sum(suppressed.values())} "
                "duplicate ticks suppressed by the slot key"
            ),
        )
    )

    for group in ("locked", "unlocked"):
        assert not twice[group], f"{group}: slots executed more than once: {twice[group]}"
        assert not missed[group], f"{group}: minutes without an execution: {missed[group]}"
        # 150 s of beats cover at least two whole minutes: two consecutive slots at least.
        assert len(minutes[group]) >= 2, (group, minutes[group], logs)
    locked_beats = [logs.get(f"locked-{n}", "") for n in (1, 2)]
    # With the lock, only one of the two beats ever sent anything.
    assert sum("beat.send" in log or "Sending due task" in log for log in locked_beats) == 1, (
        locked_beats
    )
