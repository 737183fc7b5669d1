"""AI analysis of scan candidates, and the news it reads: the adapters between
:mod:`quant.ai` / :mod:`quant.news` and the database, settings and the shared Gemini quota.

* :func:`analyzer_for` — Gemini (``google-genai``) when ``QUANTBEAT_GEMINI_API_KEY`` is set,
  otherwise the offline rule-based analyzer (labelled offline everywhere it shows).
* :func:`analyze` — one analysis of an instrument's candidate on a day: the cached result if
  one exists for ``(instrument, date, model, prompt version)``; else the request is built from
  the stored signal, the last candles and flows and the news that mention the instrument,
  sent under the global limiter, and stored with its token counts. Throttling answers
  (429/503/504) start the shared cooldown and are raised as transient (the task retries with
  backoff and jitter, honouring ``Retry-After``); rejected requests (400/403/404), invalid
  output and an exhausted daily quota are recorded as failed, never retried forever.
* :func:`collect_news` — fetch the configured sources, match instruments, store deduplicated.
* Behind the ``quantbeat.ai.*`` tasks and ``quantbeat analyze``: :func:`analysis_strategy`
  (the registered scan strategies of :mod:`quantbeat.services.strategies`) and
  :func:`analysis_top` parse arguments; :func:`analyze_attempt` is one delivery of
  ``quantbeat.ai.analyze``; :func:`start_candidate_analyses` / :func:`finish_candidate_analyses`
  are the chord over a scan day's top candidates and its callback; :func:`queue_analysis` /
  :func:`analysis_result` send one analysis to the ``ai`` workers and wait for it.
* Reports of what is stored (the HTTP API): :func:`stored_analyses` (a day's analyses),
  :func:`instrument_analyses` (one instrument's, with the news they read) and
  :func:`stored_news` (a day's news items); every item carries ``simulated``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from celery import chord
from celery.exceptions import TimeoutError as CeleryTimeout
from sqlalchemy import select

from db.ai import (
    cached_analysis,
    latest_analysis_date,
    latest_news_time,
    list_analyses,
    list_news,
    news_for,
    news_mentions,
    save_analysis,
    store_news,
)
from db.candles import load_candles, resolve_instrument, universe
from db.engine import session_scope
from db.models import AiAnalysis, Instrument, NewsItem, Signal
from db.scans import load_flows
from db.store import iso_utc
from quant.ai import PROMPT_VERSION, AnalysisRequest, GeminiAnalyzer, NewsInput, OfflineAnalyzer
from quant.errors import (
    NotFound,
    PermanentError,
    RateLimited,
    ServiceUnavailable,
    TransientError,
    ValidationError,
)
from quant.market.types import KRX_MARKETS, SIMULATED_SOURCE
from quant.news import LocalFileSource, SimulatedNewsSource, match_instruments
from quantbeat.infra.ai_quota import QuotaExhausted, ai_limiter
from quantbeat.infra.masking import mask_text
from quantbeat.infra.ratelimit import WaitTooLong
from quantbeat.infra.settings import Settings, get_settings
from quantbeat.infra.sources import feed_sources, simulated_movers
from quantbeat.services import announce, notify
from quantbeat.services.closing_window import AUCTION_STARTS
from quantbeat.services.scans import candidates, ranked_candidates
from quantbeat.services.strategies import scan_strategy
from workers.app import app

log = structlog.get_logger(__name__)

#: Daily bars and flow days a prompt shows.
PROMPT_CANDLES = 20
PROMPT_FLOWS = 10
#: The most candidates one ``quantbeat.ai.analyze_candidates`` analyses.
MAX_TOP = 200


def analysis_strategy(value: object) -> str:
    """The registered scan strategy named by ``value`` (case and ``-``/``_`` ignored:
    ``Closing-Bet`` → ``closing_bet``), whose candidates can be analysed.

    Raises:
        quant.errors.ValidationError: not a registered scan strategy (field ``strategy``; the
            message lists the known ones).
    """
    name = value.strip().lower().replace("-", "_") if isinstance(value, str) else value
    return scan_strategy(name).name


def analysis_top(value: object, settings: Settings | None = None) -> int:
    """How many candidates to analyse: ``value``, or ``QUANTBEAT_AI_TOP_N`` when ``None``.

    Raises:
        quant.errors.ValidationError: not an integer from 0 to :data:`MAX_TOP` (field ``top``).
    """
    count = (settings or get_settings()).ai_top_n if value is None else value
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_TOP:
        raise ValidationError(
            f"top must be an integer 0–{MAX_TOP}, got {value!r}", field="top", value=value
        )
    return count


def analyzer_for(settings: Settings | None = None) -> Any:
    """The configured analyzer: Gemini with a key, else the offline one."""
    s = settings or get_settings()
    if s.gemini_api_key is None:
        return OfflineAnalyzer()
    return GeminiAnalyzer(
        s.gemini_api_key.get_secret_value(),
        s.gemini_model,
        base_url=s.gemini_base_url,
        timeout=s.gemini_timeout,
    )


def limiter(settings: Settings | None = None) -> Any:
    """The shared Gemini quota of these settings."""
    s = settings or get_settings()
    return ai_limiter(s.redis_url, rpm=s.gemini_rpm, rpd=s.gemini_rpd)


def _request(session: Any, ident: int, name: str, day: dt.date, strategy: str) -> Any:
    # the final signal of the day, or the buy window's preliminary one before the close
    signal = session.execute(
        select(Signal)
        .where(
            Signal.instrument_id == ident,
            Signal.trade_date == day,
            Signal.strategy == strategy,
        )
        .order_by(Signal.phase)  # "final" sorts before "preliminary"
        .limit(1)
    ).scalar_one_or_none()
    company = session.get(Instrument, ident)
    frame = load_candles(session, ident, "1d", end=day, limit=PROMPT_CANDLES)
    candles = [
        {
            "date": str(frame.time[i]),
            "open": float(frame.open[i]),
            "high": float(frame.high[i]),
            "low": float(frame.low[i]),
            "close": float(frame.close[i]),
            "volume": float(frame.volume[i]),
            # unknown (NULL, e.g. a migrated bar of the original system) stays unknown
            "traded_value": (
                float(frame.traded_value[i]) if math.isfinite(frame.traded_value[i]) else None
            ),
        }
        for i in range(len(frame))
    ]
    flows: list[dict[str, Any]] = []
    if len(frame):
        found = load_flows(session, {ident: frame.time}).get(ident, {})
        for i in range(max(0, len(frame) - PROMPT_FLOWS), len(frame)):
            row: dict[str, Any] = {"date": str(frame.time[i])}
            for column in ("foreign_net_krw", "institution_net_krw"):
                values = found.get(column)
                value = None if values is None else float(values[i])
                row[column] = None if value is None or value != value else value
            flows.append(row)
    since, until = news_window(day)
    news = [
        NewsInput(
            title=n.title,
            summary=n.summary,
            source=n.source,
            url=n.url,
            published_at=n.published_at,
        )
        for n in news_for(session, ident, since=since, until=until)
    ]
    return AnalysisRequest(
        instrument=name,
        name=(company.name if company is not None else name) or name,
        trade_date=day,
        strategy=strategy,
        signal={
            "score": signal.score if signal else None,
            "grade": signal.grade if signal else None,
            "entry_price": signal.entry_price if signal else None,
            "status": signal.status if signal else None,
            "reasons": list(signal.reasons or []) if signal else [],
        },
        candles=candles,
        flows=flows,
        news=news,
    )


def news_window(day: dt.date, settings: Settings | None = None) -> tuple[dt.datetime, dt.datetime]:
    """``(since, until)`` (UTC) of the news an analysis of ``day`` reads: the
    ``QUANTBEAT_NEWS_LOOKBACK_DAYS`` days up to the end of ``day``."""
    s = settings or get_settings()
    until = dt.datetime.combine(day, dt.time(23, 59, 59), dt.UTC)
    return until - dt.timedelta(days=s.news_lookback_days), until


def _row(outcome: Any, ident: int, day: dt.date, strategy: str, news: int) -> dict[str, Any]:
    a = outcome.analysis
    return {
        "instrument_id": ident,
        "trade_date": day,
        "strategy": strategy,
        "model": outcome.model,
        "prompt_version": outcome.prompt_version,
        "analyzer": outcome.analyzer,
        "status": "succeeded",
        "sentiment": a.sentiment,
        "confidence": a.confidence,
        "news_score": a.news_score,
        "catalyst": a.catalyst,
        "risk_flags": list(a.risk_flags),
        "news_count": news,
        "prompt_tokens": outcome.prompt_tokens,
        "output_tokens": outcome.output_tokens,
        "total_tokens": outcome.total_tokens,
        "latency_ms": outcome.latency_ms,
        "error": None,
    }


def _summary(row: Any, instrument: str, *, cached: bool) -> dict[str, Any]:
    return {
        "instrument": instrument,
        "trade_date": row.trade_date.isoformat(),
        "status": row.status,
        "analyzer": row.analyzer,
        "model": row.model,
        "prompt_version": row.prompt_version,
        "news_score": row.news_score,
        "sentiment": row.sentiment,
        "confidence": row.confidence,
        "catalyst": row.catalyst,
        "risk_flags": row.risk_flags,
        "tokens": row.total_tokens,
        "error": row.error,
        "cached": cached,
    }


def analyze(
    instrument: str,
    trade_date: dt.date,
    strategy: str,
    *,
    attempt: int = 1,
    analyzer: Any = None,
    force: bool = False,
) -> dict[str, Any]:
    """Analyse ``instrument``'s ``strategy`` candidate of ``trade_date`` (see the module
    docstring). Returns the stored analysis as a dict (``cached`` True when it was).

    Raises:
        quant.errors.RateLimited / ServiceUnavailable: throttled or unavailable — retry later
            (a shared cooldown has been started for provider answers).
        quant.errors.NotFound / ValidationError: unknown instrument.
    """
    chosen = analyzer or analyzer_for()
    with session_scope() as session:
        ident, name = resolve_instrument(session, instrument)
        found = cached_analysis(session, ident, trade_date, chosen.model, PROMPT_VERSION)
        if found is not None and found.status == "succeeded" and not force:
            return _summary(found, name, cached=True)
        request = _request(session, ident, name, trade_date, strategy)
    try:
        if chosen.name != "offline":
            # The SDK's set-up takes seconds the first time: do it before taking a slot, or
            # requests granted seconds apart would leave together.
            prepare = getattr(chosen, "prepare", None)
            if prepare is not None:
                prepare()
            limiter().acquire()
        outcome = chosen.analyze(request)
    except QuotaExhausted as exc:
        return record_failure(name, trade_date, strategy, chosen, f"quota: {exc}", attempt)
    except WaitTooLong:
        raise  # our own queue or a running cooldown: retry later, no new cooldown
    except (RateLimited, ServiceUnavailable) as exc:
        seconds = exc.retry_after or get_settings().ai_cooldown
        limiter().cooldown(seconds)
        log.warning("ai.throttled", instrument=name, retry_after=exc.retry_after,
                    cooldown_s=seconds, error=str(exc))  # fmt: skip
        raise
    except PermanentError as exc:
        return record_failure(name, trade_date, strategy, chosen, str(exc), attempt)
    with session_scope() as session:
        save_analysis(
            session,
            {**_row(outcome, ident, trade_date, strategy, len(request.news)), "attempts": attempt},
        )
        stored = cached_analysis(session, ident, trade_date, outcome.model, PROMPT_VERSION)
        assert stored is not None
        result = _summary(stored, name, cached=False)
    log.info("ai.analysed", instrument=name, analyzer=outcome.analyzer, model=outcome.model,
             news_score=outcome.analysis.news_score, tokens=outcome.total_tokens)  # fmt: skip
    return result


def record_failure(
    instrument: str,
    trade_date: dt.date,
    strategy: str,
    analyzer: Any,
    error: str,
    attempt: int,
) -> dict[str, Any]:
    """Record a failed analysis (a success already stored is kept) and return it."""
    with session_scope() as session:
        ident, name = resolve_instrument(session, instrument)
        save_analysis(
            session,
            {
                "instrument_id": ident,
                "trade_date": trade_date,
                "strategy": strategy,
                "model": analyzer.model,
                "prompt_version": PROMPT_VERSION,
                "analyzer": analyzer.name,
                "status": "failed",
                "news_count": 0,
                "attempts": attempt,
                "error": mask_text(error)[:2000],
            },
        )
        row = cached_analysis(session, ident, trade_date, analyzer.model, PROMPT_VERSION)
        assert row is not None
        log.warning("ai.failed", instrument=name, error=row.error)
        return _summary(row, name, cached=False)


def top_candidates(strategy: str, trade_date: dt.date, top: int, phase: str = "final") -> list[str]:
    """The ``top`` best stored candidates of a scan day and ``phase`` ("MARKET:TICKER")."""
    return [c.instrument for c in candidates(strategy, trade_date, limit=top, phase=phase)]


def collect_news(trade_date: dt.date, settings: Settings | None = None) -> dict[str, Any]:
    """Fetch every configured news source (RSS/HTTP feeds, a local directory, and the
    simulated source when the market is simulated), match the items to the listed
    instruments and store them deduplicated. A failing source is reported, not fatal.
    Returns ``{"sources": {name: {...}}, "items", "new", "mentions", "rejected"}``."""
    s = settings or get_settings()
    with session_scope() as session:
        members = universe(session, [m.value for m in KRX_MARKETS])
        names = dict(session.execute(select(Instrument.id, Instrument.name)).all())
    ids = {name: ident for ident, name in members}
    aliases = {name: [name.split(":")[1], *([names[i]] if names.get(i) else [])]
               for i, name in members}  # fmt: skip
    sources: list[Any] = list(feed_sources(s))
    if s.news_dir is not None:
        sources.append(LocalFileSource(s.news_dir))
    if s.market_source == "simulated":
        sources.append(
            SimulatedNewsSource(
                [(name, names.get(i) or name) for i, name in members],
                seed=s.sim_seed,
                day=trade_date,
                movers=simulated_movers(s, trade_date),
            )
        )
    since = dt.datetime.combine(
        trade_date - dt.timedelta(days=s.news_lookback_days), dt.time(), dt.UTC
    )
    report: dict[str, Any] = {"sources": {}, "items": 0, "new": 0, "mentions": 0, "rejected": 0}
    for source in sources:
        try:
            fetched = source.fetch(since=since)
        except (ServiceUnavailable, RateLimited, PermanentError) as exc:
            report["sources"][source.name] = {"error": str(exc)}
            log.warning("news.source_failed", source=source.name, error=str(exc))
            continue
        finally:
            close = getattr(source, "close", None)
            if callable(close):
                close()  # an RssSource owns an HTTP client
        items = match_instruments(fetched.items, aliases)
        with session_scope() as session:
            counts = store_news(session, items, ids, simulated=fetched.simulated)
        counts["rejected"] = len(fetched.rejected)
        report["sources"][source.name] = counts
        for key in ("items", "new", "mentions", "rejected"):
            report[key] += counts[key]
    return report


def analyze_attempt(
    instrument: str, trade_date: dt.date, strategy: str, *, attempt: int, last: bool
) -> dict[str, Any]:
    """One delivery of ``quantbeat.ai.analyze``: :func:`analyze` as attempt ``attempt``
    (1-based). When a transient error ends the ``last`` attempt the analysis is recorded as
    failed (``retries exhausted``) before the error is re-raised, so it is never left
    unrecorded.

    Raises:
        quant.errors.TransientError: as :func:`analyze` (retry with backoff unless ``last``).
        quant.errors.NotFound / ValidationError: unknown instrument.
    """
    try:
        return analyze(instrument, trade_date, strategy, attempt=attempt)
    except TransientError as exc:
        if last:
            record_failure(instrument, trade_date, strategy, analyzer_for(),
                           f"retries exhausted: {exc}", attempt)  # fmt: skip
        raise


def start_candidate_analyses(
    strategy: str,
    trade_date: dt.date,
    top: int,
    *,
    phase: str = "final",
    as_of: dt.datetime | None = None,
) -> dict[str, Any]:
    """Analyse the ``top`` best stored candidates of ``strategy``'s ``phase`` decision of
    ``trade_date``: a chord of ``quantbeat.ai.analyze`` tasks (the ``ai`` workers, at the
    shared Gemini quota) whose callback ``quantbeat.ai.finish`` counts them and re-decides
    a strategy that reads news scores — the evening scan for ``final``, the buy-window
    decision as of ``as_of`` for ``preliminary``. Returns ``{"strategy", "trade_date",
    "phase", "instruments", "chord"}`` at once (``chord``: the callback's id, ``None`` when
    there is nothing to analyse)."""
    names = top_candidates(strategy, trade_date, top, phase) if top else []
    day = trade_date.isoformat()
    summary: dict[str, Any] = {"strategy": strategy, "trade_date": day, "phase": phase,
                               "instruments": names}  # fmt: skip
    if not names:
        if scan_strategy(strategy).reads_news:
            # no analysis, so no re-decision: this decision is the phase's last word
            _announce_unanalysed(strategy, trade_date, phase, as_of)
        return {**summary, "chord": None}
    header = [app.signature("quantbeat.ai.analyze", args=[n, day, strategy]) for n in names]
    finish: dict[str, Any] = {"strategy": strategy, "trade_date": day}
    if phase != "final":
        finish.update(phase=phase, as_of=None if as_of is None else as_of.isoformat())
    body = app.signature("quantbeat.ai.finish", kwargs=finish)
    return {**summary, "chord": chord(header)(body).id}


def _announce_unanalysed(
    strategy: str, trade_date: dt.date, phase: str, as_of: dt.datetime | None
) -> None:
    with session_scope() as session:
        announce.signals(
            session,
            strategy=strategy,
            trade_date=trade_date,
            phase=phase,
            ranked=ranked_candidates(session, strategy, trade_date, phase=phase),
            tradeable=None
            if as_of is None
            else as_of.astimezone(ZoneInfo(get_settings().timezone)).time() < AUCTION_STARTS,
        )


def finish_candidate_analyses(
    results: Sequence[dict[str, Any]],
    strategy: str,
    trade_date: dt.date,
    *,
    phase: str = "final",
    as_of: dt.datetime | None = None,
) -> dict[str, Any]:
    """The analyses' chord callback: counts them and, for a strategy whose scan reads the news
    scores (:attr:`~quantbeat.services.strategies.ScanStrategy.reads_news`), re-decides the
    day so the news scores count: ``quantbeat.scans.run`` for ``final``,
    ``quantbeat.scans.preliminary`` as of ``as_of`` for ``preliminary``. Returns
    ``{"strategy", "trade_date", "analysed", "succeeded", "failed", "rescan"}`` (``rescan``:
    the scan task's id or ``None``)."""
    ok = sum(1 for r in results if r.get("status") == "succeeded")
    day = trade_date.isoformat()
    _record_completed(results, strategy, trade_date, phase)
    rescan = None
    if scan_strategy(strategy).reads_news:
        if phase == "preliminary":
            rescan = app.send_task(
                "quantbeat.scans.preliminary",
                kwargs={"strategy": strategy, "trade_date": day,
                        "as_of": None if as_of is None else as_of.isoformat(),
                        "announce": True},
            ).id  # fmt: skip
        else:
            rescan = app.send_task(
                "quantbeat.scans.run", kwargs={"strategy": strategy, "trade_date": day}
            ).id
    return {
        "strategy": strategy,
        "trade_date": day,
        "analysed": len(results),
        "succeeded": ok,
        "failed": len(results) - ok,
        "rescan": rescan,
    }


def _record_completed(
    results: Sequence[dict[str, Any]], strategy: str, trade_date: dt.date, phase: str
) -> None:
    """Record ``analysis.completed`` for the analyses of one scan decision (once)."""
    picks = [
        {
            "code": str(r.get("instrument", "")).split(":")[-1],
            "name": r.get("name"),
            "recommendation": r.get("recommendation"),
            "summary": r.get("catalyst"),
        }
        for r in results
        if r.get("status") == "succeeded"
    ][: announce.SIGNALS_IN_EVENT]
    providers = sorted({str(r.get("analyzer")) for r in results if r.get("analyzer")})
    with session_scope() as session:
        notify.record(
            session,
            "analysis.completed",
            key=f"analysis.completed:{strategy}:{trade_date.isoformat()}:{phase}",
            payload={
                "strategy": strategy,
                "trade_date": trade_date.isoformat(),
                "phase": phase,
                "provider": ",".join(providers) or None,
                "analysed": len(results),
                "failed": sum(1 for r in results if r.get("status") != "succeeded"),
                "picks": picks,
            },
            trade_date=trade_date,
            simulated=announce.is_simulated(),
        )


def queue_analysis(instrument: str, trade_date: dt.date, strategy: str) -> str:
    """Send ``quantbeat.ai.analyze`` for one candidate to the ``ai`` workers; returns the
    task id (see :func:`analysis_result`)."""
    sent = app.send_task(
        "quantbeat.ai.analyze", args=[instrument, trade_date.isoformat(), strategy]
    )
    return str(sent.id)


def analysis_result(task_id: str, timeout: float) -> dict[str, Any]:
    """The answer of a queued ``quantbeat.ai.analyze`` (the stored analysis, as
    :func:`analyze` returns it), waiting up to ``timeout`` seconds.

    Raises:
        quant.errors.TransientError: no answer within ``timeout`` (no ``ai`` worker running?).
        The task's own error when it failed (e.g. NotFound for an unknown instrument).
    """
    try:
        answer: dict[str, Any] = app.AsyncResult(task_id).get(timeout=timeout)
    except CeleryTimeout:
        raise TransientError(
            f"quantbeat.ai.analyze ({task_id}) did not finish within {timeout:g} s; is a "
            "worker consuming the ai queue? (quantbeat worker --queues ai)"
        ) from None
    return answer


# --- stored analyses and news, for reports (the HTTP API) ------------------------------------
def analysis_dict(row: AiAnalysis, instrument: Instrument) -> dict[str, Any]:
    """A stored analysis, JSON-ready: what :func:`analyze` returns (without ``cached``) plus
    its row id, strategy, the company name, token counts, latency, attempts, the
    recommendation and details an imported analysis carries, ``offline`` (the rule-based
    analyzer, no AI) and ``simulated`` (the instrument belongs to the simulated market)."""
    name = f"{instrument.market}:{instrument.ticker}"
    summary = _summary(row, name, cached=False)
    del summary["cached"]
    return {
        "id": row.id,
        **summary,
        "name": instrument.name,
        "strategy": row.strategy,
        "offline": row.analyzer == "offline",
        "news_count": row.news_count,
        "prompt_tokens": row.prompt_tokens,
        "output_tokens": row.output_tokens,
        "total_tokens": row.total_tokens,
        "latency_ms": row.latency_ms,
        "attempts": row.attempts,
        "recommendation": row.recommendation,
        "details": row.details,
        "simulated": instrument.source == SIMULATED_SOURCE,
        "created_at": iso_utc(row.created_at),
        "updated_at": iso_utc(row.updated_at),
    }


def news_dict(item: NewsItem, instruments: Sequence[str]) -> dict[str, Any]:
    """A stored news item, JSON-ready (``url`` masked like every text that may carry a
    token), with the instruments it mentions and its ``simulated`` flag."""
    return {
        "id": item.id,
        "source": item.source,
        "title": item.title,
        "summary": item.summary,
        "url": mask_text(item.url),
        "published_at": iso_utc(item.published_at),
        "stored_at": iso_utc(item.created_at),
        "simulated": bool(item.simulated),
        "instruments": list(instruments),
    }


def _day_bounds(day: dt.date, settings: Settings, field: str) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` (UTC) of the calendar day ``day`` in ``QUANTBEAT_TIMEZONE``.

    Raises:
        quant.errors.ValidationError: a day too close to year 1 or 9999 to have bounds.
    """
    zone = ZoneInfo(settings.timezone)
    try:
        start = dt.datetime.combine(day, dt.time(), zone)
        return start.astimezone(dt.UTC), (start + dt.timedelta(days=1)).astimezone(dt.UTC)
    except OverflowError:
        raise ValidationError(
            f"{field} {day.isoformat()} is out of range", field=field, value=day.isoformat()
        ) from None


def stored_analyses(
    trade_date: dt.date | None = None,
    strategy: str | None = None,
    *,
    limit: int = 200,
    field: str = "strategy",
) -> dict[str, Any]:
    """The analyses stored for ``trade_date`` (default: the latest day any is stored for, of
    ``strategy`` when given): ``{"trade_date" (None when none is stored), "strategy",
    "simulated" (any item is), "items": [analysis_dict…]}``, the best news score first, at
    most ``limit``.

    Raises:
        quant.errors.ValidationError: ``strategy`` is not a registered scan strategy (the
            error names ``field``).
    """
    name = None
    if strategy is not None:
        try:
            name = analysis_strategy(strategy)
        except ValidationError as exc:
            raise ValidationError(str(exc), field=field, value=strategy) from None
    with session_scope() as session:
        day = trade_date or latest_analysis_date(session, strategy=name)
        rows = [] if day is None else list_analyses(session, day, strategy=name, limit=limit)
        items = [analysis_dict(a, i) for a, i in rows]
    return {
        "trade_date": None if day is None else day.isoformat(),
        "strategy": name,
        "simulated": any(item["simulated"] for item in items),
        "items": items,
    }


def instrument_analyses(instrument: str, trade_date: dt.date | None = None) -> dict[str, Any]:
    """Every analysis stored for ``instrument`` on ``trade_date`` (default: the latest day
    it was analysed) — one per strategy, model and prompt version — and the stored news an
    analysis of that day reads (:func:`news_window`, newest first): ``{"instrument",
    "name", "trade_date", "simulated", "analyses": [analysis_dict…], "news":
    [news_dict…]}``.

    Raises:
        quant.errors.NotFound: no such instrument, or no analysis of it (on ``trade_date``).
        quant.errors.ValidationError: an ambiguous bare ticker (field ``instrument``), a day
            out of range (field ``date``).
    """
    with session_scope() as session:
        ident, name = resolve_instrument(session, instrument)
        day = trade_date or latest_analysis_date(session, instrument_id=ident)
        rows = [] if day is None else list_analyses(session, day, instrument_id=ident)
        if day is None or not rows:
            when = f" on {trade_date.isoformat()}" if trade_date is not None else ""
            raise NotFound(f"no analysis of {name} is stored{when}")
        try:
            since, until = news_window(day)
        except OverflowError:
            raise ValidationError(
                f"date {day.isoformat()} is out of range", field="date", value=day.isoformat()
            ) from None
        news = news_for(session, ident, since=since, until=until)
        mentions = news_mentions(session, [n.id for n in news])
        company = rows[0][1]
        return {
            "instrument": name,
            "name": company.name,
            "trade_date": day.isoformat(),
            "simulated": company.source == SIMULATED_SOURCE,
            "analyses": [analysis_dict(a, i) for a, i in rows],
            "news": [news_dict(n, mentions.get(n.id, [])) for n in news],
        }


def stored_news(
    day: dt.date | None = None, *, limit: int = 100, field: str = "date"
) -> dict[str, Any]:
    """The news items stored for the calendar day ``day`` in ``QUANTBEAT_TIMEZONE`` (by
    publication time; an undated item by when it was stored), newest first, at most
    ``limit`` — default day: that of the newest item. ``{"date" (None when no news is
    stored), "simulated" (any item is), "items": [news_dict…]}``.

    Raises:
        quant.errors.ValidationError: a day out of range (the error names ``field``).
    """
    settings = get_settings()
    with session_scope() as session:
        if day is None:
            newest = latest_news_time(session)
            if newest is None:
                return {"date": None, "simulated": False, "items": []}
            day = newest.astimezone(ZoneInfo(settings.timezone)).date()
        since, until = _day_bounds(day, settings, field)
        found = list_news(session, since=since, until=until, limit=limit)
        mentions = news_mentions(session, [n.id for n in found])
        items = [news_dict(n, mentions.get(n.id, [])) for n in found]
    return {
        "date": day.isoformat(),
        "simulated": any(item["simulated"] for item in items),
        "items": items,
    }
