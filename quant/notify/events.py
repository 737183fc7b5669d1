"""Domain events: what quantbeat tells traders about, as versioned, validated payloads.

An event is an :class:`Envelope` — a type (``signals.published``), a schema version, a
globally unique id (a UUID, also the Standard Webhooks ``webhook-id``), when it happened, the
trade date it belongs to, whether it comes from simulated data — around a JSON payload whose
shape is one pydantic model per (type, version) in :data:`SCHEMAS`.

Versions: a stored payload keeps the version it was written with. :func:`parse` reads any
known version and upgrades it step by step (:data:`UPGRADES`) to the current one
(:data:`CURRENT`), so a template only ever sees current payloads and rows written by an older
release stay readable. Adding a field with a default needs no new version; renaming or
removing one does (write the upgrade from the previous version).

Pure: no I/O. :func:`parse` raises :class:`quant.errors.ValidationError` naming the event and
the bad field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from quant.errors import ValidationError

#: Grades from best to worst (the closing bet's S/A/B/C); a signal without a grade ranks below.
GRADE_ORDER: tuple[str, ...] = ("S", "A", "B", "C")

Phase = Literal["preliminary", "final"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class SignalItem(_Model):
    """One signal of a scan run as a message shows it. Prices in KRW (the instrument's
    currency); ``entry`` is the price the signal was decided at, ``stop``/``target`` the exit
    plan's levels (``None`` when the strategy has none)."""

    code: str
    name: str | None = None
    market: str | None = None
    grade: str | None = None
    score: float | None = None
    entry: float | None = None
    stop: float | None = None
    target: float | None = None
    reasons: list[str] = Field(default_factory=list)
    news: str | None = None


class SignalsPublished(_Model):
    """A scan run stored its signals: the buy-window (``preliminary``) or evening (``final``)
    decision of ``strategy`` on ``trade_date``. ``signals`` holds the best ``top`` of the
    ``count`` candidates, best first; ``tradeable`` is whether it was decided before the 15:20
    closing auction (``None`` for a final decision)."""

    strategy: str
    trade_date: dt.date
    phase: Phase = "final"
    run_id: int | None = None
    gate: str | None = None
    count: int = Field(ge=0)
    tradeable: bool | None = None
    signals: list[SignalItem] = Field(default_factory=list)


class GateChangedV1(_Model):
    """Version 1, as ``market_events.gate_changed`` stored it before the outbox existed."""

    previous: str = Field(alias="from")
    current: str = Field(alias="to")
    from_as_of: str | None = None
    score: float | None = None
    reason: str | None = None


class GateChanged(_Model):
    """The Market Gate changed colour (``GREEN``/``YELLOW``/``RED``/``UNKNOWN``) at ``as_of``
    (an aware ISO datetime), from the gate computed at ``previous_as_of``."""

    previous: str
    current: str
    as_of: str | None = None
    previous_as_of: str | None = None
    score: float | None = None
    reason: str | None = None


class AnalysisPick(_Model):
    code: str
    name: str | None = None
    recommendation: str | None = None
    summary: str | None = None


class AnalysisCompleted(_Model):
    """The AI analysis of a scan's candidates finished (``provider``: ``gemini`` or
    ``offline``)."""

    strategy: str
    trade_date: dt.date
    phase: Phase = "final"
    provider: str | None = None
    analysed: int = Field(ge=0)
    failed: int = Field(default=0, ge=0)
    picks: list[AnalysisPick] = Field(default_factory=list)


class BacktestFinished(_Model):
    """A backtest run ended (``state``: ``completed``, ``failed``, ``cancelled``); ``kpis``
    are the report's headline figures (returns as fractions)."""

    run_id: str
    strategy: str
    state: str
    start: dt.date | None = None
    end: dt.date | None = None
    kpis: dict[str, float | int | None] = Field(default_factory=dict)
    error: str | None = None


class PositionOpened(_Model):
    """A paper portfolio bought ``quantity`` shares at ``price`` (KRW per share)."""

    portfolio: str
    code: str
    name: str | None = None
    strategy: str | None = None
    quantity: float
    price: float
    trade_date: dt.date


class PositionClosed(PositionOpened):
    """A paper portfolio sold a position at ``price``: ``pnl`` in KRW after costs,
    ``return_pct`` as a fraction, ``reason`` the exit rule."""

    pnl: float | None = None
    return_pct: float | None = None
    reason: str | None = None


class JobDeadLettered(_Model):
    """A task failed for good and went to the dead letters (``error`` is already masked)."""

    task_name: str
    task_id: str
    error_type: str | None = None
    error: str | None = None
    attempts: int | None = None
    dead_letter_id: int | None = None


class DataStale(_Model):
    """A dataset's newest stored day (``latest``) is behind the session it should hold
    (``expected``) by ``lag_sessions`` KRX sessions."""

    dataset: str
    latest: dt.date | None = None
    expected: dt.date
    lag_sessions: int = Field(ge=0)


class OpsAlert(_Model):
    """An alert from Prometheus (deploy/prometheus/alerts.yml) routed by Alertmanager:
    ``status`` ``firing`` or ``resolved``; ``summary``/``description``/``runbook`` are the
    rule's annotations, ``labels`` the alert's labels (instance, queue, task …)."""

    alertname: str = Field(min_length=1, max_length=200)
    status: Literal["firing", "resolved"]
    severity: str | None = None
    summary: str | None = None
    description: str | None = None
    runbook: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None


class CryptoSignal(_Model):
    """An hourly crypto signal (:mod:`quant.crypto.signal`): ``action`` BUY or SELL on
    ``market`` at ``at`` (UTC) at ``price`` KRW with ``confidence`` 0–1, its first reasons and
    risk flags, and who decided (``analyst`` ``gemini``/``offline``, ``model``)."""

    market: str = Field(min_length=1, max_length=64)
    at: dt.datetime
    action: str = Field(pattern="^(BUY|SELL|HOLD)$")
    confidence: float = Field(ge=0, le=1)
    price: float = Field(gt=0)
    reasons: list[str] = Field(default_factory=list, max_length=5)
    risk_flags: list[str] = Field(default_factory=list, max_length=8)
    analyst: str = Field(min_length=1, max_length=16)
    model: str = Field(min_length=1, max_length=64)


class CryptoVolatility(_Model):
    """An unusual hour on a crypto market (:mod:`quant.crypto.volatility`): the hour ending at
    ``at`` moved ``move`` (log return) — ``move_sigma`` sigmas of the trailing 30 days'
    hourly returns — with a realized volatility of ``realized_sigma`` sigmas, against the
    ``threshold``; ``price`` now and an hour before (KRW)."""

    market: str = Field(min_length=1, max_length=64)
    at: dt.datetime
    threshold: float = Field(gt=0)
    move: float
    move_sigma: float
    realized_sigma: float = Field(ge=0)
    price: float = Field(gt=0)
    price_hour_ago: float = Field(gt=0)


class StrategyKpis(_Model):
    """Closed-signal figures of one strategy (returns as fractions)."""

    strategy: str
    closed: int = Field(ge=0)
    win_rate: float | None = None
    avg_return: float | None = None
    profit_factor: float | None = None


class PortfolioLine(_Model):
    name: str
    equity: float
    day_return: float | None = None
    total_return: float | None = None
    open_positions: int = 0


class DailySummary(_Model):
    """The day after the close: new signals per strategy (final phase), signals still open,
    those closed on the day with their return, the track record's KPIs, the paper portfolios
    and the day's last gate."""

    trade_date: dt.date
    gate: str | None = None
    new_signals: dict[str, int] = Field(default_factory=dict)
    open_signals: int = Field(default=0, ge=0)
    closed_today: int = Field(default=0, ge=0)
    closed_today_avg_return: float | None = None
    kpis: list[StrategyKpis] = Field(default_factory=list)
    portfolios: list[PortfolioLine] = Field(default_factory=list)


class NotifyTest(_Model):
    """``quantbeat notify test``: a message proving a subscription reaches its target."""

    subscription: str
    note: str | None = None


#: Every readable (type, version) and its payload model.
SCHEMAS: dict[tuple[str, int], type[_Model]] = {
    ("signals.published", 1): SignalsPublished,
    ("gate.changed", 1): GateChangedV1,
    ("gate.changed", 2): GateChanged,
    ("analysis.completed", 1): AnalysisCompleted,
    ("backtest.finished", 1): BacktestFinished,
    ("position.opened", 1): PositionOpened,
    ("position.closed", 1): PositionClosed,
    ("job.dead_lettered", 1): JobDeadLettered,
    ("data.stale", 1): DataStale,
    ("ops.alert", 1): OpsAlert,
    ("crypto.volatility", 1): CryptoVolatility,
    ("crypto.signal", 1): CryptoSignal,
    ("daily.summary", 1): DailySummary,
    ("notify.test", 1): NotifyTest,
}

#: The version each type is written with today.
CURRENT: dict[str, int] = {}
for _type, _version in SCHEMAS:
    CURRENT[_type] = max(CURRENT.get(_type, 0), _version)

EVENT_TYPES: tuple[str, ...] = tuple(sorted(CURRENT))


def _gate_v1_to_v2(payload: dict[str, Any], envelope: Mapping[str, Any]) -> dict[str, Any]:
    at = envelope.get("at")
    return {
        "previous": payload["from"],
        "current": payload["to"],
        "previous_as_of": payload.get("from_as_of"),
        "as_of": at.isoformat() if isinstance(at, dt.datetime) else at,
        "score": payload.get("score"),
        "reason": payload.get("reason"),
    }


#: (type, version) → a function turning a valid payload of that version into one of the next.
UPGRADES: dict[tuple[str, int], Callable[[dict[str, Any], Mapping[str, Any]], dict[str, Any]]] = {
    ("gate.changed", 1): _gate_v1_to_v2,
}


class Envelope(_Model):
    """An event as dispatchers and templates see it: ``payload`` is the current version's
    model (see :func:`parse`)."""

    id: str
    type: str
    version: int
    at: dt.datetime
    trade_date: dt.date | None = None
    simulated: bool = False
    payload: Any

    @property
    def strategy(self) -> str | None:
        value = getattr(self.payload, "strategy", None)
        return value if isinstance(value, str) else None


def validate_payload(event_type: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``payload`` against the current version of ``event_type`` and return it as
    JSON-ready data (what is stored).

    Raises:
        quant.errors.ValidationError: unknown type, or the payload does not fit (the message
            names the field).
    """
    version = CURRENT.get(event_type)
    if version is None:
        raise ValidationError(
            f"unknown event type {event_type!r} (known: {', '.join(EVENT_TYPES)})",
            field="type",
            value=event_type,
        )
    model = _load(SCHEMAS[(event_type, version)], payload, f"{event_type} v{version}")
    return model.model_dump(mode="json", by_alias=False)


def parse(
    *,
    id: str,
    type: str,
    version: int,
    at: dt.datetime,
    payload: Mapping[str, Any],
    trade_date: dt.date | None = None,
    simulated: bool = False,
) -> Envelope:
    """Read a stored event of any known version, upgraded to the current one.

    Raises:
        quant.errors.ValidationError: unknown (type, version), or a payload that does not fit
            its version's model (the message names the event id and the field).
    """
    model_type = SCHEMAS.get((type, version))
    if model_type is None:
        raise ValidationError(
            f"event {id}: unknown type/version {type!r} v{version}", field="type", value=type
        )
    where = f"event {id} ({type} v{version})"
    data: dict[str, Any] = dict(payload)
    current = CURRENT[type]
    envelope = {"id": id, "type": type, "at": at, "trade_date": trade_date}
    while version < current:
        _load(SCHEMAS[(type, version)], data, where)
        data = UPGRADES[(type, version)](data, envelope)
        version += 1
    model = _load(SCHEMAS[(type, version)], data, where)
    return Envelope(
        id=id,
        type=type,
        version=version,
        at=at,
        trade_date=trade_date,
        simulated=simulated,
        payload=model,
    )


def _load(model: type[_Model], payload: Mapping[str, Any], where: str) -> _Model:
    try:
        return model.model_validate(dict(payload))
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or None
        raise ValidationError(
            f"{where}: payload field {field or '(root)'}: {first.get('msg')}",
            field=field,
            value=first.get("input") if isinstance(first.get("input"), str | int | float) else None,
        ) from None


def grade_rank(grade: str | None) -> int:
    """Position of ``grade`` in :data:`GRADE_ORDER` (0 = best); unknown or no grade ranks
    after every known one."""
    if grade is None:
        return len(GRADE_ORDER)
    try:
        return GRADE_ORDER.index(grade.upper())
    except ValueError:
        return len(GRADE_ORDER)
