"""AI analysis and news tasks. ``quantbeat.ai.*`` run on the ``ai`` queue (slow,
rate-limited I/O kept apart), ``quantbeat.news.collect`` on ``io``. See
:mod:`quantbeat.services.ai`."""

from __future__ import annotations

from typing import Any

import structlog
from celery import chord

from quant.errors import TransientError, ValidationError
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import latest_krx_session
from quantbeat.services.args import parse_date
from workers.app import app

log = structlog.get_logger(__name__)

#: Strategies whose candidates can be analysed.
STRATEGIES = ("closing_bet", "vcp")


def _strategy(value: object) -> str:
    name = str(value).strip().lower().replace("-", "_")
    if name not in STRATEGIES:
        raise ValidationError(
            f"strategy must be one of {', '.join(STRATEGIES)}, got {value!r}",
            field="strategy",
            value=value,
        )
    return name


@app.task(name="quantbeat.ai.analyze", bind=True)
def analyze(self: Any, instrument: str, trade_date: str, strategy: str) -> dict[str, Any]:
    """Analyse one candidate (cached per instrument, date, model and prompt version).
    Throttling retries with backoff and jitter (honouring Retry-After) under the shared
    cooldown; when the retries run out the analysis is recorded as failed and the task fails
    (dead-lettered). Returns the stored analysis."""
    from quantbeat.services.ai import analyze as run_analysis
    from quantbeat.services.ai import analyzer_for, record_failure

    day = parse_date(trade_date, field="trade_date")
    name = _strategy(strategy)
    retries = int(self.request.retries or 0)
    try:
        return run_analysis(instrument, day, name, attempt=retries + 1)
    except TransientError as exc:
        if retries >= (self.max_retries or 0):
            record_failure(instrument, day, name, analyzer_for(), f"retries exhausted: {exc}",
                           retries + 1)  # fmt: skip
        raise


@app.task(name="quantbeat.ai.analyze_candidates")
def analyze_candidates(
    strategy: str, trade_date: str | None = None, top: int | None = None
) -> dict[str, Any]:
    """Analyse the ``top`` (default ``QUANTBEAT_AI_TOP_N``) best candidates of a scan day as
    a chord of ``quantbeat.ai.analyze`` tasks; its callback ``quantbeat.ai.finish`` re-runs
    the closing-bet scan so the news scores enter the grades. Returns at once."""
    from quantbeat.services.ai import top_candidates

    name = _strategy(strategy)
    settings = get_settings()
    day = (
        parse_date(trade_date, field="trade_date")
        if trade_date is not None
        else latest_krx_session(settings)
    )
    count = settings.ai_top_n if top is None else top
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 200:
        raise ValidationError(f"top must be an integer 0–200, got {top!r}", field="top")
    names = top_candidates(name, day, count) if count else []
    summary = {"strategy": name, "trade_date": day.isoformat(), "instruments": names}
    if not names:
        return {**summary, "chord": None}
    header = [app.signature("quantbeat.ai.analyze", args=[n, day.isoformat(), name]) for n in names]
    body = app.signature(
        "quantbeat.ai.finish", kwargs={"strategy": name, "trade_date": day.isoformat()}
    )
    result = chord(header)(body)
    return {**summary, "chord": result.id}


@app.task(name="quantbeat.ai.finish")
def finish(results: list[dict[str, Any]], strategy: str, trade_date: str) -> dict[str, Any]:
    """The analyses' chord callback: counts them and, for the closing bet, re-runs the scan
    of the day so the news scores count (its chord id is returned as ``rescan``)."""
    ok = sum(1 for r in results if r.get("status") == "succeeded")
    summary: dict[str, Any] = {
        "strategy": strategy,
        "trade_date": trade_date,
        "analysed": len(results),
        "succeeded": ok,
        "failed": len(results) - ok,
        "rescan": None,
    }
    if strategy == "closing_bet":
        sent = app.send_task(
            "quantbeat.scans.run", kwargs={"strategy": "closing_bet", "trade_date": trade_date}
        )
        summary["rescan"] = sent.id
    return summary


@app.task(name="quantbeat.news.collect")
def collect_news(trade_date: str | None = None) -> dict[str, Any]:
    """Fetch the configured news sources, match instruments, store deduplicated items.
    Returns per-source counts (a failing source is reported, the others still stored)."""
    from quantbeat.services.ai import collect_news as run_collect

    settings = get_settings()
    day = (
        parse_date(trade_date, field="trade_date")
        if trade_date is not None
        else latest_krx_session(settings)
    )
    return {"trade_date": day.isoformat(), **run_collect(day, settings)}
