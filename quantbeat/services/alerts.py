"""Prometheus alerts into quantbeat's notifications: Alertmanager's webhook (payload version
4) posts to ``POST /api/v1/ops/alerts``; each alert becomes an ``ops.alert`` event, delivered
like any other event to the subscriptions that want it (Telegram, Slack, Discord, e-mail,
webhooks), with their filters, languages and rate limits.

Idempotent: an alert's event key is its fingerprint, status and start, so Alertmanager's
retries and repeats of the same firing record it once; a resolution is a new event, and a
re-fire after it (a new start) another.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from db.engine import session_scope
from quant.errors import ValidationError
from quantbeat.infra.masking import mask_text
from quantbeat.services import notify

#: Alerts one webhook call may carry (Alertmanager groups; a storm is cut, not queued).
MAX_ALERTS = 200


class _Alert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: dt.datetime | None = None  # noqa: N815 - Alertmanager's field names
    endsAt: dt.datetime | None = None  # noqa: N815
    fingerprint: str = Field(min_length=1, max_length=64)


class _Webhook(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: str
    status: Literal["firing", "resolved"]
    alerts: list[_Alert] = Field(max_length=MAX_ALERTS)


def _time(value: dt.datetime | None) -> dt.datetime | None:
    # Alertmanager sends 0001-01-01T00:00:00Z for "no end yet"
    if value is None or value.year < 1971:
        return None
    return value


def record_alerts(body: Mapping[str, Any]) -> dict[str, int]:
    """Record each alert of an Alertmanager webhook payload as an ``ops.alert`` event, in
    one transaction. Returns ``{"received", "recorded", "duplicates"}``.

    Raises:
        quant.errors.ValidationError: not a version 4 payload, more than
            :data:`MAX_ALERTS` alerts, or an alert without a status, fingerprint or
            ``alertname`` label — the message names the field.
    """
    try:
        hook = _Webhook.model_validate(body)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ValidationError(
            f"not an Alertmanager webhook payload: {where}: {first['msg']}", field=where
        ) from None
    if hook.version != "4":
        raise ValidationError(
            f"Alertmanager webhook version {hook.version!r} is not supported (expected '4')",
            field="version",
            value=hook.version,
        )
    recorded = 0
    with session_scope() as session:
        for k, alert in enumerate(hook.alerts):
            name = alert.labels.get("alertname")
            if not name:
                raise ValidationError(
                    f"alerts.{k}.labels: an alert without an alertname label",
                    field=f"alerts.{k}.labels",
                )
            starts = _time(alert.startsAt)
            key = f"ops.alert:{alert.fingerprint}:{alert.status}:" + (
                starts.isoformat() if starts else "-"
            )
            notes = alert.annotations
            event = notify.record(
                session,
                "ops.alert",
                key=key,
                payload={
                    "alertname": name,
                    "status": alert.status,
                    "severity": alert.labels.get("severity"),
                    "summary": _masked(notes.get("summary")),
                    "description": _masked(notes.get("description")),
                    "runbook": notes.get("runbook"),
                    "labels": {k2: mask_text(v) for k2, v in alert.labels.items()},
                    "starts_at": starts.isoformat() if starts else None,
                    "ends_at": (end.isoformat() if (end := _time(alert.endsAt)) else None),
                },
            )
            recorded += event is not None
    return {
        "received": len(hook.alerts),
        "recorded": recorded,
        "duplicates": len(hook.alerts) - recorded,
    }


def _masked(text: str | None) -> str | None:
    return None if text is None else mask_text(text)
