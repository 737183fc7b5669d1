"""The event outbox (:class:`db.models.Event`): domain events written in the caller's
transaction.

:func:`add_event` validates the payload against the event type's current schema
(:mod:`quant.notify.events`) and inserts it once per business ``key``. When the caller's
transaction commits, the functions registered with :func:`on_commit_of_events` run (the
notifications service registers the dispatcher's wake-up there); nothing runs for a rolled
back transaction, so no message is ever sent for an event that was not stored.

Each call runs in the caller's session; callers commit.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Event
from db.store import insert_for, storable
from quant.notify.events import CURRENT, validate_payload

_after_commit: list[Callable[[], None]] = []
_FLAG = "quantbeat_events_added"


def on_commit_of_events(callback: Callable[[], None]) -> None:
    """Run ``callback`` (no arguments; it must not use the committed session) after every
    commit of a transaction that added at least one new event. Registering the same callback
    twice keeps one. A callback that raises is the caller's problem: keep it cheap and safe."""
    if callback not in _after_commit:
        _after_commit.append(callback)


def _fire(session: Session) -> None:
    if session.info.pop(_FLAG, False):
        for callback in list(_after_commit):
            callback()


def _forget(session: Session) -> None:
    session.info.pop(_FLAG, None)


def add_event(
    session: Session,
    *,
    type: str,
    key: str,
    payload: Mapping[str, Any],
    at: dt.datetime,
    trade_date: dt.date | None = None,
    simulated: bool = False,
) -> str | None:
    """Record event ``type`` once per business ``key`` (at most 200 characters) with
    ``payload`` validated against the type's current schema. Returns the new event's id (a
    UUID string), or ``None`` when an event with ``key`` exists already (nothing changes).

    Raises:
        quant.errors.ValidationError: unknown type or a payload that does not fit (names the
            field); nothing is written.
    """
    # NUL and lone surrogates (a task's error text may hold them) are escaped: PostgreSQL's
    # JSONB cannot store them, and a failed insert would take the caller's row with it
    data = storable(validate_payload(type, payload))
    event_id = str(uuid.uuid4())
    insert = insert_for(session, Event.__table__)  # type: ignore[arg-type]
    stmt = insert.values(
        event_id=event_id,
        key=key[:200],
        type=type,
        version=CURRENT[type],
        trade_date=trade_date,
        at=at,
        payload=data,
        simulated=simulated,
    )
    inserted = session.execute(
        stmt.on_conflict_do_nothing(index_elements=["key"]).returning(Event.__table__.c.id)
    ).scalar_one_or_none()
    if inserted is None:
        return None
    if not session.info.get(_FLAG):
        session.info[_FLAG] = True
        if not sa_event.contains(session, "after_commit", _fire):
            sa_event.listen(session, "after_commit", _fire)
            sa_event.listen(session, "after_rollback", _forget)
    return event_id


def unfanned(session: Session, *, limit: int) -> list[Event]:
    """Events without deliveries yet, oldest first (at most ``limit``)."""
    query = select(Event).where(Event.fanned_out_at.is_(None)).order_by(Event.id).limit(limit)
    return list(session.execute(query).scalars())


def mark_fanned_out(session: Session, ids: Sequence[int], when: dt.datetime) -> None:
    """Record that the deliveries of events ``ids`` exist."""
    if ids:
        session.execute(update(Event).where(Event.id.in_(list(ids))).values(fanned_out_at=when))


def events(
    session: Session,
    *,
    type: str | None = None,
    since: dt.datetime | None = None,
    limit: int | None = None,
) -> list[Event]:
    """Recorded events, oldest first (of ``type``; at or after ``since``; the newest
    ``limit`` when given)."""
    query = select(Event)
    if type is not None:
        query = query.where(Event.type == type)
    if since is not None:
        query = query.where(Event.at >= since)
    if limit is not None:
        newest = list(session.execute(query.order_by(Event.id.desc()).limit(limit)).scalars())
        return newest[::-1]
    return list(session.execute(query.order_by(Event.at, Event.id)).scalars())
