"""``quantbeat analyze`` and ``quantbeat news collect``: AI analysis of a candidate and the
news it reads. Registered on the main CLI (see :mod:`quantbeat.cli.main` for exit codes)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from quantbeat.services.ai import analysis_result, analysis_strategy, collect_news, queue_analysis
from quantbeat.services.ai import analyze as run_analysis
from quantbeat.services.args import parse_trade_date
from quantbeat.services.strategies import scan_strategy_names

console = Console()
news_app = typer.Typer(
    help="News for the AI analysis: collect from the configured sources.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_analysis(row: dict[str, Any]) -> None:
    label = " (offline rules, no AI)" if row.get("analyzer") == "offline" else ""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column()
    table.add_row("instrument", f"{row['instrument']} on {row['trade_date']}")
    table.add_row("status", f"{row['status']}{' (cached)' if row.get('cached') else ''}")
    table.add_row(
        "analyzer", f"{row['analyzer']} / {row['model']} / {row['prompt_version']}{label}"
    )
    if row["status"] == "succeeded":
        table.add_row("news score", f"{row['news_score']} (0–3)")
        table.add_row("sentiment", f"{row['sentiment']:+.2f}")
        table.add_row("confidence", f"{row['confidence']:.2f}")
        table.add_row("catalyst", str(row["catalyst"]))
        table.add_row("risk flags", ", ".join(row.get("risk_flags") or []) or "none")
        table.add_row("tokens", "n/a" if row.get("tokens") is None else f"{row['tokens']:,}")
    else:
        table.add_row("error", str(row.get("error")))
    console.print(table)


def analyze(
    instrument: Annotated[str, typer.Argument(help="MARKET:TICKER (or a ticker)")],
    date: Annotated[str | None, typer.Option(help="Trading day; default: latest closed")] = None,
    strategy: Annotated[
        str, typer.Option(help=f"A scan strategy ({', '.join(scan_strategy_names())})")
    ] = "closing_bet",
    inline: Annotated[
        bool, typer.Option("--inline", help="Run here instead of on an ai worker")
    ] = False,
    wait: Annotated[bool, typer.Option(help="Wait for the ai worker's answer")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 300.0,
) -> None:
    """Analyse one candidate with Gemini (or the offline analyzer when no key is set): the
    cached result when there is one, else one request under the global quota."""
    day = parse_trade_date(date, field="--date")
    name = analysis_strategy(strategy)
    if inline:
        _print_analysis(run_analysis(instrument, day, name))
        return
    task_id = queue_analysis(instrument, day, name)
    if not wait:
        console.print(f"queued quantbeat.ai.analyze {task_id}")
        return
    _print_analysis(analysis_result(task_id, timeout))


@news_app.command("collect")
def news_collect(
    date: Annotated[str | None, typer.Option(help="Trading day; default: latest closed")] = None,
) -> None:
    """Fetch the configured sources now (in this process) and store new items."""
    report = collect_news(parse_trade_date(date, field="--date"))
    for name, counts in report["sources"].items():
        console.print(f"{name}: {counts}", soft_wrap=True)
    console.print(
        f"{report['items']} items, {report['new']} new, {report['mentions']} instrument "
        f"mentions, {report['rejected']} rejected"
    )
