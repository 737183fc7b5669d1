"""Repeated universe reads of one embedded run, served from memory (SQLite only).

``quantbeat run --embedded`` reads the same year of candles and flows several times — the
buy-window decision twice, the signal replay, both backtests — and on SQLite each read costs
about 0.7 s of Python objects per 650,000 rows (the sqlite3 driver makes a tuple per row).
Inside :func:`scope`, which only the embedded runner enters, :func:`read` keeps each large
result keyed by (database, query, parameters) and hands out a copy on the next identical read.

A result is never served once a write could have changed it. Every SQLite connection
quantbeat opens is a :class:`WatchedConnection` (``db.engine``): SQLite's authorizer tells it
when it prepares an INSERT, UPDATE or DELETE on a table the readers read
(:data:`WATCHED`), which marks the connection *dirty*; its ``commit()`` or ``rollback()``
then raises the generation, empties the cache and clears the mark — after SQLite has
committed, so no reader can see the old rows and store them as new. A read is served from,
or stored in, the cache only while no connection is dirty, and stored only when the
generation did not move while it read; a dirty connection's own reads (which see its
uncommitted rows) always go to the database.

The scope is one process: writes by another process to the same file are not seen, which is
why nothing but the embedded run (one process doing the whole job) enters it.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from quantbeat.infra.forkstate import after_fork

#: Tables whose writes invalidate the cache (the readers read these).
WATCHED = frozenset({"daily_candles", "investor_flows", "instruments"})
#: Results smaller than this many bytes are not kept (cheap to read again).
MIN_BYTES = 1 << 20
#: The most bytes kept; the least recently used results go first.
MAX_BYTES = 512 << 20

_WRITES = frozenset({sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE})

_lock = threading.Lock()
_entries: OrderedDict[Hashable, np.ndarray[Any, Any]] = OrderedDict()
_dirty: weakref.WeakSet[WatchedConnection] = weakref.WeakSet()
_state = {"active": 0, "generation": 0, "bytes": 0, "hits": 0, "misses": 0}


class WatchedConnection(sqlite3.Connection):
    """A sqlite3 connection that reports its writes to :data:`WATCHED` tables (see the
    module docstring). Pass as ``factory`` to :func:`sqlite3.connect`, with
    ``cached_statements=0``: SQLite asks the authorizer only when it prepares a statement,
    so a statement kept prepared in the driver's cache would write unseen."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_authorizer(self._authorize)

    def _authorize(
        self, action: int, table: str | None, _arg2: str | None, _db: str | None, _src: str | None
    ) -> int:
        if action in _WRITES and table in WATCHED:
            with _lock:
                _dirty.add(self)
        return sqlite3.SQLITE_OK

    def commit(self) -> None:
        try:
            super().commit()
        except BaseException:
            # a COMMIT that failed with the transaction still open keeps its writes (and its
            # mark) until the rollback that follows
            if not self.in_transaction:
                _settle(self)
            raise
        _settle(self)

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            _settle(self)

    def close(self) -> None:
        # a write committed outside a transaction (autocommit) reports no commit: closing a
        # marked connection empties the cache too
        try:
            super().close()
        finally:
            _settle(self)


def _settle(connection: WatchedConnection) -> None:
    """After ``connection`` committed or rolled back: if it had written a watched table,
    the cache is emptied under a new generation."""
    with _lock:
        if connection not in _dirty:
            return
        _dirty.discard(connection)
        _state["generation"] += 1
        _entries.clear()
        _state["bytes"] = 0


@contextmanager
def scope() -> Iterator[None]:
    """Serve repeated reads from memory for the block (nestable); emptied when the last
    scope ends."""
    with _lock:
        _state["active"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["active"] -= 1
            if not _state["active"]:
                _entries.clear()
                _state["bytes"] = 0


def read(key: Hashable, load: Callable[[], np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    """The result of ``load()`` (a NumPy array) for ``key``: a copy of the kept one inside a
    scope when nothing was written since, else ``load()``'s, kept for the next read when it
    may be."""
    with _lock:
        usable = bool(_state["active"]) and not _dirty
        if usable:
            hit = _entries.get(key)
            if hit is not None:
                _entries.move_to_end(key)
                _state["hits"] += 1
                return hit.copy()
        generation = _state["generation"]
    value = load()
    if not usable or value.nbytes < MIN_BYTES:
        return value
    with _lock:
        if _state["active"] and not _dirty and _state["generation"] == generation:
            _state["misses"] += 1
            kept = value.copy()
            _entries[key] = kept
            _state["bytes"] += kept.nbytes
            while _state["bytes"] > MAX_BYTES and _entries:
                _, old = _entries.popitem(last=False)
                _state["bytes"] -= old.nbytes
    return value


@after_fork
def _forget_after_fork() -> None:
    """A forked child keeps nothing of its parent's results or marks."""
    _entries.clear()
    _dirty.clear()
    _state.update(active=0, bytes=0)


def stats() -> dict[str, int]:
    """Counters: ``hits``, ``misses`` (results kept), ``bytes`` kept, ``generation``."""
    with _lock:
        return {k: _state[k] for k in ("hits", "misses", "bytes", "generation")}
