"""``quantbeat indicators``: indicator values, cache-first."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from quant.indicators import describe
from quantbeat.cli.common import console
from quantbeat.services.args import parse_param_pairs
from quantbeat.services.indicators import get_indicator, indicator_cache, iter_rows

indicators_app = typer.Typer(
    help="Indicator values for an instrument (cache-first; misses computed by cpu workers).",
    no_args_is_help=True,
)


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
    result = get_indicator(
        instrument,
        indicator,
        parse_param_pairs(param),
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
