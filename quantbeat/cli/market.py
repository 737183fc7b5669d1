"""``quantbeat gate`` and ``quantbeat sectors``: the Market Gate and the sector ranking of a
session (domain notes §7), as stored by ``quantbeat.market.gate`` — or computed now with
``--compute``. Every line says SIMULATED when the gate was computed from simulated data."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from quantbeat.cli.common import console, parse_date_option
from quantbeat.services.market import collect_reference, compute_gate, gate_report

_COLOR = {"GREEN": "bold green", "YELLOW": "bold yellow", "RED": "bold red", "UNKNOWN": "dim"}
_STATUS = {"BULLISH": "green", "NEUTRAL": "yellow", "BEARISH": "red", "UNKNOWN": "dim"}


def _gate(date: str | None, compute: bool) -> dict[str, Any]:
    day = parse_date_option(date, "--date")
    if compute:
        collect_reference()
        return compute_gate(day)
    return gate_report(day)


def _label(found: dict[str, Any]) -> str:
    return "SIMULATED " if found["simulated"] else ""


def gate(
    date: Annotated[
        str | None, typer.Option(help="Trading day (YYYY-MM-DD); default: the latest stored")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
    compute: Annotated[
        bool,
        typer.Option(
            "--compute", help="Collect the index, ETF and USD/KRW bars and compute the gate now"
        ),
    ] = False,
) -> None:
    """Print the Market Gate — GREEN, YELLOW, RED or UNKNOWN (with the reason) — its score,
    USD/KRW, each index's components, and KODEX 200's status."""
    found = _gate(date, compute)
    if as_json:
        console.print_json(data=found)
        return
    label = _label(found)
    score = "–" if found["score"] is None else f"{found['score']:.1f}"
    style = _COLOR.get(found["color"], "")
    console.print(
        f"{label}Market Gate {found['trade_date']} (as of {found['as_of']}): "
        f"[{style}]{found['color']}[/] score {score} — {found['reason']}",
        soft_wrap=True,
    )
    fx = found["usdkrw"]
    fx_day = found["components"].get("usdkrw_date")
    console.print(
        f"{label}USD/KRW {'–' if fx is None else f'{fx:,.1f}'}"
        + (f" (rate of {fx_day})" if fx_day else "")
        + (" — warning: at or above the warning level" if found["fx_warning"] else ""),
        soft_wrap=True,
    )
    table = Table(title=f"{label}components".strip(), title_justify="left")
    for column in ("index", "total", "trend", "RSI", "MACD", "volume", "RS", "close", "RSI(14)"):
        table.add_column(column, justify="left" if column == "index" else "right")
    for name, part in found["components"].items():
        if not isinstance(part, dict):
            continue
        r = part["readings"]
        table.add_row(
            name,
            f"{part['total']:.0f}",
            f"{part['trend']:.0f}",
            f"{part['rsi']:.0f}",
            f"{part['macd']:.0f}",
            f"{part['volume']:.0f}",
            f"{part['relative_strength']:.0f}",
            f"{r['close']:,.2f}",
            f"{r['rsi']:.1f}",
        )
    console.print(table)
    console.print(
        f"{label}KODEX 200: {found['kodex_status']} — "
        f"{found['components'].get('kodex200_status', '')}",
        soft_wrap=True,
    )


def sectors(
    date: Annotated[
        str | None, typer.Option(help="Trading day (YYYY-MM-DD); default: the latest stored")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
    compute: Annotated[
        bool, typer.Option("--compute", help="Collect the bars and compute the ranking now")
    ] = False,
) -> None:
    """Print the sector ETFs ranked by strength (0–100): BULLISH ≥ 70, BEARISH < 40, the
    strongest and weakest named; sectors without enough bars are listed with the reason."""
    found = _gate(date, compute)
    ranking = found["sectors"]
    if as_json:
        console.print_json(
            data={"trade_date": found["trade_date"], "simulated": found["simulated"], **ranking}
        )
        return
    label = _label(found)
    table = Table(title=f"{label}sectors of {found['trade_date']}", title_justify="left")
    for column in ("#", "ETF", "sector", "score", "status", "note"):
        table.add_column(column, justify="right" if column in ("#", "score") else "left")
    for s in ranking["sectors"]:
        style = _STATUS.get(s["status"], "")
        table.add_row(
            "" if s["rank"] is None else str(s["rank"]),
            s["code"],
            s["name"],
            "–" if s["score"] is None else f"{s['score']:.0f}",
            f"[{style}]{s['status']}[/]",
            s["reason"] or "",
        )
    console.print(table)
    if ranking["strongest"]:
        console.print(
            f"{label}strongest: {ranking['strongest']}"
            + (f"; weakest: {ranking['weakest']}" if ranking["weakest"] else ""),
            soft_wrap=True,
        )
