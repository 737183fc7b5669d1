"""wider signal grade (VCP ratings such as "Developing")

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("signals") as batch:
        batch.alter_column("grade", existing_type=sa.String(length=8), type_=sa.String(length=16))


def downgrade() -> None:
    with op.batch_alter_table("signals") as batch:
        batch.alter_column("grade", existing_type=sa.String(length=16), type_=sa.String(length=8))
