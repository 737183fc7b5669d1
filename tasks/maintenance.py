"""Housekeeping tasks run by beat (``io`` queue): the reaper of orphaned job runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from quantbeat.infra.settings import get_settings
from workers.app import app

#: Claims of beat slots are kept this long (they only need to outlive a duplicate tick).
BEAT_SLOT_RETENTION = dt.timedelta(days=30)


@app.task(name="quantbeat.ops.reap", bind=True)
def reap(self: Any, grace: float | None = None) -> dict[str, Any]:
    """Requeue (idempotent) or mark lost the job runs left ``started`` by dead workers, and
    prune old beat-slot claims (see :mod:`quantbeat.services.reaper`). Idempotent: a run requeued
    once is ``requeued``, no longer ``started``. Returns the pass's report."""
    from db.beat import prune_slots
    from db.engine import session_scope
    from quantbeat.services.reaper import reap as reap_runs

    settings = get_settings()
    report = reap_runs(
        app,
        grace=settings.reaper_grace if grace is None else float(grace),
        own_task_id=self.request.id,
    )
    with session_scope() as session:
        pruned = prune_slots(session, before=dt.datetime.now(dt.UTC) - BEAT_SLOT_RETENTION)
    return {**report.as_dict(), "pruned_slots": pruned}
