"""``quantbeat collect`` and ``quantbeat data``: market-data collection and gaps."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from quant.errors import PermanentError, ValidationError
from quant.market.types import INTRADAY_INTERVALS, Market
from quantbeat.cli.common import console, must_wait, parse_date_option
from quantbeat.services import dispatch
from quantbeat.services.args import parse_date, parse_krx_markets, parse_moment
from quantbeat.services.backfill import start_backfill, wait_backfill
from quantbeat.services.collect import DATASETS, MAX_RANGE_SESSIONS, Dataset, send_daily
from quantbeat.services.gaps import (
    backfill_crypto_gaps,
    backfill_krx_gaps,
    crypto_gaps,
    crypto_window,
    krx_gaps,
)

collect_app = typer.Typer(help="Market-data collection.", no_args_is_help=True)
data_app = typer.Typer(help="Data quality: gaps.", no_args_is_help=True)


def _market_option(value: str | None) -> Market | None:
    """``--market``: one KRX market, ``None`` for both."""
    return None if value is None else parse_krx_markets(value, field="--market")[0]


def _send_and_report(
    dataset: Dataset, date: str | None, market: str | None, wait_for: bool, timeout: float
) -> None:
    day = parse_date_option(date, "--date")
    result = send_daily(dataset, day, _market_option(market))
    if not wait_for:
        console.print(f"queued {dataset.daily_task} as {result.id}")
        return
    summary = dispatch.wait(result, timeout=timeout, what=dataset.daily_task)
    console.print_json(data={"task_id": result.id, **summary})


@collect_app.command("daily")
def collect_daily(
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD; default latest closed")] = None,
    market: Annotated[str | None, typer.Option(help="KOSPI or KOSDAQ; default both")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the result")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 300.0,
) -> None:
    """Enqueue quantbeat.collect.daily_candles for a day (needs a running io worker)."""
    _send_and_report(DATASETS["candles"], date, market, must_wait(wait), timeout)


@collect_app.command("flows")
def collect_flows(
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD; default latest closed")] = None,
    market: Annotated[str | None, typer.Option(help="KOSPI or KOSDAQ; default both")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the result")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 300.0,
) -> None:
    """Enqueue quantbeat.collect.investor_flows for a day (needs a running io worker)."""
    _send_and_report(DATASETS["flows"], date, market, must_wait(wait), timeout)


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
    if not 1 <= chunk_sessions <= MAX_RANGE_SESSIONS:
        raise ValidationError(
            f"--chunk-sessions must be 1..{MAX_RANGE_SESSIONS}, got {chunk_sessions}",
            field="--chunk-sessions",
        )
    backfill = start_backfill(
        first,
        last,
        market=_market_option(market),
        datasets=datasets,
        chunk_sessions=chunk_sessions,
    )
    sessions = backfill.sessions
    if not sessions:
        console.print(f"no KRX sessions between {first} and {last}")
        return
    console.print(
        f"queued {len(backfill.sent)} task(s): {len(sessions)} sessions "
        f"{sessions[0]}..{sessions[-1]}, datasets {', '.join(datasets)}"
    )
    if not must_wait(wait):
        return
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("backfilling", total=len(backfill.sent))
        outcome = wait_backfill(
            backfill,
            timeout=timeout,
            on_progress=lambda done, _total: progress.update(bar, completed=done),
        )
    for ds, counts in outcome.totals.items():
        console.print(f"{ds}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if outcome.failed:
        raise PermanentError(
            f"{len(outcome.failed)} backfill task(s) failed (see quantbeat job history): "
            + ", ".join(outcome.failed[:5])
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
    if dataset.startswith("crypto-"):
        _crypto_gaps(dataset.removeprefix("crypto-"), from_, to, backfill, limit)
        return
    if dataset not in DATASETS:
        raise ValidationError(
            f"--dataset must be candles, flows or crypto-<interval> (e.g. crypto-60m), "
            f"got {dataset!r}"
        )
    markets = parse_krx_markets(market, field="--market")
    report = krx_gaps(
        DATASETS[dataset],
        markets,
        start=parse_date(from_, field="--from") if from_ else None,
        end=parse_date(to, field="--to") if to else None,
    )
    sessions, gaps, empty = report.sessions, report.gaps, report.empty
    console.print(
        f"{dataset} {report.start}..{report.end} ({len(sessions)} KRX sessions), "
        f"{report.listed:,} listed instruments: {len(gaps):,} gap(s), "
        f"{report.missing:,} missing instrument-sessions",
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
        queued = backfill_krx_gaps(report, market=markets[0] if market else None)
        console.print(f"queued {queued} quantbeat.collect.daily_range task(s)", soft_wrap=True)


def _moment_option(value: str | None, option: str) -> dt.datetime | None:
    """A ``--from``/``--to`` of a crypto report: an ISO date-time with a zone, or a date
    (midnight UTC)."""
    if value is None:
        return None
    return parse_moment(value if "T" in value else f"{value}T00:00:00+00:00", field=option)


def _crypto_gaps(
    interval: str, from_: str | None, to: str | None, backfill: bool, limit: int
) -> None:
    """Gaps in stored crypto bars: every ``interval`` step, 24/7, from each market's first
    stored bar in the window. Upbit emits no bar for a minute without trades, so thin markets
    show short gaps that a backfill cannot fill; the report says so."""
    if interval not in INTRADAY_INTERVALS:
        raise ValidationError(
            f"--dataset crypto-<interval> needs one of {', '.join(INTRADAY_INTERVALS)}, "
            f"got {interval!r}",
            field="--dataset",
        )
    start, end = crypto_window(
        interval, _moment_option(from_, "--from"), _moment_option(to, "--to")
    )
    if start > end:
        raise ValidationError(f"--from {start} is after --to {end}", field="--from")
    report = crypto_gaps(interval, start, end)
    gaps = report.gaps
    console.print(
        f"crypto {interval} bars {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} UTC, "
        f"{report.listed:,} listed markets: {len(gaps):,} gap(s), "
        f"{report.missing:,} missing bars (Upbit has no bar where nothing "
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
        queued = backfill_crypto_gaps(report)
        console.print(f"queued {queued} quantbeat.collect.crypto_candles task(s)", soft_wrap=True)
