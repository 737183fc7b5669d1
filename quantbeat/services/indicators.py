"""Indicator values for an instrument: the cache-first service behind the
``quantbeat.indicators.*`` tasks, and the Python API and CLI in front of them.

Reading path for one request (:meth:`IndicatorService.compute`)::

    indicator entry in the cache ──hit──▶ values
        │ miss
    candle entry in the cache ──hit──┐
        │ miss                       ▼
    database (last `limit` bars) ──▶ compute (TA-Lib / NumPy) ──▶ cache both ──▶ values

The Python API (:func:`get_indicator`, :func:`get_indicators`) looks in the cache first itself
— a hit is answered without a worker — and sends only misses to the ``cpu`` queue as
``quantbeat.indicators.compute`` / ``compute_batch``, which compute and fill the cache.
``inline=True`` computes in the calling process instead (no worker needed).

Results are JSON-safe (:meth:`IndicatorResult.to_json`): ISO times, and ``null`` for NaN.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import structlog
from billiard.exceptions import SoftTimeLimitExceeded
from celery.exceptions import TimeoutError as CeleryTimeout
from sqlalchemy.orm import Session

from db.candles import load_candles, load_daily_universe, resolve_instrument
from db.engine import session_scope
from quant.errors import (
    NotFound,
    QuantbeatError,
    ServiceUnavailable,
    TransientError,
    ValidationError,
)
from quant.indicators import (
    SCAN_BARS,
    SCAN_SET,
    Candles,
    IndicatorRequest,
    canonical_params,
    compute,
)
from quant.indicators.candles import COLUMNS
from quantbeat.infra.cache import (
    CacheStats,
    Entry,
    SafeCache,
    cache_for,
    decode_series,
    encode_series,
)
from quantbeat.infra.forkstate import after_fork
from quantbeat.infra.settings import Settings, get_settings
from workers.app import app

log = structlog.get_logger(__name__)

#: Requests one batch may hold.
MAX_BATCH = 10
#: Pseudo-instruments holding universe-wide cache entries (the RS ratings of a market set).
UNIVERSE_NAMES: tuple[str, ...] = ("UNIVERSE:KOSDAQ+KOSPI", "UNIVERSE:KOSPI", "UNIVERSE:KOSDAQ")

#: Threads one process computes batch groups on (requests of one instrument and range).
BATCH_THREADS = 4

Source = Literal["cache", "computed"]


@dataclass(frozen=True, eq=False)
class IndicatorResult:
    """An indicator's values: ``time`` (``datetime64[D]`` or ``[s]``) and one float64 array per
    output, NaN during warm-up; ``source`` says whether they came from the cache."""

    request: IndicatorRequest
    time: npt.NDArray[np.datetime64]
    values: dict[str, npt.NDArray[np.float64]]
    source: Source

    def to_json(self) -> dict[str, Any]:
        """``{"ok": true, "request", "source", "time": [ISO…], "values": {name: [float|null]}}``."""
        return {
            "ok": True,
            "request": self.request.to_json(),
            "source": self.source,
            "time": np.datetime_as_string(self.time).tolist(),
            "values": {name: _json_floats(values) for name, values in self.values.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndicatorResult:
        request = IndicatorRequest.parse(data["request"])
        unit = "D" if request.interval == "1d" else "s"
        return cls(
            request=request,
            time=np.array(data["time"], dtype=f"datetime64[{unit}]"),
            values={
                name: np.array([np.nan if x is None else x for x in values], dtype=np.float64)
                for name, values in data["values"].items()
            },
            source=data["source"],
        )

    def latest(self) -> dict[str, float | None]:
        """The last bar's value of each output (``None`` if NaN or no bars)."""
        return {
            name: (None if len(v) == 0 or np.isnan(v[-1]) else float(v[-1]))
            for name, v in self.values.items()
        }


def _json_floats(values: npt.NDArray[np.float64]) -> list[float | None]:
    """Floats for JSON, ``None`` for NaN and ±inf (touching only those positions)."""
    out: list[float | None] = values.tolist()
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        out[i] = None
    return out


def error_item(exc: BaseException, where: str | None = None) -> dict[str, Any]:
    """A batch item's error: ``{"ok": false, "error": {"type", "message", "field"?}}``."""
    error: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, ValidationError) and exc.field:
        error["field"] = exc.field
    elif where:
        error["field"] = where
    return {"ok": False, "error": error}


def indicator_cache(settings: Settings | None = None) -> SafeCache:
    """The process-wide indicator cache: ``QUANTBEAT_CACHE_URL``, else
    ``QUANTBEAT_REDIS_URL`` (``memory://``: in-process)."""
    settings = settings or get_settings()
    return cache_for(
        settings.cache_url or settings.redis_url,
        ttls=settings.cache_ttl,
        timeout=settings.cache_timeout,
        retry_after=settings.cache_retry_after,
    )


SessionFactory = Callable[[], AbstractContextManager[Session]]


def _default_sessions() -> AbstractContextManager[Session]:
    return session_scope()


class IndicatorService:
    """Computes requests through the cache. Thread-safe; one per process is enough."""

    def __init__(
        self,
        cache: SafeCache,
        sessions: SessionFactory = _default_sessions,
        *,
        batch_timeout: float = 5.0,
        prefetch: Sequence[str] = (),
        defer: Callable[[IndicatorRequest], None] | None = None,
    ) -> None:
        self.cache = cache
        self._sessions = sessions
        self._batch_timeout = batch_timeout
        self._prefetch = tuple(prefetch)
        self._defer = defer
        self._names: dict[str, tuple[int, str]] = {}
        self._names_lock = threading.Lock()
        # One bounded pool per service for batch groups: work a timed-out batch left behind
        # queues here instead of adding threads (and database connections) per batch.
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=BATCH_THREADS, thread_name_prefix="indicators"
        )

    # -- instruments --------------------------------------------------------------------------
    def resolve(self, instrument: str) -> tuple[int, str]:
        """``(id, "MARKET:TICKER")``; remembered per process (ids never change).

        Raises:
            quant.errors.NotFound: no such instrument.
            quant.errors.ValidationError: an ambiguous bare ticker.
        """
        with self._names_lock:
            found = self._names.get(instrument)
        if found is not None:
            return found
        with self._sessions() as session:
            found = resolve_instrument(session, instrument)
        with self._names_lock:
            self._names[instrument] = found
        return found

    def canonical(self, request: IndicatorRequest) -> tuple[int, IndicatorRequest]:
        ident, name = self.resolve(request.instrument)
        if name != request.instrument:
            request = IndicatorRequest(
                name,
                request.indicator,
                request.params,
                request.interval,
                request.start,
                request.end,
                request.limit,
            )
        return ident, request

    # -- one request --------------------------------------------------------------------------
    def compute(self, request: IndicatorRequest, *, counted: bool = False) -> IndicatorResult:
        """The values for ``request``, from the cache or computed (and then cached).

        Raises:
            quant.errors.NotFound: unknown instrument, or no bars in the range.
            quant.errors.ValidationError: an ambiguous ticker, or candles the indicator
                rejects.
            quant.errors.ServiceUnavailable: the database cannot be reached (a cache outage
                is not an error: it is logged and bypassed).

        ``counted=True``: the caller already looked this request up in the cache (and was
        counted as a miss); this lookup is not counted again.
        """
        ident, request = self.canonical(request)
        (result,) = self._compute_group(ident, [request], counted=counted)
        if isinstance(result, BaseException):
            raise result
        return result

    def _compute_group(
        self, ident: int, requests: Sequence[IndicatorRequest], *, counted: bool = False
    ) -> list[IndicatorResult | Exception]:
        """Requests sharing one instrument, interval and range: one candle load for all.
        Each request gets its result or its own exception (a failing indicator does not
        fail its neighbours); a failure to load the candles raises."""
        first = requests[0]
        entries = [_indicator_entry(r) for r in requests]
        candle_entry = Entry.candles(first.instrument, first.interval, first.range_key)
        reads = self.cache.get_many([*entries, candle_entry], count=not counted)
        results: list[IndicatorResult | None] = []
        for request, read in zip(requests, reads, strict=False):
            results.append(_from_blob(request, read.value) if read.value is not None else None)
        if all(r is not None for r in results):
            return [r for r in results if r is not None]
        generation = reads[-1].generation
        candles = _candles_from_blob(reads[-1].value) if reads[-1].value is not None else None
        writes: list[tuple[Entry, bytes, int]] = []
        if candles is None:
            candles = self._load(ident, first)
            blob = encode_series(candles.time, _columns(candles))
            writes.append((candle_entry, blob, generation))
        if len(candles) == 0:
            span = first.range_key.split("#")[0]
            raise NotFound(f"no {first.interval} bars for {first.instrument} in {span}")
        out: list[IndicatorResult | Exception] = []
        for request, entry, cached in zip(requests, entries, results, strict=True):
            if cached is not None:
                out.append(cached)
                continue
            try:
                values = compute(request.indicator, candles, request.params)
            except SoftTimeLimitExceeded:
                raise
            except QuantbeatError as exc:
                out.append(exc)
                continue
            except Exception as exc:  # a bug in one indicator must not fail the others
                log.exception("indicators.compute_failed", indicator=request.indicator)
                out.append(exc)
                continue
            writes.append((entry, encode_series(candles.time, dict(values)), generation))
            out.append(IndicatorResult(request, candles.time, values, "computed"))
        if self._defer is None:
            writes += self._prefetched(requests, candles, generation)
        self.cache.put_many(writes)
        if self._defer is not None and self._prefetch and generation >= 0:
            try:
                self._defer(first)  # off the critical path: a follow-up task prefetches
            except Exception as exc:
                log.warning("indicators.prefetch_not_sent", error=f"{type(exc).__name__}: {exc}")
        return out

    def prefetch(self, request: IndicatorRequest) -> int:
        """Compute and cache the prefetch indicators over ``request``'s candles (from the
        cache, else the database); returns how many entries were stored."""
        ident, request = self.canonical(request)
        candle_entry = Entry.candles(request.instrument, request.interval, request.range_key)
        (read,) = self.cache.get_many([candle_entry], count_candles=False)
        candles = _candles_from_blob(read.value) if read.value is not None else None
        if candles is None:
            candles = self._load(ident, request)
        if len(candles) == 0:
            return 0
        return self.cache.put_many(self._prefetched([request], candles, read.generation))

    def _prefetched(
        self, requests: Sequence[IndicatorRequest], candles: Candles, generation: int
    ) -> list[tuple[Entry, bytes, int]]:
        """The configured prefetch indicators (default parameters) over the same candles
        that are neither asked for nor cached yet: a few microseconds each, where a later
        request would pay a whole miss."""
        if not self._prefetch or generation < 0:
            return []
        first = requests[0]
        asked = {r.dedup_key for r in requests}
        extra = []
        for name in self._prefetch:
            r = IndicatorRequest(
                first.instrument,
                name,
                canonical_params(name, None),
                first.interval,
                first.start,
                first.end,
                first.limit,
            )
            if r.dedup_key not in asked:
                extra.append(r)
        if not extra:
            return []
        entries = [_indicator_entry(r) for r in extra]
        reads = self.cache.get_many(entries, count=False)
        out = []
        for request, entry, read in zip(extra, entries, reads, strict=True):
            if read.value is not None:
                continue
            try:
                values = compute(request.indicator, candles, request.params)
            except SoftTimeLimitExceeded:
                raise
            except Exception as exc:  # a prefetch is a bonus: never fail a request for it
                log.warning(
                    "indicators.prefetch_failed",
                    indicator=request.indicator,
                    error=f"{type(exc).__name__}: {exc}",
                )
                continue
            out.append((entry, encode_series(candles.time, dict(values)), generation))
        return out

    def _load(self, ident: int, request: IndicatorRequest) -> Candles:
        with self._sessions() as session:
            return load_candles(
                session,
                ident,
                request.interval,
                start=request.start,
                end=request.end,
                limit=request.limit,
            )

    # -- batches ------------------------------------------------------------------------------
    def compute_batch(
        self,
        items: Sequence[object],
        *,
        timeout: float | None = None,
        counted: bool | Sequence[bool] = False,
    ) -> list[dict[str, Any]]:
        """Compute 1–:data:`MAX_BATCH` requests (JSON form); one JSON item per request, in
        order: its values (:meth:`IndicatorResult.to_json`) or its own error
        (:func:`error_item`), so one bad request never fails the others.

        Duplicates are computed once; requests for the same instrument and range share one
        candle load; groups run concurrently. Items not done within ``timeout`` seconds
        (default: the service's batch timeout, 5 s) get a ``TimeoutError`` item; groups
        not started by then are cancelled, those running finish in the background and still
        fill the cache. The timeout covers the work here, not time spent in the queue.

        ``counted`` (one flag, or one per item): the sender already looked the item up in
        the cache, so it is not counted again.

        Raises:
            quant.errors.ValidationError: ``items`` is not a list of 1–10 requests.
        """
        check_batch(items)
        deadline = time.monotonic() + (self._batch_timeout if timeout is None else timeout)
        out: list[dict[str, Any] | None] = [None] * len(items)
        flags = [counted] * len(items) if isinstance(counted, bool) else list(counted)
        unique: dict[tuple[str, ...], list[int]] = {}
        parsed: dict[tuple[str, ...], IndicatorRequest] = {}
        for i, item in enumerate(items):
            try:
                request = IndicatorRequest.parse(item, where=f"requests[{i}]")
            except ValidationError as exc:
                out[i] = error_item(exc)
                continue
            unique.setdefault(request.dedup_key, []).append(i)
            parsed[request.dedup_key] = request
        groups: dict[tuple[str, str, str], list[tuple[str, ...]]] = {}
        for key, request in parsed.items():
            groups.setdefault((request.instrument, request.interval, request.range_key), []).append(
                key
            )

        def run(keys: list[tuple[str, ...]]) -> list[dict[str, Any]]:
            requests = [parsed[k] for k in keys]
            # counted only if every copy was looked up by the sender
            was_counted = all(flags[i] for k in keys for i in unique[k])
            try:
                ident, canonical = self.canonical(requests[0])
                requests = [IndicatorRequest(canonical.instrument, *_rest(r)) for r in requests]
                results = self._compute_group(ident, requests, counted=was_counted)
            except SoftTimeLimitExceeded:
                raise
            except QuantbeatError as exc:
                return [error_item(exc) for _ in keys]
            except Exception as exc:  # one broken group must not fail the batch
                log.exception("indicators.batch_item_failed", instrument=requests[0].instrument)
                return [error_item(exc) for _ in keys]
            return [error_item(r) if isinstance(r, BaseException) else r.to_json() for r in results]

        futures = {self._pool.submit(run, keys): keys for keys in groups.values()}
        done, _pending = concurrent.futures.wait(
            futures, timeout=max(0.0, deadline - time.monotonic())
        )
        timeout_s = self._batch_timeout if timeout is None else timeout
        for future, keys in futures.items():
            if future in done:
                answers = future.result()
            else:
                future.cancel()  # not started yet: drop it; running: let it fill the cache
                answers = [
                    error_item(TimeoutError(f"not computed within {timeout_s:g} s")) for _ in keys
                ]
            for key, answer in zip(keys, answers, strict=True):
                for i in unique[key]:
                    out[i] = answer
        return [o if o is not None else error_item(RuntimeError("not computed")) for o in out]

    # -- the universe -------------------------------------------------------------------------
    def precompute(
        self,
        universe: Sequence[tuple[int, str]],
        *,
        end: Any,
        bars: int = SCAN_BARS,
        items: Sequence[tuple[str, dict[str, object]]] = SCAN_SET,
        chunk: int = 250,
        rs_raw_last: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """Compute ``items`` over the last ``bars`` daily bars up to ``end`` for every
        instrument of ``universe`` (``(id, "MARKET:TICKER")``) and store them in the cache
        under the keys a request with ``end=end, limit=bars`` looks up (what the scans
        read). ``rs_raw_last``, when given, receives every instrument's last RS raw score
        (for the universe RS ratings the scans use). Returns ``{"instruments", "with_bars",
        "indicators", "series", "failed", "stored", "cache", "seconds"}`` (``failed``: series
        whose computation raised; they are logged and skipped). Chunks are skipped while the
        cache is unavailable.
        """
        started = time.perf_counter()
        requests = [
            IndicatorRequest.create("KOSPI:X", name, dict(params), end=end, limit=bars)
            for name, params in items
        ]
        with_bars = series = stored = failed = 0
        for offset in range(0, len(universe), chunk):
            part = list(universe[offset : offset + chunk])
            names = [name for _, name in part]
            generations = self.cache.generations(names)
            if all(g < 0 for g in generations):
                log.warning("indicators.precompute_skipped", reason="cache unavailable")
                continue  # nowhere to store the results: computing them would be wasted
            with self._sessions() as session:
                candles = load_daily_universe(session, [i for i, _ in part], end=end, bars=bars)
            writes: list[tuple[Entry, bytes, int]] = []
            for (ident, name), generation in zip(part, generations, strict=True):
                bars_of = candles.get(ident)
                if bars_of is None or len(bars_of) == 0:
                    continue
                with_bars += 1
                range_key = requests[0].range_key
                writes.append(
                    (
                        Entry.candles(name, "1d", range_key),
                        encode_series(bars_of.time, _columns(bars_of)),
                        generation,
                    )
                )
                for request in requests:
                    try:
                        values = compute(request.indicator, bars_of, request.params)
                    except SoftTimeLimitExceeded:
                        raise
                    except Exception as exc:  # one instrument's bad data must not stop the run
                        failed += 1
                        log.warning(
                            "indicators.precompute_failed",
                            instrument=name,
                            indicator=request.indicator,
                            error=f"{type(exc).__name__}: {exc}",
                        )
                        continue
                    entry = Entry.indicator(
                        name, "1d", range_key, request.indicator, request.params_key
                    )
                    writes.append((entry, encode_series(bars_of.time, dict(values)), generation))
                    series += 1
                    if rs_raw_last is not None and request.indicator == "rs_raw":
                        rs_raw_last[name] = float(values["rs_raw"][-1])
            stored += self.cache.put_many(writes)
        return {
            "instruments": len(universe),
            "with_bars": with_bars,
            "indicators": len(requests),
            "series": series,
            "failed": failed,
            "stored": stored,
            "cache": self.cache.name,
            "seconds": round(time.perf_counter() - started, 3),
        }


def check_batch(items: object) -> None:
    """Raises ValidationError unless ``items`` is a list of 1–:data:`MAX_BATCH` entries."""
    if not isinstance(items, list | tuple) or not 1 <= len(items) <= MAX_BATCH:
        size = len(items) if isinstance(items, list | tuple) else type(items).__name__
        raise ValidationError(
            f"requests must be a list of 1 to {MAX_BATCH} indicator requests, got {size}",
            field="requests",
            value=size,
        )


def _rest(r: IndicatorRequest) -> tuple[Any, ...]:
    return (r.indicator, r.params, r.interval, r.start, r.end, r.limit)


def _indicator_entry(r: IndicatorRequest) -> Entry:
    return Entry.indicator(r.instrument, r.interval, r.range_key, r.indicator, r.params_key)


def _columns(candles: Candles) -> dict[str, npt.ArrayLike]:
    return {name: candles.column(name) for name in COLUMNS}


def _candles_from_blob(blob: bytes) -> Candles | None:
    try:
        time_, columns = decode_series(blob)
        return Candles(time=time_, **columns)
    except (ValueError, TypeError, QuantbeatError):
        log.warning("cache.unreadable_value", kind="candles")
        return None


def _from_blob(request: IndicatorRequest, blob: bytes) -> IndicatorResult | None:
    try:
        time_, values = decode_series(blob)
    except ValueError:
        log.warning("cache.unreadable_value", kind="indicator", indicator=request.indicator)
        return None
    return IndicatorResult(request, time_, values, "cache")


# --- the process-wide service and the client API ---------------------------------------------
_services: dict[bool, IndicatorService] = {}
_service_lock = threading.Lock()


def service(*, inline: bool = False) -> IndicatorService:
    """The process-wide :class:`IndicatorService` on the configured cache and database.

    Workers use the default, which sends the prefetch after a miss as a follow-up task;
    ``inline=True`` (the CLI's ``--inline``, no worker needed) prefetches in-process instead.
    """
    with _service_lock:
        found = _services.get(inline)
        if found is None:
            settings = get_settings()
            found = IndicatorService(
                indicator_cache(settings),
                batch_timeout=settings.indicator_batch_timeout,
                prefetch=settings.indicator_prefetch,
                defer=None if inline else _send_prefetch,
            )
            _services[inline] = found
        return found


def _send_prefetch(request: IndicatorRequest) -> None:
    app.send_task(
        "quantbeat.indicators.prefetch",
        args=[request.to_json()],
        ignore_result=True,
        add_to_parent=False,
    )


@after_fork
def forget_service() -> None:
    """Drop the process-wide services (after fork; tests that change settings)."""
    with _service_lock:
        _services.clear()


def cache_stats() -> CacheStats:
    """The cache's counters (hits, misses, evictions, hit rate), across all processes."""
    return service().cache.stats()


def _wait(result: Any, timeout: float, what: str) -> Any:
    try:
        return result.get(timeout=timeout, interval=0.01)
    except CeleryTimeout:
        raise TransientError(
            f"{what} ({result.id}) did not finish within {timeout:g} s; is a worker consuming "
            "the cpu queue? (quantbeat worker --queues cpu)"
        ) from None


def get_indicator(
    instrument: str,
    indicator: str,
    params: dict[str, object] | None = None,
    *,
    interval: str = "1d",
    start: Any = None,
    end: Any = None,
    limit: int = 1_000,
    timeout: float = 30.0,
    inline: bool = False,
) -> IndicatorResult:
    """Indicator values for one instrument (``MARKET:TICKER`` or a ticker): from the cache
    when present, else computed by a ``cpu`` worker (``inline=True``: in this process).

    Raises:
        quant.errors.ValidationError: a bad request (names the field).
        quant.errors.NotFound: unknown instrument or no bars in the range.
        quant.errors.TransientError: no worker answered within ``timeout`` seconds.
    """
    request = IndicatorRequest.create(
        instrument, indicator, params, interval=interval, start=start, end=end, limit=limit
    )
    svc = service(inline=inline)
    if inline:
        return svc.compute(request)
    if request.market is not None:
        read = svc.cache.get_many([_indicator_entry(request)])[0]
        if read.value is not None:
            hit = _from_blob(request, read.value)
            if hit is not None:
                return hit
    # A request with a market was looked up (and counted) above; a bare ticker was not.
    sent = app.send_task(
        "quantbeat.indicators.compute",
        args=[request.to_json()],
        kwargs={"counted": request.market is not None},
    )
    try:
        return IndicatorResult.from_json(_wait(sent, timeout, "quantbeat.indicators.compute"))
    finally:
        sent.forget()


def get_indicators(
    requests: Sequence[dict[str, Any]], *, timeout: float = 30.0, inline: bool = False
) -> list[IndicatorResult | dict[str, Any]]:
    """A batch of 1–10 requests (JSON form, as :class:`IndicatorRequest` documents): per
    request its :class:`IndicatorResult` or its error item ``{"ok": false, "error": …}``.
    Cache hits are answered here; the misses go to one ``compute_batch`` task.

    Raises:
        quant.errors.ValidationError: not 1–10 requests.
        quant.errors.TransientError: no worker answered within ``timeout`` seconds.
    """
    check_batch(requests)
    svc = service(inline=inline)
    if inline:
        answers = svc.compute_batch(list(requests))
        return [IndicatorResult.from_json(a) if a["ok"] else a for a in answers]
    out: list[IndicatorResult | dict[str, Any] | None] = [None] * len(requests)
    parsed: dict[int, IndicatorRequest] = {}
    lookups: list[tuple[int, IndicatorRequest]] = []
    for i, item in enumerate(requests):
        try:
            request = IndicatorRequest.parse(item, where=f"requests[{i}]")
        except ValidationError as exc:
            out[i] = error_item(exc)
            continue
        parsed[i] = request
        if request.market is not None:
            lookups.append((i, request))
    reads = svc.cache.get_many([_indicator_entry(r) for _, r in lookups])
    for (i, request), read in zip(lookups, reads, strict=True):
        if read.value is not None:
            out[i] = _from_blob(request, read.value)
    missing = [i for i, o in enumerate(out) if o is None]
    if missing:
        # The validated form goes (JSON-safe whatever the caller passed); requests with a
        # market were looked up (and counted) here, bare tickers were not.
        sent = app.send_task(
            "quantbeat.indicators.compute_batch",
            args=[[parsed[i].to_json() for i in missing]],
            kwargs={"counted": [parsed[i].market is not None for i in missing]},
        )
        try:
            answers = _wait(sent, timeout, "quantbeat.indicators.compute_batch")
        finally:
            sent.forget()
        for i, answer in zip(missing, answers, strict=True):
            out[i] = IndicatorResult.from_json(answer) if answer["ok"] else answer
    return [o for o in out if o is not None]


def invalidate_instruments(instruments: object) -> dict[str, int]:
    """Drop the cached entries of ``instruments`` (a list of ``MARKET:TICKER``), what the
    ``quantbeat.indicators.invalidate`` task does when collection could not reach the cache.
    Returns ``{"instruments", "removed"}`` (entries removed).

    Raises:
        quant.errors.ValidationError: ``instruments`` is not a list of ``MARKET:TICKER``
            strings.
        quant.errors.ServiceUnavailable: the cache still cannot be reached (retry later).
    """
    if not isinstance(instruments, list) or not all(
        isinstance(i, str) and ":" in i for i in instruments
    ):
        raise ValidationError(
            "instruments must be a list of MARKET:TICKER strings", field="instruments"
        )
    removed = indicator_cache().invalidate(instruments)
    if removed is None:
        raise ServiceUnavailable("the indicator cache cannot be reached; retrying")
    return {"instruments": len(instruments), "removed": removed}


def invalidate_stored(frame: Any) -> int | None:
    """After candles were committed: drop the cached entries of every instrument in ``frame``
    (columns ``market`` and ``ticker``).

    Every stored instrument is invalidated, changed or not: a re-run after a worker died
    between its commit and this call finds its rows unchanged, and must still invalidate.
    Returns the entries removed. Never raises: if the cache cannot be reached, a
    ``quantbeat.indicators.invalidate`` task is queued to retry with backoff (returns
    ``None``), so a cache outage never fails a collection and never leaves stale entries
    behind once the cache is back.
    """
    if len(frame) == 0:
        return 0
    names = sorted({f"{m}:{t}" for m, t in zip(frame["market"], frame["ticker"], strict=True)})
    # the universe-wide entries (RS ratings) depend on every instrument's candles
    stored_markets = set(frame["market"])
    names += [u for u in UNIVERSE_NAMES if stored_markets & set(u.split(":", 1)[1].split("+"))]
    removed = indicator_cache().invalidate(names)
    if removed is None:
        try:
            app.send_task("quantbeat.indicators.invalidate", args=[names], add_to_parent=False)
            log.warning("cache.invalidation_queued", instruments=len(names))
        except Exception as exc:
            log.error(
                "cache.invalidation_lost",
                instruments=len(names),
                error=f"{type(exc).__name__}: {exc}",
                consequence="entries of these instruments may be stale until their TTL",
            )
        return None
    log.debug("cache.invalidated", instruments=len(names), entries=removed)
    return removed


def iter_rows(result: IndicatorResult, last: int | None = None) -> Iterator[list[Any]]:
    """Rows ``[time, value…]`` (the last ``last`` bars), for tables."""
    n = len(result.time)
    first = 0 if last is None else max(0, n - last)
    names = list(result.values)
    for i in range(first, n):
        row: list[Any] = [str(result.time[i])]
        for name in names:
            x = result.values[name][i]
            row.append(None if np.isnan(x) else float(x))
        yield row


__all__ = [
    "MAX_BATCH",
    "IndicatorResult",
    "IndicatorService",
    "NotFound",
    "cache_stats",
    "get_indicator",
    "get_indicators",
    "indicator_cache",
    "invalidate_instruments",
    "service",
]
