"""The indicator cache: candle arrays and indicator results in Redis, shared by every worker
and client on every host.

Layout (``P`` is the key prefix, ``qb:ind`` by default):

* ``P:{MARKET:TICKER}:{interval}`` — a hash per instrument and bar interval. Field
  ``c|{range}`` holds the candle arrays of a range, ``i|{range}|{indicator}|{params}`` an
  indicator's outputs over that range; ``params`` is the canonical ``name=value`` list, so
  the key does not depend on parameter order or on spelling a default. The hash expires after
  the interval's TTL (set when it is created, so no entry outlives it).
* ``P:gen:{MARKET:TICKER}`` — the instrument's generation, raised by every invalidation (to
  at least the Redis clock in microseconds, so a lost generation never comes back with an
  old value). A reader notes it before loading candles and its write is dropped if it
  changed (or vanished) meanwhile, so a computation that read old candles never lands after
  the invalidation.
* ``P:stats`` — counters shared by all processes: ``hits``/``misses`` (indicator lookups),
  ``candle_hits``/``candle_misses``, ``invalidated`` (entries removed because new candles
  were stored: reported as evictions) and ``stale_writes`` (writes dropped by the generation
  check). Entries the cache's Redis evicted for memory are reported as
  ``memory_evictions`` (its ``evicted_keys``); TTL expiry is not counted.

The cache belongs in a Redis of its own with ``maxmemory`` and ``allkeys-lru``
(``QUANTBEAT_CACHE_URL``; docker-compose.yml's ``redis-cache``): the broker's Redis runs
``noeviction``, and a full cache there would block task publishing.

Values are compact binary (:func:`encode_series`): a small header and raw little-endian int64
times and float64 columns, about 8 bytes a number instead of ~20 for JSON text.

:class:`SafeCache` wraps a backend so that a cache failure is never an error: it is logged
as a warning, counted, the cache is bypassed for ``retry_after`` seconds, and callers compute
from the database as if it were a miss. :class:`LocalCache` keeps the same contract in one
process (``QUANTBEAT_REDIS_URL=memory://``, the embedded run).
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import redis
import structlog
from billiard.exceptions import SoftTimeLimitExceeded

from quant.indicators.request import INTERVALS
from quantbeat.infra.forkstate import after_fork
from quantbeat.infra.metrics import record_cache

log = structlog.get_logger(__name__)

DEFAULT_PREFIX = "qb:ind"

# --- values -----------------------------------------------------------------------------------
_MAGIC = b"QB"
_VERSION = 1
_UNITS = {"D": 0, "s": 1}
_UNIT_NAMES = {v: k for k, v in _UNITS.items()}
_HEADER = struct.Struct("<2sBBIH")  # magic, version, time unit, bars, columns


class CacheFormatError(ValueError):
    """A cached value is not in the format :func:`decode_series` reads."""


def encode_series(time_: npt.NDArray[np.datetime64], columns: dict[str, npt.ArrayLike]) -> bytes:
    """Encode a time axis (``datetime64[D]`` or ``[s]``) and named float64 columns of the same
    length as bytes: a 10-byte header, the column names, the times as int64, then each
    column as float64 (little-endian)."""
    unit = np.datetime_data(time_.dtype)[0]
    if unit not in _UNITS:
        raise ValueError(f"time unit must be D or s, got {unit}")
    n = len(time_)
    parts = [_HEADER.pack(_MAGIC, _VERSION, _UNITS[unit], n, len(columns))]
    for name in columns:
        raw = name.encode()
        if len(raw) > 255:
            raise ValueError(f"column name longer than 255 bytes: {name[:40]}…")
        parts.append(struct.pack("<B", len(raw)) + raw)
    parts.append(np.ascontiguousarray(time_.astype(np.int64), dtype="<i8").tobytes())
    for name, values in columns.items():
        array = np.ascontiguousarray(values, dtype="<f8")
        if array.shape != (n,):
            raise ValueError(f"column {name} has shape {array.shape}, expected ({n},)")
        parts.append(array.tobytes())
    return b"".join(parts)


def decode_series(
    blob: bytes,
) -> tuple[npt.NDArray[np.datetime64], dict[str, npt.NDArray[np.float64]]]:
    """The inverse of :func:`encode_series`; arrays are read-only views of ``blob``.

    Raises:
        CacheFormatError: ``blob`` is not a value this version wrote.
    """
    try:
        magic, version, unit, n, k = _HEADER.unpack_from(blob, 0)
        if magic != _MAGIC or version != _VERSION or unit not in _UNIT_NAMES:
            raise CacheFormatError(f"not a cached series (header {blob[:4]!r})")
        offset = _HEADER.size
        names = []
        for _ in range(k):
            (length,) = struct.unpack_from("<B", blob, offset)
            names.append(blob[offset + 1 : offset + 1 + length].decode())
            offset += 1 + length
        if len(blob) != offset + 8 * n * (k + 1):
            raise CacheFormatError(f"cached series has {len(blob)} bytes, expected more/less")
        times = np.frombuffer(blob, dtype="<i8", count=n, offset=offset)
        offset += 8 * n
        columns = {}
        for name in names:
            columns[name] = np.frombuffer(blob, dtype="<f8", count=n, offset=offset)
            offset += 8 * n
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, CacheFormatError):
            raise
        raise CacheFormatError(f"unreadable cached series: {exc}") from None
    return times.astype(f"datetime64[{_UNIT_NAMES[unit]}]"), columns


# --- keys -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One cached value: an instrument (``MARKET:TICKER``), a bar interval and a field."""

    instrument: str
    interval: str
    field: str

    @classmethod
    def candles(cls, instrument: str, interval: str, range_key: str) -> Entry:
        return cls(instrument, interval, f"c|{range_key}")

    @classmethod
    def indicator(
        cls, instrument: str, interval: str, range_key: str, indicator: str, params_key: str
    ) -> Entry:
        return cls(instrument, interval, f"i|{range_key}|{indicator}|{params_key}")

    @property
    def is_candles(self) -> bool:
        return self.field.startswith("c|")


@dataclass(frozen=True)
class Read:
    """A lookup's answer: the value (``None`` on a miss) and the instrument's generation, to
    pass to :meth:`Cache.put` after computing a missing value."""

    value: bytes | None
    generation: int


@dataclass(frozen=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    candle_hits: int = 0
    candle_misses: int = 0
    invalidated: int = 0
    stale_writes: int = 0
    errors: int = 0
    #: Keys the cache's Redis evicted for memory (server-wide ``evicted_keys``; the cache
    #: should have a Redis of its own, see docker-compose.yml).
    memory_evictions: int = 0
    backend: str = ""

    @property
    def hit_rate(self) -> float | None:
        """Indicator hits / lookups, ``None`` before the first lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hit_rate,
            "candle_hits": self.candle_hits,
            "candle_misses": self.candle_misses,
            "evictions": self.invalidated,
            "memory_evictions": self.memory_evictions,
            "stale_writes": self.stale_writes,
            "errors": self.errors,
        }


class Cache(Protocol):
    """What the indicator service needs from a cache backend."""

    name: str

    def get_many(
        self, entries: Sequence[Entry], *, count: bool = True, count_candles: bool = True
    ) -> list[Read]:
        """Look the entries up in one round trip. ``count=False`` leaves the indicator
        hit/miss counters alone (a worker re-checking what its client already looked up),
        ``count_candles=False`` the candle counters (internal reads such as prefetching)."""
        ...

    def peek_many(
        self, groups: Sequence[tuple[str, str, Sequence[str]]]
    ) -> list[list[bytes | None]]:
        """Bulk read for scans: per ``(instrument, interval, fields)`` the fields' values, in
        one round trip, without counters or generations (a reader that does not write back).
        """
        ...

    def put_many(self, items: Sequence[tuple[Entry, bytes, int]]) -> int:
        """Store ``(entry, value, generation)`` items; returns how many were stored (an item
        whose instrument was invalidated since ``generation`` was read is dropped)."""
        ...

    def generations(self, instruments: Sequence[str]) -> list[int]: ...

    def invalidate(self, instruments: Iterable[str]) -> int:
        """Drop every entry of the instruments; returns how many were removed."""
        ...

    def stats(self) -> CacheStats: ...

    def clear(self) -> None:
        """Remove every entry and reset the counters (tests, ``quantbeat indicators cache
        --clear``)."""
        ...


def ttl_for(interval: str, ttls: dict[str, int]) -> int:
    """Seconds an entry of ``interval`` lives: the configured TTL, else one bar's length
    (one day for ``1d``)."""
    if interval in ttls:
        return ttls[interval]
    return 86_400 if interval == "1d" else 60 * int(interval.removesuffix("m"))


# --- Redis ------------------------------------------------------------------------------------
# Generations are Redis-clock microseconds, never reused: a generation key that expired,
# was evicted or was lost in a restart comes back with a new, larger value, so a writer holding
# an old generation can never match it again. A missing generation refuses writes.
_NOW_US = """
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# KEYS: gen. ARGV: generation ttl. Returns the generation, creating it when missing.
_ENSURE_GEN = """
local function ensure_gen(key, ttl)
  local g = redis.call('GET', key)
  if not g then
    redis.call('SET', key, string.format('%d', now_us()), 'EX', ttl, 'NX')
    g = redis.call('GET', key)
  end
  return g
end
"""

# KEYS: hash, gen, stats. ARGV: field, counter prefix ("" or "candle_"), count ("1"/"0"),
# generation ttl.
_GET = (
    _NOW_US
    + _ENSURE_GEN
    + """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[3] == '1' then
  if v then redis.call('HINCRBY', KEYS[3], ARGV[2] .. 'hits', 1)
  else redis.call('HINCRBY', KEYS[3], ARGV[2] .. 'misses', 1) end
end
return {v or false, ensure_gen(KEYS[2], ARGV[4])}
"""
)

# KEYS: gen. ARGV: generation ttl.
_GEN = _NOW_US + _ENSURE_GEN + "return ensure_gen(KEYS[1], ARGV[1])"

# KEYS: hash, gen, stats. ARGV: expected generation, ttl, field1, value1, ...
_PUT = """
local g = redis.call('GET', KEYS[2])
if (not g) or g ~= ARGV[1] then
  redis.call('HINCRBY', KEYS[3], 'stale_writes', (#ARGV - 2) / 2)
  return 0
end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return (#ARGV - 2) / 2
"""

# KEYS: gen, stats, hash1, hash2, ... ARGV: generation ttl.
_INVALIDATE = (
    _NOW_US
    + """
local n = 0
for i = 3, #KEYS do
  n = n + redis.call('HLEN', KEYS[i])
  redis.call('UNLINK', KEYS[i])
end
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
redis.call('SET', KEYS[1], string.format('%d', math.max(old + 1, now_us())), 'EX', ARGV[1])
if n > 0 then redis.call('HINCRBY', KEYS[2], 'invalidated', n) end
return n
"""
)

_STAT_FIELDS = ("hits", "misses", "candle_hits", "candle_misses", "invalidated", "stale_writes")


class RedisCache:
    """The cache in Redis (see the module docstring for the layout).

    Scripts are loaded once and called by SHA inside pipelines (one round trip per call); a
    Redis that lost them (a restart, ``SCRIPT FLUSH``) gets them again and the call is
    repeated once.
    """

    name = "redis"

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttls: dict[str, int] | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self._client = client
        self._ttls = dict(ttls or {})
        self._prefix = prefix
        self._stats_key = f"{prefix}:stats"
        self._sources = {"get": _GET, "gen": _GEN, "put": _PUT, "invalidate": _INVALIDATE}
        self._shas: dict[str, str] = {}
        # Generations outlive every entry; when one expires anyway, its successor is larger.
        self._gen_ttl = 2 * max([ttl_for(i, self._ttls) for i in INTERVALS])

    def _hash(self, instrument: str, interval: str) -> str:
        return f"{self._prefix}:{instrument}:{interval}"

    def _gen(self, instrument: str) -> str:
        return f"{self._prefix}:gen:{instrument}"

    def _load(self) -> None:
        self._shas = {
            name: str(self._client.script_load(source)) for name, source in self._sources.items()
        }

    def _run(self, script: str, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """EVALSHA ``script`` once per ``(keys, args)`` in one pipeline round trip."""
        if not calls:
            return []
        for attempt in range(2):
            if not self._shas:
                self._load()
            pipe = self._client.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(self._shas[script], len(keys), *keys, *args)
            try:
                return list(pipe.execute())
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                self._shas = {}
        raise AssertionError("unreachable")

    def get_many(
        self, entries: Sequence[Entry], *, count: bool = True, count_candles: bool = True
    ) -> list[Read]:
        calls = []
        for e in entries:
            counted = count_candles if e.is_candles else count
            calls.append(
                (
                    [
                        self._hash(e.instrument, e.interval),
                        self._gen(e.instrument),
                        self._stats_key,
                    ],
                    [
                        e.field,
                        "candle_" if e.is_candles else "",
                        "1" if counted else "0",
                        self._gen_ttl,
                    ],
                )
            )
        return [Read(value, int(gen)) for value, gen in self._run("get", calls)]

    def peek_many(
        self, groups: Sequence[tuple[str, str, Sequence[str]]]
    ) -> list[list[bytes | None]]:
        if not groups:
            return []
        pipe = self._client.pipeline(transaction=False)
        for instrument, interval, fields in groups:
            pipe.hmget(self._hash(instrument, interval), list(fields))
        return [list(values) for values in pipe.execute()]

    def put_many(self, items: Sequence[tuple[Entry, bytes, int]]) -> int:
        groups: dict[tuple[str, str, int], list[tuple[str, bytes]]] = {}
        for entry, value, generation in items:
            groups.setdefault((entry.instrument, entry.interval, generation), []).append(
                (entry.field, value)
            )
        calls = []
        for (instrument, interval, generation), fields in groups.items():
            args: list[Any] = [str(generation), ttl_for(interval, self._ttls)]
            for f, v in fields:
                args += [f, v]
            calls.append(
                ([self._hash(instrument, interval), self._gen(instrument), self._stats_key], args)
            )
        return sum(int(n) for n in self._run("put", calls))

    def generations(self, instruments: Sequence[str]) -> list[int]:
        calls = [([self._gen(i)], [self._gen_ttl]) for i in instruments]
        return [int(g) for g in self._run("gen", calls)]

    def invalidate(self, instruments: Iterable[str]) -> int:
        removed = 0
        names = list(dict.fromkeys(instruments))
        for start in range(0, len(names), 500):
            calls = [
                (
                    [self._gen(n), self._stats_key, *(self._hash(n, i) for i in INTERVALS)],
                    [self._gen_ttl],
                )
                for n in names[start : start + 500]
            ]
            removed += sum(int(n) for n in self._run("invalidate", calls))
        return removed

    def stats(self) -> CacheStats:
        raw = self._client.hgetall(self._stats_key)
        counts = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        info = self._client.info("stats")
        return CacheStats(
            **{f: counts.get(f, 0) for f in _STAT_FIELDS},
            memory_evictions=int(info.get("evicted_keys", 0)),
            backend=self.name,
        )

    def clear(self) -> None:
        """Remove entries and counters. Generations stay: they must never repeat."""
        batch: list[Any] = []
        for key in self._client.scan_iter(match=f"{self._prefix}:*", count=1000):
            name = key.decode() if isinstance(key, bytes) else str(key)
            if name.startswith(f"{self._prefix}:gen:"):
                continue
            batch.append(key)
            if len(batch) >= 1000:
                self._client.unlink(*batch)
                batch = []
        if batch:
            self._client.unlink(*batch)


# --- in-process ---------------------------------------------------------------------------------
class LocalCache:
    """The same contract inside one process (threads share it); for the embedded run."""

    name = "memory"

    def __init__(
        self,
        *,
        ttls: dict[str, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 200_000,
    ) -> None:
        self._ttls = dict(ttls or {})
        self._clock = clock
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._hashes: dict[tuple[str, str], tuple[float, dict[str, bytes]]] = {}
        self._gens: dict[str, int] = {}
        self._counts = dict.fromkeys(_STAT_FIELDS, 0)
        self._size = 0
        self._evicted = 0

    def _live(self, instrument: str, interval: str) -> dict[str, bytes] | None:
        found = self._hashes.get((instrument, interval))
        if found is None:
            return None
        expires, fields = found
        if self._clock() >= expires:
            self._size -= len(fields)
            del self._hashes[(instrument, interval)]
            return None
        return fields

    def get_many(
        self, entries: Sequence[Entry], *, count: bool = True, count_candles: bool = True
    ) -> list[Read]:
        out = []
        with self._lock:
            for e in entries:
                fields = self._live(e.instrument, e.interval)
                value = fields.get(e.field) if fields is not None else None
                if count_candles if e.is_candles else count:
                    prefix = "candle_" if e.is_candles else ""
                    self._counts[prefix + ("hits" if value is not None else "misses")] += 1
                out.append(Read(value, self._gens.get(e.instrument, 0)))
        return out

    def peek_many(
        self, groups: Sequence[tuple[str, str, Sequence[str]]]
    ) -> list[list[bytes | None]]:
        with self._lock:
            out = []
            for instrument, interval, fields in groups:
                found = self._live(instrument, interval) or {}
                out.append([found.get(f) for f in fields])
            return out

    def put_many(self, items: Sequence[tuple[Entry, bytes, int]]) -> int:
        stored = 0
        with self._lock:
            for entry, value, generation in items:
                if self._gens.get(entry.instrument, 0) != generation:
                    self._counts["stale_writes"] += 1
                    continue
                fields = self._live(entry.instrument, entry.interval)
                if self._size >= self._max_entries and (
                    fields is None or entry.field not in fields
                ):
                    self._make_room()
                    fields = self._live(entry.instrument, entry.interval)
                if fields is None:
                    fields = {}
                    expires = self._clock() + ttl_for(entry.interval, self._ttls)
                    self._hashes[(entry.instrument, entry.interval)] = (expires, fields)
                if entry.field not in fields:
                    self._size += 1
                fields[entry.field] = value
                stored += 1
        return stored

    def _make_room(self) -> None:
        """Drop expired hashes; if still full, the hashes that expire soonest (about a tenth
        of the entries), counted as memory evictions. Called with the lock held."""
        now = self._clock()
        for key in [k for k, (expires, _) in self._hashes.items() if expires <= now]:
            self._size -= len(self._hashes.pop(key)[1])
        target = self._max_entries - max(1, self._max_entries // 10)
        if self._size <= target:
            return
        for key in sorted(self._hashes, key=lambda k: self._hashes[k][0]):
            dropped = len(self._hashes.pop(key)[1])
            self._size -= dropped
            self._evicted += dropped
            if self._size <= target:
                break

    def generations(self, instruments: Sequence[str]) -> list[int]:
        with self._lock:
            return [self._gens.get(i, 0) for i in instruments]

    def invalidate(self, instruments: Iterable[str]) -> int:
        removed = 0
        with self._lock:
            for name in dict.fromkeys(instruments):
                for interval in INTERVALS:
                    found = self._hashes.pop((name, interval), None)
                    if found is not None:
                        removed += len(found[1])
                        self._size -= len(found[1])
                self._gens[name] = self._gens.get(name, 0) + 1
            self._counts["invalidated"] += removed
        return removed

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(**self._counts, memory_evictions=self._evicted, backend=self.name)

    def clear(self) -> None:
        with self._lock:
            self._hashes.clear()
            self._counts = dict.fromkeys(_STAT_FIELDS, 0)
            self._size = 0
            self._evicted = 0


# --- failure isolation ------------------------------------------------------------------------
def _record_lookups(
    entries: Sequence[Entry], reads: Sequence[Read], *, count: bool, count_candles: bool
) -> None:
    """Count hits and misses in Prometheus (one call per cache and result, not per entry)."""
    tally = {("indicators", True): 0, ("indicators", False): 0}
    tally.update({("candles", True): 0, ("candles", False): 0})
    for entry, read in zip(entries, reads, strict=False):
        if count_candles if entry.is_candles else count:
            tally[("candles" if entry.is_candles else "indicators", read.value is not None)] += 1
    for (cache, hit), n in tally.items():
        record_cache(cache, hit, n)


class SafeCache:
    """A backend whose failures degrade to misses.

    Any error from the backend (Redis down, a timeout, an unreadable value) is logged as a
    ``cache.unavailable`` warning and counted in ``errors``; the backend is then skipped for
    ``retry_after`` seconds (lookups are misses, writes are dropped) so that an outage costs
    one timeout, not one per request. Nothing here raises.
    """

    def __init__(
        self,
        backend: Cache,
        *,
        retry_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self._retry_after = retry_after
        self._clock = clock
        self._down_until = 0.0
        self._errors = 0
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self._clock() >= self._down_until

    def _failed(self, operation: str, exc: BaseException) -> None:
        with self._lock:
            self._errors += 1
            first = self.available
            self._down_until = self._clock() + self._retry_after
        if first:
            log.warning(
                "cache.unavailable",
                backend=self.name,
                operation=operation,
                error=f"{type(exc).__name__}: {exc}",
                bypass_s=self._retry_after,
                fallback="computing from the database",
            )

    def get_many(
        self, entries: Sequence[Entry], *, count: bool = True, count_candles: bool = True
    ) -> list[Read]:
        """Look up ``entries`` (see :meth:`Cache.get_many`); also counted in Prometheus'
        ``quantbeat_cache_requests_total`` (cache ``indicators`` or ``candles``) under the same
        flags, a lookup the unavailable backend could not answer as a miss."""
        reads = [Read(None, -1) for _ in entries]
        if entries and self.available:
            try:
                reads = self.backend.get_many(entries, count=count, count_candles=count_candles)
            except SoftTimeLimitExceeded:
                raise  # the task must stop, not carry on without a cache
            except Exception as exc:
                self._failed("get", exc)
        if count or count_candles:
            _record_lookups(entries, reads, count=count, count_candles=count_candles)
        return reads

    def peek_many(
        self, groups: Sequence[tuple[str, str, Sequence[str]]]
    ) -> list[list[bytes | None]]:
        if groups and self.available:
            try:
                return self.backend.peek_many(groups)
            except SoftTimeLimitExceeded:
                raise  # the task must stop, not carry on without a cache
            except Exception as exc:
                self._failed("peek", exc)
        return [[None] * len(fields) for _, _, fields in groups]

    def put_many(self, items: Sequence[tuple[Entry, bytes, int]]) -> int:
        # A generation of -1 comes from a failed read: the value cannot be guarded, so it is
        # not written.
        guarded = [item for item in items if item[2] >= 0]
        if guarded and self.available:
            try:
                return self.backend.put_many(guarded)
            except SoftTimeLimitExceeded:
                raise  # the task must stop, not carry on without a cache
            except Exception as exc:
                self._failed("put", exc)
        return 0

    def generations(self, instruments: Sequence[str]) -> list[int]:
        if instruments and self.available:
            try:
                return self.backend.generations(instruments)
            except SoftTimeLimitExceeded:
                raise  # the task must stop, not carry on without a cache
            except Exception as exc:
                self._failed("generations", exc)
        return [-1 for _ in instruments]

    def invalidate(self, instruments: Iterable[str]) -> int | None:
        """Invalidate, retrying briefly; returns the entries removed, or ``None`` when the
        backend could not be reached (logged; the caller should retry later, see
        :func:`quantbeat.services.indicators.invalidate_stored`). Ignores the bypass window:
        invalidation matters most."""
        names = list(instruments)
        if not names:
            return 0
        last: BaseException | None = None
        for attempt in range(3):
            try:
                removed = self.backend.invalidate(names)
            except SoftTimeLimitExceeded:
                raise  # the task must stop, not carry on without a cache
            except Exception as exc:
                last = exc
                if attempt < 2:
                    time.sleep(0.05 * 2**attempt)
            else:
                with self._lock:
                    self._down_until = 0.0
                return removed
        assert last is not None
        with self._lock:
            self._errors += 1
        log.warning(
            "cache.invalidation_failed",
            backend=self.name,
            instruments=len(names),
            error=f"{type(last).__name__}: {last}",
        )
        return None

    def stats(self) -> CacheStats:
        """Counters from the backend plus this process's errors (backend counters are zero
        when it cannot be reached)."""
        base = CacheStats(backend=self.name)
        if self.available:
            try:
                base = self.backend.stats()
            except SoftTimeLimitExceeded:
                raise  # the task must stop, not carry on without a cache
            except Exception as exc:
                self._failed("stats", exc)
        return CacheStats(
            hits=base.hits,
            misses=base.misses,
            candle_hits=base.candle_hits,
            candle_misses=base.candle_misses,
            invalidated=base.invalidated,
            stale_writes=base.stale_writes,
            errors=base.errors + self._errors,
            memory_evictions=base.memory_evictions,
            backend=base.backend,
        )

    def clear(self) -> None:
        try:
            self.backend.clear()
        except SoftTimeLimitExceeded:
            raise  # the task must stop, not carry on without a cache
        except Exception as exc:
            self._failed("clear", exc)


_caches: dict[tuple[str, str, tuple[tuple[str, int], ...]], SafeCache] = {}
_caches_lock = threading.Lock()


def cache_for(
    redis_url: str,
    *,
    ttls: dict[str, int],
    timeout: float = 0.5,
    retry_after: float = 5.0,
    prefix: str = DEFAULT_PREFIX,
) -> SafeCache:
    """The process-wide cache for ``redis_url`` (in-process for ``memory://``)."""
    key = (redis_url, prefix, tuple(sorted(ttls.items())))
    with _caches_lock:
        found = _caches.get(key)
        if found is None:
            backend: Cache
            if redis_url.startswith("memory://"):
                backend = LocalCache(ttls=ttls)
            else:
                client = redis.Redis.from_url(
                    redis_url,
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                    health_check_interval=30,
                )
                backend = RedisCache(client, ttls=ttls, prefix=prefix)
            found = SafeCache(backend, retry_after=retry_after)
            _caches[key] = found
        return found


@after_fork
def forget_caches() -> None:
    """Drop the process-wide caches (after fork, and in tests that change settings)."""
    with _caches_lock:
        _caches.clear()
