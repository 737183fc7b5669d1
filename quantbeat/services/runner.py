"""``quantbeat run``: the main job, end to end, in one process or against the real stack.

Embedded (the default): a SQLite file under ``./var``, kombu's in-memory broker and an
in-process worker (threads pool) consuming the ``io``, ``cpu`` and ``ai`` queues. Tasks go
through the same path as in production — sent by name, JSON-serialized, routed, executed by a
real Celery worker with the base task's history and retry policy — only the transport differs.
Nothing outside the process is needed.

Distributed (``--distributed``): the configured broker and database; workers started with
``quantbeat worker`` on any host do the work, and this process only sends and waits.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quant.errors import ServiceUnavailable
from quantbeat.infra.settings import Settings, get_settings, reset_settings

EMBEDDED_BROKER = "memory://"
EMBEDDED_BACKEND = "cache+memory://"


@dataclass
class RunReport:
    """What ``quantbeat run`` did, for printing."""

    mode: str
    database: str
    log_file: str | None
    trade_date: dt.date
    source: str
    simulated: bool
    instruments: int = 0
    candles: dict[str, int] = field(default_factory=dict)
    flows: dict[str, int] = field(default_factory=dict)
    candle_rows_total: int = 0
    rejected: int = 0
    history: bool = False
    explicit: bool = False
    sessions: int = 0
    instrument_counts: dict[tuple[str, ...], int] = field(default_factory=dict)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    indicators: dict[str, Any] = field(default_factory=dict)
    sample: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    scans: dict[str, dict[str, Any]] = field(default_factory=dict)
    backtests: dict[str, dict[str, Any]] = field(default_factory=dict)
    news: dict[str, Any] = field(default_factory=dict)
    analysis: dict[str, dict[str, Any]] = field(default_factory=dict)


def embedded_environment(data_dir: Path, database_url: str | None = None) -> dict[str, str]:
    """The ``QUANTBEAT_*`` variables that select the embedded profile."""
    db_path = (data_dir / "quantbeat.sqlite").resolve()
    return {
        "QUANTBEAT_BROKER_URL": EMBEDDED_BROKER,
        "QUANTBEAT_RESULT_BACKEND": EMBEDDED_BACKEND,
        "QUANTBEAT_DATABASE_URL": database_url or f"sqlite:///{db_path}",
        # Rate limits and the indicator cache in-process: no Redis needed.
        "QUANTBEAT_REDIS_URL": "memory://",
    }


@contextmanager
def _environment(overrides: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    reset_settings()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_settings()


@contextmanager
def embedded_worker(concurrency: int = 4) -> Iterator[Any]:
    """Run a real Celery worker (threads pool, all three queues) in a background thread."""
    from celery.result import allow_join_result
    from celery.worker import WorkController
    from celery.worker import state as worker_state

    from workers.app import app

    ready = threading.Event()

    class _Controller(WorkController):  # type: ignore[misc]
        def on_consumer_ready(self, consumer: Any) -> None:
            ready.set()

    # Pool threads resolve the app through Celery's *default* app (current_app is
    # thread-local); the worker CLI sets both, so do we.
    app.set_current()
    app.set_default()
    app.loader.import_default_modules()
    worker = _Controller(
        app=app,
        pool="threads",
        concurrency=concurrency,
        hostname=f"embedded-{os.getpid()}@localhost",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel="WARNING",
    )
    thread = threading.Thread(target=worker.start, name="quantbeat-embedded-worker", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not ready.wait(0.1):
        # WorkController.start logs and swallows start-up errors, then returns: a dead thread
        # means the worker failed, and waiting longer would only hide that.
        if not thread.is_alive():
            raise ServiceUnavailable(
                f"the embedded worker stopped during start-up (exit code {worker.exitcode}); "
                "its log has the reason"
            )
        if time.monotonic() > deadline:
            raise ServiceUnavailable("the embedded worker did not start within 30 s")
    try:
        # A worker in this process marks result.get() as blocking-inside-a-task; this thread
        # is not a task, it is the client waiting for the worker.
        with allow_join_result():
            yield worker
    finally:
        worker_state.should_terminate = 0
        thread.join(30)
        worker_state.should_terminate = None


def run(
    *,
    trade_date: dt.date | None = None,
    market: str | None = None,
    distributed: bool = False,
    database_url: str | None = None,
    timeout: float = 600.0,
    log_file: str | None = None,
) -> RunReport:
    """Run the main job (collect one simulated trading day for the whole universe).

    Raises:
        quant.errors.ServiceUnavailable: the broker, worker or database did not answer.
        quant.errors.ConfigError: settings are invalid.
        quant.errors.QuantbeatError: a collection task failed (re-raised from the worker).
    """
    base = get_settings()
    overrides = {} if distributed else embedded_environment(base.data_dir, database_url)
    if distributed and database_url:
        overrides["QUANTBEAT_DATABASE_URL"] = database_url
    with _environment(overrides):
        settings = get_settings()
        from db.engine import forget_engines

        forget_engines()
        return _run(settings, trade_date, market, distributed, timeout, log_file)


def _run(
    settings: Settings,
    trade_date: dt.date | None,
    market: str | None,
    distributed: bool,
    timeout: float,
    log_file: str | None,
) -> RunReport:
    from db import migrate
    from db.engine import display_url
    from quantbeat.infra.sources import latest_krx_session
    from workers.app import app

    if not distributed:
        # workers.app may have been imported under other settings; make the app match ours.
        app.conf.update(broker_url=settings.broker_url, result_backend=settings.result_backend)
        migrate.upgrade(settings.database_url)

    day = trade_date or latest_krx_session(settings)
    first_run = _count_candles(settings.database_url) == 0
    t0 = time.perf_counter()
    report = RunReport(
        mode="distributed" if distributed else "embedded",
        database=display_url(settings.database_url),
        log_file=log_file,
        trade_date=day,
        source=settings.market_source,
        simulated=settings.market_source == "simulated",
    )
    from quantbeat.services.indicators import forget_service

    forget_service()
    with _maybe_worker(distributed):
        deadline = time.monotonic() + timeout
        results = _collect(app, day, market, timeout, history=first_run, explicit=bool(trade_date))
        _indicators(app, report, day, market, max(1.0, deadline - time.monotonic()))
        _scans(app, report, day, market, max(1.0, deadline - time.monotonic()))
        _analysis(app, report, day, max(1.0, deadline - time.monotonic()))
        _backtests(report, day, market, max(1.0, deadline - time.monotonic()))
    report.seconds = time.perf_counter() - t0
    report.history = first_run
    report.explicit = trade_date is not None
    ranges: dict[tuple[Any, Any], int] = {}
    for name, summary in results:
        report.tasks.append({"task": name, **summary})
        if "candles" in summary:  # one entry per distinct range of candle sessions
            ranges[(summary.get("start"), summary.get("end"))] = int(summary.get("sessions") or 0)
        if name.endswith("daily_candles") or (
            name.endswith("daily_range") and summary.get("candles") is not None
        ):
            report.instrument_counts[tuple(summary.get("markets") or ())] = int(
                summary.get("instruments") or 0
            )
        report.rejected += int(summary.get("rejected") or 0)
        for key, target in (("candles", report.candles), ("flows", report.flows)):
            for k, v in (summary.get(key) or {}).items():
                target[k] = target.get(k, 0) + int(v)
    report.instruments = sum(report.instrument_counts.values())
    report.sessions = sum(ranges.values())
    report.candle_rows_total = _count_candles(settings.database_url)
    return report


@contextmanager
def _maybe_worker(distributed: bool) -> Iterator[None]:
    if distributed:
        yield
        return
    with embedded_worker():
        yield


#: Sessions of history the first run collects: a year of KRX sessions, enough for 52-week
#: highs/lows and relative strength over 252 sessions.
HISTORY_SESSIONS = 260
#: Sessions per history task (small enough for a real provider inside the io time limit).
HISTORY_CHUNK = 20


def _collect(
    app: Any,
    day: dt.date,
    market: str | None,
    timeout: float,
    *,
    history: bool,
    explicit: bool,
) -> list[tuple[str, dict[str, Any]]]:
    """Send the run's collection tasks and wait for them.

    First run (empty database): :data:`HISTORY_SESSIONS` sessions up to ``day`` in
    chunks of ``quantbeat.collect.daily_range``. Later runs: the day given (``explicit``),
    or incrementally from the last stored session up to ``day``.
    """
    from celery.exceptions import TimeoutError as CeleryTimeout

    from quant.market.types import KRX_MARKETS
    from quantbeat.infra.sources import krx_calendar

    markets = [market] if market else [m.value for m in KRX_MARKETS]
    pending = []
    if history:
        calendar = krx_calendar()
        sessions = calendar.sessions(day - dt.timedelta(days=HISTORY_SESSIONS * 2), day)
        sessions = sessions[-HISTORY_SESSIONS:]
        chunks = [sessions[i : i + HISTORY_CHUNK] for i in range(0, len(sessions), HISTORY_CHUNK)]
        for dataset in ("candles", "flows"):
            for chunk in chunks:
                kwargs = {
                    "start": chunk[0].isoformat(),
                    "end": chunk[-1].isoformat(),
                    "market": market,
                    "dataset": dataset,
                }
                name = "quantbeat.collect.daily_range"
                pending.append((name, app.send_task(name, kwargs=kwargs)))
    else:
        for name in ("quantbeat.collect.daily_candles", "quantbeat.collect.investor_flows"):
            for m in markets:
                kwargs = (
                    {"trade_date": day.isoformat(), "market": m}
                    if explicit
                    else {"until": day.isoformat(), "market": m}
                )
                pending.append((name, app.send_task(name, kwargs=kwargs)))
    out: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    for name, result in pending:
        try:
            summary = result.get(timeout=max(1.0, deadline - time.monotonic()))
        except CeleryTimeout:
            raise ServiceUnavailable(
                f"{name} ({result.id}) did not finish within {timeout:.0f} s: "
                "is a worker consuming the io queue?"
            ) from None
        out.append((name, summary))
    return out


def _indicators(
    app: Any, report: RunReport, day: dt.date, market: str | None, timeout: float
) -> None:
    """The pipeline's next step: precompute the scan indicators for the universe (a ``cpu``
    task), then read one instrument's RSI through the public API, as a client would."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    from db.candles import universe
    from db.engine import session_scope
    from quant.market.types import KRX_MARKETS
    from quantbeat.services.indicators import cache_stats, get_indicator

    name = "quantbeat.indicators.precompute"
    sent = app.send_task(name, kwargs={"trade_date": day.isoformat(), "market": market})
    try:
        report.indicators = sent.get(timeout=timeout)
    except CeleryTimeout:
        raise ServiceUnavailable(
            f"{name} ({sent.id}) did not finish within {timeout:.0f} s: "
            "is a worker consuming the cpu queue?"
        ) from None
    report.tasks.append({"task": name, **report.indicators})
    markets = [market] if market else [m.value for m in KRX_MARKETS]
    with session_scope() as session:
        members = universe(session, markets)
    if members:
        from quant.indicators import SCAN_BARS

        instrument = members[0][1]
        t0 = time.perf_counter()
        result = get_indicator(
            instrument, "rsi", {"period": 14}, end=day, limit=SCAN_BARS, timeout=timeout
        )
        report.sample = {
            "instrument": instrument,
            "rsi": result.latest()["rsi"],
            "source": result.source,
            "ms": (time.perf_counter() - t0) * 1000,
        }
    report.cache = cache_stats().as_dict()


#: Candidates per strategy the report lists.
TOP_CANDIDATES = 5


def _scans(app: Any, report: RunReport, day: dt.date, market: str | None, timeout: float) -> None:
    """The pipeline's last step: the VCP and closing-bet scans of the day over the universe
    (a chord of chunks each), and their top candidates."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    from quantbeat.services.scans import candidates

    started = {
        name: app.send_task(
            "quantbeat.scans.run",
            kwargs={"strategy": name, "trade_date": day.isoformat(), "market": market},
        )
        for name in ("vcp", "closing_bet")
    }
    for name, sent in started.items():
        try:
            launched = sent.get(timeout=timeout)
            summary = (
                app.AsyncResult(launched["chord"]).get(timeout=timeout)
                if launched["chord"]
                else launched
            )
        except CeleryTimeout:
            raise ServiceUnavailable(
                f"the {name} scan did not finish within {timeout:.0f} s: "
                "is a worker consuming the cpu queue?"
            ) from None
        report.tasks.append({"task": "quantbeat.scans.run", **summary})
        report.scans[name] = {
            **summary,
            "top": candidates(name, day, limit=TOP_CANDIDATES),
        }


def _analysis(app: Any, report: RunReport, day: dt.date, timeout: float) -> None:
    """The pipeline's analysis step: collect the day's news, analyse each scan's top
    candidates on the ``ai`` queue (Gemini with a key, else the offline analyzer), and — for
    the closing bet — wait for the re-scan that folds the news scores into the grades."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    from quantbeat.services.ai import analyzer_for
    from quantbeat.services.scans import candidates

    def get(result: Any, what: str) -> Any:
        try:
            return result.get(timeout=timeout)
        except CeleryTimeout:
            raise ServiceUnavailable(
                f"{what} did not finish within {timeout:.0f} s: is a worker consuming the "
                "io and ai queues?"
            ) from None

    news = get(
        app.send_task("quantbeat.news.collect", kwargs={"trade_date": day.isoformat()}),
        "quantbeat.news.collect",
    )
    report.news = news
    report.tasks.append({"task": "quantbeat.news.collect", **news})
    analyzer = analyzer_for()
    for name in list(report.scans):
        started = get(
            app.send_task(
                "quantbeat.ai.analyze_candidates",
                kwargs={"strategy": name, "trade_date": day.isoformat()},
            ),
            "quantbeat.ai.analyze_candidates",
        )
        done: dict[str, Any] = {"analysed": 0, "succeeded": 0, "failed": 0}
        if started["chord"]:
            done = get(app.AsyncResult(started["chord"]), f"the {name} analyses")
            if done.get("rescan"):
                launched = get(app.AsyncResult(done["rescan"]), f"the {name} re-scan")
                rescan = (
                    get(app.AsyncResult(launched["chord"]), f"the {name} re-scan")
                    if launched.get("chord")
                    else launched
                )
                report.scans[name] = {**rescan, "top": candidates(name, day, limit=TOP_CANDIDATES)}
        report.tasks.append({"task": "quantbeat.ai.analyze_candidates", **started})
        report.analysis[name] = {
            **{k: done.get(k, 0) for k in ("analysed", "succeeded", "failed")},
            "analyzer": analyzer.name,
            "model": analyzer.model,
            "rows": _analyses(day, started["instruments"]),
        }


def _analyses(day: dt.date, instruments: list[str]) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from db.engine import session_scope
    from db.models import AiAnalysis, Instrument

    rows = []
    with session_scope() as session:
        for name in instruments:
            market, ticker = name.split(":", 1)
            found = session.execute(
                select(AiAnalysis)
                .join(Instrument, Instrument.id == AiAnalysis.instrument_id)
                .where(
                    Instrument.market == market,
                    Instrument.ticker == ticker,
                    AiAnalysis.trade_date == day,
                )
                .order_by(AiAnalysis.updated_at.desc())
                .limit(1)
            ).scalar_one_or_none()
            if found is not None:
                rows.append(
                    {
                        "instrument": name,
                        "status": found.status,
                        "news_score": found.news_score,
                        "sentiment": found.sentiment,
                        "catalyst": found.catalyst,
                        "news_count": found.news_count,
                    }
                )
    return rows


#: Most positions the run's universe backtests hold at once (shared cash).
BACKTEST_MAX_POSITIONS = 10


def _backtests(report: RunReport, day: dt.date, market: str | None, timeout: float) -> None:
    """The pipeline's closing step: backtest each scanned strategy over the stored history
    of the whole universe (one shared account, at most :data:`BACKTEST_MAX_POSITIONS`
    positions), as asynchronous runs on the cpu workers, then write their reports."""
    from sqlalchemy import func, select

    from db.candles import universe
    from db.engine import session_scope
    from db.models import DailyCandle
    from quant.backtest.strategies import FOR_SCAN
    from quant.market.types import KRX_MARKETS
    from quantbeat.services.backtests import submit_backtest, wait, write_report

    markets = [market] if market else [m.value for m in KRX_MARKETS]
    with session_scope() as session:
        members = universe(session, markets)
        first = session.execute(select(func.min(DailyCandle.trade_date))).scalar_one()
    if not members or first is None or first >= day:
        return
    started = {}
    for scan in report.scans:
        strategy = FOR_SCAN[scan]
        t0 = time.perf_counter()
        run_id = submit_backtest(
            {
                "strategy": strategy,
                "instruments": [name for _, name in members],
                "start": first.isoformat(),
                "end": day.isoformat(),
                "execution": {"max_positions": BACKTEST_MAX_POSITIONS},
                "label": f"quantbeat run: {scan} over the stored history",
            },
            origin="run",
        )
        started[strategy] = (run_id, t0)
    deadline = time.monotonic() + timeout
    for strategy, (run_id, t0) in started.items():
        try:
            final = wait(run_id, timeout=max(1.0, deadline - time.monotonic()))
        except TimeoutError as exc:
            raise ServiceUnavailable(f"{exc}: is a worker consuming the cpu queue?") from None
        entry: dict[str, Any] = {**final, "seconds": time.perf_counter() - t0}
        if final["state"] == "completed":
            files = write_report(run_id)
            entry["report"] = str(files.html)
            entry["image"] = str(files.png) if files.png else None
        report.backtests[strategy] = entry


def _count_candles(url: str) -> int:
    from sqlalchemy import func, select

    from db.engine import session_scope
    from db.models import DailyCandle

    with session_scope(url) as session:
        return int(session.execute(select(func.count()).select_from(DailyCandle)).scalar_one())
