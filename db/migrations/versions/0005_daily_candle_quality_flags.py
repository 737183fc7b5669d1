"""daily candle quality flags

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 00:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: existing rows are "not judged yet" (NULL), like a clean bar.
    op.add_column("daily_candles", sa.Column("quality_flags", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("daily_candles") as batch:
        batch.drop_column("quality_flags")
