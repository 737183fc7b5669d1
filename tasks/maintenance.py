"""Housekeeping tasks run by beat (``io`` queue): the reaper of orphaned job runs, its
frequent pass over the runs of dead workers (heartbeats), the packing of candle months, and
the nightly backup."""

from __future__ import annotations

from typing import Any

from quantbeat.services import backups, candle_months
from quantbeat.services.reaper import dead_workers_pass, housekeeping, parse_dead_after, parse_grace
from workers.app import app


@app.task(name="quantbeat.ops.reap", bind=True)
def reap(self: Any, grace: float | None = None) -> dict[str, Any]:
    """Requeue (idempotent) or mark lost the job runs left ``started`` at least ``grace``
    seconds (default ``QUANTBEAT_REAPER_GRACE``) by dead workers, and prune old beat-slot
    claims (see :mod:`quantbeat.services.reaper`). Idempotent: a run requeued once is
    ``requeued``, no longer ``started``. Returns the pass's report."""
    return housekeeping(parse_grace(grace), own_task_id=self.request.id)


@app.task(name="quantbeat.ops.reap_dead_workers", bind=True)
def reap_dead_workers(self: Any, dead_after: float | None = None) -> dict[str, Any]:
    """Requeue (idempotent) or mark lost, at once, the job runs ``started`` on workers whose
    heartbeat is older than ``dead_after`` seconds (default ``QUANTBEAT_WORKER_DEAD_AFTER``),
    that stopped, or that restarted since (see
    :func:`quantbeat.services.reaper.reap_dead_workers`). Idempotent: a run given up once is
    no longer ``started``. Returns the pass's report.

    Raises ValidationError for a bad ``dead_after`` (not retried)."""
    return dead_workers_pass(parse_dead_after(dead_after), own_task_id=self.request.id)


@app.task(name="quantbeat.ops.backup", soft_time_limit=3_300, time_limit=3_600)
def backup(keep: int | None = None) -> dict[str, Any]:
    """Back up the database to ``QUANTBEAT_BACKUP_URL`` or ``QUANTBEAT_BACKUP_DIR`` and keep
    the newest ``keep`` (default ``QUANTBEAT_BACKUP_KEEP``) backups (see
    :mod:`quantbeat.services.backups`). Returns the backup's summary (name, location, tables,
    rows, bytes; no URL with a password). A database or store that cannot be reached is
    retried with backoff like any transient error; a failed ``pg_dump`` is final (a dead
    letter), and the next night makes a new backup. Limited to an hour (below the broker's
    visibility timeout): a database that takes longer is backed up by ``quantbeat db backup``
    from a host's scheduler."""
    return backups.backup(keep=keep)


@app.task(name="quantbeat.ops.pack_candles", soft_time_limit=540, time_limit=600)
def pack_candles(limit: int | None = None) -> dict[str, Any]:
    """Pack the candle months written since they were last packed, at most ``limit`` (see
    :mod:`db.candle_months`). Idempotent: a month packed once is off the list until a write
    touches it again. Returns the pass's report (packed, listed, dropped, remaining, busy,
    seconds); ``busy`` when another pass was running (the rest is left to it). A no-op on
    SQLite."""
    return candle_months.pack(limit=limit)
