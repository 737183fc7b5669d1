"""``quantbeat track-record``: how the stored signals did, followed to their exits under
each strategy's exit plan (domain notes §9), with costs and the dated sell tax. Every title
says SIMULATED when the signals are on the simulated market."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from quant.errors import ValidationError
from quant.kpi import GROUPS
from quantbeat.cli.common import console, parse_date_option
from quantbeat.services.signal_history import backfill as backfill_history
from quantbeat.services.track_record import report

track_app = typer.Typer(
    help="How the stored signals did (the report), and the signal-history backfill.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{value * 100:+.2f}%"


def _num(value: Any, fmt: str = "{:.2f}") -> str:
    return "–" if value is None else fmt.format(value)


#: Compact headers (the command's help and the README explain them): closed trades, win
#: rate, mean and median net return, profit factor, expectancy, longest losing streak, then
#: the signals open, and pending + expired + void.
COLUMNS = ("group", "closed", "win", "mean", "median", "PF", "expect.", "max L", "open",
           "other")  # fmt: skip


def kpi_table(found: dict[str, Any], title: str) -> Table:
    """The KPIs of each group of a :func:`quantbeat.services.track_record.report` as a table."""
    table = Table(title=title, title_justify="left")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "group" else "right")
    for name, k in found["groups"].items():
        table.add_row(
            name,
            str(k["count"]),
            "–" if k["win_rate"] is None else f"{k['win_rate'] * 100:.0f}%",
            _pct(k["mean"]),
            _pct(k["median"]),
            _num(k["profit_factor"]),
            _pct(k["expectancy"]),
            str(k["max_consecutive_losses"]),
            str(k["open"]),
            str(k["pending"] + k["expired"] + k["void"]),
        )
    return table


@track_app.callback()
def track_record(
    ctx: typer.Context,
    strategy: Annotated[
        str | None, typer.Option(help="Only this strategy's signals (vcp, closing_bet, …)")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only signals from this day on (YYYY-MM-DD)")
    ] = None,
    by: Annotated[str, typer.Option(help=f"Group by: {', '.join(GROUPS)}")] = "strategy",
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """How the stored signals did, each followed to its exit, net of costs and tax.

    KPIs of the closed ones: win rate, mean and median net return, profit factor,
    expectancy, the longest losing streak. Open, pending, expired and void signals are
    counted beside them. The exit plans are in the README (Track record).
    """
    if ctx.invoked_subcommand is not None:
        return
    if by not in GROUPS:
        raise ValidationError(
            f"--by must be one of {', '.join(GROUPS)}, got {by!r}", field="--by", value=by
        )
    found = report(strategy=strategy, since=parse_date_option(since, "--since"), by=by)
    if as_json:
        console.print_json(data=found)
        return
    label = "SIMULATED market data: " if found["simulated"] else ""
    followed = sum(found["states"].values())
    if not followed:
        console.print(
            "no followed signals yet"
            + (f" of {strategy}" if strategy else "")
            + (f" since {since}" if since else "")
            + ": run quantbeat.track.update (beat does after each collection)"
        )
        return
    states = ", ".join(f"{n} {state}" for state, n in found["states"].items())
    console.print(f"{label}{followed} signals followed: {states}", soft_wrap=True)
    title = (
        f"{label}track record by {by}, net of costs and tax (PF profit factor, max L longest "
        "losing streak, other = pending + expired + void)"
    )
    console.print(kpi_table(found, title))
    for name, exp in (found.get("expected") or {}).items():
        if exp is None or not exp.get("kpis"):
            continue
        k = exp["kpis"]
        win = "–" if k.get("win_rate") is None else f"{k['win_rate'] * 100:.1f} %"
        console.print(
            f"{label}expected for {name} (nightly walk-forward {exp['backtest']} "
            f"{exp['start']} … {exp['end']}, run {exp['run_id']}): {k['count']} trades, "
            f"win rate {win}, mean net {_pct(k.get('mean_net_return'))}, profit factor "
            f"{_num(k.get('profit_factor'))}, expectancy {_pct(k.get('expectancy'))}",
            soft_wrap=True,
        )
    total = found["total"]
    if total and total["count"]:
        console.print(
            f"{label}all closed: {total['count']}, win rate {total['win_rate'] * 100:.1f} %, "
            f"mean net {_pct(total['mean'])}, profit factor {_num(total['profit_factor'])}; rules "
            + ", ".join(found["rules"].values()),
            soft_wrap=True,
        )


@track_app.command("backfill")
def backfill(
    since: Annotated[
        str | None, typer.Option(help="First day (YYYY-MM-DD); default: the first stored bar")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Last day (YYYY-MM-DD); default: the last stored bar")
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="Only this strategy (vcp, closing_bet); default: all")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """Write each strategy's past daily signals, replayed without look-ahead by its backtest
    strategy over the stored bars (source ``backfill``; scanned days are left alone).

    Not the full scan: no news scores or AI analysis. Run ``quantbeat.track.update`` after
    it to follow them to their exits.
    """
    found = backfill_history(
        parse_date_option(since, "--since"),
        parse_date_option(until, "--until"),
        strategy=strategy,
    )
    if as_json:
        console.print_json(data=found)
        return
    if found["since"] is None:
        console.print("no stored daily bars: nothing to backfill")
        return
    console.print(
        f"signal history {found['since']} … {found['until']} over {found['instruments']:,} "
        f"instruments ({found['seconds']:.1f} s):",
        soft_wrap=True,
    )
    for name, s in found["strategies"].items():
        console.print(
            f"  {name}: {s['signals']:,} signals, {s['inserted']:,} inserted, "
            f"{s['skipped_stored']:,} already stored, "
            f"{s['skipped_days']:,} scanned days left alone",
            soft_wrap=True,
        )
