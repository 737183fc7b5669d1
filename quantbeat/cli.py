"""The ``quantbeat`` command line.

Every error ends as one line on stderr and a non-zero exit code, never a bare traceback
(set ``QUANTBEAT_DEBUG=1`` to see one):

====  ==========================================================
code  meaning
====  ==========================================================
0     success
1     unexpected error (a bug: please report it)
2     bad usage or invalid input (the message names the value)
3     configuration error (the message names the variable)
4     a service is unavailable (database, broker, worker); retry later
5     the work failed permanently (see ``job_runs`` / ``dead_letters``)
====  ==========================================================
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table
from typer.exceptions import TyperException

from quant.errors import (
    ConfigError,
    PermanentError,
    QuantbeatError,
    TransientError,
    ValidationError,
)

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_FAILED = range(6)

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="quantbeat",
    help="Scheduled market analysis on Celery: collect, scan, backtest, analyse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
collect_app = typer.Typer(help="Market-data collection.", no_args_is_help=True)
data_app = typer.Typer(help="Data quality: gaps.", no_args_is_help=True)
indicators_app = typer.Typer(
    help="Indicator values for an instrument (cache-first; misses computed by cpu workers).",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")
app.add_typer(indicators_app, name="indicators")
app.add_typer(collect_app, name="collect")
app.add_typer(data_app, name="data")


def _register_import() -> None:
    from quantbeat.cli_import import import_app

    app.add_typer(import_app, name="import")
    from quantbeat.cli_backtest import backtest_app

    app.add_typer(backtest_app, name="backtest")
    from quantbeat.cli_ai import analyze, news_app

    app.command("analyze")(analyze)
    app.add_typer(news_app, name="news")
    from quantbeat.cli_settings import settings_app

    app.add_typer(settings_app, name="settings")
    from quantbeat.cli_health import health_app

    app.add_typer(health_app, name="health")
    from quantbeat.cli_ops import dlq_app, jobs_app

    app.add_typer(jobs_app, name="jobs")
    app.add_typer(dlq_app, name="dlq")


_register_import()


def _parse_date(value: str | None, option: str) -> dt.date | None:
    from tasks._args import parse_date

    return None if value is None else parse_date(value, field=option)


# --- run ------------------------------------------------------------------------------------
@app.command()
def run(
    date: Annotated[
        str | None, typer.Option(help="Trading day (YYYY-MM-DD); default: latest closed")
    ] = None,
    market: Annotated[str | None, typer.Option(help="KOSPI or KOSDAQ; default: both")] = None,
    distributed: Annotated[
        bool,
        typer.Option(
            "--distributed", help="Use the configured broker, database and running workers"
        ),
    ] = False,
    database_url: Annotated[
        str | None, typer.Option(help="Database URL; default: var/quantbeat.sqlite (embedded)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the work")] = 600.0,
) -> None:
    """Run the main job and print its report (embedded: SQLite, in-process broker and worker)."""
    from quantbeat import runner
    from quantbeat.logging import configure_logging
    from quantbeat.settings import get_settings
    from tasks._args import parse_krx_markets

    day = _parse_date(date, "--date")
    if market is not None:
        market = parse_krx_markets(market, field="--market")[0].value
    settings = get_settings()
    log_file = settings.data_dir / "quantbeat-run.log"
    configure_logging(settings.log_level, json=True, path=log_file)
    report = runner.run(
        trade_date=day,
        market=market,
        distributed=distributed,
        database_url=database_url,
        timeout=timeout,
        log_file=str(log_file),
    )
    _print_report(report)


def _print_report(report: Any) -> None:
    label = " [bold yellow](SIMULATED market data)[/]" if report.simulated else ""
    console.print(f"[bold]quantbeat run[/] — {report.mode} mode{label}")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column()
    table.add_row("trading day", report.trade_date.isoformat())
    kind = (
        "first run: a year of history"
        if report.history
        else ("the day asked for" if report.explicit else "since the last stored session")
    )
    table.add_row("sessions collected", f"{report.sessions} ({kind})")
    table.add_row(
        "source",
        "simulated market (generated data, not real prices)" if report.simulated else report.source,
    )
    table.add_row("database", report.database)
    table.add_row("instruments", f"{report.instruments:,}")
    if report.candles:
        c = report.candles
        stored = c.get("inserted", 0) + c.get("updated", 0)
        table.add_row(
            "candles stored",
            f"{stored:,} (new {c.get('inserted', 0):,}, changed {c.get('updated', 0):,}, "
            f"unchanged {c.get('unchanged', 0):,})",
        )
    else:
        table.add_row("candles stored", "0 (no KRX session on this day)")
    if report.flows:
        f = report.flows
        table.add_row(
            "investor flows stored",
            f"{f.get('inserted', 0) + f.get('updated', 0):,} (unchanged {f.get('unchanged', 0):,})",
        )
    table.add_row(
        "rows rejected",
        f"{report.rejected:,}" + (" (see data_rejections)" if report.rejected else ""),
    )
    table.add_row("candles in database", f"{report.candle_rows_total:,}")
    if report.indicators:
        ind = report.indicators
        table.add_row(
            "indicators precomputed",
            f"{ind.get('indicators', 0)} scan indicators × {ind.get('with_bars', 0):,} instruments "
            f"= {ind.get('series', 0):,} series in {ind.get('seconds', 0):.1f} s "
            f"(cache: {ind.get('cache')})",
        )
    if report.sample:
        smp = report.sample
        rsi = "n/a (too few bars)" if smp.get("rsi") is None else f"{smp['rsi']:.1f}"
        table.add_row(
            "sample read",
            f"RSI(14) of {smp['instrument']} = {rsi}, from the {smp['source']} "
            f"in {smp['ms']:.1f} ms",
        )
    if report.cache:
        rate = report.cache.get("hit_rate")
        table.add_row(
            "indicator cache",
            f"hits {report.cache.get('hits', 0):,}, misses {report.cache.get('misses', 0):,}"
            + (f", hit rate {rate:.1%}" if rate is not None else ""),
        )
    for name, scan in report.scans.items():
        table.add_row(
            f"{name} scan",
            f"{scan.get('scanned', 0):,}/{scan.get('total', 0):,} instruments scanned, "
            f"{scan.get('failed', 0)} failed, {scan.get('candidates', 0)} candidates",
        )
    if report.news:
        n = report.news
        table.add_row(
            "news collected",
            f"{n.get('items', 0):,} items ({n.get('new', 0):,} new, {n.get('mentions', 0):,} "
            f"instrument mentions) from {', '.join(n.get('sources') or {}) or 'no source'}",
        )
    for name, a in report.analysis.items():
        offline = " (offline rules: no Gemini key)" if a.get("analyzer") == "offline" else ""
        table.add_row(
            f"{name} analysis",
            f"{a['succeeded']}/{a['analysed']} top candidates analysed, {a['failed']} failed, "
            f"{a['model']}{offline}",
        )
    for name, bt in report.backtests.items():
        table.add_row(
            f"{name} backtest",
            f"{bt['state']}: {bt['instruments']} instruments, {bt.get('seconds', 0):.1f} s "
            f"(run {bt['run_id']})",
        )
    table.add_row("tasks", str(len(report.tasks)))
    table.add_row("time taken", f"{report.seconds:.2f} s")
    if report.log_file:
        table.add_row("log", report.log_file)
    console.print(table)
    for name, scan in report.scans.items():
        top = scan.get("top") or []
        if not top:
            continue
        ranked = Table(title=f"top {name} candidates, {report.trade_date}", title_justify="left")
        for column in ("#", "instrument", "name", "score", "grade", "entry"):
            ranked.add_column(
                column, justify="right" if column in ("#", "score", "entry") else "left"
            )
        for c in top:
            ranked.add_row(
                str(c.rank),
                c.instrument,
                c.name,
                "" if c.score is None else f"{c.score:.1f}",
                c.grade or "",
                "" if c.entry_price is None else f"{c.entry_price:,.0f}",
            )
        console.print(ranked)
    _print_analyses(report)
    _print_backtests(report)


def _print_analyses(report: Any) -> None:
    """The analysed candidates: news score, sentiment and catalyst per instrument."""
    for name, a in report.analysis.items():
        rows = a.get("rows") or []
        if not rows:
            continue
        table = Table(title=f"{name} candidates analysed ({a['model']})", title_justify="left")
        for column in ("instrument", "news", "sentiment", "items", "catalyst"):
            table.add_column(
                column, justify="right" if column in ("news", "sentiment", "items") else "left"
            )
        for r in rows:
            ok = r["status"] == "succeeded"
            table.add_row(
                r["instrument"],
                str(r["news_score"]) if ok else "failed",
                f"{r['sentiment']:+.2f}" if ok and r["sentiment"] is not None else "",
                str(r["news_count"]),
                (r["catalyst"] or "")[:70],
            )
        console.print(table)


def _figure(run: dict[str, Any], name: str) -> Any:
    found = (run.get("metrics") or {}).get(name)
    return found if found is not None else (run.get("summary") or {}).get(name)


def _print_backtests(report: Any) -> None:
    """The run's closing section: each strategy's backtest metrics and its report path."""
    if not report.backtests:
        return
    names = list(report.backtests)
    table = Table(
        title=f"backtests over the stored history{' (SIMULATED data)' if report.simulated else ''}",
        title_justify="left",
    )
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    from quantbeat.cli_backtest import _fmt

    rows = ("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown",
            "max_drawdown_days", "calmar", "win_rate", "profit_factor", "expectancy",
            "exposure", "trades", "open_trades")  # fmt: skip
    for metric in rows:
        table.add_row(
            metric,
            *(_fmt(metric, _figure(report.backtests[n], metric)) for n in names),
        )
    table.add_row(
        "final equity",
        *(
            f"{(report.backtests[n].get('summary') or {}).get('final_equity', 0):,.0f}"
            for n in names
        ),
    )
    console.print(table)
    for name in names:
        bt = report.backtests[name]
        if bt.get("report"):
            console.print(f"{name} report: {bt['report']}", soft_wrap=True)
        elif bt.get("error"):
            console.print(f"{name} backtest {bt['state']}: {bt['error']}", soft_wrap=True)


# --- processes ------------------------------------------------------------------------------
def _queues(value: str) -> list[str]:
    from workers.queues import Queue

    names = [q.strip() for q in value.split(",") if q.strip()]
    known = {q.value for q in Queue}
    bad = [q for q in names if q not in known]
    if not names or bad:
        raise ValidationError(
            f"--queues must list queues from {sorted(known)}, got {value!r}",
            field="--queues",
            value=value,
        )
    return names


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated: io, cpu, ai")] = "io,cpu,ai",
    pool: Annotated[
        str | None, typer.Option(help="prefork|threads|solo; default: prefork for cpu")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="Processes or threads")] = None,
    hostname: Annotated[str | None, typer.Option(help="Node name; default <queues>@%h")] = None,
    loglevel: Annotated[str, typer.Option(help="Log level")] = "INFO",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Prometheus /metrics port; default QUANTBEAT_METRICS_PORT (9808); 0: off. "
            "Two workers on one host need different ports."
        ),
    ] = None,
) -> None:
    """Start a Celery worker consuming the given queues."""
    names = _queues(queues)
    chosen_pool = pool or ("prefork" if "cpu" in names else "threads")
    if chosen_pool not in ("prefork", "threads", "solo"):
        raise ValidationError(f"--pool must be prefork, threads or solo, got {pool!r}")
    if metrics_port is not None:
        if not 0 <= metrics_port <= 65_535:
            raise ValidationError(
                f"--metrics-port must be 0 (off) or a port 1-65535, got {metrics_port}",
                field="--metrics-port",
                value=metrics_port,
            )
        # The worker's signal handlers read settings; this process is the worker.
        from quantbeat.settings import reset_settings

        os.environ["QUANTBEAT_METRICS_PORT"] = str(metrics_port)
        reset_settings()
    if concurrency is None:
        concurrency = (os.cpu_count() or 2) if chosen_pool == "prefork" else 16
    from workers.app import app as celery_app

    _celery(
        celery_app,
        [
            "worker",
            f"--queues={','.join(names)}",
            f"--pool={chosen_pool}",
            f"--concurrency={concurrency}",
            f"--hostname={hostname or '-'.join(names) + '@%h'}",
            f"--loglevel={loglevel}",
        ],
    )


def _celery(celery_app: Any, argv: list[str]) -> None:
    """Run a celery sub-command in this process; a non-zero exit becomes ours."""
    code = celery_app.start(argv)
    if code:
        raise typer.Exit(int(code))


@app.command()
def beat(
    loglevel: Annotated[str, typer.Option(help="Log level")] = "INFO",
) -> None:
    """Start Celery beat (celery-redbeat). Several may run: one ticks, the others wait for
    its lock, and a duplicate tick is a no-op (see workers/beat.py)."""
    from quantbeat.settings import get_settings
    from workers.app import app as celery_app

    settings = get_settings()
    if settings.redis_url.startswith("memory://"):
        raise ConfigError(
            "beat keeps its schedule and lock in Redis; QUANTBEAT_REDIS_URL is "
            f"{settings.redis_url!r}: set it to a redis:// URL"
        )
    _celery(
        celery_app,
        [
            "beat",
            "--scheduler=workers.beat:QuantbeatScheduler",
            f"--max-interval={settings.beat_max_interval:g}",
            f"--loglevel={loglevel}",
        ],
    )


@app.command()
def flower(
    port: Annotated[
        int | None, typer.Option(help="HTTP port; default QUANTBEAT_FLOWER_PORT")
    ] = None,
    address: Annotated[
        str, typer.Option(help="Address to listen on (default: every interface)")
    ] = "",
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Allow running without basic auth (local only)")
    ] = False,
) -> None:
    """Start Flower, the Celery monitoring UI, with basic auth from QUANTBEAT_FLOWER_BASIC_AUTH.

    Task history persists across restarts in QUANTBEAT_FLOWER_DB (default
    <data dir>/flower/flower.db), saved every QUANTBEAT_FLOWER_STATE_SAVE_INTERVAL seconds and
    at shutdown, capped at QUANTBEAT_FLOWER_MAX_TASKS tasks.

    Raises:
        quant.errors.ConfigError: no basic auth and no ``--no-auth``, or basic auth that is not
            ``user:password`` (comma-separated for several users).
    """
    from quantbeat.settings import get_settings
    from workers.app import app as celery_app

    settings = get_settings()
    if settings.flower_basic_auth is not None:
        credentials = settings.flower_basic_auth.get_secret_value()
        if not all(user and ":" in user for user in credentials.split(",")):
            # Never echo the value: it holds passwords.
            raise ConfigError(
                "QUANTBEAT_FLOWER_BASIC_AUTH must be user:password (several: comma-separated)"
            )
        # Through Flower's own environment option, not argv: argv is visible in `ps`.
        os.environ["FLOWER_BASIC_AUTH"] = credentials
    elif not no_auth:
        raise ConfigError(
            "QUANTBEAT_FLOWER_BASIC_AUTH is not set (user:password); "
            "pass --no-auth to run Flower unprotected on a trusted machine"
        )
    db = settings.flower_db_path
    # The state file is a pickle (shelve): whoever can write it can run code in Flower.
    db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    argv = [
        "flower",
        f"--port={port or settings.flower_port}",
        "--persistent=True",
        f"--db={db}",
        f"--state_save_interval={round(settings.flower_state_save_interval * 1000)}",
        f"--max_tasks={settings.flower_max_tasks}",
    ]
    if address:
        argv.append(f"--address={address}")
    _celery(celery_app, argv)


# --- db -------------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision")] = "head",
) -> None:
    """Apply migrations to QUANTBEAT_DATABASE_URL."""
    from db import migrate
    from db.engine import display_url
    from quantbeat.settings import get_settings

    url = get_settings().database_url
    migrate.upgrade(url, revision)
    console.print(f"database {display_url(url)} at revision {migrate.current_revision(url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's migration revision."""
    from db import migrate
    from quantbeat.settings import get_settings

    console.print(migrate.current_revision(get_settings().database_url) or "(empty)")


# --- collect ---------------------------------------------------------------------------------
def _send_and_report(
    task_name: str, date: str | None, market: str | None, wait: bool, timeout: float
) -> None:
    from tasks._args import parse_krx_markets
    from workers.app import app as celery_app

    day = _parse_date(date, "--date")
    if market is not None:
        market = parse_krx_markets(market, field="--market")[0].value
    result = celery_app.send_task(
        task_name, kwargs={"trade_date": day.isoformat() if day else None, "market": market}
    )
    if not wait:
        console.print(f"queued {task_name} as {result.id}")
        return
    from celery.exceptions import TimeoutError as CeleryTimeout

    try:
        summary = result.get(timeout=timeout)
    except CeleryTimeout:
        raise TransientError(
            f"{task_name} ({result.id}) did not finish within {timeout:.0f} s; "
            "is a worker consuming the io queue? (quantbeat worker --queues io)"
        ) from None
    console.print_json(data={"task_id": result.id, **summary})


@collect_app.command("daily")
def collect_daily(
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD; default latest closed")] = None,
    market: Annotated[str | None, typer.Option(help="KOSPI or KOSDAQ; default both")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the result")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 300.0,
) -> None:
    """Enqueue quantbeat.collect.daily_candles for a day (needs a running io worker)."""
    _send_and_report("quantbeat.collect.daily_candles", date, market, wait, timeout)


@collect_app.command("flows")
def collect_flows(
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD; default latest closed")] = None,
    market: Annotated[str | None, typer.Option(help="KOSPI or KOSDAQ; default both")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the result")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 300.0,
) -> None:
    """Enqueue quantbeat.collect.investor_flows for a day (needs a running io worker)."""
    _send_and_report("quantbeat.collect.investor_flows", date, market, wait, timeout)


@collect_app.command("backfill")
def collect_backfill(
    from_: Annotated[str, typer.Option("--from", help="First day (YYYY-MM-DD)")],
    to: Annotated[str, typer.Option("--to", help="Last day (YYYY-MM-DD)")],
    market: Annotated[str | None, typer.Option(help="KOSPI or KOSDAQ; default both")] = None,
    dataset: Annotated[str, typer.Option(help="candles, flows or both")] = "both",
    chunk_sessions: Annotated[int, typer.Option(help="Sessions per task")] = 20,
    wait: Annotated[bool, typer.Option(help="Wait and show progress")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait in all")] = 3600.0,
) -> None:
    """Fill history: one quantbeat.collect.daily_range task per chunk of KRX sessions."""
    from rich.progress import Progress

    from quantbeat.sources import krx_calendar
    from tasks._args import parse_date, parse_krx_markets
    from workers.app import app as celery_app

    first, last = parse_date(from_, field="--from"), parse_date(to, field="--to")
    if first > last:
        raise ValidationError(f"--from {first} is after --to {last}", field="--from")
    datasets = {"both": ["candles", "flows"], "candles": ["candles"], "flows": ["flows"]}.get(
        dataset
    )
    if datasets is None:
        raise ValidationError(
            f"--dataset must be candles, flows or both, got {dataset!r}", field="--dataset"
        )
    if not 1 <= chunk_sessions <= 260:
        raise ValidationError(
            f"--chunk-sessions must be 1..260, got {chunk_sessions}", field="--chunk-sessions"
        )
    if market is not None:
        market = parse_krx_markets(market, field="--market")[0].value
    sessions = krx_calendar().sessions(first, last)
    if not sessions:
        console.print(f"no KRX sessions between {first} and {last}")
        return
    chunks = [sessions[i : i + chunk_sessions] for i in range(0, len(sessions), chunk_sessions)]
    sent = [
        (
            ds,
            celery_app.send_task(
                "quantbeat.collect.daily_range",
                kwargs={
                    "start": c[0].isoformat(),
                    "end": c[-1].isoformat(),
                    "market": market,
                    "dataset": ds,
                },
            ),
        )
        for ds in datasets
        for c in chunks
    ]
    results = [r for _, r in sent]
    console.print(
        f"queued {len(results)} task(s): {len(sessions)} sessions {sessions[0]}..{sessions[-1]},"
        f" datasets {', '.join(datasets)}"
    )
    if not wait:
        return
    import time

    deadline = time.monotonic() + timeout
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("backfilling", total=len(results))
        while True:
            done = sum(1 for r in results if r.ready())
            progress.update(bar, completed=done)
            if done == len(results):
                break
            if time.monotonic() > deadline:
                raise TransientError(
                    f"backfill: {len(results) - done} task(s) unfinished after {timeout:.0f} s; "
                    "they keep running on the workers"
                )
            time.sleep(0.5)
    totals: dict[str, dict[str, int]] = {ds: {} for ds in datasets}
    failed = []
    for ds, r in sent:
        if not r.successful():
            failed.append(r.id)
            continue
        summary = r.result
        counts = {**(summary.get(ds) or {}), "rejected": summary.get("rejected") or 0}
        for k, v in counts.items():
            totals[ds][k] = totals[ds].get(k, 0) + int(v)
    for ds, counts in totals.items():
        console.print(f"{ds}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if failed:
        raise PermanentError(
            f"{len(failed)} backfill task(s) failed (see quantbeat job history): "
            + ", ".join(failed[:5])
        )


@data_app.command("gaps")
def data_gaps(
    dataset: Annotated[
        str, typer.Option(help="candles, flows, or crypto-<interval> (e.g. crypto-60m)")
    ] = "candles",
    market: Annotated[str | None, typer.Option(help="KOSPI or KOSDAQ; default both")] = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="Window start; default 260 sessions back")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Window end; default latest closed")
    ] = None,
    backfill: Annotated[
        bool, typer.Option("--backfill", help="Queue daily_range tasks that fill the gaps")
    ] = False,
    limit: Annotated[int, typer.Option(help="Gaps to list")] = 30,
) -> None:
    """Report sessions missing per instrument (listed instruments, KRX sessions) and
    optionally queue the backfill that fills them."""
    from db.engine import session_scope
    from db.models import DailyCandle, InvestorFlow
    from db.store import stored_dates
    from quant.market.gaps import covering_ranges, find_gaps, without_rows
    from quantbeat.settings import get_settings
    from quantbeat.sources import krx_calendar, latest_krx_session
    from tasks._args import parse_date, parse_krx_markets

    if dataset.startswith("crypto-"):
        _crypto_gaps(dataset.removeprefix("crypto-"), from_, to, backfill, limit)
        return
    models = {"candles": DailyCandle, "flows": InvestorFlow}
    if dataset not in models:
        raise ValidationError(
            f"--dataset must be candles, flows or crypto-<interval> (e.g. crypto-60m), "
            f"got {dataset!r}"
        )
    markets = [m.value for m in parse_krx_markets(market, field="--market")]
    calendar = krx_calendar()
    end = parse_date(to, field="--to") if to else latest_krx_session(get_settings())
    if from_:
        start = parse_date(from_, field="--from")
    else:
        start = calendar.sessions(end - dt.timedelta(days=520), end)[-260]
    sessions = calendar.sessions(start, end)
    with session_scope() as session:
        stored = stored_dates(session, models[dataset], markets, start, end)
    gaps = find_gaps(stored, sessions)
    missing = sum(g.sessions for g in gaps)
    empty = without_rows(stored, sessions)
    console.print(
        f"{dataset} {start}..{end} ({len(sessions)} KRX sessions), {len(stored):,} listed "
        f"instruments: {len(gaps):,} gap(s), {missing:,} missing instrument-sessions",
        soft_wrap=True,
    )
    if empty:
        console.print(
            f"{len(empty):,} listed instrument(s) have no row in the window (new listings or "
            f"old imports; not counted): {', '.join(t for _, t in empty[:10])}"
            + (" …" if len(empty) > 10 else ""),
            soft_wrap=True,
        )
    if gaps:
        table = Table("market", "ticker", "first missing", "last missing", "sessions")
        for g in gaps[:limit]:
            table.add_row(
                g.market, g.ticker, g.first.isoformat(), g.last.isoformat(), str(g.sessions)
            )
        console.print(table)
        if len(gaps) > limit:
            console.print(f"… and {len(gaps) - limit:,} more (--limit)")
    if backfill and gaps:
        from workers.app import app as celery_app

        queued = 0
        for first, last in covering_ranges(gaps, sessions):
            span = calendar.sessions(first, last)
            for i in range(0, len(span), 20):
                chunk = span[i : i + 20]
                celery_app.send_task(
                    "quantbeat.collect.daily_range",
                    kwargs={
                        "start": chunk[0].isoformat(),
                        "end": chunk[-1].isoformat(),
                        "market": market,
                        "dataset": dataset,
                    },
                )
                queued += 1
        console.print(f"queued {queued} quantbeat.collect.daily_range task(s)", soft_wrap=True)


def _crypto_gaps(
    interval: str, from_: str | None, to: str | None, backfill: bool, limit: int
) -> None:
    """Gaps in stored crypto bars: every ``interval`` step, 24/7, from each market's first
    stored bar in the window. Upbit emits no bar for a minute without trades, so thin markets
    show short gaps that a backfill cannot fill; the report says so."""
    from db.engine import session_scope
    from db.store import stored_bar_starts
    from quant.market.gaps import covering_ranges, find_gaps
    from quant.market.types import INTRADAY_INTERVALS, Market
    from tasks.collect import _floor_to_interval

    if interval not in INTRADAY_INTERVALS:
        raise ValidationError(
            f"--dataset crypto-<interval> needs one of {', '.join(INTRADAY_INTERVALS)}, "
            f"got {interval!r}",
            field="--dataset",
        )
    minutes = int(interval.removesuffix("m"))
    step = dt.timedelta(minutes=minutes)

    def moment(value: str | None, default: dt.datetime, option: str) -> dt.datetime:
        if value is None:
            return default
        from tasks.collect import _parse_moment

        text = value if "T" in value else f"{value}T00:00:00+00:00"
        return _parse_moment(text, field=option)

    end = moment(to, _floor_to_interval(dt.datetime.now(dt.UTC), minutes) - step, "--to")
    start = moment(from_, end - dt.timedelta(days=7), "--from")
    if start > end:
        raise ValidationError(f"--from {start} is after --to {end}", field="--from")
    points = [start + i * step for i in range(int((end - start) / step) + 1)]
    with session_scope() as session:
        stored = stored_bar_starts(session, Market.UPBIT.value, interval, start, end)
    gaps = find_gaps(stored, points)
    console.print(
        f"crypto {interval} bars {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} UTC, "
        f"{len(stored):,} listed markets: {len(gaps):,} gap(s), "
        f"{sum(g.sessions for g in gaps):,} missing bars (Upbit has no bar where nothing "
        "traded, so thin markets show gaps that stay)",
        soft_wrap=True,
    )
    if gaps:
        table = Table("market", "first missing (UTC)", "last missing (UTC)", "bars")
        for g in gaps[:limit]:
            table.add_row(
                g.ticker, f"{g.first:%Y-%m-%d %H:%M}", f"{g.last:%Y-%m-%d %H:%M}", str(g.sessions)
            )
        console.print(table)
    if backfill and gaps:
        from workers.app import app as celery_app

        tickers = sorted({g.ticker for g in gaps})
        ranges = covering_ranges(gaps, points)
        for first, last in ranges:
            celery_app.send_task(
                "quantbeat.collect.crypto_candles",
                kwargs={
                    "interval": interval,
                    "start": first.isoformat(),
                    "end": (last + step).isoformat(),
                    "tickers": tickers,
                },
            )
        console.print(
            f"queued {len(ranges)} quantbeat.collect.crypto_candles task(s)", soft_wrap=True
        )


# --- indicators ------------------------------------------------------------------------------
def _param_pairs(values: list[str] | None) -> dict[str, object]:
    """``NAME=VALUE`` options → a dict; numbers are parsed, the rest stay text."""
    out: dict[str, object] = {}
    for item in values or []:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ValidationError(
                f"--param must look like NAME=VALUE, got {item!r}", field="--param", value=item
            )
        text = raw.strip()
        value: object = text
        try:
            value = int(text)
        except ValueError:
            with contextlib.suppress(ValueError):
                value = float(text)
        out[name.strip()] = value
    return out


@indicators_app.command("get")
def indicators_get(
    instrument: Annotated[
        str, typer.Argument(help="MARKET:TICKER (or a ticker), e.g. KOSPI:005930")
    ],
    indicator: Annotated[
        str, typer.Argument(help="Indicator name (see: quantbeat indicators list)")
    ],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE (repeatable)")
    ] = None,
    interval: Annotated[str, typer.Option(help="1d or an intraday interval (1m … 240m)")] = "1d",
    start: Annotated[str | None, typer.Option(help="First bar time (ISO); default open")] = None,
    end: Annotated[str | None, typer.Option(help="Last bar time (ISO); default latest")] = None,
    limit: Annotated[int, typer.Option(help="Bars to compute over (the last N in range)")] = 1000,
    rows: Annotated[int, typer.Option(help="Rows to print (the latest)")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print every value as JSON")] = False,
    inline: Annotated[
        bool, typer.Option("--inline", help="Compute in this process (no worker needed)")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a worker")] = 30.0,
) -> None:
    """Print an indicator's values for an instrument: from the cache, or computed by a cpu
    worker (--inline: here)."""
    from quantbeat.indicators import get_indicator, iter_rows

    result = get_indicator(
        instrument,
        indicator,
        _param_pairs(param),
        interval=interval,
        start=start,
        end=end,
        limit=limit,
        timeout=timeout,
        inline=inline,
    )
    if as_json:
        console.print_json(data=result.to_json())
        return
    req = result.request
    params = ", ".join(f"{k}={v}" for k, v in req.params.items()) or "no parameters"
    origin = "from the cache" if result.source == "cache" else "computed"
    console.print(
        f"{req.indicator}({params}) of {req.instrument}, {req.interval}: "
        f"{len(result.time)} bars, {origin}",
        soft_wrap=True,
    )
    table = Table()
    table.add_column("time")
    for name in result.values:
        table.add_column(name, justify="right")
    for row in iter_rows(result, rows):
        table.add_row(row[0], *("" if v is None else f"{v:,.4f}" for v in row[1:]))
    console.print(table)


@indicators_app.command("list")
def indicators_list() -> None:
    """The indicators, their parameters (with defaults) and outputs."""
    from quant.indicators import describe

    table = Table()
    table.add_column("indicator")
    table.add_column("parameters (default)")
    table.add_column("outputs")
    table.add_column("description")
    for item in describe():
        params = ", ".join(f"{p['name']}={p['default']}" for p in item["params"]) or "-"
        table.add_row(item["name"], params, ", ".join(item["outputs"]), item["description"])
    console.print(table)


@indicators_app.command("cache")
def indicators_cache(
    clear: Annotated[bool, typer.Option("--clear", help="Remove every entry and counter")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """The indicator cache's counters: hits, misses, hit rate, evictions (entries dropped
    because new candles were stored), dropped stale writes and errors."""
    from quantbeat.indicators import indicator_cache

    cache = indicator_cache()
    if clear:
        cache.clear()
        console.print("indicator cache cleared")
        return
    stats = cache.stats().as_dict()
    if as_json:
        console.print_json(data=stats)
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column()
    for key, value in stats.items():
        shown = f"{value:.1%}" if key == "hit_rate" and value is not None else str(value)
        table.add_row(key.replace("_", " "), shown)
    console.print(table)


# --- scans -----------------------------------------------------------------------------------
@app.command()
def scan(
    strategy: Annotated[str, typer.Argument(help="vcp or closing-bet")],
    date: Annotated[
        str | None, typer.Option(help="Trading day (YYYY-MM-DD); default: latest closed")
    ] = None,
    market: Annotated[str | None, typer.Option(help="KOSPI or KOSDAQ; default: both")] = None,
    top: Annotated[int, typer.Option(help="Candidates to print")] = 20,
    wait: Annotated[bool, typer.Option(help="Wait for the scan and print the candidates")] = True,
    show: Annotated[
        bool, typer.Option("--show", help="Only print the stored candidates of the day")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the scan")] = 600.0,
) -> None:
    """Run one universe scan on the cpu workers (or --show the stored result) and print the
    ranked candidates."""
    from quantbeat.scans import candidates, canonical_strategy, run_scan
    from quantbeat.settings import get_settings
    from quantbeat.sources import latest_krx_session
    from tasks._args import parse_krx_markets

    name = canonical_strategy(strategy)
    day = _parse_date(date, "--date")
    if market is not None:
        market = parse_krx_markets(market, field="--market")[0].value
    if show:
        ranked = candidates(name, day or latest_krx_session(get_settings()), limit=top)
        summary: dict[str, Any] = {"strategy": name}
    else:
        summary = run_scan(name, day, market=market, wait=wait, timeout=timeout)
        if not wait:
            console.print(f"queued the {name} scan as run {summary['run_id']}")
            return
        ranked = summary.pop("ranked")[:top]
    if as_json:
        console.print_json(
            data={
                **summary,
                "candidates": [
                    {
                        "rank": c.rank,
                        "instrument": c.instrument,
                        "name": c.name,
                        "score": c.score,
                        "grade": c.grade,
                        "entry_price": c.entry_price,
                        "status": c.status,
                        "reasons": list(c.reasons),
                    }
                    for c in ranked
                ],
            }
        )
        return
    if "coverage" in summary:
        console.print(
            f"{name} scan of {summary['trade_date']}: {summary['coverage']} instruments "
            f"scanned, {summary['failed']} failed, {summary['candidates']} candidates "
            f"({summary['duration_ms'] / 1000:.1f} s, run {summary['run_id']})",
            soft_wrap=True,
        )
    table = Table()
    for column in ("#", "instrument", "name", "score", "grade", "entry", "note"):
        table.add_column(column, justify="right" if column in ("#", "score", "entry") else "left")
    for c in ranked:
        table.add_row(
            str(c.rank),
            c.instrument,
            c.name,
            "" if c.score is None else f"{c.score:.1f}",
            c.grade or "",
            "" if c.entry_price is None else f"{c.entry_price:,.0f}",
            c.status or "",
        )
    console.print(table if ranked else "no candidates")


# --- entry point ------------------------------------------------------------------------------
def _classify(exc: BaseException) -> tuple[int, str]:
    """Exit code and one-line message for an exception escaping a command."""
    if isinstance(exc, ValidationError):
        return EXIT_USAGE, f"invalid input: {exc}"
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG, f"configuration error: {exc}"
    if isinstance(exc, TransientError):
        return EXIT_UNAVAILABLE, f"unavailable: {exc}"
    if isinstance(exc, PermanentError):
        return EXIT_FAILED, f"failed: {exc}"
    if isinstance(exc, QuantbeatError):
        return EXIT_FAILED, f"failed: {exc}"
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis import exceptions as redis_exc
    from sqlalchemy import exc as sa_exc

    from quantbeat.masking import mask_text

    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return EXIT_UNAVAILABLE, mask_text(f"cannot reach the database: {exc.orig}")
    if isinstance(exc, KombuOperationalError | ConnectionError):
        return EXIT_UNAVAILABLE, mask_text(f"cannot reach the broker: {exc}")
    if isinstance(exc, redis_exc.ConnectionError | redis_exc.TimeoutError) or (
        isinstance(exc, RuntimeError) and "result store" in str(exc)
    ):
        return EXIT_UNAVAILABLE, mask_text(f"cannot reach the result backend: {exc}")
    return EXIT_UNEXPECTED, mask_text(f"unexpected error: {type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv, prog_name="quantbeat", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("quantbeat: aborted\n")
        return 130
    except (TyperException, click.ClickException) as exc:
        # Usage errors from typer's (vendored) click parser, or from Celery's click commands
        # that worker/beat/flower delegate to.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            sys.stderr.write(f"quantbeat: {exc}\n")
        return EXIT_USAGE
    except Exception as exc:
        if os.environ.get("QUANTBEAT_DEBUG"):
            raise
        code, message = _classify(exc)
        one_line = " ".join(message.split())[:1000] or type(exc).__name__
        sys.stderr.write(f"quantbeat: {one_line}\n")
        return code
    return int(rv) if isinstance(rv, int) else EXIT_OK


def entrypoint() -> None:  # pragma: no cover - thin wrapper for the console script
    """The ``quantbeat`` console script: :func:`main` with its code as the exit status."""
    sys.exit(main())
