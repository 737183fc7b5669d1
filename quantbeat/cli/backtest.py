"""``quantbeat backtest submit|status|list|cancel|report``: asynchronous backtest runs.

Registered on the main CLI as ``quantbeat backtest`` (see :mod:`quantbeat.cli.main` for exit
codes). The work is in :mod:`quantbeat.services.backtests`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from quant.errors import PermanentError, TransientError
from quantbeat.cli.common import must_wait, parse_pairs
from quantbeat.services import backtests

backtest_app = typer.Typer(
    help="Backtests: submit runs to the cpu workers, watch, cancel, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()

_PERCENT = ("total_return", "cagr", "volatility", "max_drawdown", "win_rate", "exposure")


def _fmt(name: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if name in _PERCENT:
            return f"{value:.2%}"
        if name in ("expectancy", "final_equity"):
            return f"{value:,.0f}"
        return f"{value:,.3f}"
    return str(value)


def _print_status(row: dict[str, Any]) -> None:
    eta = row.get("eta_seconds")
    console.print(
        f"run {row['run_id']} ({row['strategy']}): {row['state']}, "
        f"{row['progress']:.0%} ({row['instruments']} instruments"
        f"{'' if eta is None else f', ETA {eta:.0f} s'})"
        f"{'' if not row.get('error') else ' — ' + str(row['error'])}",
        soft_wrap=True,
    )
    if row.get("metrics"):
        print_metrics(row["metrics"], row.get("summary") or {})


def print_metrics(metrics: dict[str, Any], summary: dict[str, Any]) -> None:
    """The metrics table of a completed run."""
    table = Table(title="metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in (
        "total_return",
        "cagr",
        "volatility",
        "sharpe",
        "sortino",
        "max_drawdown",
        "max_drawdown_start",
        "max_drawdown_end",
        "max_drawdown_days",
        "calmar",
        "win_rate",
        "profit_factor",
        "expectancy",
        "exposure",
        "trades",
    ):
        table.add_row(name, _fmt(name, metrics.get(name)))
    if summary:
        table.add_row("final_equity", f"{summary.get('final_equity', 0):,.0f}")
        table.add_row("open_trades", str(summary.get("open_trades", 0)))
        if summary.get("tax_paid") is not None:
            table.add_row("sell_tax_paid", f"{summary['tax_paid']:,.0f}")
    console.print(table)


@backtest_app.command("submit")
def submit(
    strategy: Annotated[
        str,
        typer.Argument(
            help="sma_crossover, volume_zone_breakout, vcp_breakout, closing_bet or crypto_trend"
        ),
    ],
    instruments: Annotated[
        list[str], typer.Argument(help="MARKET:TICKER (or tickers), one or more")
    ],
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD)")],
    end: Annotated[str, typer.Option(help="Last day (YYYY-MM-DD)")],
    cash: Annotated[float, typer.Option(help="Initial cash (KRW)")] = 100_000_000.0,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Strategy NAME=VALUE (repeatable)")
    ] = None,
    execution: Annotated[
        list[str] | None,
        typer.Option("--exec", "-x", help="Execution NAME=VALUE, e.g. fees=0.001 (repeatable)"),
    ] = None,
    soft_time_limit: Annotated[int | None, typer.Option(help="Seconds (default 1 h)")] = None,
    time_limit: Annotated[int | None, typer.Option(help="Hard limit in seconds")] = None,
    label: Annotated[str | None, typer.Option(help="A note shown in list/report")] = None,
    wait: Annotated[bool, typer.Option(help="Wait and print progress, then the metrics")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait")] = 3_600.0,
) -> None:
    """Validate and enqueue a backtest; prints its run id (--wait: follows it, then exits 0 when
    it completed, 5 when it failed, was cancelled or timed out, 4 when it is still running at
    --timeout)."""
    spec: dict[str, Any] = {
        "strategy": strategy.replace("-", "_"),
        "instruments": instruments,
        "start": start,
        "end": end,
        "initial_cash": cash,
        "params": parse_pairs(param, "--param"),
        "execution": parse_pairs(execution, "--exec"),
        "soft_time_limit": soft_time_limit,
        "time_limit": time_limit,
        "label": label,
    }
    run_id = backtests.submit_backtest(
        {k: v for k, v in spec.items() if v is not None}, origin="cli"
    )
    console.print(f"submitted backtest {run_id}")
    if not must_wait(wait):
        return
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        row = backtests.status(run_id)
        line = f"{row['state']} {row['progress']:.0%} {row['instruments']}"
        if line != last:
            eta = row.get("eta_seconds")
            console.print(f"  {line}" + ("" if eta is None else f" ETA {eta:.0f} s"))
            last = line
        if row["state"] in ("completed", "failed", "cancelled", "timed_out"):
            _print_status(row)
            if row["state"] != "completed":
                # exit 5: the work did not complete (README "Using it": exit codes)
                raise PermanentError(
                    f"backtest {run_id} ended {row['state']}"
                    + (f": {row['error']}" if row.get("error") else "")
                )
            return
        if time.monotonic() > deadline:
            # exit 4: not finished yet — it keeps running; `backtest status` follows it
            raise TransientError(
                f"backtest {run_id} is still {row['state']} after {timeout:.0f} s; it keeps "
                f"running (quantbeat backtest status {run_id})"
            )
        time.sleep(0.5)


@backtest_app.command("status")
def status_cmd(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """State, progress (fraction and n/m instruments), ETA; metrics once completed."""
    row = backtests.status(run_id)
    if as_json:
        console.print_json(data=row)
        return
    _print_status(row)


@backtest_app.command("list")
def list_cmd(
    limit: Annotated[int, typer.Option(help="Runs to show (newest first)")] = 20,
    state: Annotated[str | None, typer.Option(help="Only runs in this state")] = None,
    strategy: Annotated[str | None, typer.Option(help="Only runs of this strategy")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """Recent runs with their state and headline metrics."""
    rows = backtests.list_backtests(limit=limit, state=state, strategy=strategy)
    if as_json:
        console.print_json(data=rows)
        return
    table = Table()
    for column in ("run", "strategy", "state", "instruments", "submitted", "return", "sharpe",
                   "trades", "origin"):  # fmt: skip
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["run_id"],
            r["strategy"],
            r["state"],
            r["instruments"],
            (r["submitted_at"] or "")[:19],
            _fmt("total_return", r["total_return"]),
            _fmt("sharpe", r["sharpe"]),
            _fmt("trades", r["trades"]),
            r["origin"],
        )
    console.print(table if rows else "no backtest runs")


@backtest_app.command("cancel")
def cancel_cmd(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    wait: Annotated[float, typer.Option(help="Seconds to wait for it to stop")] = 2.0,
) -> None:
    """Cancel a run (queued: at once; running: its worker stops within about a second; its
    worker dead: at once). Exits 0 when the run ended cancelled, 4 when it is still running
    after --wait (it stops at its next check), 5 when it had already ended otherwise."""
    state = backtests.cancel(run_id, wait=wait)
    console.print(f"run {run_id}: {state}")
    if state == "cancelled":
        return
    if state in ("completed", "failed", "timed_out"):
        # exit 5: nothing to cancel, the run had ended (README "Backtests")
        raise PermanentError(f"backtest {run_id} had already ended {state}; not cancelled")
    # exit 4: the cancel is requested; its worker has not stopped it yet
    raise TransientError(
        f"backtest {run_id} is still {state} after {wait:g} s; it stops at its next check "
        f"(quantbeat backtest status {run_id})"
    )


@backtest_app.command("report")
def report_cmd(
    run_id: Annotated[str, typer.Argument(help="Run id of a completed run")],
    out: Annotated[Path | None, typer.Option(help="Directory (default: var/reports)")] = None,
    png: Annotated[bool, typer.Option(help="Also write a PNG")] = True,
    export: Annotated[
        str | None,
        typer.Option(help="Upload the artifacts to s3://bucket/prefix (S3-compatible)"),
    ] = None,
) -> None:
    """Write the run's self-contained HTML report (equity, drawdown, metrics, trades) and a
    PNG; optionally export them with the trades/equity CSVs and metrics JSON to S3."""
    files = backtests.write_report(run_id, directory=out, png=png, export=export)
    console.print(f"report: {files.html}", soft_wrap=True)
    if files.png is not None:
        console.print(f"image:  {files.png}", soft_wrap=True)
    for uri in files.exported:
        console.print(f"exported: {uri}", soft_wrap=True)
