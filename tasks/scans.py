"""Universe scan tasks (``cpu`` queue): a coordinator fans the universe out in chunks as a
Celery chord whose callback records the run's coverage. See :mod:`quantbeat.services.scans`."""

from __future__ import annotations

from typing import Any

import structlog
from billiard.exceptions import SoftTimeLimitExceeded
from celery import chord

from quant.errors import ValidationError
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import latest_krx_session
from quantbeat.services.args import parse_date, parse_krx_markets
from workers.app import app
from workers.retry import as_transient

log = structlog.get_logger(__name__)


def _strategy_name(value: object) -> str:
    from quantbeat.services.scans import strategy

    strategy(value)  # raises ValidationError naming the known strategies
    assert isinstance(value, str)
    return value


@app.task(name="quantbeat.scans.run")
def run(
    strategy: str,
    trade_date: str | None = None,
    market: str | None = None,
    chunk_size: int | None = None,
    analyze: bool = False,
) -> dict[str, Any]:
    """Scan the listed universe of the KRX market (both when ``None``) with ``strategy``
    (``vcp`` or ``closing_bet``) on ``trade_date`` (default: the latest closed session).

    Records a ``scan_runs`` row, computes the universe RS ratings, and starts a chord of
    ``quantbeat.scans.chunk`` tasks (``chunk_size`` instruments each, default 250) whose
    callback ``quantbeat.scans.finish`` completes the run. Returns ``{"run_id", "strategy",
    "trade_date", "total", "chunks", "chord"}`` at once; the signals land as chunks finish.

    With ``analyze``, the finished run starts ``quantbeat.ai.analyze_candidates`` for its
    top candidates (the pipeline's analysis step).

    Raises ValidationError for an unknown strategy, a bad date, market or chunk size.
    """
    from db.candles import universe
    from db.engine import session_scope
    from db.scans import data_version, start_run
    from quantbeat.services.indicators import indicator_cache
    from quantbeat.services.scans import DEFAULT_CHUNK, universe_ratings

    name = _strategy_name(strategy)
    day = (
        parse_date(trade_date, field="trade_date")
        if trade_date is not None
        else latest_krx_session(get_settings())
    )
    markets = [m.value for m in parse_krx_markets(market)]
    size = DEFAULT_CHUNK if chunk_size is None else chunk_size
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 2_000:
        raise ValidationError(
            f"chunk_size must be an integer from 1 to 2000, got {chunk_size!r}",
            field="chunk_size",
            value=chunk_size,
        )
    from quantbeat.services.settings_store import strategy_overrides
    from quantbeat.services.strategies import PARAM_TYPES, build_params

    # Stored parameter overrides (`quantbeat settings set strategy.<name> ...`), read once so
    # every chunk of this run evaluates with the same ones; invalid ones fail the run here.
    overrides = strategy_overrides(name) if name in PARAM_TYPES else {}
    if overrides:
        build_params(name, overrides)
    with session_scope() as session:
        members = universe(session, markets)
        version = data_version(session, day)
    ratings, benchmark = universe_ratings(indicator_cache(), members, day, markets)
    chunks = [members[i : i + size] for i in range(0, len(members), size)]
    with session_scope() as session:
        run_id = start_run(
            session,
            strategy=name,
            trade_date=day,
            params={"markets": markets, "chunk_size": size, "overrides": overrides},
            total=len(members),
            chunks=len(chunks),
            data_version=version,
        )
    summary = {
        "run_id": run_id,
        "strategy": name,
        "trade_date": day.isoformat(),
        "total": len(members),
        "chunks": len(chunks),
    }
    if not chunks:
        finish([], run_id, analyze=bool(analyze))
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
    body = app.signature(
        "quantbeat.scans.finish", kwargs={"run_id": run_id, "analyze": bool(analyze)}
    )
    body.link_error(app.signature("quantbeat.scans.failed", kwargs={"run_id": run_id}))
    result = chord(header)(body)
    return {**summary, "chord": result.id}


@app.task(name="quantbeat.scans.chunk")
def chunk(
    run_id: int,
    strategy: str,
    trade_date: str,
    members: list[list[Any]],
    ratings: dict[str, float | None],
    benchmark: float | None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate one chunk of the universe and replace its instruments' signals for the day.
    ``params``: the run's parameter overrides of the strategy
    (see quantbeat.services.settings_store).
    Idempotent: a retried or redelivered chunk writes the same signals (its coverage is
    added to the run once per successful execution). Returns ``{"scanned", "failed",
    "candidates", "missing"}`` (``missing``: instruments without bars that day)."""
    from db.ai import news_scores
    from db.engine import session_scope
    from db.scans import add_chunk_result, replace_signals
    from quantbeat.services.indicators import indicator_cache
    from quantbeat.services.scans import attach_flows, evaluate, load_inputs
    from quantbeat.services.scans import strategy as lookup
    from quantbeat.services.strategies import configured

    evaluator = configured(lookup(strategy), strategy, params)
    day = parse_date(trade_date, field="trade_date")
    pairs = [(int(ident), str(name)) for ident, name in members]
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
            replace_signals(
                session, trade_date=day, strategy=strategy, covered=list(inputs), rows=rows
            )
            add_chunk_result(
                session, run_id, scanned=scanned, failed=len(failed), candidates=len(rows)
            )
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        if as_transient(exc) is not None:
            raise  # the base task retries it with backoff
        # A permanent failure of the whole chunk: counted, so the run still completes and
        # reports its coverage (e.g. 2,250/2,500) instead of hanging in "running".
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


@app.task(name="quantbeat.scans.failed")
def failed(request: Any, exc: Any, traceback: Any, run_id: int) -> None:
    """The chord's error callback (a chunk failed for good after its retries): the run is
    marked ``failed`` with the error and the coverage the other chunks reached."""
    from db.engine import session_scope
    from db.scans import finish_run

    with session_scope() as session:
        finish_run(session, run_id, state="failed", error=f"{exc}"[:2000])


@app.task(name="quantbeat.scans.finish")
def finish(results: list[dict[str, Any]], run_id: int, analyze: bool = False) -> dict[str, Any]:
    """The chord's callback: mark the run completed and return its coverage
    ``{"run_id", "state", "total", "scanned", "failed", "candidates", "coverage"}``; with
    ``analyze``, start the AI analysis of its top candidates (``analysis``: that task's id)."""
    from db.engine import session_scope
    from db.scans import finish_run

    with session_scope() as session:
        row = finish_run(session, run_id, state="completed")
        analysis = None
        if analyze:
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
