"""Which events a subscription receives.

A subscription's :class:`Filters` name event types (exact, or a prefix ending in ``.*`` such
as ``signals.*``; empty: every type), strategies and markets (empty: any), and a minimum
grade. Strategy and market filters apply to events that carry one; a signals event keeps only
the signals of the wanted markets at or above the minimum grade and is not delivered when none
is left. ``notify.test`` events reach only the subscription they name.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from quant.notify.events import (
    CURRENT,
    GRADE_ORDER,
    Envelope,
    NotifyTest,
    SignalsPublished,
    grade_rank,
)


class Filters(BaseModel):
    """A subscription's filters (stored as JSON in ``notification_subscriptions.filters``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_types: list[str] = Field(default_factory=list)
    strategies: list[str] = Field(default_factory=list)
    min_grade: str | None = None
    markets: list[str] = Field(default_factory=list)

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        for item in value:
            if item.endswith(".*"):
                prefix = item[:-1]
                if not any(t.startswith(prefix) for t in CURRENT):
                    raise ValueError(f"no event type starts with {prefix!r}")
            elif item not in CURRENT:
                raise ValueError(
                    f"unknown event type {item!r} (known: {', '.join(sorted(CURRENT))})"
                )
        return value

    @field_validator("min_grade")
    @classmethod
    def _known_grade(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.upper() not in GRADE_ORDER:
            raise ValueError(f"min_grade must be one of {', '.join(GRADE_ORDER)}, got {value!r}")
        return value.upper()

    @field_validator("markets")
    @classmethod
    def _upper_markets(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]


def _type_matches(patterns: list[str], event_type: str) -> bool:
    if not patterns:
        return True
    return any(
        event_type.startswith(p[:-1]) if p.endswith(".*") else event_type == p for p in patterns
    )


def select(envelope: Envelope, filters: Filters, *, subscription: str) -> Envelope | None:
    """The event as subscription ``subscription`` receives it (a signals event narrowed to the
    signals it wants), or ``None`` when the subscription does not receive it."""
    payload = envelope.payload
    if isinstance(payload, NotifyTest):
        return envelope if payload.subscription == subscription else None
    if not _type_matches(filters.event_types, envelope.type):
        return None
    strategy = envelope.strategy
    if filters.strategies and strategy is not None and strategy not in filters.strategies:
        return None
    if isinstance(payload, SignalsPublished) and (filters.min_grade or filters.markets):
        limit = grade_rank(filters.min_grade) if filters.min_grade else None
        kept = [
            s
            for s in payload.signals
            if (limit is None or grade_rank(s.grade) <= limit)
            and (not filters.markets or (s.market or "").upper() in filters.markets)
        ]
        if not kept:
            return None
        narrowed = payload.model_copy(update={"signals": kept})
        return envelope.model_copy(update={"payload": narrowed})
    return envelope
