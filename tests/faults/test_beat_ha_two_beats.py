"""Scenario 6 of issue 9 — two beat processes, each slot gets one execution — through real
processes: celery-redbeat beats, a real worker, PostgreSQL.

Two beats for two minutes on a once-a-minute schedule execute the job exactly once per minute —
with redbeat's lock (the deployment), and with the lock disabled so that only the PostgreSQL
``(entry, scheduled_for)`` key prevents double runs. The experiment (beat_experiment.py) starts
in the background at collection (tests/conftest.py); this test runs last, reads its outcome and
records Outcome 6. (The duplicated-message case is in test_beat_ha.py.)
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable

import pytest

from tests.faults import beat_experiment
from tests.faults.outcomes import Outcome

pytestmark = pytest.mark.integration


#: Slots scheduled this close to the end of the run may not have been sent (beat wakes every
#: 5 s) or executed before the processes stopped: they are not counted as lost.
END_MARGIN = dt.timedelta(seconds=10)


def test_two_beats_run_each_minute_once(outcome: Callable[[Outcome], None]) -> None:
    result = beat_experiment.wait_result()
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
