"""Subscriptions, the delivery ledger and leases (the notifications issue).

Each call runs in the caller's session; callers commit. Times are aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import String, and_, cast, delete, func, literal, or_, select, update
from sqlalchemy.orm import Session

from db.models import (
    UNFOLLOWED_RULES,
    AiAnalysis,
    Event,
    Instrument,
    NotificationDelivery,
    NotificationLease,
    NotificationSubscription,
    Signal,
    SignalOutcome,
)
from db.store import insert_for

#: Delivery states that still need work, and the final ones.
OPEN_STATES: tuple[str, ...] = ("pending", "sending")
FINAL_STATES: tuple[str, ...] = ("sent", "failed")


def add_subscription(session: Session, values: Mapping[str, Any]) -> int:
    """Insert a subscription; returns its id. The caller checks ``name`` is free (a
    duplicate raises the database's IntegrityError)."""
    row = NotificationSubscription(**dict(values))
    session.add(row)
    session.flush()
    return row.id


def subscription(session: Session, name: str) -> NotificationSubscription | None:
    """The subscription called ``name``."""
    return session.execute(
        select(NotificationSubscription).where(NotificationSubscription.name == name)
    ).scalar_one_or_none()


def subscriptions(
    session: Session, *, enabled_only: bool = False
) -> list[NotificationSubscription]:
    """All subscriptions by name (only the enabled ones with ``enabled_only``)."""
    query = select(NotificationSubscription).order_by(NotificationSubscription.name)
    if enabled_only:
        query = query.where(NotificationSubscription.enabled.is_(True))
    return list(session.execute(query).scalars())


def any_enabled(session: Session) -> bool:
    """Whether any subscription is enabled."""
    found = session.execute(
        select(NotificationSubscription.id)
        .where(NotificationSubscription.enabled.is_(True))
        .limit(1)
    ).first()
    return found is not None


def remove_subscription(session: Session, name: str) -> bool:
    """Delete subscription ``name`` and its ledger rows; returns whether it existed."""
    result = session.execute(
        delete(NotificationSubscription).where(NotificationSubscription.name == name)
    )
    return bool(getattr(result, "rowcount", 0))


def set_enabled(session: Session, ident: int, enabled: bool, reason: str | None) -> None:
    """Enable or disable subscription ``ident`` (``reason`` says why it was disabled)."""
    session.execute(
        update(NotificationSubscription)
        .where(NotificationSubscription.id == ident)
        .values(enabled=enabled, disabled_reason=reason, updated_at=func.now())
    )


def add_deliveries(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ledger rows ``{"event_id", "subscription_id", "state", "next_attempt_at"}``;
    a row that exists already (a redelivered fan-out) is left as it is."""
    if not rows:
        return
    stmt = insert_for(session, NotificationDelivery.__table__)  # type: ignore[arg-type]
    session.execute(
        stmt.on_conflict_do_nothing(index_elements=["event_id", "subscription_id"]),
        [dict(r) for r in rows],
    )


def due_subscriptions(session: Session, now: dt.datetime) -> list[int]:
    """Ids of enabled subscriptions with an open delivery due at ``now`` that no deliverer
    holds (a held one is carried on by its holder, which looks again before it lets go)."""
    lease_name = literal("sub:", String) + cast(NotificationDelivery.subscription_id, String)
    held = (
        select(NotificationLease.name)
        .where(NotificationLease.name == lease_name, NotificationLease.until >= now)
        .exists()
    )
    query = (
        select(NotificationDelivery.subscription_id)
        .join(
            NotificationSubscription,
            NotificationSubscription.id == NotificationDelivery.subscription_id,
        )
        .where(
            NotificationDelivery.state.in_(OPEN_STATES),
            NotificationDelivery.next_attempt_at <= now,
            NotificationSubscription.enabled.is_(True),
            ~held,
        )
        .distinct()
    )
    return sorted(session.execute(query).scalars())


def head(session: Session, subscription_id: int) -> NotificationDelivery | None:
    """The oldest open delivery of a subscription (by event order), due or not."""
    return session.execute(
        select(NotificationDelivery)
        .where(
            NotificationDelivery.subscription_id == subscription_id,
            NotificationDelivery.state.in_(OPEN_STATES),
        )
        .order_by(NotificationDelivery.event_id)
        .limit(1)
    ).scalar_one_or_none()


def event_row(session: Session, ident: int) -> Event:
    """The event with primary key ``ident``."""
    return session.execute(select(Event).where(Event.id == ident)).scalar_one()


def subscription_by_id(session: Session, ident: int) -> NotificationSubscription | None:
    """The subscription with id ``ident``."""
    return session.get(NotificationSubscription, ident)


def update_delivery(session: Session, ident: int, **values: Any) -> None:
    """Set ``values`` on ledger row ``ident`` (and ``updated_at``)."""
    session.execute(
        update(NotificationDelivery)
        .where(NotificationDelivery.id == ident)
        .values(**values, updated_at=func.now())
    )


def open_deliveries(session: Session) -> int:
    """Deliveries not final yet (pending or sending)."""
    return int(
        session.execute(
            select(func.count())
            .select_from(NotificationDelivery)
            .join(
                NotificationSubscription,
                NotificationSubscription.id == NotificationDelivery.subscription_id,
            )
            .where(
                NotificationDelivery.state.in_(OPEN_STATES),
                NotificationSubscription.enabled.is_(True),
            )
        ).scalar_one()
    )


def history(
    session: Session, *, subscription_id: int | None = None, limit: int = 50
) -> list[tuple[NotificationDelivery, Event, NotificationSubscription]]:
    """The newest ``limit`` ledger rows (of one subscription), newest first, with their
    event and subscription."""
    query = (
        select(NotificationDelivery, Event, NotificationSubscription)
        .join(Event, Event.id == NotificationDelivery.event_id)
        .join(
            NotificationSubscription,
            NotificationSubscription.id == NotificationDelivery.subscription_id,
        )
        .order_by(NotificationDelivery.id.desc())
        .limit(limit)
    )
    if subscription_id is not None:
        query = query.where(NotificationDelivery.subscription_id == subscription_id)
    return [(d, e, s) for d, e, s in session.execute(query).all()]


def state_counts(session: Session) -> dict[str, int]:
    """Ledger rows by state."""
    rows = session.execute(
        select(NotificationDelivery.state, func.count()).group_by(NotificationDelivery.state)
    ).all()
    return {state: int(n) for state, n in rows}


def acquire_lease(
    session: Session, name: str, owner: str, *, now: dt.datetime, seconds: float
) -> bool:
    """Take (or renew) lease ``name`` for ``owner`` until ``now + seconds``; returns whether
    ``owner`` holds it (``False``: another owner's lease has not expired)."""
    until = now + dt.timedelta(seconds=seconds)
    table = NotificationLease.__table__
    stmt = insert_for(session, table).values(name=name, owner=owner, until=until)  # type: ignore[arg-type]
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={"owner": owner, "until": until},
        where=or_(table.c.until < now, table.c.owner == owner),
    ).returning(table.c.owner)
    return session.execute(stmt).scalar_one_or_none() == owner


def release_lease(session: Session, name: str, owner: str) -> None:
    """Give lease ``name`` up if ``owner`` holds it."""
    session.execute(
        delete(NotificationLease).where(
            and_(NotificationLease.name == name, NotificationLease.owner == owner)
        )
    )


# --- what announcements read ----------------------------------------------------------------
def instrument_labels(
    session: Session, ids: Collection[int]
) -> dict[int, tuple[str, str, str | None, str]]:
    """``{instrument id: (ticker, market, name, source)}`` of ``ids``."""
    if not ids:
        return {}
    rows = session.execute(
        select(Instrument.id, Instrument.ticker, Instrument.market, Instrument.name,
               Instrument.source).where(Instrument.id.in_(list(ids)))
    ).all()  # fmt: skip
    return {int(r[0]): (str(r[1]), str(r[2]), r[3], str(r[4])) for r in rows}


def signal_strategies(session: Session, ids: Collection[int]) -> dict[int, str]:
    """``{signal id: strategy}`` of ``ids``."""
    if not ids:
        return {}
    rows = session.execute(select(Signal.id, Signal.strategy).where(Signal.id.in_(list(ids))))
    return {int(i): str(s) for i, s in rows.all()}


def analysis_catalysts(
    session: Session, trade_date: dt.date, strategy: str, ids: Collection[int]
) -> dict[int, str]:
    """``{instrument id: the news catalyst}`` of the succeeded AI analyses of ``strategy`` on
    ``trade_date`` (the newest per instrument)."""
    if not ids:
        return {}
    rows = session.execute(
        select(AiAnalysis.instrument_id, AiAnalysis.catalyst)
        .where(
            AiAnalysis.trade_date == trade_date,
            AiAnalysis.strategy == strategy,
            AiAnalysis.instrument_id.in_(list(ids)),
            AiAnalysis.status == "succeeded",
            AiAnalysis.catalyst.is_not(None),
        )
        .order_by(AiAnalysis.id)
    ).all()
    return {int(i): str(c) for i, c in rows}


def new_signal_counts(session: Session, trade_date: dt.date) -> dict[str, int]:
    """Final signals stored for ``trade_date``, by strategy."""
    rows = session.execute(
        select(Signal.strategy, func.count())
        .where(Signal.trade_date == trade_date, Signal.phase == "final")
        .group_by(Signal.strategy)
    ).all()
    return {str(s): int(n) for s, n in rows}


def outcome_day(session: Session, trade_date: dt.date) -> tuple[int, list[float | None]]:
    """(signals whose outcome is open or pending entry, the net returns of those that
    closed on ``trade_date``); outcomes the track record has not computed yet are left out."""
    still = session.execute(
        select(func.count())
        .select_from(SignalOutcome)
        .where(
            SignalOutcome.state.in_(("open", "pending")),
            SignalOutcome.rules != UNFOLLOWED_RULES,
        )
    ).scalar_one()
    closed = session.execute(
        select(SignalOutcome.net_return).where(
            SignalOutcome.state == "closed", SignalOutcome.exit_date == trade_date
        )
    ).scalars()
    return int(still), list(closed)


def latest_candle_day(session: Session, model: Any, markets: Sequence[str]) -> dt.date | None:
    """The newest ``trade_date`` of ``model`` (a daily table with ``instrument_id``) among
    the instruments of ``markets``."""
    return session.execute(
        select(func.max(model.trade_date))
        .join(Instrument, Instrument.id == model.instrument_id)
        .where(Instrument.market.in_(list(markets)))
    ).scalar_one_or_none()
