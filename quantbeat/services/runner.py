"""``quantbeat run``: the main job, end to end, in one process or against the real stack.

Embedded (the default): a SQLite file under ``./var``, kombu's in-memory broker and an
in-process worker (threads pool) consuming the ``io``, ``cpu`` and ``ai`` queues
(:mod:`workers.embedded`). Tasks go through the same path as in production — sent by name,
JSON-serialized, routed, executed by a real Celery worker with the base task's history and
retry policy — only the transport differs. Nothing outside the process is needed.

Distributed (``--distributed``): the configured broker and database; workers started with
``quantbeat worker`` on any host do the work, and this process only sends and waits.

The job is the daily pipeline (:mod:`quantbeat.services.pipeline`, the steps beat chains), run
step by step: on the first run (empty database) a year of history replaces the collection
steps; then a backtest of each scanned strategy over the stored history.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from db import migrate, readcache
from db.candles import universe
from db.engine import display_url, forget_engines, session_scope
from db.models import AiAnalysis, DailyCandle, Instrument, Signal
from quant.calendar import KRX_CLOSE
from quant.errors import ServiceUnavailable
from quant.indicators import SCAN_BARS
from quant.market.types import KRX_MARKETS, Market
from quantbeat.infra.profile import Mode, embedded_environment, environment, resolve_mode
from quantbeat.infra.settings import Settings, get_settings
from quantbeat.infra.sources import krx_calendar, latest_krx_session
from quantbeat.services import notify
from quantbeat.services.ai import analyzer_for
from quantbeat.services.backfill import plan_backfill
from quantbeat.services.backtests import submit_backtest, wait, write_report
from quantbeat.services.closing_window import compare_phases
from quantbeat.services.collect import last_sessions
from quantbeat.services.dispatch import TaskCall, result_of, send
from quantbeat.services.dispatch import wait as wait_for
from quantbeat.services.indicators import cache_stats, forget_service, get_indicator
from quantbeat.services.pipeline import PIPELINES, pipeline_steps, window_steps
from quantbeat.services.portfolio import create as create_portfolio
from quantbeat.services.portfolio import describe as describe_portfolio
from quantbeat.services.portfolio import list_portfolios
from quantbeat.services.scans import candidates
from quantbeat.services.strategies import scan_strategy, scan_strategy_names
from quantbeat.services.track_record import report as track_report
from workers.embedded import embedded_profile, embedded_worker
from workers.queues import area_of


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
    #: The day's Market Gate as stored (``quantbeat.market.gate``), with the sector ranking.
    gate: dict[str, Any] = field(default_factory=dict)
    #: The buy-window decision per strategy: its summary, top preliminary candidates and the
    #: comparison with the final decision (``compare``).
    window: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The track record after the run: ``update`` (what ``quantbeat.track.update`` did for
    #: the day's signals) and ``report`` (:func:`quantbeat.services.track_record.report`).
    track: dict[str, Any] = field(default_factory=dict)
    #: The signal-history backfill (``quantbeat.track.backfill``) of the stored range.
    signal_history: dict[str, Any] = field(default_factory=dict)
    #: The crypto volatility check at the trading day's KRX close (issue 23; see
    #: :func:`quantbeat.services.crypto.check_volatility`), on the crypto source.
    crypto: dict[str, Any] = field(default_factory=dict)
    #: The hourly crypto signals of the hours up to it (:data:`CRYPTO_SIGNAL_HOURS`), oldest
    #: first, and the paper portfolio's order sync after the last.
    crypto_signals: list[dict[str, Any]] = field(default_factory=list)
    crypto_book: dict[str, Any] = field(default_factory=dict)
    #: The notifications of the run: ``subscription``, ``file`` (the file channel's path),
    #: ``messages`` (``{"type", "subject", "text"}`` delivered in this run, in order),
    #: ``ledger`` (deliveries by state) and ``open`` (deliveries not final yet).
    notifications: dict[str, Any] = field(default_factory=dict)
    #: The default paper portfolio after its update (:func:`quantbeat.services.portfolio.describe`
    #: plus ``update``, what ``quantbeat.portfolio.update`` did in this run).
    portfolio: dict[str, Any] = field(default_factory=dict)


def run(
    *,
    trade_date: dt.date | None = None,
    market: str | None = None,
    distributed: bool | None = None,
    database_url: str | None = None,
    timeout: float = 600.0,
    log_file: str | None = None,
) -> RunReport:
    """Run the main job: the daily pipeline for ``trade_date`` (default: the latest closed
    session) and ``market`` (default: both KRX markets), then a backtest per scan.

    Raises:
        quant.errors.ServiceUnavailable: the broker, worker or database did not answer, or the
            work did not finish within ``timeout`` seconds.
        quant.errors.ConfigError: settings are invalid.
        quant.errors.QuantbeatError: a task failed (re-raised from the worker).
    """
    base = get_settings()
    if distributed is None:  # where every command runs (quantbeat.infra.profile)
        distributed = resolve_mode(base) is Mode.DISTRIBUTED
    overrides = {} if distributed else embedded_environment(base.data_dir, database_url)
    if distributed and database_url:
        overrides["QUANTBEAT_DATABASE_URL"] = database_url
    with environment(overrides):
        settings = get_settings()
        forget_engines()
        if distributed:
            return _run(settings, trade_date, market, distributed, timeout, log_file)
        with embedded_profile(settings):
            return _run(settings, trade_date, market, distributed, timeout, log_file)


def _run(
    settings: Settings,
    trade_date: dt.date | None,
    market: str | None,
    distributed: bool,
    timeout: float,
    log_file: str | None,
) -> RunReport:
    if not distributed:
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
    forget_service()
    inbox = _inbox(settings, report)
    # embedded: one process does the whole job, so its repeated universe reads may come
    # from memory (db.readcache: any write to those tables empties it)
    reads = nullcontext() if distributed else readcache.scope()
    with reads, _maybe_worker(distributed):
        job = _Job(report, day, market, deadline=time.monotonic() + timeout)
        if first_run:
            job.history()
        done: list[TaskCall] = []
        if krx_calendar().is_session(day):
            # 15:10: the closing bet decided from the day so far, before the final pipelines
            for step in window_steps(day.isoformat()):
                job.window_step(step)
                done.append(step)
        for name in PIPELINES:
            for step in pipeline_steps(name, day.isoformat(), market, catch_up=trade_date is None):
                if (first_run and area_of(step.task) == "collect") or step in done:
                    # The history covers the day's collection; both pipelines collect the
                    # day's news, which once is enough here.
                    continue
                job.step(step)
                done.append(step)
        for name, decided in report.window.items():
            decided["compare"] = compare_phases(name, day)
        # the stored range's past signals, replayed by each strategy's backtest counterpart
        # without look-ahead (days the scan decided are left alone): a first run has a year
        # of history but scans one day, so without them no signal would have closed yet.
        # Once: later runs add their days by scanning them (`quantbeat track-record backfill`
        # replays any range on demand).
        if first_run:
            job.step(TaskCall("quantbeat.track.backfill", {"until": day.isoformat()}))
        # the pipeline follows the stored signals before the day's scans; follow the signals
        # the scans just wrote too, so the report shows every signal the database holds
        job.step(TaskCall("quantbeat.track.update", {"as_of": day.isoformat()}))
        report.track["report"] = track_report(by="strategy")
        _paper_portfolio(job, report, day)
        _backtests(report, day, market, job.remaining())
        # crypto trades 24/7: its volatility check at the trading day's KRX close (a fixed
        # moment, so a run of the same day reports the same hour)
        close = _krx_close(day, settings)
        job.step(TaskCall("quantbeat.crypto.volatility_check", {"at": close}))
        # the hourly signal and the paper portfolio's order sync for the hours before it
        for end in _crypto_hours(close):
            job.step(TaskCall("quantbeat.crypto.signal", {"at": end}))
            job.step(TaskCall("quantbeat.crypto.order_sync", {"at": end}))
        # the day in one message, then every event of the run delivered before the report
        job.step(TaskCall("quantbeat.notify.daily_summary", {"trade_date": day.isoformat()}))
        _notifications(report, inbox, min(60.0, job.remaining()))
    report.seconds = time.perf_counter() - t0
    report.history = first_run
    report.explicit = trade_date is not None
    ranges: dict[tuple[Any, Any], int] = {}
    for name, summary in job.collected:
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


def _krx_close(day: dt.date, settings: Settings) -> str:
    """The KRX close (:data:`quant.calendar.KRX_CLOSE`) of ``day`` in ``QUANTBEAT_TIMEZONE``,
    in ISO 8601 UTC."""
    close = dt.datetime.combine(day, KRX_CLOSE, tzinfo=ZoneInfo(settings.timezone))
    return close.astimezone(dt.UTC).isoformat()


#: Hours of crypto signals and order syncs ``quantbeat run`` shows, ending at the KRX close's
#: hour (a day would be 24; six keep the run short and still fill an order).
CRYPTO_SIGNAL_HOURS = 6


def _crypto_hours(close: str) -> list[str]:
    """The ends (ISO UTC) of the :data:`CRYPTO_SIGNAL_HOURS` hours up to ``close``'s hour."""
    last = dt.datetime.fromisoformat(close).replace(minute=0, second=0, microsecond=0)
    return [
        (last - dt.timedelta(hours=k)).isoformat() for k in range(CRYPTO_SIGNAL_HOURS - 1, -1, -1)
    ]


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
#: Sessions per history task on the simulated market, generated in memory (no provider call
#: to keep inside a time limit): each task has a fixed cost (instrument registration, the
#: previous closes, counts), so a quarter of the year per task — 8 tasks instead of 26 —
#: took the first run's collection from 16.1 s to 11.7 s (measured, two worker threads).
SIMULATED_HISTORY_CHUNK = 65

#: Candidates per strategy the report lists.
TOP_CANDIDATES = 5


class _Job:
    """The pipeline's steps run one after another, each awaited (following the ids a step
    returns to the work it started) and recorded in the report."""

    def __init__(self, report: RunReport, day: dt.date, market: str | None, deadline: float):
        self.report = report
        self.day = day
        self.market = market
        self.deadline = deadline
        #: (task name, summary) of every collection task, for the report's totals.
        self.collected: list[tuple[str, dict[str, Any]]] = []

    def remaining(self) -> float:
        """Seconds left before the run's deadline (at least one, to ask once more)."""
        return max(1.0, self.deadline - time.monotonic())

    def wait(self, result: Any, what: str, task_name: str) -> Any:
        return wait_for(result, timeout=self.remaining(), what=what, task_name=task_name)

    def history(self) -> None:
        """First run: :data:`HISTORY_SESSIONS` sessions up to the day, both datasets, in
        chunks of :data:`HISTORY_CHUNK` (:data:`SIMULATED_HISTORY_CHUNK` on the simulated
        market; the backfill planner's tasks, sent at once)."""
        chunk = SIMULATED_HISTORY_CHUNK if self.report.simulated else HISTORY_CHUNK
        calls = plan_backfill(
            last_sessions(self.day, HISTORY_SESSIONS),
            chunk_sessions=chunk,
            datasets=("candles", "flows"),
            market=self.market,
        )
        sent = [(call, send(call)) for call in calls]
        for call, result in sent:
            self.record_collection(call, self.wait(result, call.task, call.task))

    def step(self, call: TaskCall) -> None:
        """Run one pipeline step and wait for it (and for what it started)."""
        summary = self.wait(send(call), call.task, call.task)
        if area_of(call.task) == "collect":
            self.record_collection(call, summary)
        elif call.task == "quantbeat.indicators.precompute":
            self.precomputed(summary)
        elif call.task == "quantbeat.news.collect":
            self.report.news = summary
            self.report.tasks.append({"task": call.task, **summary})
        elif call.task == "quantbeat.scans.run":
            self.scanned(call.kwargs["strategy"], summary)
        elif call.task == "quantbeat.track.update":
            self.report.track["update"] = summary
            self.report.tasks.append({"task": call.task, **summary})
        elif call.task == "quantbeat.track.backfill":
            self.report.signal_history = summary
            self.report.tasks.append({"task": call.task, **summary})
        elif call.task == "quantbeat.portfolio.update":
            self.report.portfolio["update"] = summary
            self.report.tasks.append({"task": call.task, **summary})
        elif call.task == "quantbeat.crypto.volatility_check":
            self.report.crypto = summary
            self.report.tasks.append({"task": call.task, **summary})
        elif call.task == "quantbeat.crypto.signal":
            self.report.crypto_signals.append(summary)
            self.report.tasks.append({"task": call.task, **summary})
        elif call.task == "quantbeat.crypto.order_sync":
            before = self.report.crypto_book.get("totals", {})
            totals = {k: int(before.get(k, 0)) + int(summary.get(k, 0))
                      for k in ("placed", "filled", "rejected")}  # fmt: skip
            self.report.crypto_book = {**summary, "totals": totals}
            self.report.tasks.append({"task": call.task, **summary})
        elif call.task == "quantbeat.market.gate":
            if "color" in summary:  # not skipped (a day without a session has no gate)
                self.report.gate = summary
            self.report.tasks.append({"task": call.task, **summary})
        else:
            self.report.tasks.append({"task": call.task, **summary})

    def window_step(self, call: TaskCall) -> None:
        """A step of the buy-window pipeline, awaited; the analyses' chord and the decision
        they start again with the news scores are followed to their end."""
        summary = self.wait(send(call), call.task, call.task)
        self.report.tasks.append({"task": call.task, **summary})
        name = str(call.kwargs.get("strategy", ""))
        if call.task == "quantbeat.news.collect":
            self.report.news = summary
        elif call.task == "quantbeat.scans.preliminary":
            self.report.window[name] = dict(summary)
        elif call.task == "quantbeat.ai.analyze_candidates" and summary.get("chord"):
            done = self.wait(
                result_of(summary["chord"]), f"the {name} window analyses", "quantbeat.ai.analyze"
            )
            self.report.window[name]["analysed"] = done.get("analysed", 0)
            if done.get("rescan"):
                decided = self.wait(
                    result_of(done["rescan"]), f"the {name} window decision",
                    "quantbeat.scans.preliminary",
                )  # fmt: skip
                self.report.window[name].update(decided)
        if name and call.task == "quantbeat.ai.analyze_candidates":
            self.report.window[name]["top"] = candidates(
                name, self.day, limit=TOP_CANDIDATES, phase="preliminary"
            )

    def record_collection(self, call: TaskCall, summary: dict[str, Any]) -> None:
        self.collected.append((call.task, summary))
        self.report.tasks.append({"task": call.task, **summary})

    def precomputed(self, summary: dict[str, Any]) -> None:
        """After the precompute: read one instrument's RSI through the public API, as a
        client would, and note the cache's counters."""
        report = self.report
        report.indicators = summary
        report.tasks.append({"task": "quantbeat.indicators.precompute", **summary})
        markets = [self.market] if self.market else [m.value for m in KRX_MARKETS]
        with session_scope() as session:
            members = universe(session, markets)
        if members:
            instrument = members[0][1]
            t0 = time.perf_counter()
            result = get_indicator(
                instrument,
                "rsi",
                {"period": 14},
                end=self.day,
                limit=SCAN_BARS,
                timeout=self.remaining(),
            )
            report.sample = {
                "instrument": instrument,
                "rsi": result.latest()["rsi"],
                "source": result.source,
                "ms": (time.perf_counter() - t0) * 1000,
            }
        report.cache = cache_stats().as_dict()

    def scanned(self, name: str, launched: dict[str, Any]) -> None:
        """A scan started its chord: wait for the run to finish, then for the analysis it
        started (``analysis``) and — for the closing bet — the re-scan with the news scores
        (``rescan``)."""
        summary = self.scan_result(name, launched)
        self.report.tasks.append({"task": "quantbeat.scans.run", **summary})
        self.report.scans[name] = {
            **summary,
            "top": candidates(name, self.day, limit=TOP_CANDIDATES),
        }
        if summary.get("analysis"):
            self.analysed(name, summary["analysis"])

    def scan_result(self, name: str, launched: dict[str, Any]) -> dict[str, Any]:
        if not launched.get("chord"):
            return launched  # nothing to scan: the run finished at once
        finished: dict[str, Any] = self.wait(
            result_of(launched["chord"]), f"the {name} scan", "quantbeat.scans.finish"
        )
        return finished

    def analysed(self, name: str, task_id: str) -> None:
        what = "quantbeat.ai.analyze_candidates"
        started = self.wait(result_of(task_id), what, what)
        done: dict[str, Any] = {"analysed": 0, "succeeded": 0, "failed": 0}
        if started["chord"]:
            done = self.wait(
                result_of(started["chord"]), f"the {name} analyses", "quantbeat.ai.analyze"
            )
            if done.get("rescan"):
                launched = self.wait(
                    result_of(done["rescan"]), f"the {name} re-scan", "quantbeat.scans.run"
                )
                rescan = self.scan_result(name, launched)
                self.report.scans[name] = {
                    **rescan,
                    "top": candidates(name, self.day, limit=TOP_CANDIDATES),
                }
        self.report.tasks.append({"task": what, **started})
        analyzer = analyzer_for()
        self.report.analysis[name] = {
            **{k: done.get(k, 0) for k in ("analysed", "succeeded", "failed")},
            "analyzer": analyzer.name,
            "model": analyzer.model,
            "rows": _analyses(self.day, started["instruments"]),
        }


def _analyses(day: dt.date, instruments: list[str]) -> list[dict[str, Any]]:
    """The latest stored analysis of the day of each of ``instruments`` (``MARKET:TICKER``)."""
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
    """The job's closing step: backtest each scanned strategy over the stored history of the
    whole universe (one shared account, at most :data:`BACKTEST_MAX_POSITIONS` positions),
    as asynchronous runs on the cpu workers, then write their reports."""
    markets = [market] if market else [m.value for m in KRX_MARKETS]
    with session_scope() as session:
        members = universe(session, markets)
        first = session.execute(select(func.min(DailyCandle.trade_date))).scalar_one()
    if not members or first is None or first >= day:
        return
    started = {}
    for scan in report.scans:
        strategy = scan_strategy(scan).backtest
        if strategy is None:
            continue  # a scan without a backtest strategy
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


#: The paper portfolio ``quantbeat run`` creates when none exists (on the simulated market:
#: its name says so).
DEFAULT_PORTFOLIO = "simulated-paper"
#: Its starting capital, KRW.
DEFAULT_CAPITAL = 100_000_000.0


def _paper_portfolio(job: _Job, report: RunReport, day: dt.date) -> None:
    """Step the paper portfolios through the day; on the simulated market, first create
    :data:`DEFAULT_PORTFOLIO` (default rules, :data:`DEFAULT_CAPITAL`) from the first stored
    signal's day when no portfolio exists. The report shows that portfolio (or the first)."""
    existing = list_portfolios()
    name: str | None = existing[0]["name"] if existing else None
    if not existing and report.simulated:
        with session_scope() as session:
            first = session.execute(select(func.min(Signal.trade_date))).scalar_one()
        if first is None:
            return
        # The replayed history holds final decisions only (there are no past 15:10
        # snapshots), so this portfolio trades the closing bet's final signals at the close
        # (domain notes §9 allows either entry); a deployment's default is the 15:10 one.
        create_portfolio(
            DEFAULT_PORTFOLIO,
            capital=DEFAULT_CAPITAL,
            start_date=first,
            rules={"phases": dict.fromkeys(scan_strategy_names(), "final")},
        )
        name = DEFAULT_PORTFOLIO
    if name is None:
        return
    job.step(TaskCall("quantbeat.portfolio.update", {"through": day.isoformat()}))
    report.portfolio.update(describe_portfolio(name))


#: The file subscription ``quantbeat run`` adds on the simulated market when there is none,
#: so a newcomer sees the messages the day produced (README "Notifications").
DEFAULT_SUBSCRIPTION = "simulated-file"
#: Its file, under QUANTBEAT_NOTIFY_FILE_DIR.
DEFAULT_NOTIFY_FILE = "simulated-messages.jsonl"


def _inbox(settings: Settings, report: RunReport) -> tuple[Path, int] | None:
    """On the simulated market with no subscription yet, subscribe :data:`DEFAULT_NOTIFY_FILE`
    to every event (English); return the file channel's path and its size now (the run's
    messages are what is appended after it), or ``None`` when no file subscription exists."""
    subscribed = notify.listing()
    if not subscribed and report.simulated:
        notify.add(DEFAULT_SUBSCRIPTION, "file", target=DEFAULT_NOTIFY_FILE, language="en")
        subscribed = notify.listing()
    files = [s for s in subscribed if s.channel == "file" and s.enabled and s.target]
    if not files:
        return None
    target = Path(files[0].target or "")
    path = target if target.is_absolute() else settings.notify_file_path / target
    report.notifications["subscription"] = files[0].name
    return path, path.stat().st_size if path.exists() else 0


def _notifications(report: RunReport, inbox: tuple[Path, int] | None, timeout: float) -> None:
    """Wait for the run's deliveries, then read the messages the file channel received."""
    drained = notify.drain(timeout=max(1.0, timeout))
    report.notifications.update(ledger=drained["counts"], open=drained["open"])
    if inbox is None:
        return
    path, start = inbox
    report.notifications["file"] = str(path)
    messages: list[dict[str, Any]] = []
    if path.exists():
        with path.open("rb") as handle:
            handle.seek(start)
            for line in handle.read().decode("utf-8", errors="replace").splitlines():
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    continue
                messages.append(
                    {k: item.get(k) for k in ("type", "subject", "text", "simulated", "part")}
                )
    report.notifications["messages"] = messages


def _count_candles(url: str) -> int:
    """Daily candles of KRX instruments stored (the crypto signal keeps daily crypto bars in
    the same table; they are not the KRX history)."""
    krx = select(Instrument.id).where(Instrument.market != Market.UPBIT.value)
    with session_scope(url) as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(DailyCandle)
                .where(DailyCandle.instrument_id.in_(krx))
            ).scalar_one()
        )
