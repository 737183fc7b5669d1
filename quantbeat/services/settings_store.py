"""Operator settings kept in the database, behind an in-process TTL cache (seed 000 US2).

Two kinds of keys, validated on ``set``:

* ``strategy.<name>`` — parameter overrides of a registered scan strategy
  (:func:`quantbeat.services.strategies.scan_strategy_names`): an object of field: value
  (see :func:`quantbeat.services.strategies.build_params`). A scan reads them once when it
  starts and hands them to every chunk, so one run uses one set of parameters.
* ``schedule.<entry>.enabled`` — ``true``/``false``: whether beat sends the schedule entry
  ``<entry>`` (a name in :data:`beat_schedule.BEAT_SCHEDULE`). A disabled entry's ticks are
  skipped (and logged), not queued.

Reads go through :class:`SettingsCache`: every value is served from memory for ``ttl``
seconds (``QUANTBEAT_STORED_SETTINGS_TTL``, 1 h). A ``set`` invalidates the cache of its own
process at once and bumps a generation counter in Redis that every other process checks at
most every ``QUANTBEAT_STORED_SETTINGS_CHECK_EVERY`` seconds (5), so beat and workers see a
change within seconds, not an hour; without Redis (the embedded run) the TTL alone applies
across processes. Hits and misses are counted (``hit_rate``) and exported as
``quantbeat_cache_requests_total``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from beat_schedule import BEAT_SCHEDULE
from db.config import list_settings, load_all, put, remove
from db.engine import session_scope
from quant.errors import ValidationError
from quantbeat.infra.forkstate import after_fork
from quantbeat.infra.keys import SETTINGS_GENERATION_KEY
from quantbeat.infra.metrics import record_cache
from quantbeat.infra.settings import get_settings
from quantbeat.services.strategies import build_params, scan_strategy_names

log = structlog.get_logger("quantbeat.services.settings_store")

#: Redis key of the settings generation (incremented on every change).
GENERATION_KEY = SETTINGS_GENERATION_KEY

_SCHEDULE_KEY = re.compile(r"^schedule\.(?P<entry>[A-Za-z0-9_.:-]+)\.enabled$")
_STRATEGY_KEY = re.compile(r"^strategy\.(?P<name>[a-z_]+)$")


def validate(key: str, value: Any) -> Any:
    """The value to store for ``key`` (normalized), or a clear error.

    Raises:
        quant.errors.ValidationError: an unknown key, an unknown schedule entry or strategy,
            a schedule switch that is not a boolean, strategy parameters that are not an
            object or that the strategy refuses (the message names the key and the bad value).
    """
    match = _SCHEDULE_KEY.match(key)
    if match:
        entry = match["entry"]
        if entry not in BEAT_SCHEDULE:
            raise ValidationError(
                f"setting {key!r}: no schedule entry {entry!r} "
                f"(entries: {', '.join(sorted(BEAT_SCHEDULE))})",
                field=key,
                value=entry,
            )
        if not isinstance(value, bool):
            raise ValidationError(
                f"setting {key!r} must be true or false, got {value!r}", field=key, value=value
            )
        return value
    match = _STRATEGY_KEY.match(key)
    if match:
        if not isinstance(value, dict):
            raise ValidationError(
                f"setting {key!r} must be an object of parameter: value, got {value!r}",
                field=key,
                value=value,
            )
        build_params(match["name"], value)
        return dict(value)
    raise ValidationError(
        f"unknown setting {key!r}: settings are strategy.<{'|'.join(scan_strategy_names())}> "
        "(parameter overrides) and schedule.<entry>.enabled (true/false)",
        field="key",
        value=key,
    )


@dataclass(frozen=True)
class CacheStats:
    """Counters of a :class:`SettingsCache` since its process started (or forked)."""

    hits: int
    misses: int
    entries: int
    age_s: float | None

    @property
    def hit_rate(self) -> float | None:
        """Hits / (hits + misses); ``None`` before the first read."""
        total = self.hits + self.misses
        return self.hits / total if total else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hit_rate,
            "entries": self.entries,
            "age_s": self.age_s,
        }


class SettingsCache:
    """All stored settings of the process, loaded in one query and kept ``ttl`` seconds.

    ``load`` returns every setting; ``generation`` returns the shared change counter (or
    ``None`` when unknown) and is called at most every ``check_every`` seconds. A failing
    ``load`` is raised to the reader (the database is down: the caller's retry policy
    applies); a failing ``generation`` is logged and ignored (the TTL still bounds staleness).
    Thread-safe.
    """

    def __init__(
        self,
        load: Callable[[], dict[str, Any]],
        *,
        ttl: float,
        generation: Callable[[], int | None] | None = None,
        check_every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_read: Callable[[bool], None] | None = None,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._generation = generation
        self._check_every = check_every
        self._clock = clock
        self._on_read = on_read
        self._lock = threading.Lock()
        self._values: dict[str, Any] | None = None
        self._loaded_at = 0.0
        self._loaded_generation: int | None = None
        self._checked_at = 0.0
        self.hits = 0
        self.misses = 0

    def get(self, key: str, default: Any = None) -> Any:
        """The stored value of ``key``, or ``default`` when it is not set."""
        with self._lock:
            now = self._clock()
            hit = self._values is not None and now - self._loaded_at < self._ttl
            if hit and self._generation is not None and now - self._checked_at >= self._check_every:
                self._checked_at = now
                current = self._current_generation()
                if current is not None and current != self._loaded_generation:
                    hit = False
            if not hit:
                generation = self._current_generation()
                self._values = self._load()
                self._loaded_at = self._checked_at = self._clock()
                self._loaded_generation = generation
                self.misses += 1
            else:
                self.hits += 1
            values = self._values
        if self._on_read is not None:
            self._on_read(hit)
        assert values is not None
        return values.get(key, default)

    def invalidate(self) -> None:
        """Forget every value: the next read loads them again."""
        with self._lock:
            self._values = None

    def stats(self) -> CacheStats:
        with self._lock:
            loaded = self._values is not None
            return CacheStats(
                hits=self.hits,
                misses=self.misses,
                entries=len(self._values or {}),
                age_s=(self._clock() - self._loaded_at) if loaded else None,
            )

    def _current_generation(self) -> int | None:
        if self._generation is None:
            return None
        try:
            return self._generation()
        except Exception as exc:
            log.warning("settings.generation_unavailable", error=f"{type(exc).__name__}: {exc}")
            return None


# --- the process-wide cache -------------------------------------------------------------------
_cache: SettingsCache | None = None
_cache_lock = threading.Lock()


def _redis_client() -> Any | None:
    url = get_settings().redis_url
    if url.startswith("memory://"):
        return None
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def _record_read(hit: bool) -> None:
    record_cache("settings", hit)


def settings_cache() -> SettingsCache:
    """This process's cache of stored settings."""
    global _cache
    with _cache_lock:
        if _cache is None:
            client = _redis_client()

            def generation() -> int | None:
                raw = client.get(GENERATION_KEY) if client is not None else None
                return int(raw) if raw is not None else 0

            _cache = SettingsCache(
                _load_all,
                ttl=get_settings().stored_settings_ttl,
                generation=generation if client is not None else None,
                check_every=get_settings().stored_settings_check_every,
                on_read=_record_read,
            )
        return _cache


def _load_all() -> dict[str, Any]:
    with session_scope() as session:
        return load_all(session)


@after_fork
def forget_settings_cache() -> None:
    """Drop the cache and its Redis client (registered to run in every forked child)."""
    global _cache
    with _cache_lock:
        _cache = None


def get(key: str, default: Any = None) -> Any:
    """The stored setting ``key`` (cached), or ``default``."""
    return settings_cache().get(key, default)


def schedule_enabled(entry: str) -> bool:
    """Whether beat should send the schedule entry ``entry`` (enabled unless switched off)."""
    return bool(get(f"schedule.{entry}.enabled", True))


def strategy_overrides(name: str) -> dict[str, Any]:
    """The stored parameter overrides of scan strategy ``name`` (empty when none)."""
    value = get(f"strategy.{name}", None)
    return dict(value) if isinstance(value, dict) else {}


def _changed() -> None:
    settings_cache().invalidate()
    client = _redis_client()
    if client is None:
        return
    try:
        client.incr(GENERATION_KEY)
    except Exception as exc:  # the change is stored; other processes see it after the TTL
        log.warning("settings.generation_not_bumped", error=f"{type(exc).__name__}: {exc}")
    finally:
        client.close()


def set_setting(key: str, value: Any, *, updated_by: str | None = None) -> Any:
    """Validate and store ``key`` = ``value``; return the stored value.

    Raises:
        quant.errors.ValidationError: see :func:`validate`.
    """
    stored = validate(key, value)
    with session_scope() as session:
        put(session, key, stored, updated_by=updated_by)
    _changed()
    log.info("settings.set", key=key, updated_by=updated_by)
    return stored


def unset_setting(key: str) -> bool:
    """Remove ``key`` (back to its default); whether it was set."""
    with session_scope() as session:
        existed = remove(session, key)
    _changed()
    return existed


def list_stored() -> list[dict[str, Any]]:
    """Every stored setting as read now from the database (not the cache): ``key``,
    ``value``, ``updated_by`` and ``updated_at`` (ISO 8601 or ``None``), ordered as
    :func:`db.config.list_settings` returns them."""
    with session_scope() as session:
        return [
            {
                "key": r.key,
                "value": r.value,
                "updated_by": r.updated_by,
                "updated_at": r.updated_at.isoformat() if r.updated_at else None,
            }
            for r in list_settings(session)
        ]


def stored_value(key: str) -> Any:
    """The value stored for ``key`` as read now from the database (``None`` when it is not
    set); unlike :func:`get`, never served from the cache."""
    return _load_all().get(key)
