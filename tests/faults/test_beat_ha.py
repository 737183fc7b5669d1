"""Scenario 6 of issue 9 — two beat processes, each slot gets one execution: a duplicated beat
message (same entry and scheduled time, new task id) is a no-op. The two-beats run is in
test_beat_ha_two_beats.py."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import text

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
