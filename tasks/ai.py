"""AI analysis and news tasks. ``quantbeat.ai.*`` run on the ``ai`` queue (slow,
rate-limited I/O kept apart), ``quantbeat.news.collect`` on ``io``. The work is in
:mod:`quantbeat.services.ai`; the strategies are the registered scan strategies
(:mod:`quantbeat.services.strategies`)."""

from __future__ import annotations

from typing import Any

from quantbeat.services.ai import (
    analysis_strategy,
    analysis_top,
    analyze_attempt,
    finish_candidate_analyses,
    start_candidate_analyses,
)
from quantbeat.services.ai import collect_news as run_collect
from quantbeat.services.args import parse_date, parse_moment, parse_phase, parse_trade_date
from workers.app import app


@app.task(name="quantbeat.ai.analyze", bind=True, idempotent=False)
def analyze(self: Any, instrument: str, trade_date: str, strategy: str) -> dict[str, Any]:
    """Analyse one candidate (cached per instrument, date, model and prompt version).
    Throttling retries with backoff and jitter (honouring Retry-After) under the shared
    cooldown; when the retries run out the analysis is recorded as failed and the task fails
    (dead-lettered). Returns the stored analysis. Raises ValidationError for a bad date or an
    unknown strategy. Not idempotent: a paid Gemini call may have been in flight when its
    worker died, so the reaper marks such a run lost (dead letter) instead of paying twice."""
    day = parse_date(trade_date, field="trade_date")
    name = analysis_strategy(strategy)
    retries = int(self.request.retries or 0)
    last = retries >= (self.max_retries or 0)
    return analyze_attempt(instrument, day, name, attempt=retries + 1, last=last)


@app.task(name="quantbeat.ai.analyze_candidates", idempotent=False)
def analyze_candidates(
    strategy: str,
    trade_date: str | None = None,
    top: int | None = None,
    phase: str = "final",
    as_of: str | None = None,
) -> dict[str, Any]:
    """Analyse the ``top`` (default ``QUANTBEAT_AI_TOP_N``) best candidates of a scan day
    (default: the latest closed session) as a chord of ``quantbeat.ai.analyze`` tasks; its
    callback ``quantbeat.ai.finish`` re-runs the closing-bet scan so the news scores enter the
    grades. With ``phase="preliminary"`` it analyses the buy window's decision instead and the
    callback re-decides it as of ``as_of`` (ISO date-time with offset). Returns
    ``{"strategy", "trade_date", "phase", "instruments", "chord"}`` at once. Raises
    ValidationError for an unknown strategy, a bad date, phase or moment, or ``top`` outside
    0–200. Not idempotent (a second execution starts a second chord of paid analyses)."""
    name = analysis_strategy(strategy)
    day = parse_trade_date(trade_date)
    return start_candidate_analyses(
        name,
        day,
        analysis_top(top),
        phase=parse_phase(phase),
        as_of=None if as_of is None else parse_moment(as_of, field="as_of"),
    )


@app.task(name="quantbeat.ai.finish", idempotent=False)
def finish(
    results: list[dict[str, Any]],
    strategy: str,
    trade_date: str,
    phase: str = "final",
    as_of: str | None = None,
) -> dict[str, Any]:
    """The analyses' chord callback: counts them and, for the closing bet, re-decides the
    day so the news scores count — the evening scan, or (``phase="preliminary"``) the buy
    window's decision as of ``as_of`` (its task id is returned as ``rescan``). Not
    idempotent (a second execution starts a second scan run)."""
    day = parse_date(trade_date, field="trade_date")
    return finish_candidate_analyses(
        results,
        strategy,
        day,
        phase=parse_phase(phase),
        as_of=None if as_of is None else parse_moment(as_of, field="as_of"),
    )


@app.task(name="quantbeat.news.collect")
def collect_news(trade_date: str | None = None) -> dict[str, Any]:
    """Fetch the configured news sources, match instruments, store deduplicated items.
    Returns per-source counts (a failing source is reported, the others still stored)."""
    day = parse_trade_date(trade_date)
    return {"trade_date": day.isoformat(), **run_collect(day)}
