"""market gate: reference series (indices, sector ETFs, USD/KRW) and their daily bars, the
stored gates and market events

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_NOW = sa.text("CURRENT_TIMESTAMP")


def _timestamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "reference_series",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reference_series")),
        sa.UniqueConstraint("code", name=op.f("uq_reference_series_code")),
    )
    op.create_table(
        "reference_bars",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("series_id", _BIGID, nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("open", sa.Double(), nullable=False),
        sa.Column("high", sa.Double(), nullable=False),
        sa.Column("low", sa.Double(), nullable=False),
        sa.Column("close", sa.Double(), nullable=False),
        sa.Column("volume", sa.Double(), nullable=True),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["reference_series.id"],
            name=op.f("fk_reference_bars_series_id_reference_series"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reference_bars")),
        sa.UniqueConstraint(
            "series_id", "trade_date", name=op.f("uq_reference_bars_series_id_trade_date")
        ),
    )
    op.create_index("ix_reference_bars_trade_date", "reference_bars", ["trade_date"])
    op.create_table(
        "market_gates",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("color", sa.String(length=8), nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("usdkrw", sa.Double(), nullable=True),
        sa.Column("fx_warning", sa.Boolean(), nullable=False),
        sa.Column("components", _JSON, nullable=False),
        sa.Column("sectors", _JSON, nullable=False),
        sa.Column("kodex_status", sa.String(length=16), nullable=True),
        sa.Column("params", _JSON, nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_gates")),
        sa.UniqueConstraint("trade_date", "as_of", name=op.f("uq_market_gates_trade_date_as_of")),
    )
    op.create_index("ix_market_gates_as_of", "market_gates", ["as_of"])
    op.create_table(
        "market_events",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_events")),
        sa.UniqueConstraint("key", name=op.f("uq_market_events_key")),
    )
    op.create_index("ix_market_events_at", "market_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_market_events_at", table_name="market_events")
    op.drop_table("market_events")
    op.drop_index("ix_market_gates_as_of", table_name="market_gates")
    op.drop_table("market_gates")
    op.drop_index("ix_reference_bars_trade_date", table_name="reference_bars")
    op.drop_table("reference_bars")
    op.drop_table("reference_series")
