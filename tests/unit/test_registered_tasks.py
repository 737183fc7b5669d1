"""Task names, their parameters and beat entries match the committed list
(tests/fixtures/registered_tasks.json): messages already in a queue, or sent by an older
client or beat, must still find their task after a deploy. Renaming one is a migration (keep
the old name registered as an alias until the queues drained), not a refactor."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from beat_schedule import BEAT_SCHEDULE
from workers.app import TASK_MODULES, app

COMMITTED = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "registered_tasks.json").read_text()
)


def _registered() -> dict[str, list[str]]:
    app.loader.import_default_modules()
    return {
        name: list(inspect.signature(app.tasks[name].run).parameters)
        for name in sorted(app.tasks)
        if name.startswith("quantbeat.") and app.tasks[name].__module__ in TASK_MODULES
    }


def test_task_names_and_parameters_are_unchanged():
    assert _registered() == COMMITTED["tasks"]


def test_beat_entries_are_unchanged():
    current = {
        name: {
            "task": entry["task"],
            "schedule": repr(entry["schedule"]),
            "kwargs": entry.get("kwargs", {}),
        }
        for name, entry in sorted(BEAT_SCHEDULE.items())
    }
    assert current == COMMITTED["beat"]


def test_the_tasks_that_are_not_idempotent_are_the_committed_ones():
    """The reaper requeues a run its worker lost only for an idempotent task and marks any
    other lost (dead letter ``worker_lost``): whether a task may run twice is part of its
    contract, changed deliberately with the fixture."""
    app.loader.import_default_modules()
    found = sorted(
        name
        for name in app.tasks
        if name.startswith("quantbeat.")
        and app.tasks[name].__module__ in TASK_MODULES
        and not app.tasks[name].idempotent
    )
    assert found == COMMITTED["non_idempotent"]
