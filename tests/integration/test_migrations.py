"""Migrations build the schema the models describe, on a database of their own."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from db import migrate
from db.engine import create_engine_for
from db.models import Base
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch_url(database: str) -> str:
    name = "quantbeat_test_migrations"
    admin = create_engine_for(TEST_DATABASE_URL.rsplit("/", 1)[0] + "/postgres")
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return TEST_DATABASE_URL.rsplit("/", 1)[0] + f"/{name}"


def test_upgrade_check_downgrade_upgrade(scratch_url: str):
    migrate.upgrade(scratch_url)
    migrate.check(scratch_url)  # raises if models and schema differ
    engine = create_engine_for(scratch_url)
    tables = set(inspect(engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    # The naming convention gives constraints predictable names.
    uniques = {u["name"] for u in inspect(engine).get_unique_constraints("daily_candles")}
    assert uniques == {"uq_daily_candles_instrument_id_trade_date"}
    assert inspect(engine).get_pk_constraint("daily_candles")["name"] == "pk_daily_candles"
    engine.dispose()

    migrate.downgrade(scratch_url, "base")
    assert migrate.current_revision(scratch_url) is None
    migrate.upgrade(scratch_url)
    assert migrate.current_revision(scratch_url) is not None


def test_business_keys_are_unique_constraints(database: str):
    engine = create_engine_for(database)
    insp = inspect(engine)
    expected = {
        "instruments": ["market", "ticker"],
        "daily_candles": ["instrument_id", "trade_date"],
        "intraday_candles": ["instrument_id", "interval", "ts"],
        "investor_flows": ["instrument_id", "trade_date"],
        "job_runs": ["task_id"],
        "dead_letters": ["fingerprint"],
        "signals": ["trade_date", "strategy", "phase", "instrument_id"],
        "reference_bars": ["series_id", "trade_date"],
        "market_gates": ["trade_date", "as_of"],
        "task_outbox": ["task_id"],
    }
    for table, columns in expected.items():
        found = [u["column_names"] for u in insp.get_unique_constraints(table)]
        assert columns in found, (table, found)
    engine.dispose()


def test_quantbeat_db_upgrade_command(scratch_url: str):
    import os
    import subprocess
    import sys
    from pathlib import Path

    quantbeat = str(Path(sys.executable).with_name("quantbeat"))
    env = {**os.environ, "QUANTBEAT_DATABASE_URL": scratch_url}
    done = subprocess.run(
        [quantbeat, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    head = migrate.current_revision(scratch_url)
    assert head is not None
    assert f"at revision {head}" in done.stdout
    current = subprocess.run(
        [quantbeat, "db", "current"], env=env, capture_output=True, text=True, timeout=60
    )
    assert current.stdout.strip() == head


def test_engine_pool_and_isolation_on_postgresql(database: str):
    from db.engine import forget_engines, get_engine

    forget_engines()
    engine = get_engine(database)
    assert engine.pool.size() == 10  # type: ignore[attr-defined]
    assert engine.pool._max_overflow == 10  # type: ignore[attr-defined]
    assert engine.pool._pre_ping is True
    with engine.connect() as conn:
        level = conn.execute(text("SHOW transaction_isolation")).scalar_one()
    assert level == "read committed"
    forget_engines()
