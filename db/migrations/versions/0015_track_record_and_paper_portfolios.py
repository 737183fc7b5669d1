"""track record (signal_outcomes, signals.volume_ratio) and paper portfolios (portfolios,
portfolio_orders, portfolio_fills, portfolio_positions, portfolio_days)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 08:03:01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "portfolios",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("capital", sa.Double(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("rules", _JSON, nullable=False),
        sa.Column(
            "state", sa.String(length=16), server_default=sa.text("'active'"), nullable=False
        ),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portfolios")),
        sa.UniqueConstraint("name", name=op.f("uq_portfolios_name")),
    )
    op.create_table(
        "portfolio_days",
        sa.Column("portfolio_id", _BIGID, nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("cash", sa.Double(), nullable=False),
        sa.Column("market_value", sa.Double(), nullable=False),
        sa.Column("equity", sa.Double(), nullable=False),
        sa.Column("pnl", sa.Double(), nullable=False),
        sa.Column("realized", sa.Double(), nullable=False),
        sa.Column("positions", sa.Integer(), nullable=False),
        sa.Column("blocked", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["portfolio_id"],
            ["portfolios.id"],
            name=op.f("fk_portfolio_days_portfolio_id_portfolios"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("portfolio_id", "trade_date", name=op.f("pk_portfolio_days")),
    )
    op.create_table(
        "portfolio_orders",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("portfolio_id", _BIGID, nullable=False),
        sa.Column("signal_id", _BIGID, nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["portfolio_id"],
            ["portfolios.id"],
            name=op.f("fk_portfolio_orders_portfolio_id_portfolios"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["signals.id"],
            name=op.f("fk_portfolio_orders_signal_id_signals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portfolio_orders")),
        sa.UniqueConstraint(
            "portfolio_id",
            "signal_id",
            "side",
            name=op.f("uq_portfolio_orders_portfolio_id_signal_id_side"),
        ),
    )
    op.create_index(
        "ix_portfolio_orders_portfolio_id_trade_date",
        "portfolio_orders",
        ["portfolio_id", "trade_date"],
        unique=False,
    )
    op.create_table(
        "portfolio_positions",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("portfolio_id", _BIGID, nullable=False),
        sa.Column("signal_id", _BIGID, nullable=False),
        sa.Column("instrument_id", _BIGID, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("opened_on", sa.Date(), nullable=False),
        sa.Column("entry_price", sa.Double(), nullable=False),
        sa.Column("stop", sa.Double(), nullable=True),
        sa.Column("last_price", sa.Double(), nullable=True),
        sa.Column("closed_on", sa.Date(), nullable=True),
        sa.Column("exit_price", sa.Double(), nullable=True),
        sa.Column("exit_reason", sa.String(length=32), nullable=True),
        sa.Column("realized_pnl", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
            name=op.f("fk_portfolio_positions_instrument_id_instruments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["portfolio_id"],
            ["portfolios.id"],
            name=op.f("fk_portfolio_positions_portfolio_id_portfolios"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["signals.id"],
            name=op.f("fk_portfolio_positions_signal_id_signals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portfolio_positions")),
        sa.UniqueConstraint(
            "portfolio_id", "signal_id", name=op.f("uq_portfolio_positions_portfolio_id_signal_id")
        ),
    )
    op.create_index(
        "ix_portfolio_positions_portfolio_id_state",
        "portfolio_positions",
        ["portfolio_id", "state"],
        unique=False,
    )
    op.create_table(
        "signal_outcomes",
        sa.Column("signal_id", _BIGID, nullable=False),
        sa.Column("rules", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("entry_date", sa.Date(), nullable=True),
        sa.Column("entry_price", sa.Double(), nullable=True),
        sa.Column("exit_date", sa.Date(), nullable=True),
        sa.Column("exit_price", sa.Double(), nullable=True),
        sa.Column("gross_return", sa.Double(), nullable=True),
        sa.Column("net_return", sa.Double(), nullable=True),
        sa.Column("costs", sa.Double(), nullable=True),
        sa.Column("mfe", sa.Double(), nullable=True),
        sa.Column("mae", sa.Double(), nullable=True),
        sa.Column("sessions_held", sa.Integer(), nullable=True),
        sa.Column("evaluated_through", sa.Date(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["signals.id"],
            name=op.f("fk_signal_outcomes_signal_id_signals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("signal_id", name=op.f("pk_signal_outcomes")),
    )
    op.create_index("ix_signal_outcomes_state", "signal_outcomes", ["state"], unique=False)
    op.create_table(
        "portfolio_fills",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("order_id", _BIGID, nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("fees", sa.Double(), nullable=False),
        sa.Column("tax", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["portfolio_orders.id"],
            name=op.f("fk_portfolio_fills_order_id_portfolio_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portfolio_fills")),
        sa.UniqueConstraint("order_id", name=op.f("uq_portfolio_fills_order_id")),
    )
    op.add_column("signals", sa.Column("volume_ratio", sa.Double(), nullable=True))


def downgrade() -> None:
    op.drop_column("signals", "volume_ratio")
    op.drop_table("portfolio_fills")
    op.drop_index("ix_signal_outcomes_state", table_name="signal_outcomes")
    op.drop_table("signal_outcomes")
    op.drop_index("ix_portfolio_positions_portfolio_id_state", table_name="portfolio_positions")
    op.drop_table("portfolio_positions")
    op.drop_index("ix_portfolio_orders_portfolio_id_trade_date", table_name="portfolio_orders")
    op.drop_table("portfolio_orders")
    op.drop_table("portfolio_days")
    op.drop_table("portfolios")
