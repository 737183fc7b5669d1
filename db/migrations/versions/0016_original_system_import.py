"""the original system's files: daily traded value may be unknown, institutional trend
snapshots, an AI analysis's own recommendation and details

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_WINDOWS = (5, 10, 20, 60)


def upgrade() -> None:
    # The original's daily_prices.csv has no traded value: unknown is NULL, never 0.
    # Batch mode: PostgreSQL alters in place, SQLite (embedded default) rebuilds the table.
    with op.batch_alter_table("daily_candles") as batch:
        batch.alter_column("traded_value", existing_type=sa.Double(), nullable=True)
    with op.batch_alter_table("ai_analyses") as batch:
        batch.add_column(sa.Column("recommendation", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("details", _JSON, nullable=True))
    figures = [
        sa.Column(f"{group}_{w}d", sa.BigInteger(), nullable=True)
        for group in ("foreign_net", "institution_net", "volume")
        for w in _WINDOWS
    ]
    op.create_table(
        "institutional_trend_snapshots",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("instrument_id", _BIGID, nullable=False),
        sa.Column("scrape_date", sa.Date(), nullable=False),
        sa.Column("data_source", sa.String(length=64), nullable=True),
        sa.Column("total_days", sa.Integer(), nullable=True),
        *figures,
        sa.Column("supply_demand_index", sa.Double(), nullable=True),
        sa.Column("details", _JSON, nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
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
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
            name=op.f("fk_institutional_trend_snapshots_instrument_id_instruments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_institutional_trend_snapshots")),
        sa.UniqueConstraint(
            "instrument_id",
            "scrape_date",
            name=op.f("uq_institutional_trend_snapshots_instrument_id_scrape_date"),
        ),
    )
    op.create_index(
        "ix_institutional_trend_snapshots_scrape_date",
        "institutional_trend_snapshots",
        ["scrape_date"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_institutional_trend_snapshots_scrape_date", table_name="institutional_trend_snapshots"
    )
    op.drop_table("institutional_trend_snapshots")
    with op.batch_alter_table("ai_analyses") as batch:
        batch.drop_column("details")
        batch.drop_column("recommendation")
    # Fails (NOT NULL violation) while daily bars with an unknown traded value are stored:
    # delete or complete them first; they are never turned into 0.
    with op.batch_alter_table("daily_candles") as batch:
        batch.alter_column("traded_value", existing_type=sa.Double(), nullable=False)
