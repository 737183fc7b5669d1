"""``quantbeat collect`` and ``quantbeat data``: market-data collection and gaps."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.table import Table

from quant.errors import PermanentError, TransientError, ValidationError
from quantbeat.cli.common import console, parse_date_option

collect_app = typer.Typer(help="Market-data collection.", no_args_is_help=True)
data_app = typer.Typer(help="Data quality: gaps.", no_args_is_help=True)


def _send_and_report(
    task_name: str, date: str | None, market: str | None, wait: bool, timeout: float
) -> None:
    from quantbeat.services.args import parse_krx_markets
    from workers.app import app as celery_app

    day = parse_date_option(date, "--date")
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

    from quantbeat.infra.sources import krx_calendar
    from quantbeat.services.args import parse_date, parse_krx_markets
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
    from quantbeat.infra.settings import get_settings
    from quantbeat.infra.sources import krx_calendar, latest_krx_session
    from quantbeat.services.args import parse_date, parse_krx_markets

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
