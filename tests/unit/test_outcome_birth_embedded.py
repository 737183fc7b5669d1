"""Every signal is born with its unfollowed outcome row (migration 0021) on the embedded
default's SQLite file: upserts, ORM inserts, updates that keep the outcome, the backfill.
The same checks on PostgreSQL (COPY too): tests/integration/test_outcome_birth.py."""

from __future__ import annotations

from tests.support.outcome_birth import (
    add_instruments,
    check_backfill,
    check_upsert_and_orm_inserts,
)


def test_signals_are_born_with_an_unfollowed_outcome(sqlite_url: str) -> None:
    check_upsert_and_orm_inserts(add_instruments(4))


def test_the_migration_backfills_signals_stored_before_it(sqlite_url: str) -> None:
    check_backfill(sqlite_url, add_instruments(3))
