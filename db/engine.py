"""Engines and sessions, one engine per database URL per process.

PostgreSQL: a pool of 10 plus 10 overflow, pre-ping (a connection dropped by a database restart
is replaced before use), READ COMMITTED, connections recycled after 30 min. SQLite (the
embedded default only): WAL journal, foreign keys on, a 30 s busy timeout, and every
transaction begun ``IMMEDIATE`` so concurrent writer threads queue instead of failing.

Forked worker children must not use connections inherited from the parent:
:func:`dispose_engines` with ``close=False`` is called in ``worker_process_init``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from quant.errors import ConfigError
from quantbeat.infra.forkstate import after_fork
from quantbeat.infra.settings import get_settings

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_sessionmakers: dict[str, sessionmaker[Session]] = {}


def create_engine_for(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout: float = 30.0,
    echo: bool = False,
) -> Engine:
    """Create an engine configured for quantbeat's use of ``url``.

    Raises:
        quant.errors.ConfigError: the URL cannot be parsed or names an unsupported database.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"the database URL is not a URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, parsed.database, echo=echo)
    if backend != "postgresql":
        raise ConfigError(
            f"the database URL {display_url(url)!r} uses {backend!r}; "
            "quantbeat supports postgresql and sqlite"
        )
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        pool_recycle=1800,
        isolation_level="READ COMMITTED",
        echo=echo,
    )


def _sqlite_engine(url: str, database: str | None, *, echo: bool) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": 30, "check_same_thread": False},
        pool_pre_ping=True,
        echo=echo,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: the configured database URL)."""

    settings = get_settings()
    key = url or settings.database_url
    engine = _engines.get(key)
    if engine is not None:
        return engine
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = create_engine_for(
                key,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                pool_timeout=settings.db_pool_timeout,
                echo=settings.db_echo,
            )
            _engines[key] = engine
            _sessionmakers[key] = sessionmaker(engine, expire_on_commit=False)
    return engine


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session in one transaction: committed when the block ends, rolled back on error."""
    get_engine(url)

    factory = _sessionmakers[url or get_settings().database_url]
    with factory() as session, session.begin():
        yield session


def dispose_engines(*, close: bool = True) -> None:
    """Drop every pooled connection of every engine.

    ``close=False`` is for a freshly forked child: the parent's connections are abandoned
    without sending anything on their sockets, which the parent still owns.
    """
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=close)


@after_fork
def _abandon_parent_connections() -> None:
    """In a forked child: the parent's pooled connections are abandoned, never used."""
    dispose_engines(close=False)


def forget_engines() -> None:
    """Dispose and forget all engines (tests and the embedded runner switch databases)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _sessionmakers.clear()


def display_url(url: str) -> str:
    """``url`` with its password hidden, for reports and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable database URL)"
