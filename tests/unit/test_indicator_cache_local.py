"""The indicator cache without Redis: the binary value codec, the in-process LocalCache (on a
fake clock) and SafeCache's failure isolation over a backend that raises."""

from __future__ import annotations

import dataclasses
import math
import struct
import time
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from quant.indicators.request import INTERVALS
from quantbeat.infra import cache as cache_module
from quantbeat.infra import forkstate
from quantbeat.infra.cache import (
    CacheFormatError,
    CacheStats,
    Entry,
    LocalCache,
    Read,
    SafeCache,
    decode_series,
    encode_series,
    ttl_for,
)
from quantbeat.infra.settings import reset_settings
from quantbeat.services import indicators

NAN = math.nan
HEADER = 10  # magic (2), version, unit, bars (uint32), columns (uint16)


class Clock:
    """A settable monotonic clock."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---------------------------------------------------------------------------------------------
# encode_series / decode_series
# ---------------------------------------------------------------------------------------------


def _daily(n: int) -> np.ndarray:
    return np.datetime64("2026-01-02", "D") + np.arange(n)


def _intraday(n: int) -> np.ndarray:
    return np.datetime64("2026-11-20T00:00:00", "s") + 300 * np.arange(n)


def _columns(n: int, names: Sequence[str], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name in names:
        values = 50_000 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        values[rng.random(n) < 0.2] = NAN
        out[name] = values
    return out


@pytest.mark.parametrize("times", [_daily(300), _intraday(300)], ids=["daily", "intraday"])
@pytest.mark.parametrize("names", [(), ("rsi",), ("upper", "middle", "lower"), ("종가", "x")])
def test_round_trip(times, names):
    columns = _columns(len(times), names)
    if names:
        columns[names[0]][:14] = NAN  # a warm-up
    payload: dict[str, npt.ArrayLike] = dict(columns)
    blob = encode_series(times, payload)
    assert isinstance(blob, bytes)
    n, k = len(times), len(names)
    assert len(blob) == HEADER + sum(1 + len(c.encode()) for c in names) + 8 * n * (k + 1)
    got_times, got = decode_series(blob)
    assert got_times.dtype == times.dtype
    np.testing.assert_array_equal(got_times, times)
    assert list(got) == list(names)  # names and their order
    for name in names:
        assert got[name].dtype == np.float64
        # Bit-for-bit, NaNs included.
        assert got[name].tobytes() == columns[name].tobytes()


def test_about_eight_bytes_a_number():
    n, k = 1_000, 3
    payload: dict[str, npt.ArrayLike] = dict(_columns(n, ("upper", "middle", "lower")))
    blob = encode_series(_daily(n), payload)
    names = (1 + 5) + (1 + 6) + (1 + 5)  # a length byte and the UTF-8 name, each
    assert len(blob) == HEADER + names + 8 * n * (k + 1)
    assert len(blob) / (n * (k + 1)) < 8.01


def test_round_trip_of_an_empty_series_and_of_lists():
    blob = encode_series(np.array([], dtype="datetime64[s]"), {"obv": []})
    assert len(blob) == HEADER + 1 + 3
    times, columns = decode_series(blob)
    assert times.dtype == np.dtype("datetime64[s]")
    assert len(times) == 0
    assert columns["obv"].shape == (0,)
    times, columns = decode_series(encode_series(_daily(3), {"v": [1, 2, 3]}))
    np.testing.assert_array_equal(columns["v"], [1.0, 2.0, 3.0])


def test_decoded_arrays_are_read_only_views():
    _, columns = decode_series(encode_series(_daily(5), {"v": np.arange(5.0)}))
    with pytest.raises(ValueError, match="read-only"):
        columns["v"][0] = 1.0


def test_encode_rejects_bad_input():
    with pytest.raises(ValueError, match="time unit"):
        encode_series(np.array(["2026-01-02"], dtype="datetime64[ms]"), {})
    with pytest.raises(ValueError, match="shape"):
        encode_series(_daily(3), {"v": [1.0, 2.0]})
    with pytest.raises(ValueError, match="shape"):
        encode_series(_daily(2), {"v": [[1.0, 2.0], [3.0, 4.0]]})


def _valid() -> bytes:
    return encode_series(_daily(10), {"rsi": np.arange(10.0), "ema": np.arange(10.0)})


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"Q",
        b"not a cached series at all",
        b"\x00" * 64,
        _valid()[:9],  # inside the header
        _valid()[:14],  # inside the names
        _valid()[:-1],  # one byte short
        _valid()[:-8],  # one number short
        _valid() + b"\x00",  # one byte too many
        b"QX" + _valid()[2:],  # bad magic
        _valid()[:2] + b"\x02" + _valid()[3:],  # a version this code did not write
        _valid()[:3] + b"\x07" + _valid()[4:],  # unknown time unit
        _valid()[:4] + struct.pack("<I", 11) + _valid()[8:],  # more bars than stored
        _valid()[:8] + struct.pack("<H", 3) + _valid()[10:],  # more columns than stored
        _valid()[:10] + b"\x03\xff\xfe\xfd" + _valid()[14:],  # a name that is not UTF-8
    ],
    ids=lambda b: repr(b[:12]),
)
def test_decode_rejects_garbage_and_truncation(blob):
    with pytest.raises(CacheFormatError):
        decode_series(blob)
    assert issubclass(CacheFormatError, ValueError)


# ---------------------------------------------------------------------------------------------
# ttl_for
# ---------------------------------------------------------------------------------------------


def test_ttl_for_defaults_to_one_bar():
    assert ttl_for("1d", {}) == 86_400
    assert ttl_for("1m", {}) == 60
    assert ttl_for("5m", {}) == 300
    assert ttl_for("240m", {}) == 14_400
    assert ttl_for("5m", {"5m": 7, "1d": 9}) == 7
    assert ttl_for("1d", {"5m": 7, "1d": 9}) == 9
    assert ttl_for("1m", {"5m": 7}) == 60
    for interval in INTERVALS:
        assert ttl_for(interval, {}) > 0


# ---------------------------------------------------------------------------------------------
# LocalCache
# ---------------------------------------------------------------------------------------------

A = "KOSPI:005930"
B = "KOSDAQ:091990"
RANGE = "*..2026-11-20#1000"


def _ind(instrument: str = A, interval: str = "1d", name: str = "rsi") -> Entry:
    return Entry.indicator(instrument, interval, RANGE, name, "period=14")


def _cdl(instrument: str = A, interval: str = "1d") -> Entry:
    return Entry.candles(instrument, interval, RANGE)


def _counts(stats: CacheStats) -> tuple[int, int, int, int]:
    return stats.hits, stats.misses, stats.candle_hits, stats.candle_misses


def test_entries():
    assert _cdl().field == f"c|{RANGE}"
    assert _cdl().is_candles
    assert _ind().field == f"i|{RANGE}|rsi|period=14"
    assert not _ind().is_candles


def test_miss_then_put_then_hit():
    cache = LocalCache(clock=Clock())
    entries = [_ind(), _cdl()]
    first = cache.get_many(entries)
    assert first == [Read(None, 0), Read(None, 0)]
    assert cache.put_many([(_ind(), b"ind", 0), (_cdl(), b"cdl", 0)]) == 2
    assert cache.get_many(entries) == [Read(b"ind", 0), Read(b"cdl", 0)]
    # Other instruments, intervals, indicators and ranges are other entries.
    others = [
        _ind(B),
        _ind(interval="5m"),
        _ind(name="ema"),
        Entry.indicator(A, "1d", "*..*#1000", "rsi", "period=14"),
        Entry.indicator(A, "1d", RANGE, "rsi", "period=15"),
    ]
    assert [r.value for r in cache.get_many(others)] == [None] * len(others)
    assert cache.get_many([]) == []


def test_counters():
    cache = LocalCache(clock=Clock())
    cache.get_many([_ind(), _ind(name="ema"), _cdl()])
    assert _counts(cache.stats()) == (0, 2, 0, 1)
    cache.put_many([(_ind(), b"1", 0), (_cdl(), b"2", 0)])
    cache.get_many([_ind(), _ind(name="ema"), _cdl()])
    stats = cache.stats()
    assert _counts(stats) == (1, 3, 1, 1)
    assert stats.hit_rate == pytest.approx(0.25)
    assert stats.backend == "memory"
    assert (stats.invalidated, stats.stale_writes, stats.errors) == (0, 0, 0)


def test_count_false_leaves_indicator_counters_alone_but_counts_candles():
    cache = LocalCache(clock=Clock())
    cache.put_many([(_ind(), b"1", 0)])
    reads = cache.get_many([_ind(), _ind(name="ema"), _cdl()], count=False)
    assert [r.value for r in reads] == [b"1", None, None]  # still answered
    assert _counts(cache.stats()) == (0, 0, 0, 1)
    assert cache.stats().hit_rate is None


def test_count_candles_false_leaves_candle_counters_alone():
    cache = LocalCache(clock=Clock())
    cache.put_many([(_cdl(), b"c", 0)])
    reads = cache.get_many([_cdl(), _ind()], count_candles=False)
    assert [r.value for r in reads] == [b"c", None]
    assert _counts(cache.stats()) == (0, 1, 0, 0)


@pytest.mark.parametrize(("interval", "ttl"), [("1d", 86_400), ("5m", 300), ("240m", 14_400)])
def test_entries_expire_after_their_interval_ttl(interval, ttl):
    clock = Clock()
    cache = LocalCache(clock=clock)
    cache.put_many([(_ind(interval=interval), b"v", 0)])
    clock.advance(ttl - 0.001)
    assert cache.get_many([_ind(interval=interval)])[0].value == b"v"
    clock.advance(0.001)
    assert cache.get_many([_ind(interval=interval)])[0].value is None
    assert _counts(cache.stats()) == (1, 1, 0, 0)


def test_custom_ttls_per_interval():
    clock = Clock()
    cache = LocalCache(ttls={"1d": 60, "5m": 10}, clock=clock)
    cache.put_many(
        [(_ind(), b"d", 0), (_ind(interval="5m"), b"5", 0), (_ind(interval="1m"), b"1", 0)]
    )
    clock.advance(10)
    got = cache.get_many([_ind(), _ind(interval="5m"), _ind(interval="1m")])
    assert [r.value for r in got] == [b"d", None, b"1"]
    clock.advance(50)
    got = cache.get_many([_ind(), _ind(interval="1m")])
    assert [r.value for r in got] == [None, None]  # 1d after 60 s; 1m after its default 60 s


def test_the_ttl_runs_from_the_first_write_so_no_entry_outlives_it():
    clock = Clock()
    cache = LocalCache(ttls={"1d": 100}, clock=clock)
    cache.put_many([(_ind(), b"old", 0)])
    clock.advance(90)
    cache.put_many([(_ind(name="ema"), b"new", 0), (_ind(), b"old2", 0)])
    clock.advance(10)
    assert [r.value for r in cache.get_many([_ind(), _ind(name="ema")])] == [None, None]
    # Written again after the expiry: a fresh TTL.
    cache.put_many([(_ind(), b"again", 0)])
    clock.advance(99)
    assert cache.get_many([_ind()])[0].value == b"again"


def test_invalidate_drops_every_entry_of_the_instrument_across_intervals():
    cache = LocalCache(clock=Clock())
    stored = cache.put_many(
        [
            (_ind(), b"1", 0),
            (_cdl(), b"2", 0),
            (_ind(interval="5m"), b"3", 0),
            (_ind(interval="240m"), b"4", 0),
            (_ind(B), b"5", 0),
        ]
    )
    assert stored == 5
    assert cache.invalidate([A]) == 4
    reads = cache.get_many(
        [_ind(), _cdl(), _ind(interval="5m"), _ind(interval="240m"), _ind(B)], count=False
    )
    assert [r.value for r in reads] == [None, None, None, None, b"5"]
    assert [r.generation for r in reads] == [1, 1, 1, 1, 0]
    assert cache.generations([A, B, "US:AAPL"]) == [1, 0, 0]
    stats = cache.stats()
    assert stats.invalidated == 4
    # An instrument with nothing cached still gets a new generation; a name given twice is
    # invalidated once.
    assert cache.invalidate([B, B, "US:AAPL"]) == 1
    assert cache.generations([A, B, "US:AAPL"]) == [1, 1, 1]
    assert cache.invalidate(iter([A])) == 0
    assert cache.generations([A]) == [2]
    assert cache.stats().invalidated == 5


def test_a_write_computed_before_an_invalidation_is_dropped():
    cache = LocalCache(clock=Clock())
    read = cache.get_many([_cdl()])[0]  # a worker notes generation 0, then loads candles...
    assert read.generation == 0
    assert cache.invalidate([A]) == 0  # ...new candles are stored meanwhile...
    stored = cache.put_many([(_cdl(), b"old candles", read.generation), (_ind(), b"x", 0)])
    assert stored == 0  # ...so its results, from old candles, never land.
    assert cache.stats().stale_writes == 2
    assert [r.value for r in cache.get_many([_cdl(), _ind()])] == [None, None]
    # With the current generation the write lands; other instruments are unaffected.
    fresh = cache.get_many([_cdl()])[0].generation
    assert fresh == 1
    assert cache.put_many([(_cdl(), b"new", fresh), (_cdl(B), b"b", 0)]) == 2
    assert cache.get_many([_cdl()])[0].value == b"new"
    assert cache.stats().stale_writes == 2


def test_a_full_cache_evicts_what_expires_soonest_to_make_room():
    clock = Clock()
    cache = LocalCache(clock=clock, max_entries=2)
    assert cache.put_many([(_ind(), b"1", 0), (_cdl(), b"2", 0)]) == 2
    clock.now += 10  # B's hash is created later, so A's expires first
    assert cache.put_many([(_ind(B), b"3", 0)]) == 1
    assert cache.get_many([_ind(B)])[0].value == b"3"
    assert cache.get_many([_ind(), _cdl()], count=False)[0].value is None  # A's hash went
    assert cache.stats().memory_evictions == 2


def test_a_full_cache_first_drops_expired_hashes_without_counting_evictions():
    clock = Clock()
    cache = LocalCache(clock=clock, max_entries=2)
    cache.put_many([(_ind(), b"1", 0), (_cdl(), b"2", 0)])
    clock.now += 86_400  # A's 1d hash has expired but nobody looked it up
    assert cache.put_many([(_ind(B), b"3", 0)]) == 1
    assert cache.stats().memory_evictions == 0


def test_clear_resets_entries_and_counters():
    cache = LocalCache(clock=Clock())
    cache.put_many([(_ind(), b"1", 0), (_ind(B), b"2", 0)])
    cache.get_many([_ind(), _cdl()])
    cache.invalidate([B])
    cache.put_many([(_ind(B), b"x", 0)])  # stale
    assert cache.stats() != CacheStats(backend="memory")
    cache.clear()
    assert cache.stats() == CacheStats(backend="memory")
    assert cache.get_many([_ind()], count=False)[0].value is None
    # Still usable, with room for max_entries again.
    assert cache.put_many([(_ind(), b"3", cache.generations([A])[0])]) == 1
    assert cache.get_many([_ind()])[0].value == b"3"


# ---------------------------------------------------------------------------------------------
# SafeCache
# ---------------------------------------------------------------------------------------------


class Flaky:
    """A backend over a LocalCache that raises redis' ConnectionError while ``down``."""

    name = "fake"

    def __init__(self, *, down: bool = True, stats_fail: bool = False) -> None:
        self.down = down
        self.stats_fail = stats_fail
        self.inner = LocalCache(clock=Clock())
        self.calls: list[str] = []

    def _call(self, operation: str) -> None:
        self.calls.append(operation)
        if self.down:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Refused.")

    def get_many(
        self, entries: Sequence[Entry], *, count: bool = True, count_candles: bool = True
    ) -> list[Read]:
        self._call("get")
        return self.inner.get_many(entries, count=count, count_candles=count_candles)

    def peek_many(
        self, groups: Sequence[tuple[str, str, Sequence[str]]]
    ) -> list[list[bytes | None]]:
        self._call("peek")
        return self.inner.peek_many(groups)

    def put_many(self, items: Sequence[tuple[Entry, bytes, int]]) -> int:
        self._call("put")
        return self.inner.put_many(items)

    def generations(self, instruments: Sequence[str]) -> list[int]:
        self._call("generations")
        return self.inner.generations(instruments)

    def invalidate(self, instruments: Iterable[str]) -> int:
        self._call("invalidate")
        return self.inner.invalidate(instruments)

    def stats(self) -> CacheStats:
        if self.stats_fail:
            self._call("stats")
        return dataclasses.replace(self.inner.stats(), backend=self.name)

    def clear(self) -> None:
        self._call("clear")
        self.inner.clear()


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Captured log events of quantbeat.infra.cache. The module logger is swapped for a fresh lazy
    proxy inside the capture, so a logger cached by an earlier structlog configuration (the
    app's uses cache_logger_on_first_use) cannot bypass it."""
    with capture_logs() as captured, pytest.MonkeyPatch.context() as mp:
        mp.setattr(cache_module, "log", structlog.get_logger("quantbeat.infra.cache"))
        yield captured


@pytest.fixture
def no_sleep(monkeypatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # the module quantbeat.infra.cache sleeps with
    return slept


def _unavailable(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "cache.unavailable"]


def test_a_failing_get_is_a_miss_with_generation_minus_one(logs):
    backend = Flaky()
    safe = SafeCache(backend, clock=Clock())
    assert safe.get_many([_ind(), _cdl()]) == [Read(None, -1), Read(None, -1)]
    assert backend.calls == ["get"]
    assert safe.name == "fake"
    assert not safe.available


def test_a_failing_put_stores_nothing_and_returns_zero(logs):
    backend = Flaky()
    safe = SafeCache(backend, clock=Clock())
    assert safe.put_many([(_ind(), b"v", 0)]) == 0
    assert backend.calls == ["put"]
    assert safe.generations([A, B]) == [-1, -1]  # bypassed now


def test_after_a_failure_the_backend_rests_for_retry_after(logs):
    clock = Clock()
    backend = Flaky()
    safe = SafeCache(backend, retry_after=5.0, clock=clock)
    safe.get_many([_ind()])
    assert backend.calls == ["get"]
    for _ in range(3):
        assert safe.get_many([_ind()]) == [Read(None, -1)]
        assert safe.put_many([(_ind(), b"v", 0)]) == 0
        assert safe.generations([A]) == [-1]
        clock.advance(1.0)
    assert backend.calls == ["get"]  # not touched during the bypass
    clock.advance(1.999)
    safe.get_many([_ind()])
    assert backend.calls == ["get"]
    # Once retry_after has passed it is tried again; it has recovered.
    clock.advance(0.001)
    backend.down = False
    assert safe.get_many([_ind()]) == [Read(None, 0)]
    assert safe.put_many([(_ind(), b"v", 0)]) == 1
    assert safe.get_many([_ind()]) == [Read(b"v", 0)]
    assert backend.calls == ["get", "get", "put", "get"]
    assert safe.available


def test_the_warning_is_logged_once_per_outage_window(logs):
    clock = Clock()
    safe = SafeCache(Flaky(), retry_after=5.0, clock=clock)
    safe.get_many([_ind()])
    safe.get_many([_ind()])
    safe.put_many([(_ind(), b"v", 0)])
    warnings = _unavailable(logs)
    assert len(warnings) == 1
    (warning,) = warnings
    assert warning["log_level"] == "warning"
    assert warning["operation"] == "get"
    assert warning["backend"] == "fake"
    assert "ConnectionError" in warning["error"]
    assert warning["bypass_s"] == 5.0
    # The next outage window (the backend fails again when retried) warns again.
    clock.advance(5.0)
    safe.put_many([(_ind(), b"v", 0)])
    warnings = _unavailable(logs)
    assert [w["operation"] for w in warnings] == ["get", "put"]


def test_stats_count_the_errors(logs):
    clock = Clock()
    safe = SafeCache(Flaky(), retry_after=5.0, clock=clock)
    assert safe.stats().errors == 0
    safe.get_many([_ind()])
    safe.get_many([_ind()])  # bypassed: not an error
    assert safe.stats().errors == 1
    clock.advance(5.0)
    safe.put_many([(_ind(), b"v", 0)])
    clock.advance(5.0)
    safe.generations([A])
    stats = safe.stats()
    assert stats.errors == 3
    assert stats.backend == "fake"
    assert stats.as_dict()["errors"] == 3


def test_stats_of_an_unreachable_backend_are_zero_and_do_not_raise(logs):
    safe = SafeCache(Flaky(stats_fail=True), clock=Clock())
    stats = safe.stats()
    assert stats == CacheStats(errors=1, backend="fake")  # the failed stats call itself
    assert len(_unavailable(logs)) == 1
    assert _unavailable(logs)[0]["operation"] == "stats"


def test_generation_minus_one_is_never_written(logs):
    backend = Flaky(down=False)
    safe = SafeCache(backend, clock=Clock())
    assert safe.put_many([(_ind(), b"unguarded", -1)]) == 0
    assert backend.calls == []
    assert safe.put_many([(_ind(), b"unguarded", -1), (_cdl(), b"guarded", 0)]) == 1
    assert backend.calls == ["put"]
    assert [r.value for r in safe.get_many([_ind(), _cdl()])] == [None, b"guarded"]


def test_empty_calls_do_not_touch_the_backend(logs):
    backend = Flaky()
    safe = SafeCache(backend, clock=Clock())
    assert safe.get_many([]) == []
    assert safe.put_many([]) == 0
    assert safe.generations([]) == []
    assert safe.invalidate([]) == 0
    assert backend.calls == []
    assert safe.available


def test_invalidate_retries_then_gives_up_without_raising(logs, no_sleep):
    clock = Clock()
    backend = Flaky()
    safe = SafeCache(backend, clock=clock)
    safe.get_many([_ind()])  # down: in the bypass window now
    backend.calls.clear()
    assert safe.invalidate([A, B]) is None  # "could not": the caller queues a retry
    # Invalidation ignores the bypass window and tries three times, backing off between.
    assert backend.calls == ["invalidate"] * 3
    assert no_sleep == [0.05, 0.1]
    failed = [e for e in logs if e["event"] == "cache.invalidation_failed"]
    assert len(failed) == 1
    assert failed[0]["log_level"] == "warning"
    assert failed[0]["instruments"] == 2
    assert safe.stats().errors == 2  # the get and the invalidation


def test_invalidate_succeeds_on_a_retry_and_reopens_the_cache(logs, no_sleep):
    clock = Clock()
    backend = Flaky(down=False)
    safe = SafeCache(backend, clock=clock)
    safe.put_many([(_ind(), b"v", 0)])
    backend.down = True
    safe.get_many([_ind()])
    assert not safe.available

    failures = iter([True, False])

    def flaky_invalidate(instruments: Iterable[str]) -> int:
        backend.calls.append("invalidate")
        if next(failures):
            raise RedisConnectionError("reset by peer")
        return backend.inner.invalidate(instruments)

    backend.invalidate = flaky_invalidate  # type: ignore[method-assign]
    backend.down = False
    assert safe.invalidate([A]) == 1
    assert backend.calls.count("invalidate") == 2
    assert no_sleep == [0.05]
    assert safe.available  # a successful invalidation ends the bypass
    assert safe.get_many([_ind()]) == [Read(None, 1)]
    assert [e["event"] for e in logs if e["event"].startswith("cache.inv")] == []


def test_clear_of_an_unreachable_backend_does_not_raise(logs):
    backend = Flaky()
    safe = SafeCache(backend, clock=Clock())
    safe.clear()
    assert backend.calls == ["clear"]
    assert safe.stats().errors == 1


def test_any_exception_from_the_backend_is_isolated(logs):
    class Broken(Flaky):
        def get_many(
            self, entries: Sequence[Entry], *, count: bool = True, count_candles: bool = True
        ) -> list[Read]:
            raise CacheFormatError("garbled")

    safe = SafeCache(Broken(), clock=Clock())
    assert safe.get_many([_ind()]) == [Read(None, -1)]
    assert "CacheFormatError: garbled" in _unavailable(logs)[0]["error"]


def test_peek_many_reads_fields_without_counting_and_fails_soft(logs):
    cache = LocalCache(clock=Clock())
    cache.put_many([(_ind(), b"1", 0), (_cdl(), b"2", 0)])
    (values,) = cache.peek_many([(A, "1d", [_ind().field, "nope", _cdl().field])])
    assert values == [b"1", None, b"2"]
    assert _counts(cache.stats()) == (0, 0, 0, 0)
    backend = Flaky()
    backend.down = True
    safe = SafeCache(backend, clock=Clock())
    assert safe.peek_many([(A, "1d", ["x", "y"])]) == [[None, None]]
    assert safe.stats().errors == 1


def test_the_process_wide_indicator_services_are_reset_in_a_forked_child(monkeypatch):
    """A pool child must not reuse its parent's service (its cache client, its thread pool):
    ``forget_service`` is registered with the one after-fork registry."""
    assert "quantbeat.services.indicators.forget_service" in forkstate.registered()
    monkeypatch.setenv("QUANTBEAT_CACHE_URL", "memory://")
    reset_settings()
    try:
        parent = indicators.service()
        assert indicators.service() is parent
        indicators.forget_service()
        assert indicators.service() is not parent
    finally:
        indicators.forget_service()
        monkeypatch.undo()
        reset_settings()
