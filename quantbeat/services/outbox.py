"""Publishing through the transactional outbox (:mod:`db.outbox`).

A service that records a business row and must enqueue its task (a backtest run) adds the
message with :func:`db.outbox.add_message` in the *same* transaction, commits, then calls
:func:`publish` for it. If the publication fails (broker down, the client killed between
commit and send), the message stays in the outbox and :func:`sweep` — run by the reaper's
housekeeping — publishes it once it is older than ``QUANTBEAT_OUTBOX_GRACE`` seconds. So a
committed run always reaches the broker, and nothing reaches the broker for a run that was
not committed.

Publishing twice (the sweep and a slow client racing) sends the same task id twice; the
consumers of outbox messages are idempotent for their task id (a backtest run is claimed and
stores its result once), so the duplicate is harmless.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import structlog

from db.engine import session_scope
from db.outbox import PendingMessage, backlog, mark_failed, mark_published, pending
from quantbeat.infra.masking import mask_text
from quantbeat.infra.settings import get_settings
from workers.app import app as worker_app

log = structlog.get_logger("quantbeat.services.outbox")


def _send(app: Any, message: PendingMessage) -> str | None:
    """Send one message; return ``None`` on success or the (masked) error text."""
    try:
        app.send_task(
            message.task_name,
            args=message.args,
            kwargs=message.kwargs,
            task_id=message.task_id,
            **message.options,
        )
    except Exception as exc:
        return mask_text(f"{type(exc).__name__}: {exc}")[:2000]
    return None


def _publish_all(app: Any, messages: Sequence[PendingMessage]) -> dict[str, Any]:
    published: list[str] = []
    failed: dict[str, str] = {}
    for message in messages:
        error = _send(app, message)
        try:
            with session_scope() as session:
                if error is None:
                    mark_published(session, message.task_id, dt.datetime.now(dt.UTC))
                else:
                    mark_failed(session, message.task_id, error)
        except Exception as exc:  # sent, but not marked: the sweep may send it once more
            log.warning(
                "outbox.mark_failed",
                task_id=message.task_id,
                error=mask_text(f"{type(exc).__name__}: {exc}"),
            )
        if error is None:
            published.append(message.task_id)
        else:
            failed[message.task_id] = error
            log.warning("outbox.publish_failed", task_id=message.task_id, error=error)
    return {"published": published, "failed": failed}


def publish(task_ids: Sequence[str], *, app: Any = None) -> dict[str, Any]:
    """Publish the outbox messages of ``task_ids`` that are still unpublished, now (the
    client's step right after its commit). Never raises for a broker failure: the message
    stays in the outbox for :func:`sweep`. Returns ``{"published": [ids], "failed": {id:
    error}}``.

    Raises:
        sqlalchemy errors: the database is unreachable (nothing was sent).
    """
    with session_scope() as session:
        messages = pending(session, task_ids=list(task_ids))
    return _publish_all(app or worker_app, messages)


def sweep(*, app: Any = None, grace: float | None = None, now: dt.datetime | None = None,
          limit: int = 500) -> dict[str, Any]:  # fmt: skip
    """Publish outbox messages still unpublished ``grace`` seconds (default
    ``QUANTBEAT_OUTBOX_GRACE``) after they were committed, oldest first, at most ``limit``.
    Returns ``{"published": [ids], "failed": {id: error}}``.

    Raises:
        sqlalchemy errors: the database is unreachable.
    """
    wait = get_settings().outbox_grace if grace is None else grace
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=wait)
    with session_scope() as session:
        messages = pending(session, created_before=cutoff, limit=limit)
    report = _publish_all(app or worker_app, messages)
    if report["published"]:
        log.warning("outbox.swept", published=len(report["published"]))
    return report


def unpublished(*, older_than: float | None = None) -> tuple[int, dt.datetime | None]:
    """(messages still unpublished ``older_than`` seconds after their commit — default
    ``QUANTBEAT_OUTBOX_GRACE`` — and the oldest one's commit time), for ``health``.

    Raises:
        sqlalchemy errors: the database is unreachable.
    """
    wait = get_settings().outbox_grace if older_than is None else older_than
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=wait)
    with session_scope() as session:
        return backlog(session, created_before=cutoff)
