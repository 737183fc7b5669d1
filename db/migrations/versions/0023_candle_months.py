"""daily candles packed by instrument and month (the universe load's read)

A universe load reads a year of 2,500 instruments' bars: 630,000 rows, 240–280 ms of
executor time on PostgreSQL however they are indexed or clustered (about 0.4 µs a row;
``benchmarks/query_plans.py``). ``candle_months`` holds the same bars packed: one row per
instrument and calendar month, its bars as fixed 56-byte big-endian records (``int8`` days
since 1970-01-01, then ``float8`` open, high, low, close, volume, traded value, NaN where
unknown) in date order — 21 rows' worth in one, so a year is 13 index entries per instrument.
``daily_candles`` stays the source of truth; the packed months are a cache of it.

``candle_months_stale`` is an append-only log of the months written since they were packed.
On PostgreSQL statement triggers on ``daily_candles`` (transition tables; any writer:
upserts, imports, corrections, deletes, an instrument's cascade) append the months a
statement touches, in the writer's transaction. A plain insert under a non-unique index
never waits for another transaction, so writers never wait for each other or for packing
because of it. A packed month is valid in a snapshot when no log entry for it is visible
there (:mod:`db.candle_months` packs, :func:`db.candles.read_daily_bars` reads).
``candle_months_packs`` counts the packs committed (one row), so a read can tell that a
pack committed between its statements. ``TRUNCATE`` empties both and counts as a pack. No
foreign keys: a month of a deleted instrument is logged by the
cascade and dropped by the next pack. This migration logs every month already stored.
SQLite (the embedded default) creates the tables but no triggers and never reads them.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_PG_FUNCTION = """
CREATE FUNCTION candle_months_touched() RETURNS trigger LANGUAGE plpgsql
SET search_path = public AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM candle_months;
        DELETE FROM candle_months_stale;
        INSERT INTO candle_months_packs AS p (id, generation) VALUES (1, 1)
        ON CONFLICT (id) DO UPDATE SET generation = p.generation + 1;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO candle_months_stale (instrument_id, month)
        SELECT DISTINCT instrument_id, date_trunc('month', trade_date::timestamp)::date
        FROM candle_rows_new;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO candle_months_stale (instrument_id, month)
        SELECT instrument_id, date_trunc('month', trade_date::timestamp)::date
        FROM candle_rows_new
        UNION
        SELECT instrument_id, date_trunc('month', trade_date::timestamp)::date
        FROM candle_rows_old;
    ELSE
        INSERT INTO candle_months_stale (instrument_id, month)
        SELECT DISTINCT instrument_id, date_trunc('month', trade_date::timestamp)::date
        FROM candle_rows_old;
    END IF;
    RETURN NULL;
END
$$
"""
_PG_TRIGGERS = (
    "CREATE TRIGGER daily_candles_months_insert AFTER INSERT ON daily_candles "
    "REFERENCING NEW TABLE AS candle_rows_new "
    "FOR EACH STATEMENT EXECUTE FUNCTION candle_months_touched()",
    "CREATE TRIGGER daily_candles_months_update AFTER UPDATE ON daily_candles "
    "REFERENCING OLD TABLE AS candle_rows_old NEW TABLE AS candle_rows_new "
    "FOR EACH STATEMENT EXECUTE FUNCTION candle_months_touched()",
    "CREATE TRIGGER daily_candles_months_delete AFTER DELETE ON daily_candles "
    "REFERENCING OLD TABLE AS candle_rows_old "
    "FOR EACH STATEMENT EXECUTE FUNCTION candle_months_touched()",
    "CREATE TRIGGER daily_candles_months_truncate AFTER TRUNCATE ON daily_candles "
    "FOR EACH STATEMENT EXECUTE FUNCTION candle_months_touched()",
)
_TRIGGER_NAMES = ("insert", "update", "delete", "truncate")


def upgrade() -> None:
    op.create_table(
        "candle_months",
        sa.Column("instrument_id", _BIGID, nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("bars", sa.Integer(), nullable=False),
        sa.Column("packed", sa.LargeBinary(), nullable=False),
        sa.Column(
            "packed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("instrument_id", "month", name=op.f("pk_candle_months")),
    )
    op.create_table(
        "candle_months_stale",
        sa.Column("id", _BIGID, nullable=False),
        sa.Column("instrument_id", _BIGID, nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candle_months_stale")),
    )
    op.create_index(
        "ix_candle_months_stale_instrument_id_month",
        "candle_months_stale",
        ["instrument_id", "month"],
    )
    # One row: the number of packs committed so far (each pack, and a TRUNCATE, adds one in
    # its transaction), which a read compares before and after its statements.
    op.create_table(
        "candle_months_packs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candle_months_packs")),
    )
    op.execute("INSERT INTO candle_months_packs (id, generation) VALUES (1, 0)")
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_PG_FUNCTION)
    for statement in _PG_TRIGGERS:
        op.execute(statement)
    op.execute(
        "INSERT INTO candle_months_stale (instrument_id, month) "
        "SELECT DISTINCT instrument_id, date_trunc('month', trade_date::timestamp)::date "
        "FROM daily_candles ORDER BY 1, 2"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in _TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS daily_candles_months_{name} ON daily_candles")
        op.execute("DROP FUNCTION IF EXISTS candle_months_touched()")
    op.drop_table("candle_months_packs")
    op.drop_table("candle_months_stale")
    op.drop_table("candle_months")
