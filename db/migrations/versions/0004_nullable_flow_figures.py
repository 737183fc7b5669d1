"""investor flow figures may be unknown

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 00:19:47.753810
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


FIGURES = (
    "foreign_net_shares",
    "institution_net_shares",
    "individual_net_shares",
    "foreign_net_krw",
    "institution_net_krw",
    "individual_net_krw",
)


def upgrade() -> None:
    # Batch mode: PostgreSQL alters in place, SQLite (embedded default) rebuilds the table.
    with op.batch_alter_table("investor_flows") as batch:
        for column in FIGURES:
            batch.alter_column(column, existing_type=sa.BigInteger(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("investor_flows") as batch:
        for column in FIGURES:
            batch.alter_column(column, existing_type=sa.BigInteger(), nullable=False)
