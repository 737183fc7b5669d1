"""operations: beat slots (one execution per scheduled time), stored settings, dead-letter
replays

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
)
_NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "beat_slots",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("entry", sa.String(length=200), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("task_name", sa.String(length=200), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_beat_slots")),
        sa.UniqueConstraint(
            "entry", "scheduled_for", name=op.f("uq_beat_slots_entry_scheduled_for")
        ),
    )
    op.create_index("ix_beat_slots_claimed_at", "beat_slots", ["claimed_at"], unique=False)
    op.create_table(
        "stored_settings",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", _JSON, nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_stored_settings")),
    )
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("replayed_task_id", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("replays", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("replays")
        batch.drop_column("replayed_task_id")
    op.drop_table("stored_settings")
    op.drop_index("ix_beat_slots_claimed_at", table_name="beat_slots")
    op.drop_table("beat_slots")
