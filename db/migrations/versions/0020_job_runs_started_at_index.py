"""an index for the job history's pages: job_runs by (started_at, id)

``quantbeat jobs list``, ``GET /api/v1/jobs`` and the dashboard page the history newest
first (``ORDER BY started_at DESC, id DESC`` with a keyset after the previous page). Without
an index on that order every page sorted the whole table (found by
``tests/integration/test_query_plans.py`` on a million runs: a sequential scan); with it a
page reads its rows from the index's end, also when filtered by state or task.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 20:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_job_runs_started_at_id", "job_runs", ["started_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_job_runs_started_at_id", table_name="job_runs")
