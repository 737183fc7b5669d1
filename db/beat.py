"""Claims of beat slots: one execution per (schedule entry, scheduled time)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import BeatSlot
from db.store import insert_for


def claim_slot(
    session: Session, *, entry: str, scheduled_for: dt.datetime, task_name: str, task_id: str
) -> str:
    """Claim ``(entry, scheduled_for)`` for ``task_id``; return the task id that owns it.

    The owner is ``task_id`` itself when this call inserted the claim, or when the claim was
    already this task's (a retry or a redelivery of the same message); any other id means the
    slot was run by another message and this one must not run."""
    table = BeatSlot.__table__
    stmt = (
        insert_for(session, table)  # type: ignore[arg-type]
        .values(entry=entry, scheduled_for=scheduled_for, task_name=task_name, task_id=task_id)
        .on_conflict_do_nothing(index_elements=["entry", "scheduled_for"])
    )
    session.execute(stmt)
    owner: str = session.execute(
        select(BeatSlot.task_id).where(
            BeatSlot.entry == entry, BeatSlot.scheduled_for == scheduled_for
        )
    ).scalar_one()
    return owner


def prune_slots(session: Session, *, before: dt.datetime) -> int:
    """Delete claims of slots scheduled before ``before``; how many were deleted."""
    result = session.execute(delete(BeatSlot).where(BeatSlot.scheduled_for < before))
    return int(getattr(result, "rowcount", 0) or 0)
