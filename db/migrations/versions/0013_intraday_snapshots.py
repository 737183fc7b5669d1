"""intraday snapshots: the day so far of every instrument and index, kept as history; the
Market Gate colour of each signal, and its phase (preliminary signals of the buy window kept
beside the final ones)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "intraday_snapshots",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("instrument_id", _BIGID, nullable=True),
        sa.Column("series_id", _BIGID, nullable=True),
        sa.Column("open", sa.Double(), nullable=False),
        sa.Column("high", sa.Double(), nullable=False),
        sa.Column("low", sa.Double(), nullable=False),
        sa.Column("close", sa.Double(), nullable=False),
        sa.Column("volume", sa.Double(), nullable=True),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
            name=op.f("fk_intraday_snapshots_instrument_id_instruments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["reference_series.id"],
            name=op.f("fk_intraday_snapshots_series_id_reference_series"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intraday_snapshots")),
        sa.UniqueConstraint(
            "instrument_id", "taken_at", name=op.f("uq_intraday_snapshots_instrument_id_taken_at")
        ),
        sa.UniqueConstraint(
            "series_id", "taken_at", name=op.f("uq_intraday_snapshots_series_id_taken_at")
        ),
    )
    op.create_index(
        "ix_intraday_snapshots_trade_date_taken_at",
        "intraday_snapshots",
        ["trade_date", "taken_at"],
    )
    with op.batch_alter_table("signals") as batch:
        batch.add_column(sa.Column("gate", sa.String(length=8), nullable=True))
        batch.add_column(
            sa.Column("phase", sa.String(length=16), server_default="final", nullable=False)
        )
        batch.drop_constraint("uq_signals_trade_date_strategy_instrument_id", type_="unique")
        batch.create_unique_constraint(
            "uq_signals_trade_date_strategy_phase_instrument_id",
            ["trade_date", "strategy", "phase", "instrument_id"],
        )


def downgrade() -> None:
    op.execute("DELETE FROM signals WHERE phase <> 'final'")
    with op.batch_alter_table("signals") as batch:
        batch.drop_constraint("uq_signals_trade_date_strategy_phase_instrument_id", type_="unique")
        batch.create_unique_constraint(
            "uq_signals_trade_date_strategy_instrument_id",
            ["trade_date", "strategy", "instrument_id"],
        )
        batch.drop_column("phase")
        batch.drop_column("gate")
    op.drop_index("ix_intraday_snapshots_trade_date_taken_at", table_name="intraday_snapshots")
    op.drop_table("intraday_snapshots")
