"""The transactional outbox (:class:`db.models.OutboxMessage`): task messages written in the
same transaction as the rows they publish, then published by the client or, if it could not,
by the reaper's sweep (:mod:`quantbeat.services.outbox`).

Each call runs in the caller's session; callers commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import OutboxMessage
from db.store import insert_for, storable


@dataclass(frozen=True)
class PendingMessage:
    """An outbox row still to be published (what :func:`pending` returns)."""

    task_id: str
    task_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    publish_attempts: int


def add_message(
    session: Session,
    *,
    task_id: str,
    task_name: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> None:
    """Add the message of ``task_id`` to the outbox (in the caller's transaction). A second
    call for the same ``task_id`` changes nothing. ``options`` are ``send_task`` options
    (JSON values: ``soft_time_limit``, ``time_limit``, ``queue`` …)."""
    stmt = insert_for(session, OutboxMessage.__table__).values(  # type: ignore[arg-type]
        task_id=task_id,
        task_name=task_name,
        args=list(args),
        kwargs=dict(kwargs or {}),
        options=dict(options or {}),
        publish_attempts=0,
    )
    session.execute(stmt.on_conflict_do_nothing(index_elements=["task_id"]))


def pending(
    session: Session,
    *,
    created_before: dt.datetime | None = None,
    task_ids: Sequence[str] | None = None,
    limit: int = 500,
) -> list[PendingMessage]:
    """Unpublished messages, oldest first: those created before ``created_before`` (when
    given) and among ``task_ids`` (when given), at most ``limit``."""
    query = select(OutboxMessage).where(OutboxMessage.published_at.is_(None))
    if created_before is not None:
        query = query.where(OutboxMessage.created_at < created_before)
    if task_ids is not None:
        query = query.where(OutboxMessage.task_id.in_(list(task_ids)))
    rows = session.execute(query.order_by(OutboxMessage.id).limit(limit)).scalars()
    return [
        PendingMessage(
            task_id=r.task_id,
            task_name=r.task_name,
            args=list(r.args or []),
            kwargs=dict(r.kwargs or {}),
            options=dict(r.options or {}),
            publish_attempts=r.publish_attempts,
        )
        for r in rows
    ]


def mark_published(session: Session, task_id: str, at: dt.datetime) -> None:
    """Record that the message of ``task_id`` reached the broker."""
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.task_id == task_id)
        .values(
            published_at=at,
            publish_attempts=OutboxMessage.publish_attempts + 1,
            last_error=None,
        )
    )


def mark_failed(session: Session, task_id: str, error: str) -> None:
    """Record a failed publication of ``task_id`` (it stays pending for the next sweep)."""
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.task_id == task_id)
        .values(
            publish_attempts=OutboxMessage.publish_attempts + 1,
            last_error=storable(error)[:2000],
        )
    )


def backlog(session: Session, *, created_before: dt.datetime) -> tuple[int, dt.datetime | None]:
    """(number of unpublished messages created before ``created_before``, the oldest one's
    creation time) — what ``health`` reports."""
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxMessage.created_at)).where(
            OutboxMessage.published_at.is_(None), OutboxMessage.created_at < created_before
        )
    ).one()
    return int(count), oldest
