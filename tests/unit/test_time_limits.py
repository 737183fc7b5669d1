"""Time limits (issue 16): the database settings per task family, the engine options that apply
them, the mapping of a timed-out statement or lock wait to a retried error, the soft deadline of
tasks on pools that cannot interrupt them, and the news fetch's overall bound. The behaviour
against real PostgreSQL is in tests/integration/test_db_timeouts.py and, through a real
worker, tests/faults/test_time_limits.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import psycopg
import pytest
from celery.exceptions import Ignore
from sqlalchemy import exc as sa_exc

import workers.deadline as deadline
from db.engine import DbTimeouts, _family, create_engine_for, current_timeouts, timeout_family
from quant.errors import ConfigError, ServiceUnavailable
from quant.news import RssSource
from quantbeat.infra.settings import load_settings
from workers.retry import DatabaseTimeout, as_transient

PG_URL = "postgresql+psycopg://user@db.invalid:5432/quantbeat"

# --- settings -----------------------------------------------------------------------------------


def test_default_database_limits_per_family() -> None:
    settings = load_settings()
    assert settings.db_connect_timeout == 5
    assert settings.db_timeouts("io") == (30.0, 5.0)
    assert settings.db_timeouts("cpu") == (300.0, 10.0)  # backtests read years of bars
    assert settings.db_timeouts("ai") == (30.0, 5.0)
    assert settings.db_timeouts(None) == (120.0, 10.0)
    assert settings.db_timeouts("client") == settings.db_timeouts(None)
    assert settings.db_timeouts("not-a-family") == settings.db_timeouts(None)


def test_database_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTBEAT_IO_STATEMENT_TIMEOUT", "12.5")
    monkeypatch.setenv("QUANTBEAT_IO_LOCK_TIMEOUT", "0.25")
    monkeypatch.setenv("QUANTBEAT_DB_CONNECT_TIMEOUT", "2")
    settings = load_settings()
    assert settings.db_timeouts("io") == (12.5, 0.25)
    assert settings.db_connect_timeout == 2


def test_a_lock_timeout_above_its_statement_timeout_is_refused() -> None:
    with pytest.raises(ConfigError, match="QUANTBEAT_CPU_LOCK_TIMEOUT=400 must not exceed"):
        load_settings(cpu_statement_timeout=300, cpu_lock_timeout=400)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("io_statement_timeout", 0),
        ("client_lock_timeout", -1),
        ("db_connect_timeout", 0),
        ("http_timeout", 0),
        ("provider_retry_max", 0),
        ("s3_timeout", -5),
    ],
)
def test_time_limits_must_be_positive(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"QUANTBEAT_{field.upper()}"):
        load_settings(**{field: value})


def test_provider_defaults() -> None:
    settings = load_settings()
    assert (settings.http_timeout, settings.provider_retry_max, settings.s3_timeout) == (
        10.0,
        60.0,
        30.0,
    )


# --- engine options -----------------------------------------------------------------------------


def test_timeouts_become_whole_milliseconds_and_libpq_options() -> None:
    limits = DbTimeouts.of(load_settings(io_statement_timeout=1.25, io_lock_timeout=0.5), "io")
    assert limits == DbTimeouts(statement_ms=1250, lock_ms=500)
    assert limits.options() == "-c statement_timeout=1250 -c lock_timeout=500"


def test_the_family_context_nests_and_is_restored() -> None:
    assert _family.get() is None
    with timeout_family("io"):
        assert current_timeouts() == DbTimeouts(30_000, 5_000)
        with timeout_family("cpu"):
            assert current_timeouts() == DbTimeouts(300_000, 10_000)
        assert _family.get() == "io"
    assert _family.get() is None
    assert current_timeouts() == DbTimeouts(120_000, 10_000)


def _do_connect(engine: Any, cparams: dict[str, Any]) -> dict[str, Any]:
    """Run the engine's ``do_connect`` listeners on ``cparams`` (no connection is made)."""
    info: dict[str, Any] = {}
    record = SimpleNamespace(info=info)
    for listener in engine.dialect.dispatch.do_connect:
        listener(engine.dialect, record, [], cparams)
    return info


def test_postgres_connections_open_with_the_connect_timeout_and_the_current_limits() -> None:
    engine = create_engine_for(PG_URL, connect_timeout=5, timeouts=current_timeouts)
    cparams: dict[str, Any] = {}
    with timeout_family("io"):
        info = _do_connect(engine, cparams)
    assert cparams["connect_timeout"] == 5
    assert cparams["options"] == "-c statement_timeout=30000 -c lock_timeout=5000"
    assert list(info.values()) == [DbTimeouts(30_000, 5_000)]


def test_options_and_connect_timeout_of_the_url_are_kept() -> None:
    engine = create_engine_for(PG_URL, connect_timeout=5, timeouts=lambda: DbTimeouts(1, 2))
    cparams: dict[str, Any] = {"options": "-c search_path=qb", "connect_timeout": 9}
    _do_connect(engine, cparams)
    assert cparams == {
        "options": "-c search_path=qb -c statement_timeout=1 -c lock_timeout=2",
        "connect_timeout": 9,
    }


def test_without_timeouts_only_the_connect_timeout_is_set() -> None:
    engine = create_engine_for(PG_URL, connect_timeout=3)
    cparams: dict[str, Any] = {}
    _do_connect(engine, cparams)
    assert cparams == {"connect_timeout": 3}
    assert not engine.pool.dispatch.checkout  # migrations: no statement or lock limit


class _FakeDbapi:
    def __init__(self) -> None:
        self.executed: list[tuple[str, tuple[str, ...]]] = []
        self.commits = 0

    def cursor(self) -> _FakeDbapi:
        return self

    def execute(self, sql: str, params: tuple[str, ...]) -> None:
        self.executed.append((sql, params))

    def close(self) -> None:
        pass

    def commit(self) -> None:
        self.commits += 1


def test_a_pooled_connection_is_switched_only_when_the_family_changes() -> None:
    engine = create_engine_for(PG_URL, timeouts=current_timeouts)
    dbapi = _FakeDbapi()
    record = SimpleNamespace(info={})
    with timeout_family("io"):
        _do_connect(engine, {})  # opened for io
        record.info.update(_do_connect(engine, {}))

    def checkout() -> None:
        for listener in engine.pool.dispatch.checkout:
            listener(dbapi, record, None)

    with timeout_family("io"):
        checkout()
    assert dbapi.executed == []  # already io: no round trip
    with timeout_family("cpu"):
        checkout()
        checkout()
    assert len(dbapi.executed) == 1
    assert dbapi.executed[0][1] == ("300000ms", "10000ms")
    assert dbapi.commits == 1  # a session setting must outlive the checkout's transaction
    checkout()  # back to the client limits
    assert dbapi.executed[-1][1] == ("120000ms", "10000ms")


def test_sqlite_keeps_its_busy_timeout_and_gets_no_postgres_options(tmp_path: Any) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'x.db'}", timeouts=current_timeouts)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    assert not engine.dialect.dispatch.do_connect
    engine.dispose()


# --- timed-out statements and lock waits are transient ----------------------------------------


def _wrapped(error: Exception) -> sa_exc.OperationalError:
    return sa_exc.OperationalError("UPDATE daily_candles …", {}, error)


@pytest.mark.parametrize(
    ("driver_error", "kind", "words"),
    [
        (psycopg.errors.QueryCanceled("canceling statement"), "statement", "statement_timeout"),
        (psycopg.errors.LockNotAvailable("canceling statement"), "lock", "lock_timeout"),
    ],
)
@pytest.mark.parametrize("raw", [False, True], ids=["sqlalchemy", "raw-psycopg"])
def test_statement_and_lock_timeouts_are_database_timeouts(
    driver_error: Exception, kind: str, words: str, raw: bool
) -> None:
    mapped = as_transient(driver_error if raw else _wrapped(driver_error))
    assert isinstance(mapped, DatabaseTimeout)
    assert isinstance(mapped, ServiceUnavailable)
    assert mapped.kind == kind
    assert words in str(mapped)


def test_raw_psycopg_operational_errors_are_transient_and_others_are_not() -> None:
    assert isinstance(as_transient(psycopg.OperationalError("server closed")), ServiceUnavailable)
    assert as_transient(psycopg.errors.UniqueViolation("duplicate key")) is None
    assert as_transient(sa_exc.IntegrityError("INSERT", {}, Exception("dup"))) is None


# --- soft deadline on pools that cannot interrupt a task ---------------------------------------


def _task(soft: float | None, message_soft: float | None = None) -> Any:
    return SimpleNamespace(
        name="quantbeat.collect.crypto_candles",
        soft_time_limit=soft,
        request=SimpleNamespace(timelimit=(None, message_soft)),
    )


@pytest.fixture
def threads_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deadline, "_in_prefork_child", False)


def test_a_body_that_ends_in_time_returns_its_result_under_its_family_limits(
    threads_pool: None,
) -> None:
    seen: list[str | None] = []

    def body(x: int) -> int:
        seen.append(_family.get())
        return x + 1

    assert deadline.run_limited(_task(5.0), body, (1,), {}, time.perf_counter()) == 2
    assert seen == ["io"]
    assert _family.get() is None


def test_a_body_that_returns_after_its_soft_limit_is_timed_out(threads_pool: None) -> None:
    started = time.perf_counter() - 2.0  # it has been running for 2 s
    with pytest.raises(deadline.DeadlineExceeded, match=r"over its io soft time limit of 1 s"):
        deadline.run_limited(_task(1.0), lambda: {"done": True}, (), {}, started)


def test_an_error_after_the_soft_limit_is_timed_out_not_retried(threads_pool: None) -> None:
    def body() -> None:
        raise ServiceUnavailable("provider timed out")

    started = time.perf_counter() - 2.0
    with pytest.raises(deadline.DeadlineExceeded, match="raised ServiceUnavailable") as info:
        deadline.run_limited(_task(1.0), body, (), {}, started)
    assert isinstance(info.value.__cause__, ServiceUnavailable)


def test_the_message_s_own_soft_limit_wins(threads_pool: None) -> None:
    started = time.perf_counter() - 2.0
    assert deadline.run_limited(_task(1.0, message_soft=60.0), lambda: 1, (), {}, started) == 1
    with pytest.raises(deadline.DeadlineExceeded):
        deadline.run_limited(_task(600.0, message_soft=1.0), lambda: 1, (), {}, started)


def test_celery_control_flow_passes_unchanged(threads_pool: None) -> None:
    def body() -> None:
        raise Ignore()

    with pytest.raises(Ignore):
        deadline.run_limited(_task(1.0), body, (), {}, time.perf_counter() - 2.0)


def test_prefork_children_leave_limits_to_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deadline, "_in_prefork_child", True)
    assert deadline.soft_deadline(_task(1.0)) is None
    assert deadline.run_limited(_task(1.0), lambda: 1, (), {}, time.perf_counter() - 2.0) == 1


def test_a_task_without_a_limit_has_no_deadline(threads_pool: None) -> None:
    assert deadline.soft_deadline(_task(None)) is None


# --- news feeds ----------------------------------------------------------------------------------


def test_a_feed_source_s_own_client_has_explicit_timeouts() -> None:
    with RssSource("https://example.invalid/feed.xml", name="t", timeout=4.0) as source:
        assert source._client.timeout == httpx.Timeout(4.0)


def test_a_stalling_feed_is_cut_off_after_max_elapsed() -> None:
    def trickle() -> Iterator[bytes]:
        for _ in range(50):
            time.sleep(0.05)
            yield b"<rss>"

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=trickle()))
    client = httpx.Client(transport=transport)
    source = RssSource("https://example.invalid/feed.xml", name="t", client=client, max_elapsed=0.2)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=r"took longer than 0.2 s"):
        source.fetch()
    assert time.monotonic() - started < 2.0  # the trickle alone would take 2.5 s
    client.close()
