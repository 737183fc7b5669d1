"""Housekeeping tasks run by beat (``io`` queue): the reaper of orphaned job runs."""

from __future__ import annotations

from typing import Any

from quantbeat.services.reaper import housekeeping, parse_grace
from workers.app import app


@app.task(name="quantbeat.ops.reap", bind=True)
def reap(self: Any, grace: float | None = None) -> dict[str, Any]:
    """Requeue (idempotent) or mark lost the job runs left ``started`` at least ``grace``
    seconds (default ``QUANTBEAT_REAPER_GRACE``) by dead workers, and prune old beat-slot
    claims (see :mod:`quantbeat.services.reaper`). Idempotent: a run requeued once is
    ``requeued``, no longer ``started``. Returns the pass's report."""
    return housekeeping(parse_grace(grace), own_task_id=self.request.id)
