"""crypto signals, paper orders and books (issue 23)

``crypto_signals``: the hourly BUY/SELL/HOLD per market with its reasons, risk flags, inputs
and analyst, and its track record (returns 1 h, 4 h, 24 h after). ``crypto_orders``: the
paper orders made from them, in Upbit's shape, pending until the next bar fills them.
``crypto_books``: each paper portfolio's cash, positions and P&L, the replay of its fills.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 02:50:00
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_NULLABLE_JSON = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
)


def _created() -> sa.Column[dt.datetime]:
    return sa.Column(
        "created_at",
        sa.DateTime(timezone=True),
        server_default=sa.text("CURRENT_TIMESTAMP"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "crypto_signals",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("instrument_id", _BIGID, nullable=False),
        sa.Column("strategy", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("reasons", _JSON, nullable=False),
        sa.Column("risk_flags", _JSON, nullable=False),
        sa.Column("inputs", _JSON, nullable=False),
        sa.Column("analyst", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("return_1h", sa.Double(), nullable=True),
        sa.Column("return_4h", sa.Double(), nullable=True),
        sa.Column("return_24h", sa.Double(), nullable=True),
        sa.Column("followed_at", sa.DateTime(timezone=True), nullable=True),
        _created(),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
            name=op.f("fk_crypto_signals_instrument_id_instruments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crypto_signals")),
        sa.UniqueConstraint(
            "instrument_id",
            "strategy",
            "at",
            name=op.f("uq_crypto_signals_instrument_id_strategy_at"),
        ),
    )
    op.create_index("ix_crypto_signals_at", "crypto_signals", ["at"])
    op.create_table(
        "crypto_orders",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("portfolio", sa.String(length=64), nullable=False),
        sa.Column("signal_id", _BIGID, nullable=False),
        sa.Column("instrument_id", _BIGID, nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("krw", sa.Double(), nullable=True),
        sa.Column("volume", sa.Double(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("body", _NULLABLE_JSON, nullable=True),
        sa.Column("fill_price", sa.Double(), nullable=True),
        sa.Column("filled_volume", sa.Double(), nullable=True),
        sa.Column("fee", sa.Double(), nullable=True),
        sa.Column("filled_at", sa.DateTime(timezone=True), nullable=True),
        _created(),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
            name=op.f("fk_crypto_orders_instrument_id_instruments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["crypto_signals.id"],
            name=op.f("fk_crypto_orders_signal_id_crypto_signals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crypto_orders")),
        sa.UniqueConstraint(
            "portfolio", "signal_id", name=op.f("uq_crypto_orders_portfolio_signal_id")
        ),
    )
    op.create_index("ix_crypto_orders_portfolio_state", "crypto_orders", ["portfolio", "state"])
    op.create_table(
        "crypto_books",
        sa.Column("portfolio", sa.String(length=64), nullable=False),
        sa.Column("capital", sa.Double(), nullable=False),
        sa.Column("cash", sa.Double(), nullable=False),
        sa.Column("fees", sa.Double(), nullable=False),
        sa.Column("realized", sa.Double(), nullable=False),
        sa.Column("equity", sa.Double(), nullable=False),
        sa.Column("positions", _JSON, nullable=False),
        sa.Column("drift", _JSON, nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reconciled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("portfolio", name=op.f("pk_crypto_books")),
    )


def downgrade() -> None:
    op.drop_table("crypto_books")
    op.drop_index("ix_crypto_orders_portfolio_state", table_name="crypto_orders")
    op.drop_table("crypto_orders")
    op.drop_index("ix_crypto_signals_at", table_name="crypto_signals")
    op.drop_table("crypto_signals")
