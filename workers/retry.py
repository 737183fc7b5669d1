"""Retry policy for Celery-level retries: which errors are worth retrying, and when.

Short waits (seconds) belong inside data sources with tenacity; this policy covers the long
ones, where the worker slot should be freed while waiting. Every delay is bounded by
``cap`` (``QUANTBEAT_RETRY_BACKOFF_MAX``), which settings keep below Redis' visibility timeout.
"""

from __future__ import annotations

import random

import psycopg
from redis import exceptions as redis_exc
from sqlalchemy import exc as sa_exc

from quant.errors import ServiceUnavailable, TransientError


def backoff_delay(
    retries: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``retries + 1``.

    Exponential (``base * 2**retries``) with "equal jitter": a uniform draw from the upper half
    of the exponential step, so concurrent failures spread out but never retry immediately. A
    server-provided ``retry_after`` is a floor. The result never exceeds ``cap``.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    step = min(cap, base * (2.0 ** min(retries, 32)))
    draw = (rng or random).uniform(step / 2.0, step)
    if retry_after is not None and retry_after > draw:
        draw = retry_after
    return min(cap, draw)


#: PostgreSQL SQLSTATEs of a statement cancelled by ``statement_timeout`` (query_canceled;
#: also an operator's ``pg_cancel_backend``) and of a lock wait ended by ``lock_timeout``
#: (lock_not_available; also ``NOWAIT``).
STATEMENT_TIMEOUT_SQLSTATE = "57014"
LOCK_TIMEOUT_SQLSTATE = "55P03"


class DatabaseTimeout(ServiceUnavailable):
    """A database statement ran out of its ``statement_timeout`` (``kind="statement"``) or
    waited for a lock longer than its ``lock_timeout`` (``kind="lock"``): transient, retried
    like any other; the limits are set per task family in :mod:`db.engine`."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def as_transient(exc: BaseException) -> TransientError | None:
    """Map infrastructure exceptions that may pass on their own to a :class:`TransientError`.

    Database disconnects and timeouts (connect timeout, ``statement_timeout`` and
    ``lock_timeout``: :class:`DatabaseTimeout`), raised through SQLAlchemy or straight from
    psycopg (``db.bulk``'s COPY path), broker/Redis connection errors, socket
    timeouts. Returns ``None`` for everything else (bugs and permanent failures are not
    retried).
    """
    if isinstance(exc, TransientError):
        return exc
    # Raw driver errors reach here from code that uses the psycopg connection directly
    # (db.bulk's COPY); SQLAlchemy wraps the others, keeping the driver's in ``orig``.
    driver = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    sqlstate = getattr(driver, "sqlstate", None)
    if isinstance(driver, psycopg.Error) and sqlstate == STATEMENT_TIMEOUT_SQLSTATE:
        return DatabaseTimeout(
            f"database statement cancelled (statement_timeout): {driver}", kind="statement"
        )
    if isinstance(driver, psycopg.Error) and sqlstate == LOCK_TIMEOUT_SQLSTATE:
        return DatabaseTimeout(
            f"database lock not obtained in time (lock_timeout): {driver}", kind="lock"
        )
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return ServiceUnavailable(f"database unavailable: {exc}")
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return ServiceUnavailable(f"database connection lost: {exc.orig}")
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        if type(exc.orig).__module__ == "sqlite3":
            # SQLite reports syntax and schema errors as OperationalError too; only a locked or
            # busy database passes by itself.
            text = str(exc.orig).lower()
            if "locked" not in text and "busy" not in text:
                return None
        return ServiceUnavailable(f"database unavailable: {exc.orig}")
    if isinstance(exc, sa_exc.TimeoutError):
        return ServiceUnavailable(f"database pool exhausted: {exc}")
    if isinstance(exc, redis_exc.ConnectionError | redis_exc.TimeoutError):
        return ServiceUnavailable(f"redis unavailable: {exc}")
    if isinstance(exc, ConnectionError | TimeoutError):
        return ServiceUnavailable(f"{type(exc).__name__}: {exc}")
    return None
