"""``quantbeat scan``: one universe scan and its ranked candidates."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from quant.errors import ValidationError
from quantbeat.cli.common import candidates_table, console, must_wait, parse_date_option
from quantbeat.infra.settings import get_settings
from quantbeat.services.args import parse_krx_markets, parse_phase, parse_trade_date
from quantbeat.services.closing_window import compare_phases
from quantbeat.services.scans import candidates, run_scan
from quantbeat.services.strategies import canonical_strategy, scan_strategy_names


def scan(
    strategy: Annotated[
        str, typer.Argument(help=f"A scan strategy ({', '.join(scan_strategy_names())})")
    ],
    date: Annotated[
        str | None, typer.Option(help="Trading day (YYYY-MM-DD); default: latest closed")
    ] = None,
    market: Annotated[str | None, typer.Option(help="KOSPI or KOSDAQ; default: both")] = None,
    top: Annotated[int, typer.Option(help="Candidates to print")] = 20,
    wait: Annotated[bool, typer.Option(help="Wait for the scan and print the candidates")] = True,
    show: Annotated[
        bool, typer.Option("--show", help="Only print the stored candidates of the day")
    ] = False,
    phase: Annotated[
        str,
        typer.Option(
            help="With --show: final (the evening decision) or preliminary (the 15:10 one)"
        ),
    ] = "final",
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Print the day's 15:10 (preliminary) and final decisions side by side: "
            "kept (with both grades), added, lost",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the scan")] = 600.0,
) -> None:
    """Run one universe scan on the cpu workers (or --show the stored result) and print the
    ranked candidates."""
    name = canonical_strategy(strategy)
    day = parse_date_option(date, "--date")
    if market is not None:
        market = parse_krx_markets(market, field="--market")[0].value
    chosen = parse_phase(phase, field="--phase")
    if compare:
        _compare(name, day or parse_trade_date(None), as_json)
        return
    if chosen != "final" and not show:
        raise ValidationError(
            "--phase preliminary goes with --show: the 15:10 decision is taken by the "
            "buy-window pipeline (quantbeat.pipeline.closing_window), not by a scan run",
            field="--phase",
            value=phase,
        )
    if show:
        ranked = candidates(name, day or parse_trade_date(None), limit=top, phase=chosen)
        summary: dict[str, Any] = {"strategy": name, "phase": chosen}
    else:
        wait = must_wait(wait)
        summary = run_scan(name, day, market=market, wait=wait, timeout=timeout)
        if not wait:
            console.print(f"queued the {name} scan as run {summary['run_id']}")
            return
        ranked = summary.pop("ranked")[:top]
    if as_json:
        console.print_json(
            data={
                **summary,
                "candidates": [c.summary() for c in ranked],
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
    console.print(candidates_table(ranked) if ranked else "no candidates")


def _compare(name: str, day: Any, as_json: bool) -> None:
    """The day's preliminary and final decisions of ``name`` side by side."""
    found = compare_phases(name, day)
    if as_json:
        console.print_json(data=found)
        return
    label = "SIMULATED " if get_settings().market_source == "simulated" else ""
    console.print(
        f"{label}{name} {found['trade_date']}: {found['preliminary']} preliminary (15:10) and "
        f"{found['final']} final candidates — {len(found['kept'])} kept, "
        f"{len(found['added'])} added, {len(found['lost'])} lost",
        soft_wrap=True,
    )
    for kept in found["kept"]:
        changed = "" if kept["preliminary"] == kept["final"] else "  (grade changed)"
        console.print(
            f"{label}kept  {kept['instrument']}: {kept['preliminary'] or '–'} → "
            f"{kept['final'] or '–'}{changed}"
        )
    for added in found["added"]:
        console.print(f"{label}added {added['instrument']}: {added['final'] or '–'}")
    for lost in found["lost"]:
        console.print(f"{label}lost  {lost['instrument']}: {lost['preliminary'] or '–'}")
