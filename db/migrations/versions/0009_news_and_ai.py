"""news items, their instrument mentions, and AI analyses

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
)


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
    op.create_table(
        "news_items",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_news_items")),
        sa.UniqueConstraint("key", name=op.f("uq_news_items_key")),
    )
    op.create_index("ix_news_items_published_at", "news_items", ["published_at"], unique=False)
    op.create_table(
        "news_mentions",
        sa.Column("news_id", _BIGID, nullable=False),
        sa.Column("instrument_id", _BIGID, nullable=False),
        sa.ForeignKeyConstraint(
            ["news_id"],
            ["news_items.id"],
            name=op.f("fk_news_mentions_news_id_news_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
            name=op.f("fk_news_mentions_instrument_id_instruments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("news_id", "instrument_id", name=op.f("pk_news_mentions")),
    )
    op.create_index(
        "ix_news_mentions_instrument_id", "news_mentions", ["instrument_id"], unique=False
    )
    op.create_table(
        "ai_analyses",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("instrument_id", _BIGID, nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("strategy", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("prompt_version", sa.String(length=48), nullable=False),
        sa.Column("analyzer", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sentiment", sa.Double(), nullable=True),
        sa.Column("confidence", sa.Double(), nullable=True),
        sa.Column("news_score", sa.Integer(), nullable=True),
        sa.Column("catalyst", sa.Text(), nullable=True),
        sa.Column("risk_flags", _JSON, nullable=True),
        sa.Column("news_count", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("total_tokens", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
            name=op.f("fk_ai_analyses_instrument_id_instruments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_analyses")),
        sa.UniqueConstraint(
            "instrument_id",
            "trade_date",
            "model",
            "prompt_version",
            name=op.f("uq_ai_analyses_instrument_id_trade_date_model_prompt_version"),
        ),
    )
    op.create_index("ix_ai_analyses_trade_date", "ai_analyses", ["trade_date"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ai_analyses_trade_date", table_name="ai_analyses")
    op.drop_table("ai_analyses")
    op.drop_index("ix_news_mentions_instrument_id", table_name="news_mentions")
    op.drop_table("news_mentions")
    op.drop_index("ix_news_items_published_at", table_name="news_items")
    op.drop_table("news_items")
