"""Engines and sessions, one engine per database URL per process.

PostgreSQL: a pool of 10 plus 10 overflow, pre-ping (a connection dropped by a database restart
is replaced before use), READ COMMITTED, connections recycled after 30 min. SQLite (the
embedded default only): WAL journal, foreign keys on, a 30 s busy timeout, and every
transaction begun ``IMMEDIATE`` so concurrent writer threads queue instead of failing.

Time limits (PostgreSQL): every connection of :func:`get_engine` is opened with
``connect_timeout`` (``QUANTBEAT_DB_CONNECT_TIMEOUT``) and runs with the ``statement_timeout``
and ``lock_timeout`` of the task family using it: the base task wraps each execution in
:func:`timeout_family` (``io``, ``cpu``, ``ai``); outside a task (CLI, beat, a worker's own
bookkeeping) the client values apply. The values are sent as connection options when a
connection opens, and changed with ``set_config`` when a pooled connection is checked out
for another family (one round trip, only on a change). A statement that runs out raises
``QueryCanceled``, a lock wait ``LockNotAvailable``: :func:`workers.retry.as_transient` makes
both a retried :class:`~quant.errors.TransientError`. Behind a transaction-pooling proxy
(PgBouncer ``pool_mode=transaction``) session settings do not stick; set the limits on the
database role there instead (``ALTER ROLE … SET statement_timeout``).

Forked worker children must not use connections inherited from the parent:
:func:`dispose_engines` with ``close=False`` is called in ``worker_process_init``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from db.readcache import WatchedConnection
from quant.errors import ConfigError
from quantbeat.infra.forkstate import after_fork
from quantbeat.infra.settings import Settings, get_settings

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_sessionmakers: dict[str, sessionmaker[Session]] = {}

#: The task family (``io``, ``cpu``, ``ai``) whose database time limits apply to connections
#: checked out in this context; ``None``: the client limits. Set by :func:`timeout_family`.
_family: ContextVar[str | None] = ContextVar("quantbeat_db_timeout_family", default=None)

#: Key in a pooled connection's ``info`` of the :class:`DbTimeouts` it currently runs with.
_APPLIED = "quantbeat_timeouts"


@dataclass(frozen=True, slots=True)
class DbTimeouts:
    """PostgreSQL time limits of a connection, in whole milliseconds (``0``: none)."""

    statement_ms: int
    lock_ms: int

    @classmethod
    def of(cls, settings: Settings, family: str | None) -> DbTimeouts:
        """The limits of ``family`` (``io``, ``cpu``, ``ai``; anything else: client)."""
        statement, lock = settings.db_timeouts(family)
        return cls(round(statement * 1000), round(lock * 1000))

    def options(self) -> str:
        """The libpq ``options`` that set these limits when a connection opens."""
        return f"-c statement_timeout={self.statement_ms} -c lock_timeout={self.lock_ms}"


@contextmanager
def timeout_family(family: str | None) -> Iterator[None]:
    """Database work in this block (this thread or task) runs with ``family``'s
    ``statement_timeout``/``lock_timeout`` (``None``: the client ones). Nests; restored on
    exit."""
    token = _family.set(family)
    try:
        yield
    finally:
        _family.reset(token)


def current_timeouts() -> DbTimeouts:
    """The limits connections checked out here get: the current :func:`timeout_family`'s,
    from the process-wide settings."""
    return DbTimeouts.of(get_settings(), _family.get())


def create_engine_for(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout: float = 30.0,
    echo: bool = False,
    connect_timeout: int | None = None,
    timeouts: Callable[[], DbTimeouts] | None = None,
) -> Engine:
    """Create an engine configured for quantbeat's use of ``url``.

    PostgreSQL only: ``connect_timeout`` (whole seconds; a ``connect_timeout`` in the URL
    wins) bounds opening a connection; ``timeouts``, when given, is called at every checkout
    and the connection runs with the limits it returns (see the module docstring). Without
    it no statement or lock limit is set (migrations: DDL on a large table may take long).
    SQLite ignores both (it has its 30 s busy timeout).

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
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        pool_recycle=1800,
        isolation_level="READ COMMITTED",
        echo=echo,
    )
    _limit_postgres(engine, connect_timeout, timeouts)
    return engine


def _limit_postgres(
    engine: Engine, connect_timeout: int | None, timeouts: Callable[[], DbTimeouts] | None
) -> None:
    """Install the connect timeout and the per-checkout statement/lock limits on ``engine``."""

    @event.listens_for(engine, "do_connect")
    def _on_do_connect(_dialect: Any, record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        if connect_timeout is not None:
            cparams.setdefault("connect_timeout", connect_timeout)
        if timeouts is not None:
            wanted = timeouts()
            given = cparams.get("options")
            cparams["options"] = f"{given} {wanted.options()}" if given else wanted.options()
            record.info[_APPLIED] = wanted

    if timeouts is None:
        return

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        wanted = timeouts()
        if record.info.get(_APPLIED) == wanted:
            return
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, false), "
                "set_config('lock_timeout', %s, false)",
                (f"{wanted.statement_ms}ms", f"{wanted.lock_ms}ms"),
            )
        finally:
            cursor.close()
        # Session-level settings made inside a transaction that is rolled back are undone.
        dbapi_connection.commit()
        record.info[_APPLIED] = wanted


def _sqlite_engine(url: str, database: str | None, *, echo: bool) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        # WatchedConnection: writes to the tables the embedded run's read cache keeps
        # (db.readcache) invalidate it; statements are prepared per execution so SQLite's
        # authorizer sees every one.
        connect_args={
            "timeout": 30,
            "check_same_thread": False,
            "factory": WatchedConnection,
            "cached_statements": 0,
        },
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
        # A 64 MiB page cache (the default is 2 MiB): a year of a 2,500-instrument universe
        # is about 100 MiB, and a batch that touches every instrument's index pages would
        # otherwise evict and re-read them row after row.
        cursor.execute("PRAGMA cache_size=-65536")
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
                connect_timeout=settings.db_connect_timeout,
                timeouts=current_timeouts,
            )
            # the factory first: a thread that finds the engine without the lock (above)
            # goes on to read its factory (session_scope), which must already be there
            _sessionmakers[key] = sessionmaker(engine, expire_on_commit=False)
            _engines[key] = engine
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
