"""Universe scan tasks (``cpu`` queue): a coordinator fans the universe out in chunks as a
Celery chord whose callback records the run's coverage. The work is in
:mod:`quantbeat.services.scans`."""

from __future__ import annotations

from typing import Any

from quantbeat.services.args import (
    parse_date,
    parse_flag,
    parse_krx_markets,
    parse_moment,
    parse_trade_date,
)
from quantbeat.services.closing_window import preliminary_scan
from quantbeat.services.scans import DEFAULT_CHUNK, fail_run, finish_run, scan_chunk, start_run
from quantbeat.services.strategies import scan_strategy
from workers.app import app


@app.task(name="quantbeat.scans.run", idempotent=False)
def run(
    strategy: str,
    trade_date: str | None = None,
    market: str | None = None,
    chunk_size: int | None = None,
    analyze: bool = False,
) -> dict[str, Any]:
    """Scan the listed universe of the KRX market (both when ``None``) with ``strategy`` on
    ``trade_date`` (default: the latest closed session): a ``scan_runs`` row and a chord of
    ``quantbeat.scans.chunk`` tasks (``chunk_size`` instruments each, default 250) whose
    callback ``quantbeat.scans.finish`` completes the run. Returns ``{"run_id", "strategy",
    "trade_date", "total", "chunks", "chord"}`` at once; the signals land as chunks finish.
    With ``analyze``, the finished run starts ``quantbeat.ai.analyze_candidates`` for its top
    candidates. Raises ValidationError for an unknown strategy, a bad date, market or chunk
    size. Not idempotent (each execution opens a new scan run and fans out its chunks): a
    run whose worker died is marked lost by the reaper, not requeued."""
    return start_run(
        scan_strategy(strategy).name,
        parse_trade_date(trade_date),
        [m.value for m in parse_krx_markets(market)],
        chunk_size=DEFAULT_CHUNK if chunk_size is None else chunk_size,
        analyze=bool(analyze),
    )


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
    ``params``: the run's parameter overrides of the strategy. Idempotent: a retried or
    redelivered chunk writes the same signals. Returns ``{"scanned", "failed", "candidates",
    "missing"}``."""
    pairs = [(int(ident), str(name)) for ident, name in members]
    day = parse_date(trade_date, field="trade_date")
    return scan_chunk(run_id, strategy, day, pairs, ratings, benchmark, params)


@app.task(name="quantbeat.scans.failed")
def failed(request: Any, exc: Any, traceback: Any, run_id: int) -> None:
    """The chord's error callback (a chunk failed for good after its retries): the run is
    marked ``failed`` with the error and the coverage the other chunks reached."""
    fail_run(run_id, f"{exc}")


@app.task(name="quantbeat.scans.finish")
def finish(results: list[dict[str, Any]], run_id: int, analyze: bool = False) -> dict[str, Any]:
    """The chord's callback: mark the run completed and return its coverage; with
    ``analyze``, start the AI analysis of its top candidates (``analysis``: that task's id)."""
    return finish_run(run_id, analyze=bool(analyze))


@app.task(name="quantbeat.scans.preliminary")
def preliminary(
    strategy: str = "closing_bet",
    trade_date: str | None = None,
    as_of: str | None = None,
    announce: bool = False,
) -> dict[str, Any]:
    """Decide ``strategy`` in the buy window: from each instrument's bars through the
    previous session plus its latest intraday snapshot at or before ``as_of`` (ISO date-time
    with offset; default: ``QUANTBEAT_CLOSING_BET_AT`` of ``trade_date``, default today),
    store the day's ``preliminary`` signals (entry = the snapshot's last price, the Market
    Gate of that moment). Re-running replaces them. Returns the run's coverage, candidates,
    gate and whether the decision was before the closing auction (``tradeable``). With
    ``announce`` (the window's last decision) it also records the ``signals.published``
    event the subscribers are sent, once per day. Raises ValidationError for an unknown
    strategy, a day that is not a session or a bad moment."""
    return preliminary_scan(
        scan_strategy(strategy).name,
        None if trade_date is None else parse_date(trade_date, field="trade_date"),
        as_of=None if as_of is None else parse_moment(as_of, field="as_of"),
        announce=parse_flag(announce, field="announce"),
    )
