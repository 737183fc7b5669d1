"""The PostgreSQL bulk upsert (COPY into a temporary table, INSERT … ON CONFLICT)."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Double,
    Integer,
    MetaData,
    Table,
    Text,
    select,
    text,
)

from db.bulk import ANALYZE_MIN_ROWS, copy_upsert
from db.engine import get_engine, session_scope
from quant.errors import ValidationError

pytestmark = pytest.mark.integration

probe = Table(
    "bulk_probe",
    MetaData(),
    Column("k", Integer, primary_key=True),
    Column("s", Text),
    Column("f", Double),
    Column("updated_at", DateTime(timezone=True), server_default=text("now()")),
)


@pytest.fixture
def table(database: str):
    engine = get_engine(database)
    probe.drop(engine, checkfirst=True)
    probe.create(engine)
    yield probe
    probe.drop(engine, checkfirst=True)


def frame(rows: list[tuple[int, str | None, float | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["k", "s", "f"])


def test_counts_and_round_trip(table):
    first = frame([(1, "a\tb\\c\nd", 1.5), (2, None, None), (3, "x", 0.1 + 0.2)])
    with session_scope() as session:
        assert copy_upsert(session, table, first, key=["k"], compare=["s", "f"]) == (3, 0, 0)
    second = frame([(1, "a\tb\\c\nd", 1.5), (2, "now set", None), (4, "new", 4.0)])
    with session_scope() as session:
        assert copy_upsert(session, table, second, key=["k"], compare=["s", "f"]) == (1, 1, 1)
    with session_scope() as session:
        stored = session.execute(select(table.c.k, table.c.s, table.c.f).order_by("k")).all()
    assert [tuple(r) for r in stored] == [
        (1, "a\tb\\c\nd", 1.5),
        (2, "now set", None),
        (3, "x", 0.1 + 0.2),
        (4, "new", 4.0),
    ]


def test_unchanged_rows_are_not_rewritten(table):
    rows = frame([(k, f"v{k}", float(k)) for k in range(1000)])
    with session_scope() as session:
        copy_upsert(session, table, rows, key=["k"], compare=["s", "f"])
    with session_scope() as session:
        before = session.execute(text("SELECT k, xmin::text FROM bulk_probe ORDER BY k")).all()
        assert copy_upsert(session, table, rows, key=["k"], compare=["s", "f"]) == (0, 0, 1000)
    with session_scope() as session:
        after = session.execute(text("SELECT k, xmin::text FROM bulk_probe ORDER BY k")).all()
    assert before == after


def test_duplicate_keys_are_refused(table):
    with session_scope() as session, pytest.raises(ValidationError, match="duplicate k"):
        copy_upsert(
            session, table, frame([(1, "a", 1.0), (1, "b", 2.0)]), key=["k"], compare=["s", "f"]
        )


def _reltuples() -> float:
    with session_scope() as session:
        return float(
            session.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = 'bulk_probe'::regclass")
            ).scalar_one()
        )


def test_a_bulk_load_analyzes_the_table_before_it_commits(table):
    assert _reltuples() < 0  # never analyzed: the planner would guess
    rows = frame([(k, f"v{k}", float(k)) for k in range(ANALYZE_MIN_ROWS)])
    with session_scope() as session:
        copy_upsert(session, table, rows, key=["k"], compare=["s", "f"])
    assert _reltuples() == ANALYZE_MIN_ROWS
    few = frame([(k, "x", 1.0) for k in range(ANALYZE_MIN_ROWS, ANALYZE_MIN_ROWS + 100)])
    with session_scope() as session:
        copy_upsert(session, table, few, key=["k"], compare=["s", "f"])
    assert _reltuples() == ANALYZE_MIN_ROWS  # a small batch leaves the statistics alone


def test_a_load_leaves_the_statistics_to_whoever_holds_the_tables_analyze_lock(table, database):
    other = get_engine(database).connect()
    held = other.begin()
    other.execute(text("LOCK TABLE bulk_probe IN SHARE UPDATE EXCLUSIVE MODE"))
    try:
        rows = frame([(k, f"v{k}", float(k)) for k in range(ANALYZE_MIN_ROWS)])
        with session_scope() as session:  # no wait for the lock, no lock timeout
            session.execute(text("SET LOCAL lock_timeout = '200ms'"))
            counts = copy_upsert(session, table, rows, key=["k"], compare=["s", "f"])
        assert counts == (ANALYZE_MIN_ROWS, 0, 0)
    finally:
        held.rollback()
        other.close()
    assert _reltuples() < 0  # not analyzed: the lock's holder would have
