"""every signal has its outcome row from the moment it is stored (the track record's work list
as index reads)

The track record's update follows the signals whose outcome is missing, unfinished or of
older rules. Found with a left join of ``signals`` and ``signal_outcomes`` filtered by
``IS NULL OR NOT IN``, that was a scan of both tables on every update (500k signals: a hash
anti-join over all of them, ``tests/integration/test_query_plans.py``).

Now a trigger on ``signals`` writes an unfollowed outcome row (``rules = ''``, ``state =
'pending'``) for every signal inserted, whichever writer inserts it (scans, the closing bet,
the importer, the original system's loader, COPY); this migration writes the same row for
every signal that has none. The work list is then two index reads on ``signal_outcomes``:
rows in an unfinished state (``ix_signal_outcomes_state``) and rows under rules that are not
current (the new ``ix_signal_outcomes_rules``), whose distinct values are themselves found
by a loose index scan.

On PostgreSQL the trigger is per statement with a transition table (one set-based insert per
``INSERT``/``COPY``); on SQLite per row. Both skip a signal that has its row (``ON CONFLICT DO NOTHING``, ``INSERT OR IGNORE``): an
upsert that updates a signal leaves its outcome alone. pg_dump creates triggers after the
data, so a restore does not fire it.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 23:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PG_FUNCTION = """
CREATE FUNCTION signal_outcome_birth() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO signal_outcomes (signal_id, rules, state)
    SELECT born.id, '', 'pending' FROM born
    ON CONFLICT (signal_id) DO NOTHING;
    RETURN NULL;
END
$$
"""
_PG_TRIGGER = """
CREATE TRIGGER signals_outcome_birth AFTER INSERT ON signals
REFERENCING NEW TABLE AS born FOR EACH STATEMENT EXECUTE FUNCTION signal_outcome_birth()
"""
_SQLITE_TRIGGER = """
CREATE TRIGGER signals_outcome_birth AFTER INSERT ON signals
BEGIN
    INSERT OR IGNORE INTO signal_outcomes (signal_id, rules, state)
    VALUES (NEW.id, '', 'pending');
END
"""


def upgrade() -> None:
    op.create_index("ix_signal_outcomes_rules", "signal_outcomes", ["rules"])
    op.execute(
        "INSERT INTO signal_outcomes (signal_id, rules, state) "
        "SELECT s.id, '', 'pending' FROM signals AS s "
        "WHERE NOT EXISTS (SELECT 1 FROM signal_outcomes AS o WHERE o.signal_id = s.id)"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS signals_outcome_birth" + (
        " ON signals" if op.get_bind().dialect.name == "postgresql" else ""
    ))  # fmt: skip
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS signal_outcome_birth()")
    op.execute("DELETE FROM signal_outcomes WHERE rules = ''")
    op.drop_index("ix_signal_outcomes_rules", table_name="signal_outcomes")
