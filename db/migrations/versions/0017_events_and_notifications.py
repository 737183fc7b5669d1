"""the event outbox (market_events becomes events: type, version, event id, fan-out mark),
notification subscriptions, the delivery ledger and leases

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 11:00:00
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
#: market_events kinds → event types (the payloads keep their version 1 shape).
_TYPES = {"gate_changed": "gate.changed"}


def _timestamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
    ]


def upgrade() -> None:
    events = op.create_table(
        "events",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=48), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("simulated", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("fanned_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_events_event_id")),
        sa.UniqueConstraint("key", name=op.f("uq_events_key")),
    )
    op.create_index("ix_events_at", "events", ["at"], unique=False)
    op.create_index("ix_events_type_at", "events", ["type", "at"], unique=False)
    op.create_index(
        "ix_events_unfanned",
        "events",
        ["id"],
        unique=False,
        postgresql_where=sa.text("fanned_out_at IS NULL"),
        sqlite_where=sa.text("fanned_out_at IS NULL"),
    )
    # Keep every market event: it becomes an event of version 1, already fanned out (nobody
    # subscribed when it happened, so nothing is sent for it now).
    bind = op.get_bind()
    old = sa.table(
        "market_events",
        sa.column("key", sa.String),
        sa.column("kind", sa.String),
        sa.column("trade_date", sa.Date),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("payload", _JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    rows = bind.execute(sa.select(old).order_by(old.c.at)).mappings().all()
    if rows:
        op.bulk_insert(
            events,
            [
                {
                    "event_id": str(uuid.uuid4()),
                    "key": r["key"],
                    "type": _TYPES.get(r["kind"], r["kind"]),
                    "version": 1,
                    "trade_date": r["trade_date"],
                    "at": r["at"],
                    "payload": r["payload"],
                    "simulated": bool((r["payload"] or {}).get("simulated", False)),
                    "fanned_out_at": r["created_at"],
                    "created_at": r["created_at"],
                }
                for r in rows
            ],
        )
    op.drop_index("ix_market_events_at", table_name="market_events")
    op.drop_table("market_events")

    op.create_table(
        "notification_subscriptions",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=True),
        sa.Column("secret_ref", sa.String(length=64), nullable=True),
        sa.Column("filters", _JSON, nullable=False),
        sa.Column("language", sa.String(length=2), server_default=sa.text("'ko'"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_subscriptions")),
        sa.UniqueConstraint("name", name=op.f("uq_notification_subscriptions_name")),
    )
    op.create_table(
        "notification_deliveries",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("event_id", _BIGID, nullable=False),
        sa.Column("subscription_id", _BIGID, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("parts_sent", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("parts_total", sa.Integer(), nullable=True),
        sa.Column("in_doubt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sending_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unconfirmed_ms", sa.Double(), nullable=True),
        sa.Column("provider_ref", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_notification_deliveries_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["notification_subscriptions.id"],
            name=op.f("fk_notification_deliveries_subscription_id_notification_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
        sa.UniqueConstraint(
            "event_id",
            "subscription_id",
            name=op.f("uq_notification_deliveries_event_id_subscription_id"),
        ),
    )
    op.create_index(
        "ix_notification_deliveries_queue",
        "notification_deliveries",
        ["subscription_id", "state", "event_id"],
        unique=False,
    )
    op.create_index(
        "ix_notification_deliveries_state_due",
        "notification_deliveries",
        ["state", "next_attempt_at"],
        unique=False,
    )
    op.create_table(
        "notification_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_notification_leases")),
    )


def downgrade() -> None:
    op.drop_table("notification_leases")
    op.drop_index("ix_notification_deliveries_state_due", table_name="notification_deliveries")
    op.drop_index("ix_notification_deliveries_queue", table_name="notification_deliveries")
    op.drop_table("notification_deliveries")
    op.drop_table("notification_subscriptions")
    market_events = op.create_table(
        "market_events",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_events")),
        sa.UniqueConstraint("key", name=op.f("uq_market_events_key")),
    )
    op.create_index("ix_market_events_at", "market_events", ["at"], unique=False)
    # Only events of the old kinds (with a trade date) fit the old table, in their v1 shape.
    new = sa.table(
        "events",
        sa.column("key", sa.String),
        sa.column("type", sa.String),
        sa.column("version", sa.Integer),
        sa.column("trade_date", sa.Date),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("payload", _JSON),
    )
    kinds = {v: k for k, v in _TYPES.items()}
    rows = op.get_bind().execute(sa.select(new).order_by(new.c.at)).mappings().all()
    kept = [
        {"key": r["key"], "kind": kinds[r["type"]], "trade_date": r["trade_date"],
         "at": r["at"], "payload": r["payload"]}
        for r in rows
        if r["type"] in kinds and r["version"] == 1 and r["trade_date"] is not None
    ]  # fmt: skip
    if kept:
        op.bulk_insert(market_events, kept)
    op.drop_index("ix_events_unfanned", table_name="events")
    op.drop_index("ix_events_type_at", table_name="events")
    op.drop_index("ix_events_at", table_name="events")
    op.drop_table("events")
