"""Every signal is born with its unfollowed outcome row (migration 0021) on PostgreSQL: the
per-statement trigger covers upserts, ORM inserts and COPY (the bulk path of imports and the
benchmarks); an upsert that updates a signal keeps its outcome; the migration backfills.
The same checks on SQLite: tests/unit/test_outcome_birth_embedded.py."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from db.bulk import copy_rows
from db.engine import session_scope
from db.models import UNFOLLOWED_RULES
from tests.support.outcome_birth import (
    DAY,
    add_instruments,
    check_backfill,
    check_upsert_and_orm_inserts,
    outcomes,
    signal_ids,
)

pytestmark = pytest.mark.integration


def test_signals_are_born_with_an_unfollowed_outcome(clean_db: str) -> None:
    check_upsert_and_orm_inserts(add_instruments(4))


def test_copied_signals_are_born_with_one_row_each(clean_db: str) -> None:
    ids = add_instruments(500)
    frame = pd.DataFrame(
        {
            "trade_date": [DAY] * len(ids),
            "strategy": ["closing_bet"] * len(ids),
            "phase": ["final"] * len(ids),
            "instrument_id": ids,
            "score": [50.0] * len(ids),
            "reasons": [json.dumps(["SIMULATED"])] * len(ids),
            "source": ["simulated"] * len(ids),
        }
    )
    with session_scope() as session:
        copy_rows(session, "signals", frame)
    born = outcomes()
    assert len(born) == 500
    assert set(born) == signal_ids()
    assert set(born.values()) == {(UNFOLLOWED_RULES, "pending", None)}


def test_the_migration_backfills_signals_stored_before_it(clean_db: str) -> None:
    check_backfill(clean_db, add_instruments(3))
