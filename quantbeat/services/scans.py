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
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import structlog
from billiard.exceptions import SoftTimeLimitExceeded
from celery import chord
from celery.exceptions import TimeoutError as CeleryTimeout
from sqlalchemy import select

from db.ai import news_scores
from db.candles import load_daily_universe, universe
from db.engine import session_scope
from db.models import Instrument, Signal
from db.reference import latest_gate
from db.scans import add_chunk_result, data_version, load_flows, replace_signals, run_state
from db.scans import finish_run as record_run_end
from db.scans import get_run as get_scan_run
from db.scans import list_runs as list_scan_runs
from db.scans import start_run as record_run_start
from db.store import as_utc, iso_utc
from quant.errors import TransientError, ValidationError
from quant.indicators import SCAN_BARS, Candles, canonical_params, params_key
from quant.indicators.candles import COLUMNS
from quant.indicators.custom import rs_rating, rs_raw
from quant.indicators.request import IndicatorRequest
from quant.scans.inputs import SERIES, ScanInputs
from quantbeat.infra.cache import Entry, SafeCache, decode_series
from quantbeat.infra.masking import mask_text
from quantbeat.services import announce
from quantbeat.services.indicators import indicator_cache
from quantbeat.services.settings_store import strategy_overrides
from quantbeat.services.strategies import (
    Evaluation,
    Strategy,
    build_params,
    canonical_strategy,
    configured,
    scan_strategy,
)
from workers.app import app
from workers.retry import as_transient

log = structlog.get_logger(__name__)

#: Instruments per chunk task.
DEFAULT_CHUNK = 250
#: Sessions of investor flows a scan reads (the supply score's longest window is 20); older
#: bars get NaN flows.
FLOW_BARS = 40


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

    if markets is not None:
        ((blob,),) = cache.peek_many([(universe_name(markets), "1d", [_ratings_field(trade_date)])])
        if blob is not None:
            stored = json.loads(blob)
            ratings: dict[str, float | None] = stored["ratings"]
            with_bars = {name for _, name in members} & set(ratings)
            if stored["members"] == len(ratings) == len(with_bars):
                return ratings, stored["benchmark"]

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
                    "volume_ratio": verdict.volume_ratio,
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
    #: The Market Gate colour when it was decided (``None``: no gate computed).
    gate: str | None = None
    #: The scan day's volume over its mean (VCP), ``None`` when not measured.
    volume_ratio: float | None = None
    #: The stored signal's id (``None``: not read from the database).
    signal_id: int | None = None
    #: Where the instrument's data comes from (``simulated``: the simulated market).
    instrument_source: str | None = None

    def summary(self) -> dict[str, Any]:
        """The candidate as JSON-safe data (what ``quantbeat scan --json`` and the API
        list): rank, instrument, name, score, grade, entry, status, volume ratio, reasons,
        gate."""
        return {
            "rank": self.rank,
            "instrument": self.instrument,
            "name": self.name,
            "score": self.score,
            "grade": self.grade,
            "entry_price": self.entry_price,
            "status": self.status,
            "volume_ratio": self.volume_ratio,
            "reasons": list(self.reasons),
            "gate": self.gate,
        }


def candidates(
    strategy_name: str,
    trade_date: dt.date,
    *,
    limit: int | None = None,
    phase: str = "final",
) -> list[Candidate]:
    """The stored candidates of a scan day and ``phase`` (``final`` or ``preliminary``),
    best first: the statuses the strategy ranks first
    (:attr:`~quantbeat.services.strategies.ScanStrategy.ranked_first`: a VCP's confirmed
    breakouts before an unconfirmed close above the pivot), then by grade where the strategy
    ranks grades (:attr:`~quantbeat.services.strategies.ScanStrategy.grades`), then by
    score, then ticker. The AI analysis's top N and the CLI's list follow this order."""

    with session_scope() as session:
        return [c for _ident, c in ranked_candidates(session, strategy_name, trade_date,
                                                      limit=limit, phase=phase)]  # fmt: skip


def ranked_candidates(
    session: Any,
    strategy_name: str,
    trade_date: dt.date,
    *,
    limit: int | None = None,
    phase: str = "final",
) -> list[tuple[int, Candidate]]:
    """:func:`candidates` read in the caller's session, each with its instrument id."""
    name = canonical_strategy(strategy_name)
    rows = session.execute(
        select(Signal, Instrument)
        .join(Instrument, Instrument.id == Signal.instrument_id)
        .where(Signal.trade_date == trade_date, Signal.strategy == name, Signal.phase == phase)
    ).all()
    found = scan_strategy(name)
    grades = {grade: rank for rank, grade in enumerate(found.grades)}
    first = {status: rank for rank, status in enumerate(found.ranked_first)}
    ordered = sorted(
        rows,
        key=lambda r: (
            first.get(r[0].status or "", len(first)),
            grades.get(r[0].grade or "", len(grades)),
            -(r[0].score if r[0].score is not None else float("-inf")),
            r[1].ticker,
        ),
    )
    out = []
    for rank, (signal, instrument) in enumerate(ordered[:limit] if limit else ordered, 1):
        out.append(
            (
                int(instrument.id),
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
                    gate=signal.gate,
                    volume_ratio=signal.volume_ratio,
                    signal_id=int(signal.id),
                    instrument_source=instrument.source,
                ),
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


# --- the scan run: coordinator, chunks, callbacks (behind the quantbeat.scans.* tasks) -----
def start_run(
    strategy_name: str,
    day: dt.date,
    markets: list[str],
    *,
    chunk_size: int = DEFAULT_CHUNK,
    analyze: bool = False,
) -> dict[str, Any]:
    """Record a ``scan_runs`` row for ``strategy_name`` on ``day`` over the listed universe of
    ``markets``, compute the universe RS ratings, and start the chord of
    ``quantbeat.scans.chunk`` tasks (``chunk_size`` instruments each) whose callback
    ``quantbeat.scans.finish`` completes the run (``analyze``: and starts the AI analysis of
    its top candidates). Returns ``{"run_id", "strategy", "trade_date", "total", "chunks",
    "chord"}`` at once (``chord``: the callback's id, ``None`` for an empty universe).

    Raises:
        quant.errors.ValidationError: unknown strategy, a chunk size outside 1–2000, or
            invalid stored parameter overrides.
    """
    name = scan_strategy(strategy_name).name
    if (
        not isinstance(chunk_size, int)
        or isinstance(chunk_size, bool)
        or not (1 <= chunk_size <= 2_000)
    ):
        raise ValidationError(
            f"chunk_size must be an integer from 1 to 2000, got {chunk_size!r}",
            field="chunk_size",
            value=chunk_size,
        )
    # Stored parameter overrides (`quantbeat settings set strategy.<name> ...`), read once so
    # every chunk of this run evaluates with the same ones; invalid ones fail the run here.
    overrides = strategy_overrides(name) if scan_strategy(name).params else {}
    if overrides:
        build_params(name, overrides)
    with session_scope() as session:
        members = universe(session, markets)
        version = data_version(session, day)
    ratings, benchmark = universe_ratings(indicator_cache(), members, day, markets)
    chunks = [members[i : i + chunk_size] for i in range(0, len(members), chunk_size)]
    with session_scope() as session:
        run_id = record_run_start(
            session,
            strategy=name,
            trade_date=day,
            params={"markets": markets, "chunk_size": chunk_size, "overrides": overrides},
            total=len(members),
            chunks=len(chunks),
            data_version=version,
        )
    summary: dict[str, Any] = {
        "run_id": run_id,
        "strategy": name,
        "trade_date": day.isoformat(),
        "total": len(members),
        "chunks": len(chunks),
    }
    if not chunks:
        finish_run(run_id, analyze=analyze)
        return {**summary, "chord": None}
    header = [
        app.signature(
            "quantbeat.scans.chunk",
            args=[
                run_id,
                name,
                day.isoformat(),
                [[ident, inst] for ident, inst in part],
                {inst: ratings.get(inst) for _, inst in part},
                benchmark,
            ],
            kwargs={"params": overrides} if overrides else {},
        )
        for part in chunks
    ]
    body = app.signature("quantbeat.scans.finish", kwargs={"run_id": run_id, "analyze": analyze})
    body.link_error(app.signature("quantbeat.scans.failed", kwargs={"run_id": run_id}))
    result = chord(header)(body)
    return {**summary, "chord": result.id}


def scan_chunk(
    run_id: int,
    strategy_name: str,
    day: dt.date,
    pairs: list[tuple[int, str]],
    ratings: Mapping[str, float | None],
    benchmark: float | None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate one chunk of the universe and replace its instruments' signals for the day;
    ``params``: the run's parameter overrides. Returns ``{"scanned", "failed", "candidates",
    "missing"}`` (``missing``: instruments without bars that day).

    A permanent failure of the whole chunk is counted in the run (``chunk_error``) so the run
    still completes with its coverage instead of hanging in ``running``.

    Raises:
        quant.errors.TransientError (or an error :func:`workers.retry.as_transient` maps to
            one): the chunk should be retried.
        quant.errors.ValidationError: unknown strategy or invalid overrides.
    """
    evaluator = configured(strategy_name, params)
    try:
        with session_scope() as session:
            # the AI analyses' news scores of the day (the closing bet's news points)
            scores = news_scores(session, day, [ident for ident, _ in pairs])
        names = dict(pairs)
        inputs = load_inputs(
            indicator_cache(),
            pairs,
            day,
            ratings=ratings,
            benchmark=benchmark,
            news={names[ident]: score for ident, score in scores.items()},
            series=evaluator.series,
            flows=evaluator.flows and evaluator.needs_flows is None,
        )
        if evaluator.flows and evaluator.needs_flows is not None:
            test = evaluator.needs_flows
            attach_flows(inputs, [i for i, item in inputs.items() if test(item)])
        rows, scanned, failed = evaluate(evaluator, inputs)
        with session_scope() as session:
            # Each signal keeps the Market Gate its decision was taken under.
            gate = latest_gate(session, day)
            for row in rows:
                row["gate"] = None if gate is None else gate.color
            replace_signals(
                session, trade_date=day, strategy=strategy_name, covered=list(inputs), rows=rows
            )
            add_chunk_result(
                session, run_id, scanned=scanned, failed=len(failed), candidates=len(rows)
            )
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        if as_transient(exc) is not None:
            raise  # the base task retries it with backoff
        error = f"{type(exc).__name__}: {exc}"
        log.error("scan.chunk_failed", run_id=run_id, instruments=len(pairs), error=error)
        with session_scope() as session:
            add_chunk_result(
                session, run_id, scanned=0, failed=len(pairs), candidates=0, chunk_error=error
            )
        return {"scanned": 0, "failed": len(pairs), "candidates": 0, "chunk_error": error}
    return {
        "scanned": scanned,
        "failed": len(failed),
        "candidates": len(rows),
        "missing": len(pairs) - len(inputs),
    }


def fail_run(run_id: int, error: str) -> None:
    """Mark a scan run ``failed`` (a chunk failed for good) with ``error`` and the coverage
    the other chunks reached."""
    with session_scope() as session:
        record_run_end(session, run_id, state="failed", error=error[:2000])


def finish_run(run_id: int, *, analyze: bool = False) -> dict[str, Any]:
    """Mark a scan run completed and return its coverage ``{"run_id", "state", "total",
    "scanned", "failed", "candidates", "coverage", ...}``; with ``analyze``, start the AI
    analysis of its top candidates (``analysis``: that task's id) — once: finishing a run
    that is completed already starts nothing (``analysis`` ``None``)."""
    with session_scope() as session:
        # A redelivered callback (its worker died after the commit) must not start the
        # analysis — paid Gemini calls — a second time.
        already = run_state(session, run_id) == "completed"
        row = record_run_end(session, run_id, state="completed")
        analysis = None
        if not already and not (analyze and scan_strategy(row.strategy).reads_news):
            # the day's last decision of this phase (a strategy that reads news is announced
            # once the analyses' re-scan has its scores): tell the subscribers
            announce.signals(
                session,
                strategy=row.strategy,
                trade_date=row.trade_date,
                phase="final",
                ranked=ranked_candidates(session, row.strategy, row.trade_date),
                run_id=run_id,
            )
        if analyze and not already:
            analysis = app.send_task(
                "quantbeat.ai.analyze_candidates",
                kwargs={"strategy": row.strategy, "trade_date": row.trade_date.isoformat()},
            ).id
        return {
            "analysis": analysis,
            "chunks_failed": row.chunks_failed,
            "error": row.error,
            "run_id": run_id,
            "strategy": row.strategy,
            "trade_date": row.trade_date.isoformat(),
            "state": row.state,
            "total": row.total,
            "scanned": row.scanned,
            "failed": row.failed,
            "candidates": row.candidates,
            "coverage": f"{row.scanned}/{row.total}",
            "duration_ms": round(row.duration_ms or 0.0, 1),
        }


# --- reading scan runs (the API's /scans) ----------------------------------------------------
#: States after which a scan run never changes again.
SCAN_FINAL_STATES = frozenset({"completed", "failed"})


def _run_row(run: Any, now: dt.datetime) -> dict[str, Any]:
    """A scan run as a JSON-friendly dict with its progress (see :func:`scan_run`)."""
    processed = run.scanned + run.failed
    if run.state == "completed":
        fraction = 1.0
    elif run.total > 0:
        fraction = min(processed / run.total, 1.0)
    else:
        fraction = 0.0
    started = as_utc(run.started_at)
    eta: float | None = None
    if run.state in SCAN_FINAL_STATES:
        eta = 0.0
    elif fraction > 0.01:
        elapsed = max((now - started).total_seconds(), 0.0)
        eta = round(elapsed * (1 - fraction) / fraction, 1)
    return {
        "run_id": int(run.id),
        "strategy": run.strategy,
        "trade_date": run.trade_date.isoformat(),
        "state": run.state,
        "progress": round(fraction, 4),
        "eta_seconds": eta,
        "total": run.total,
        "scanned": run.scanned,
        "failed": run.failed,
        "candidates": run.candidates,
        "chunks": run.chunks,
        "chunks_failed": run.chunks_failed,
        "coverage": f"{run.scanned}/{run.total}",
        "params": run.params,
        "data_version": run.data_version,
        "started_at": iso_utc(started),
        "finished_at": iso_utc(run.finished_at),
        "duration_ms": None if run.duration_ms is None else round(run.duration_ms, 1),
        "error": None if run.error is None else mask_text(run.error),
    }


def scan_run(run_id: int) -> dict[str, Any]:
    """Scan run ``run_id``: strategy, day, state (``running``, ``completed``, ``failed``),
    counts (``total`` instruments in the universe; ``scanned``, ``failed``, ``candidates``;
    ``chunks``, ``chunks_failed``), times (ISO 8601 UTC), error (masked:
    :func:`quantbeat.infra.masking.mask_text`), and its progress.

    Scans record no progress of their own: ``progress`` (a fraction 0–1) is the share of
    the universe the finished chunks evaluated, ``(scanned + failed) / total`` — each chunk
    adds its counts when it ends — and 1 once the run completed. Instruments without a bar
    on the day count in neither, so a running scan's progress can stay below 1 until its
    last chunk ends. ``eta_seconds``: the time left at the pace so far (``None`` below 1 %
    done, 0 once ended).

    Raises:
        quant.errors.NotFound: no such run.
    """
    with session_scope() as session:
        return _run_row(get_scan_run(session, run_id), dt.datetime.now(dt.UTC))


def scan_runs(*, strategy: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The ``limit`` newest scan runs (by start), optionally of one ``strategy`` (a scan
    strategy name, ``closing-bet`` spelling accepted), as :func:`scan_run` gives them.

    Raises:
        quant.errors.ValidationError: an unknown strategy (field ``strategy``) or a limit
            outside 1–500 (field ``limit``).
    """
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 500:
        raise ValidationError(
            f"limit must be an integer from 1 to 500, got {limit!r}", field="limit", value=limit
        )
    name = canonical_strategy(strategy) if strategy is not None else None
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        return [_run_row(r, now) for r in list_scan_runs(session, strategy=name, limit=limit)]
