"""Notifications: the event outbox's dispatcher, the delivery ledger, and subscriptions.

How a message travels (README "Notifications"):

1. A service records a domain event with :func:`record` in the *same* transaction as what
   caused it (signals stored, the gate computed, a position opened …). When that
   transaction commits, the dispatcher is woken (``quantbeat.notify.dispatch`` on the ``io``
   queue); beat also runs it every 15 s, so a lost wake-up delays a message, never loses it.
2. :func:`dispatch` fans new events out — one ledger row per (event, matching subscription),
   unique, under the ``fanout`` lease so events enter every subscription's queue in order —
   then starts ``quantbeat.notify.deliver`` for each subscription with a delivery due.
3. :func:`deliver` holds the subscription's lease and sends its due deliveries in event
   order: render (:mod:`quant.notify.messages`), pace (the channel's rate limits, shared
   through Redis), send each part, and record each confirmed part before the next one.

Guarantees. A delivery whose parts are all recorded ``sent`` is never sent again, however
often dispatch runs or is redelivered. The one window that cannot be closed is between the
provider accepting a part and our UPDATE recording it (``unconfirmed_ms``, measured by
``benchmarks/notifications.py``): a dispatcher killed inside it leaves the delivery
``sending``; the next dispatcher (once the dead one's lease has expired) counts it
``in_doubt`` and sends that part again — at least once, never lost. A live deliverer renews
its lease while a provider is slow to answer, so no other deliverer sends its part meanwhile
(a request that times out is retried, like any transient failure). Webhook receivers
de-duplicate a part sent again by ``webhook-id`` (the event id); Telegram, Slack, Discord and
e-mail (whose Message-ID is the same, for clients that de-duplicate) may show it twice.

Transient failures (429 with ``retry_after``, 5xx, timeouts) are retried with backoff
(:class:`quant.notify.policy.RetryPolicy`); permanent ones (400/401/403/404/410, a missing
secret, a malformed target) fail the delivery, record why, and disable the subscription with
the reason, so nothing more is sent to a target that refuses it.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.events import add_event, mark_fanned_out, on_commit_of_events, unfanned
from db.models import Event, NotificationDelivery, NotificationSubscription
from db.notify import (
    acquire_lease,
    add_deliveries,
    add_subscription,
    any_enabled,
    due_subscriptions,
    event_row,
    head,
    history,
    open_deliveries,
    release_lease,
    remove_subscription,
    set_enabled,
    state_counts,
    subscription,
    subscription_by_id,
    subscriptions,
    update_delivery,
)
from db.store import as_utc
from quant.errors import NotFound, RateLimited, ValidationError
from quant.notify.events import Envelope, parse
from quant.notify.filters import Filters, select
from quant.notify.messages import render
from quant.notify.policy import RetryPolicy
from quant.notify.rendered import CHANNELS, LANGUAGES, Rendered
from quantbeat.infra.masking import mask_text
from quantbeat.infra.metrics import record_notification, record_unconfirmed
from quantbeat.infra.notify import NotifySettings, Sender, SendError, Target, sender_for
from quantbeat.infra.profile import EMBEDDED_BROKER
from quantbeat.infra.ratelimit import RateLimiter, limiter_for
from quantbeat.infra.settings import Settings, get_settings
from workers.app import app

log = structlog.get_logger(__name__)

DISPATCH_TASK = "quantbeat.notify.dispatch"
DELIVER_TASK = "quantbeat.notify.deliver"
#: Events fanned out per transaction.
FANOUT_BATCH = 500
#: Rate limits are paced at this fraction of the provider's documented limit.
HEADROOM = 0.85
#: Longest a deliverer waits for a rate-limit slot before it reschedules the delivery.
MAX_PACE_WAIT = 15.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _lease_s() -> float:
    """Seconds a lease lasts without renewal (``QUANTBEAT_NOTIFY_LEASE_SECONDS``): a dead
    dispatcher's lease expires after this."""
    return get_settings().notify_lease_seconds


# --- recording events ----------------------------------------------------------------------
def record(
    session: Session,
    type: str,
    *,
    key: str,
    payload: Mapping[str, Any],
    at: dt.datetime | None = None,
    trade_date: dt.date | None = None,
    simulated: bool = False,
) -> str | None:
    """Record domain event ``type`` in ``session``'s transaction, once per business ``key``
    (see :func:`db.events.add_event`); the dispatcher wakes when it commits. Returns the new
    event's id, or ``None`` when ``key`` was recorded before.

    Raises:
        quant.errors.ValidationError: unknown type, or a payload that does not fit its schema.
    """
    return add_event(
        session,
        type=type,
        key=key,
        payload=payload,
        at=at or _now(),
        trade_date=trade_date,
        simulated=simulated,
    )


def _wake() -> None:
    """After a commit that added events: start the dispatcher, if anyone is subscribed (a
    deployment without subscriptions sends no task; beat's sweep marks the events fanned out
    to nobody). A failure is logged: the sweep picks the events up."""
    if get_settings().broker_url.startswith(EMBEDDED_BROKER):
        # embedded (`make run`): one process and SQLite's single writer, where a dispatcher
        # waiting for the write lock behind the run's big transactions holds a worker thread
        # the pipeline needs; `quantbeat run` delivers at its end (drain), as does
        # `quantbeat notify test`
        return
    try:
        with session_scope() as session:
            if not any_enabled(session):
                return
        app.send_task(DISPATCH_TASK)
    except Exception as exc:  # the events are stored; the 15 s sweep delivers them
        log.warning("notify.wake_failed", error=mask_text(f"{type(exc).__name__}: {exc}"))


on_commit_of_events(_wake)


# --- subscriptions --------------------------------------------------------------------------
@dataclass(frozen=True)
class SubscriptionView:
    """A subscription as the CLI shows it (never a secret: only its name)."""

    name: str
    channel: str
    target: str | None
    secret_ref: str | None
    filters: dict[str, Any]
    language: str
    enabled: bool
    disabled_reason: str | None


def _view(row: NotificationSubscription) -> SubscriptionView:
    return SubscriptionView(
        name=row.name,
        channel=row.channel,
        target=row.target,
        secret_ref=row.secret_ref,
        filters=dict(row.filters or {}),
        language=row.language,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
    )


def notify_settings(settings: Settings | None = None) -> NotifySettings:
    """The channel senders' settings (the SMTP password unwrapped here, nowhere else)."""
    s = settings or get_settings()
    return NotifySettings(
        telegram_api_url=s.telegram_api_url,
        timeout=s.notify_timeout,
        smtp_host=s.smtp_host,
        smtp_port=s.smtp_port,
        smtp_security=s.smtp_security,
        smtp_user=s.smtp_user,
        smtp_password=None if s.smtp_password is None else s.smtp_password.get_secret_value(),
        smtp_from=s.smtp_from,
        smtp_ca_file=None if s.smtp_ca_file is None else str(s.smtp_ca_file),
        smtp_rate=s.smtp_rate,
        file_dir=str(s.notify_file_path),
    )


def _target(row: NotificationSubscription | SubscriptionView, settings: Settings) -> Target:
    """The subscription's target with its secret resolved from settings.

    Raises:
        quantbeat.infra.notify.SendError: (permanent) the secret it names is not configured.
    """
    secret = None
    if row.secret_ref:
        found = settings.notify_secrets.get(row.secret_ref)
        if found is None:
            raise SendError(
                f"secret {row.secret_ref!r} of subscription {row.name!r} is not in "
                "QUANTBEAT_NOTIFY_SECRETS",
                permanent=True,
            )
        secret = found.get_secret_value()
    return Target(channel=row.channel, address=row.target, secret=secret)


def add(
    name: str,
    channel: str,
    *,
    target: str | None = None,
    secret: str | None = None,
    filters: Mapping[str, Any] | None = None,
    language: str = "ko",
) -> SubscriptionView:
    """Create subscription ``name``. ``secret`` names an entry of
    ``QUANTBEAT_NOTIFY_SECRETS`` (never the secret itself). The target is checked as the
    channel's sender would (a malformed chat id, URL or address is refused now, not at the
    first message).

    Raises:
        quant.errors.ValidationError: a bad name, channel, language, filter or target, a
            secret name that is not configured, or a name already in use (each names the
            value).
    """
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise ValidationError(
            f"subscription name must be 1-64 letters, digits, '-', '_' or '.', got {name!r}",
            field="name",
            value=name,
        )
    if channel not in CHANNELS:
        raise ValidationError(
            f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}",
            field="channel",
            value=channel,
        )
    if language not in LANGUAGES:
        raise ValidationError(
            f"language must be one of {', '.join(LANGUAGES)}, got {language!r}",
            field="language",
            value=language,
        )
    checked = check_filters(filters or {}, where=f"subscription {name!r}")
    settings = get_settings()
    view = SubscriptionView(name, channel, target, secret, checked, language, True, None)
    try:
        sender_for(_target(view, settings), notify_settings(settings))
    except SendError as exc:
        said = (
            exc.reason
            if f"subscription {name!r}" in exc.reason
            else (f"subscription {name!r}: {exc.reason}")
        )
        raise ValidationError(said, field="target", value=target) from None
    try:
        with session_scope() as session:
            add_subscription(
                session,
                {
                    "name": name,
                    "channel": channel,
                    "target": target,
                    "secret_ref": secret,
                    "filters": checked,
                    "language": language,
                    "enabled": True,
                },
            )
    except IntegrityError:
        raise ValidationError(
            f"a subscription called {name!r} exists already", field="name", value=name
        ) from None
    log.info("notify.subscription_added", name=name, channel=channel, secret_ref=secret)
    return view


def check_filters(filters: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """``filters`` validated as :class:`quant.notify.filters.Filters`, as stored JSON.

    Raises:
        quant.errors.ValidationError: an unknown key, event type or grade (named, with
            ``where``).
    """
    try:
        return Filters.model_validate(dict(filters)).model_dump()
    except Exception as exc:  # pydantic's ValidationError: say which filter and why
        errors = getattr(exc, "errors", None)
        detail = str(exc)
        field = None
        if callable(errors):
            first = errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ()))
            detail = f"filter {field}: {first.get('msg')}"
        raise ValidationError(f"{where}: {detail}", field=field) from None


def remove(name: str) -> bool:
    """Delete subscription ``name`` with its ledger; returns whether it existed."""
    with session_scope() as session:
        return remove_subscription(session, name)


def enable(name: str, enabled: bool = True) -> SubscriptionView:
    """Enable (or disable) subscription ``name``; enabling clears the reason it was disabled
    and its pending deliveries go out in order.

    Raises:
        quant.errors.NotFound: no such subscription.
    """
    with session_scope() as session:
        row = subscription(session, name)
        if row is None:
            raise NotFound(f"no subscription called {name!r}")
        set_enabled(session, row.id, enabled, None if enabled else "disabled by an operator")
        session.refresh(row)
        view = _view(row)
    if enabled:
        app.send_task(DISPATCH_TASK, kwargs={"sweep": True})
    return view


def listing() -> list[SubscriptionView]:
    """Every subscription, by name."""
    with session_scope() as session:
        return [_view(r) for r in subscriptions(session)]


def send_test(name: str, note: str | None = None) -> dict[str, Any]:
    """Record a ``notify.test`` event for subscription ``name`` (only it receives it); the
    dispatcher delivers it like any other. Returns ``{"event_id", "subscription"}``.

    Raises:
        quant.errors.NotFound: no such subscription.
    """
    with session_scope() as session:
        row = subscription(session, name)
        if row is None:
            raise NotFound(f"no subscription called {name!r}")
        event_id = record(
            session,
            "notify.test",
            key=f"notify.test:{name}:{uuid.uuid4()}",
            payload={"subscription": name, "note": note},
        )
    return {"event_id": event_id, "subscription": name}


def delivery_history(name: str | None = None, *, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` deliveries (of subscription ``name``), newest first: ``{"id",
    "subscription", "channel", "event_id", "type", "trade_date", "simulated", "state",
    "attempts", "parts", "in_doubt", "sent_at", "last_error", "created_at"}``.

    Raises:
        quant.errors.NotFound: ``name`` given and unknown.
    """
    with session_scope() as session:
        ident = None
        if name is not None:
            row = subscription(session, name)
            if row is None:
                raise NotFound(f"no subscription called {name!r}")
            ident = row.id
        return [
            {
                "id": d.id,
                "subscription": s.name,
                "channel": s.channel,
                "event_id": e.event_id,
                "type": e.type,
                "trade_date": None if e.trade_date is None else e.trade_date.isoformat(),
                "simulated": e.simulated,
                "state": d.state,
                "attempts": d.attempts,
                "parts": f"{d.parts_sent}/{d.parts_total if d.parts_total is not None else '?'}",
                "in_doubt": d.in_doubt,
                "sent_at": None if d.sent_at is None else d.sent_at.isoformat(),
                "last_error": d.last_error,
                "created_at": d.created_at.isoformat(),
            }
            for d, e, s in history(session, subscription_id=ident, limit=limit)
        ]


def ledger_counts() -> dict[str, int]:
    """Deliveries by state (for ``health`` and the CLI)."""
    with session_scope() as session:
        return state_counts(session)


# --- dispatching ----------------------------------------------------------------------------
def _envelope(row: Event) -> Envelope:
    return parse(
        id=row.event_id,
        type=row.type,
        version=row.version,
        at=row.at,
        payload=row.payload,
        trade_date=row.trade_date,
        simulated=row.simulated,
    )


def fan_out(*, owner: str | None = None) -> dict[str, Any]:
    """Create the ledger rows of every event not fanned out yet — for each enabled
    subscription it matches that existed when it was recorded — under the ``fanout`` lease
    (so events enter each subscription's queue in event order). Returns ``{"events",
    "deliveries", "subscriptions": [ids given deliveries], "skipped": "leased" | None}``.
    An event whose stored payload no longer parses is fanned out to nobody and logged; a
    subscription whose stored filters do not parse is disabled with the reason."""
    me = owner or uuid.uuid4().hex
    total_events = total_rows = 0
    touched: set[int] = set()
    while True:
        with session_scope() as session:
            if not acquire_lease(session, "fanout", me, now=_now(), seconds=_lease_s()):
                return {"events": total_events, "deliveries": total_rows,
                        "subscriptions": sorted(touched), "skipped": "leased"}  # fmt: skip
        try:
            while True:
                with session_scope() as session:
                    batch = unfanned(session, limit=FANOUT_BATCH)
                    if not batch:
                        break
                    acquire_lease(session, "fanout", me, now=_now(), seconds=_lease_s())
                    subs = _filters_of(session, subscriptions(session, enabled_only=True))
                    now = _now()
                    rows: list[dict[str, Any]] = []
                    for event in batch:
                        try:
                            envelope = _envelope(event)
                        except ValidationError as exc:
                            log.error("notify.event_unreadable", event_id=event.event_id,
                                      error=str(exc))  # fmt: skip
                            continue
                        rows.extend(
                            {
                                "event_id": event.id,
                                "subscription_id": ident,
                                "state": "pending",
                                "next_attempt_at": now,
                            }
                            for ident, name, filters, since in subs
                            # a subscription hears of what happens from its creation on
                            if as_utc(event.created_at) >= since
                            and select(envelope, filters, subscription=name) is not None
                        )
                    add_deliveries(session, rows)
                    mark_fanned_out(session, [e.id for e in batch], now)
                    total_events += len(batch)
                    total_rows += len(rows)
                    touched.update(r["subscription_id"] for r in rows)
        finally:
            with session_scope() as session:
                release_lease(session, "fanout", me)
        # An event committed while we held the lease woke a dispatcher that found it taken.
        with session_scope() as session:
            if not unfanned(session, limit=1):
                return {"events": total_events, "deliveries": total_rows,
                        "subscriptions": sorted(touched), "skipped": None}  # fmt: skip


def _filters_of(
    session: Session, rows: Sequence[NotificationSubscription]
) -> list[tuple[int, str, Filters, dt.datetime]]:
    out = []
    for row in rows:
        try:
            filters = Filters.model_validate(row.filters or {})
            out.append((row.id, row.name, filters, as_utc(row.created_at)))
        except Exception as exc:
            reason = mask_text(f"stored filters do not parse: {exc}")[:500]
            set_enabled(session, row.id, False, reason)
            log.error("notify.subscription_disabled", name=row.name, reason=reason)
    return out


def dispatch(*, sweep: bool = False) -> dict[str, Any]:
    """Fan new events out, then start a ``quantbeat.notify.deliver`` for each subscription
    that just received deliveries — or, with ``sweep`` (beat, every 15 s), for every
    subscription with a delivery due — unless a deliverer holds it (the holder looks again
    before it lets go). A wake-up that concerns one subscription delivers it itself.
    Returns ``{"events", "deliveries", "delivering": [ids]}`` (and ``delivered``: what
    :func:`deliver` returned, when it delivered itself)."""
    fanned = fan_out()
    with session_scope() as session:
        due = set(due_subscriptions(session, _now()))
    chosen = sorted(due if sweep else due & set(fanned["subscriptions"]))
    summary = {"events": fanned["events"], "deliveries": fanned["deliveries"],
               "delivering": chosen}  # fmt: skip
    if len(chosen) == 1 and not sweep:
        # the common case, one event for one subscription: delivered here, without a second
        # task (half the broker round trips and job records per message)
        return {**summary, "delivered": deliver(chosen[0])}
    for ident in chosen:
        app.send_task(DELIVER_TASK, args=[ident])
    return summary


@contextmanager
def _lease_kept(lease: str, me: str) -> Iterator[None]:
    """Renew ``lease`` for ``me`` every third of its length while the block runs.

    A provider may take longer than the lease to answer (``notify_timeout`` bounds each read,
    not the request, and SMTP is several round trips): without renewal another deliverer
    would take the lease over and send the part again while this one still waits for its
    answer. A dispatcher that dies stops renewing, so its lease still expires after
    ``QUANTBEAT_NOTIFY_LEASE_SECONDS``. A renewal that fails (database unreachable) or finds
    the lease taken is logged; the send in progress is not interrupted."""
    seconds = _lease_s()
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(seconds / 3.0):
            try:
                with session_scope() as session:
                    kept = acquire_lease(session, lease, me, now=_now(), seconds=seconds)
            except Exception as exc:  # the send goes on; the lease may lapse
                log.warning("notify.lease_renewal_failed", lease=lease,
                            error=mask_text(f"{type(exc).__name__}: {exc}"))  # fmt: skip
                continue
            if not kept:
                log.warning("notify.lease_lost", lease=lease, during="send")
                return

    keeper = threading.Thread(target=renew, name=f"notify-lease-{lease}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join()


def _limiters(sender: Sender, settings: Settings) -> list[tuple[str, RateLimiter]]:
    out = []
    for name, rate in sender.rate_keys():
        limiter = limiter_for(
            name,
            redis_url=settings.redis_url,
            rates={name: rate},
            max_wait=min(MAX_PACE_WAIT, _lease_s() / 2),
            headroom=HEADROOM,
        )
        if limiter is not None:
            out.append((name, limiter))
    return out


def deliver(subscription_id: int, *, owner: str | None = None) -> dict[str, Any]:
    """Send subscription ``subscription_id``'s due deliveries in event order, holding its
    lease (another deliverer of the same subscription returns at once with ``skipped``).
    Returns ``{"subscription", "sent", "failed", "retrying", "skipped"}``."""
    me = owner or uuid.uuid4().hex
    lease = f"sub:{subscription_id}"
    settings = get_settings()
    policy = RetryPolicy(
        max_attempts=settings.notify_max_attempts,
        base=settings.notify_backoff_base,
        cap=max(settings.notify_backoff_max, settings.notify_backoff_base),
    )
    counts = {"sent": 0, "failed": 0, "retrying": 0, "yielded": 0}
    while True:
        with session_scope() as session:
            if not acquire_lease(session, lease, me, now=_now(), seconds=_lease_s()):
                return {"subscription": subscription_id, **counts, "skipped": "leased"}
        later: float | None = None
        try:
            later = _deliver_due(subscription_id, me, settings, policy, counts)
        finally:
            with session_scope() as session:
                release_lease(session, lease, me)
        if later is not None and later <= 60.0:
            # the head waits for its backoff: come back then (beat's sweep covers longer waits)
            app.send_task(DELIVER_TASK, args=[subscription_id], countdown=later)
        # A delivery committed while we held the lease woke a deliverer that found it taken.
        with session_scope() as session:
            row = head(session, subscription_id)
            sub = subscription_by_id(session, subscription_id)
            again = (
                row is not None
                and sub is not None
                and sub.enabled
                and as_utc(row.next_attempt_at) <= _now()
            )
        if not again:
            return {"subscription": subscription_id, **counts, "skipped": None}


def _deliver_due(
    subscription_id: int,
    me: str,
    settings: Settings,
    policy: RetryPolicy,
    counts: dict[str, int],
) -> float | None:
    """Send due deliveries until none is due; returns seconds until the head is due (``None``
    when the queue is empty or the subscription disabled)."""
    lease = f"sub:{subscription_id}"
    while True:
        with session_scope() as session:
            if not acquire_lease(session, lease, me, now=_now(), seconds=_lease_s()):
                return None  # another deliverer took over (ours expired): it carries on
            sub = subscription_by_id(session, subscription_id)
            if sub is None or not sub.enabled:
                return None
            row = head(session, subscription_id)
            if row is None:
                return None
            wait = (as_utc(row.next_attempt_at) - _now()).total_seconds()
            if wait > 0:
                return wait
            delivery = _Work.of(row, sub, event_row(session, row.event_id))
        outcome = _attempt(delivery, me, settings, policy)
        record_notification(delivery.sub.channel, outcome)
        counts[outcome] += 1


@dataclass(frozen=True)
class _Work:
    """One delivery's data, read in a short transaction (no session held while sending)."""

    id: int
    state: str
    attempts: int
    parts_sent: int
    sub: SubscriptionView
    subscription_id: int
    event: Event

    @classmethod
    def of(cls, row: NotificationDelivery, sub: NotificationSubscription, event: Event) -> _Work:
        return cls(
            id=row.id,
            state=row.state,
            attempts=row.attempts,
            parts_sent=row.parts_sent,
            sub=_view(sub),
            subscription_id=sub.id,
            event=event,
        )


def _fail(work: _Work, reason: str, *, disable: bool) -> str:
    safe = mask_text(reason)[:2000]
    with session_scope() as session:
        update_delivery(session, work.id, state="failed", last_error=safe)
        if disable:
            set_enabled(session, work.subscription_id, False, safe)
    log.warning("notify.delivery_failed", subscription=work.sub.name, delivery=work.id,
                reason=safe, disabled=disable)  # fmt: skip
    return "failed"


def _attempt(work: _Work, me: str, settings: Settings, policy: RetryPolicy) -> str:
    """One attempt at one delivery: ``sent``, ``failed``, ``retrying`` or ``yielded`` (the
    lease was lost to another deliverer, which carries on)."""
    try:
        envelope = _envelope(work.event)
    except ValidationError as exc:
        return _fail(work, f"event {work.event.event_id} is unreadable: {exc}", disable=False)
    filters = Filters.model_validate(work.sub.filters)
    narrowed = select(envelope, filters, subscription=work.sub.name) or envelope
    try:
        sender = sender_for(_target(work.sub, settings), notify_settings(settings))
        rendered = render(narrowed, channel=work.sub.channel, language=work.sub.language)
    except SendError as exc:
        return _fail(work, exc.reason, disable=exc.permanent)
    except ValidationError as exc:
        return _fail(work, f"cannot render {envelope.type}: {exc}", disable=False)
    attempts = work.attempts + 1
    lease = f"sub:{work.subscription_id}"
    with session_scope() as session:
        # still ours, renewed for longer than the pace wait before the first part may take
        # (else another deliverer could come in: then that one sends, not both)
        if not acquire_lease(session, lease, me, now=_now(), seconds=_lease_s()):
            log.warning("notify.lease_lost", subscription=work.sub.name, delivery=work.id)
            return "yielded"
        update_delivery(
            session,
            work.id,
            state="sending",
            attempts=attempts,
            sending_at=_now(),
            parts_total=len(rendered.parts),
            in_doubt=NotificationDelivery.in_doubt + (1 if work.state == "sending" else 0),
        )
    if work.state == "sending":
        log.warning("notify.in_doubt", subscription=work.sub.name, delivery=work.id,
                    part=work.parts_sent)  # fmt: skip
    return _send_parts(work, sender, rendered, envelope, attempts, settings, policy, me)


def _send_parts(
    work: _Work,
    sender: Sender,
    rendered: Rendered,
    envelope: Envelope,
    attempts: int,
    settings: Settings,
    policy: RetryPolicy,
    me: str,
) -> str:
    limiters = _limiters(sender, settings)
    lease = f"sub:{work.subscription_id}"
    for index in range(work.parts_sent, len(rendered.parts)):
        # the lease was renewed with the 'sending' mark (first part) or with the previous
        # part's record: still ours for longer than the pace wait below may take
        try:
            # the target's (slow) slot first, the bot's (fast) one last: nothing between the
            # last grant and the request, so the pace holds at the provider
            for _name, limiter in reversed(limiters):
                limiter.acquire()
            try:
                with _lease_kept(lease, me):  # a slow answer must not let another sender in
                    sent = sender.send(
                        rendered.parts[index], index=index, rendered=rendered, envelope=envelope
                    )
            finally:
                # the next message to this target (a chat: 1 a second, counted message by
                # message) leaves a full interval after this one arrived, however late this
                # one left after its grant; a bot's 30 a second is a count over a second,
                # which a late message cannot break, and sends to many chats overlap
                for _name, limiter in limiters[-1:]:
                    limiter.space_from_now()
        except RateLimited as exc:  # our own pacing: the queue is long; come back
            return _retry(work, attempts - 1, exc.retry_after, str(exc), policy, counts=False)
        except SendError as exc:
            if exc.retry_after and limiters:
                # a 429 cools down what it names: the whole bot (every key), or the target
                # (the most specific key, last in rate_keys)
                chosen = limiters if exc.scope == "global" else limiters[-1:]
                for _name, limiter in chosen:
                    limiter.cooldown(exc.retry_after)
            if exc.permanent:
                return _fail(work, exc.reason, disable=True)
            return _retry(work, attempts, exc.retry_after, exc.reason, policy)
        answered = time.perf_counter()
        last = index == len(rendered.parts) - 1
        with session_scope() as session:
            values: dict[str, Any] = {"parts_sent": index + 1}
            if sent.provider_ref is not None:
                values["provider_ref"] = sent.provider_ref[:200]
            if last:
                values.update(state="sent", sent_at=_now(), last_error=None)
            update_delivery(session, work.id, **values)
            acquire_lease(session, lease, me, now=_now(), seconds=_lease_s())
        # The window that cannot be closed: the provider had this part, our ledger did not.
        window_ms = (time.perf_counter() - answered) * 1000.0
        record_unconfirmed(window_ms / 1000.0)
        if last:
            with session_scope() as session:
                update_delivery(session, work.id, unconfirmed_ms=round(window_ms, 3))
    log.info("notify.sent", subscription=work.sub.name, delivery=work.id,
             type=envelope.type, parts=len(rendered.parts))  # fmt: skip
    return "sent"


def _retry(
    work: _Work,
    attempts: int,
    retry_after: float | None,
    reason: str,
    policy: RetryPolicy,
    *,
    counts: bool = True,
) -> str:
    safe = mask_text(reason)[:2000]
    if counts and policy.exhausted(attempts):
        return _fail(work, f"gave up after {attempts} attempts: {safe}", disable=False)
    delay = policy.delay(max(attempts, 1), retry_after)
    with session_scope() as session:
        update_delivery(
            session,
            work.id,
            state="pending",
            attempts=attempts,
            last_error=safe,
            next_attempt_at=_now() + dt.timedelta(seconds=delay),
        )
    log.info("notify.retry", subscription=work.sub.name, delivery=work.id, after_s=delay,
             reason=safe)  # fmt: skip
    return "retrying"


def pending_count() -> int:
    """Deliveries of enabled subscriptions still open (pending or sending)."""
    with session_scope() as session:
        return open_deliveries(session)


def drain(*, timeout: float = 30.0, poll: float = 0.05) -> dict[str, Any]:
    """Dispatch now and wait until no event waits for fan-out and no delivery of an enabled
    subscription is open, or ``timeout`` seconds pass (deliveries waiting for a long backoff
    keep it open). For ``quantbeat run`` and tests. Returns ``{"open", "counts", "waited_s"}``.
    """
    t0 = time.monotonic()
    app.send_task(DISPATCH_TASK, kwargs={"sweep": True})
    left = 1
    while time.monotonic() - t0 < timeout:
        with session_scope() as session:
            left = open_deliveries(session) + len(unfanned(session, limit=1))
        if left == 0:
            break
        time.sleep(poll)
    return {"open": left, "counts": ledger_counts(), "waited_s": round(time.monotonic() - t0, 2)}
