"""Database time limits against real PostgreSQL (issue 16): each task family's connections run
with its statement_timeout/lock_timeout, pooled connections switch when another family checks
them out, and a statement or lock wait that runs out becomes a retried DatabaseTimeout."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from db.engine import DbTimeouts, create_engine_for, session_scope, timeout_family
from workers.retry import DatabaseTimeout, as_transient

pytestmark = pytest.mark.integration


def _limits() -> tuple[str, str]:
    with session_scope() as session:
        row = session.execute(
            text("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')")
        ).one()
    return str(row[0]), str(row[1])


def test_each_family_runs_with_its_own_limits_on_one_pool(database: str) -> None:
    assert _limits() == ("2min", "10s")  # outside a task: the client limits
    with timeout_family("io"):
        assert _limits() == ("30s", "5s")
    with timeout_family("cpu"):
        assert _limits() == ("5min", "10s")
    with timeout_family("ai"):
        assert _limits() == ("30s", "5s")
    assert _limits() == ("2min", "10s")  # the same pooled connection, switched back


@pytest.fixture
def short_limits(database: str) -> Iterator[Engine]:
    engine = create_engine_for(
        database, pool_size=1, connect_timeout=5, timeouts=lambda: DbTimeouts(300, 200)
    )
    yield engine
    engine.dispose()


def test_a_long_statement_is_cancelled_as_a_transient_database_timeout(
    short_limits: Engine,
) -> None:
    with (
        pytest.raises(OperationalError, match="statement timeout") as info,
        short_limits.connect() as conn,
    ):
        conn.execute(text("SELECT pg_sleep(5)"))
    mapped = as_transient(info.value)
    assert isinstance(mapped, DatabaseTimeout)
    assert mapped.kind == "statement"


def test_a_lock_wait_is_cut_by_lock_timeout(database: str, short_limits: Engine) -> None:
    holder = create_engine_for(database, pool_size=1)
    try:
        with holder.connect() as held:
            held.execute(text("LOCK TABLE job_runs IN ACCESS EXCLUSIVE MODE"))
            with (
                pytest.raises(OperationalError, match="lock timeout") as info,
                short_limits.connect() as conn,
            ):
                conn.execute(text("SELECT count(*) FROM job_runs"))
            held.rollback()
        mapped = as_transient(info.value)
        assert isinstance(mapped, DatabaseTimeout)
        assert mapped.kind == "lock"
        # Released: the same statement now runs.
        with short_limits.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM job_runs")).scalar_one() >= 0
    finally:
        holder.dispose()
