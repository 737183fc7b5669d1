"""Every signal is born with its unfollowed outcome row (migration 0021) on the embedded
default's SQLite file: upserts, ORM inserts, updates that keep the outcome, the backfill.
The same checks on PostgreSQL (COPY too): tests/integration/test_outcome_birth.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from db.engine import forget_engines
from db.migrate import upgrade
from quantbeat.infra.settings import reset_settings
from tests.support.outcome_birth import (
    add_instruments,
    check_backfill,
    check_upsert_and_orm_inserts,
)


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'birth.sqlite'}"
    monkeypatch.setenv("QUANTBEAT_DATABASE_URL", url)
    reset_settings()
    forget_engines()
    upgrade(url)
    yield url
    forget_engines()
    reset_settings()


def test_signals_are_born_with_an_unfollowed_outcome(database: str) -> None:
    check_upsert_and_orm_inserts(add_instruments(4))


def test_the_migration_backfills_signals_stored_before_it(database: str) -> None:
    check_backfill(database, add_instruments(3))
