"""Universe scans: the service behind the ``quantbeat.scans.*`` tasks, the Python API and the
``quantbeat scan`` command.

A scan of one strategy on one trading day:

1. ``run`` (coordinator) lists the universe, computes every instrument's RS percentile rating
   from the cached RS raw scores (the daily precompute stores them; misses are computed from
   the database), records a ``scan_runs`` row and fans the universe out in chunks;
2. each ``chunk`` reads its instruments' candles and indicator series from the cache
   (falling back to the database), their flows from the database, evaluates the strategy
   (:mod:`quant.scans`) per instrument — one instrument's failure is counted, not fatal — and
   replaces the day's signals for the instruments it covered;
3. ``finish`` (the chord's callback) marks the run completed with its coverage.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from quant.errors import TransientError, ValidationError
from quant.indicators import SCAN_BARS, Candles, canonical_params, params_key
from quant.indicators.candles import COLUMNS
from quant.indicators.custom import rs_rating
from quant.indicators.request import IndicatorRequest
from quant.scans.inputs import SERIES, ScanInputs
from quantbeat.infra.cache import Entry, SafeCache, decode_series

log = structlog.get_logger(__name__)

#: Instruments per chunk task.
DEFAULT_CHUNK = 250
#: Sessions of investor flows a scan reads (the supply score's longest window is 20); older
#: bars get NaN flows.
FLOW_BARS = 40


@dataclass(frozen=True)
class Evaluation:
    """One instrument's verdict: a candidate (a signal row) or not, with why."""

    candidate: bool
    score: float | None = None
    grade: str | None = None
    entry_price: float | None = None
    status: str | None = None
    reasons: tuple[str, ...] = ()
    inputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Strategy:
    """A scan strategy: its evaluation and what it reads — the precomputed series (names of
    :data:`quant.scans.inputs.SERIES`; others are computed on demand) and whether it needs
    investor flows. Reading only these keeps a chunk's cache and database reads small."""

    evaluate: Callable[[ScanInputs], Evaluation]
    series: tuple[str, ...] = ()
    flows: bool = False
    #: With ``flows``: a cheap test, without flows, of whether an instrument can still be a
    #: candidate; flows are loaded only for those (``None``: for every instrument).
    needs_flows: Callable[[ScanInputs], bool] | None = None


#: Strategies by name; filled by :mod:`quantbeat.services.strategies` (kept apart so the
#: domain adapters can grow without touching the plumbing here).
STRATEGIES: dict[str, Strategy] = {}


def strategy(name: object) -> Strategy:
    """The strategy called ``name``.

    Raises:
        quant.errors.ValidationError: unknown strategy (the message lists the known ones).
    """
    import quantbeat.services.strategies  # noqa: F401  (registers the strategies)

    found = STRATEGIES.get(name) if isinstance(name, str) else None
    if found is None:
        raise ValidationError(
            f"unknown strategy {name!r} (known: {', '.join(sorted(STRATEGIES))})",
            field="strategy",
            value=name,
        )
    return found


def _range_key(trade_date: dt.date) -> str:
    return IndicatorRequest.create("KOSPI:X", "obv", end=trade_date, limit=SCAN_BARS).range_key


@functools.lru_cache(maxsize=64)
def _series_fields(
    range_key: str, wanted: tuple[str, ...] | None
) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """The cache fields holding the ``wanted`` series of :data:`quant.scans.inputs.SERIES`
    (all when ``None``) over a range, each with the (series name, output) pairs it provides
    (Bollinger's three bands are one field). Fields do not depend on the instrument."""
    grouped: dict[str, list[tuple[str, str]]] = {}
    for series, (indicator, params, output) in SERIES.items():
        if wanted is not None and series not in wanted:
            continue
        key = params_key(canonical_params(indicator, params))
        field_name = Entry.indicator("-", "1d", range_key, indicator, key).field
        grouped.setdefault(field_name, []).append((series, output))
    return tuple((f, tuple(pairs)) for f, pairs in grouped.items())


def load_inputs(
    cache: SafeCache,
    members: Sequence[tuple[int, str]],
    trade_date: dt.date,
    *,
    ratings: Mapping[str, float | None] | None = None,
    benchmark: float | None = None,
    news: Mapping[str, int] | None = None,
    series: Collection[str] | None = None,
    flows: bool = True,
) -> dict[int, ScanInputs]:
    """Each member's :class:`ScanInputs` for ``trade_date``: candles and the ``series``
    (default: all of :data:`quant.scans.inputs.SERIES`) from the cache, one round trip for
    the chunk; from the database the candles of cache misses and (``flows``) every
    instrument's recent investor flows. Members without bars are absent."""
    from db.candles import load_daily_universe
    from db.engine import session_scope
    from db.scans import load_flows

    range_key = _range_key(trade_date)
    entries = _series_fields(range_key, tuple(sorted(series)) if series is not None else None)
    fields = [Entry.candles("-", "1d", range_key).field, *(f for f, _ in entries)]
    plan = list(members)
    # one HMGET per instrument, one round trip for the chunk
    values_of = cache.peek_many([(name, "1d", fields) for _, name in plan])
    candles: dict[int, Candles] = {}
    precomputed: dict[int, dict[str, np.ndarray]] = {}
    for (ident, _name), values in zip(plan, values_of, strict=True):
        blobs = iter(values)
        candle_blob = next(blobs)
        if candle_blob is not None:
            time_, columns = decode_series(candle_blob)
            candles[ident] = Candles(time=time_, **{c: columns[c] for c in COLUMNS})
        found: dict[str, np.ndarray] = {}
        for _entry, outputs in entries:
            blob = next(blobs)
            if blob is None:
                continue
            decoded = decode_series(blob)[1]
            for series_name, output in outputs:
                found[series_name] = decoded[output]
        precomputed[ident] = found
    missing = [ident for ident, _ in plan if ident not in candles]
    flow_data: dict[int, dict[str, np.ndarray]] = {}
    if missing or flows:  # a warm cache and no flows: no database round trip at all
        with session_scope() as session:
            if missing:
                candles.update(
                    load_daily_universe(session, missing, end=trade_date, bars=SCAN_BARS)
                )
            if flows:
                recent = {i: c.time[-FLOW_BARS:] for i, c in candles.items() if len(c)}
                flow_data = _pad(
                    load_flows(session, recent), {i: len(c) for i, c in candles.items()}
                )
    out: dict[int, ScanInputs] = {}
    for ident, name in plan:
        bars = candles.get(ident)
        if bars is None or len(bars) == 0:
            continue
        available = {k: v for k, v in precomputed.get(ident, {}).items() if len(v) == len(bars)}
        out[ident] = ScanInputs(
            instrument=name,
            candles=bars,
            precomputed=available,
            flows=flow_data.get(ident, {}),
            rs_rating=(ratings or {}).get(name),
            benchmark_rs_raw=benchmark,
            news_score=(news or {}).get(name),
        )
    return out


def attach_flows(inputs: dict[int, ScanInputs], idents: Collection[int]) -> None:
    """Load the recent investor flows of ``idents`` and put them into their inputs."""
    from dataclasses import replace

    from db.engine import session_scope
    from db.scans import load_flows

    wanted = {i: inputs[i].candles.time[-FLOW_BARS:] for i in idents if len(inputs[i])}
    if not wanted:
        return
    with session_scope() as session:
        loaded = _pad(load_flows(session, wanted), {i: len(inputs[i]) for i in wanted})
    for ident, columns in loaded.items():
        inputs[ident] = replace(inputs[ident], flows=columns, _computed={})


def _pad(
    flows: dict[int, dict[str, np.ndarray]], lengths: Mapping[int, int]
) -> dict[int, dict[str, np.ndarray]]:
    """Flows of the last bars, NaN-padded in front to each instrument's candle count."""
    out = {}
    for ident, columns in flows.items():
        n = lengths[ident]
        out[ident] = {
            name: np.concatenate((np.full(n - len(values), np.nan), values))
            for name, values in columns.items()
        }
    return out


def universe_name(markets: Collection[str]) -> str:
    """The pseudo-instrument holding a market set's universe-wide entries."""
    return "UNIVERSE:" + "+".join(sorted(markets))


def _ratings_field(trade_date: dt.date) -> str:
    return f"u|{_range_key(trade_date)}|rs_rating"


def ratings_from(raw: Mapping[str, float]) -> tuple[dict[str, float | None], float | None]:
    """RS percentile ratings (1–99, ``None`` for NaN) of the raw scores, and their median."""
    names = list(raw)
    values = np.array([raw[n] for n in names], dtype=np.float64)
    ratings = rs_rating(values) if len(values) else values
    out: dict[str, float | None] = {
        n: (None if np.isnan(r) else float(r)) for n, r in zip(names, ratings, strict=True)
    }
    finite = values[np.isfinite(values)]
    return out, (float(np.median(finite)) if len(finite) else None)


def store_universe_ratings(
    cache: SafeCache,
    markets: Collection[str],
    trade_date: dt.date,
    raw: Mapping[str, float],
    generation: int,
) -> bool:
    """Cache a market set's RS ratings for ``trade_date`` (computed by the precompute step
    from the RS raw scores it already has), guarded by the universe's ``generation`` (read
    before the candles were loaded). Returns whether it was stored."""
    import json

    ratings, benchmark = ratings_from(raw)
    blob = json.dumps(
        {"members": len(raw), "ratings": ratings, "benchmark": benchmark},
        separators=(",", ":"),
    ).encode()
    entry = Entry(universe_name(markets), "1d", _ratings_field(trade_date))
    return cache.put_many([(entry, blob, generation)]) == 1


def universe_ratings(
    cache: SafeCache,
    members: Sequence[tuple[int, str]],
    trade_date: dt.date,
    markets: Collection[str] | None = None,
) -> tuple[dict[str, float | None], float | None]:
    """Every member's RS percentile rating (1–99; ``None`` without 253 bars of history) and
    the universe median RS raw score (the "index" for out-performance): cached by the
    precompute step for the market set (``markets``), else from the cached RS raw scores,
    computing the misses from the database."""
    import json

    if markets is not None:
        ((blob,),) = cache.peek_many([(universe_name(markets), "1d", [_ratings_field(trade_date)])])
        if blob is not None:
            stored = json.loads(blob)
            ratings: dict[str, float | None] = stored["ratings"]
            with_bars = {name for _, name in members} & set(ratings)
            if stored["members"] == len(ratings) == len(with_bars):
                return ratings, stored["benchmark"]
    from db.candles import load_daily_universe
    from db.engine import session_scope
    from quant.indicators.custom import rs_raw

    range_key = _range_key(trade_date)
    key = params_key(canonical_params("rs_raw", {}))
    field_name = Entry.indicator("-", "1d", range_key, "rs_raw", key).field
    blobs = cache.peek_many([(name, "1d", [field_name]) for _, name in members])
    raw: dict[str, float] = {}
    missing: list[tuple[int, str]] = []
    for (ident, name), (blob,) in zip(members, blobs, strict=True):
        if blob is None:
            missing.append((ident, name))
            continue
        values = decode_series(blob)[1]["rs_raw"]
        raw[name] = float(values[-1]) if len(values) else float("nan")
    for start in range(0, len(missing), DEFAULT_CHUNK):
        part = missing[start : start + DEFAULT_CHUNK]
        with session_scope() as session:
            loaded = load_daily_universe(
                session, [i for i, _ in part], end=trade_date, bars=SCAN_BARS
            )
        for ident, name in part:
            bars = loaded.get(ident)
            if bars is not None and len(bars):
                raw[name] = float(rs_raw(bars.close)[-1])
    return ratings_from({name: raw[name] for _, name in members if name in raw})


def evaluate(
    evaluator: Strategy | Callable[[ScanInputs], Evaluation], inputs: Mapping[int, ScanInputs]
) -> tuple[list[dict[str, Any]], int, list[str]]:
    """Run ``evaluator`` on every instrument: (signal rows of the candidates, instruments
    evaluated, instruments whose evaluation raised — logged, never fatal). A
    :class:`quant.errors.TransientError` is re-raised: the chunk is retried."""
    run = evaluator.evaluate if isinstance(evaluator, Strategy) else evaluator
    rows: list[dict[str, Any]] = []
    scanned = 0
    failed: list[str] = []
    for ident, item in inputs.items():
        try:
            verdict = run(item)
        except TransientError:
            raise  # the chunk is retried as a whole (base task policy)
        except Exception as exc:
            failed.append(item.instrument)
            log.warning(
                "scan.instrument_failed",
                instrument=item.instrument,
                error=f"{type(exc).__name__}: {exc}",
            )
            continue
        scanned += 1
        if verdict.candidate:
            rows.append(
                {
                    "instrument_id": ident,
                    "score": verdict.score,
                    "grade": verdict.grade,
                    "entry_price": verdict.entry_price,
                    "status": verdict.status,
                    "reasons": list(verdict.reasons),
                    "inputs": _json_safe(dict(verdict.inputs)),
                }
            )
    return rows, scanned, failed


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# --- reading results and the Python API ------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """A stored signal, ranked by score (1 = best)."""

    rank: int
    instrument: str
    name: str
    score: float | None
    grade: str | None
    entry_price: float | None
    status: str | None
    reasons: tuple[str, ...]
    inputs: Mapping[str, Any]


def canonical_strategy(name: str) -> str:
    """``closing-bet`` → ``closing_bet``; raises ValidationError for an unknown strategy."""
    value = name.strip().lower().replace("-", "_")
    strategy(value)
    return value


#: Strategies whose grade ranks before the score: a closing-bet S outranks an A with more
#: points (the grade also reflects traded value).
GRADE_ORDER: dict[str, dict[str, int]] = {"closing_bet": {"S": 0, "A": 1, "B": 2, "C": 3}}


def candidates(
    strategy_name: str, trade_date: dt.date, *, limit: int | None = None
) -> list[Candidate]:
    """The stored candidates of a scan day, best first: by grade where the strategy ranks
    grades (:data:`GRADE_ORDER`), then by score, then ticker."""
    from sqlalchemy import select

    from db.engine import session_scope
    from db.models import Instrument, Signal

    name = canonical_strategy(strategy_name)
    with session_scope() as session:
        rows = session.execute(
            select(Signal, Instrument)
            .join(Instrument, Instrument.id == Signal.instrument_id)
            .where(Signal.trade_date == trade_date, Signal.strategy == name)
        ).all()
    grades = GRADE_ORDER.get(name, {})
    ordered = sorted(
        rows,
        key=lambda r: (
            grades.get(r[0].grade or "", len(grades)),
            -(r[0].score if r[0].score is not None else float("-inf")),
            r[1].ticker,
        ),
    )
    out = []
    for rank, (signal, instrument) in enumerate(ordered[:limit] if limit else ordered, 1):
        out.append(
            Candidate(
                rank=rank,
                instrument=f"{instrument.market}:{instrument.ticker}",
                name=instrument.name,
                score=signal.score,
                grade=signal.grade,
                entry_price=signal.entry_price,
                status=signal.status,
                reasons=tuple(signal.reasons or ()),
                inputs=signal.inputs or {},
            )
        )
    return out


def run_scan(
    strategy_name: str,
    trade_date: dt.date | None = None,
    *,
    market: str | None = None,
    wait: bool = True,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Enqueue ``quantbeat.scans.run`` and (``wait``) wait for the whole chord: returns the
    run's summary (``run_id``, ``coverage``, ``candidates`` …) plus ``"ranked"``: the
    :class:`Candidate` list. Needs running ``cpu`` workers.

    Raises:
        quant.errors.ValidationError: unknown strategy or bad date.
        quant.errors.TransientError: the scan did not finish within ``timeout`` seconds.
    """
    from celery.exceptions import TimeoutError as CeleryTimeout

    from quant.errors import TransientError
    from workers.app import app

    name = canonical_strategy(strategy_name)
    sent = app.send_task(
        "quantbeat.scans.run",
        kwargs={
            "strategy": name,
            "trade_date": trade_date.isoformat() if trade_date else None,
            "market": market,
        },
    )
    try:
        started: dict[str, Any] = sent.get(timeout=timeout)
        if not wait or started["chord"] is None:
            return started
        summary: dict[str, Any] = app.AsyncResult(started["chord"]).get(timeout=timeout)
    except CeleryTimeout:
        raise TransientError(
            f"the {name} scan did not finish within {timeout:g} s; are cpu workers running? "
            "(quantbeat worker --queues cpu)"
        ) from None
    day = dt.date.fromisoformat(summary["trade_date"])
    return {**summary, "ranked": candidates(name, day)}
