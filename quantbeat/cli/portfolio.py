"""``quantbeat portfolio create|list|show|positions|history|update|pause|resume|rebuild``:
paper portfolios that trade the signals' outcomes (:mod:`quantbeat.services.portfolio`).
Every line says SIMULATED when the portfolio trades simulated market data."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer
from rich.table import Table

from quantbeat.cli.common import console, parse_date_option, parse_pairs
from quantbeat.services import portfolio

portfolio_app = typer.Typer(
    help="Paper portfolios: create one, update it, read its positions and equity.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _label(simulated: bool) -> str:
    return "SIMULATED " if simulated else ""


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


@portfolio_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Portfolio name (letters, digits, _ . -)")],
    capital: Annotated[float, typer.Option(help="Starting capital, KRW")] = 100_000_000.0,
    start: Annotated[
        str | None, typer.Option(help="First trading day (YYYY-MM-DD); default today")
    ] = None,
    strategies: Annotated[
        str | None, typer.Option(help="Comma-separated strategies (default closing_bet,vcp)")
    ] = None,
    max_positions: Annotated[int | None, typer.Option(help="Open positions at most")] = None,
    rule: Annotated[
        list[str] | None,
        typer.Option(help="Any other rule as NAME=VALUE (e.g. risk_per_trade=0.01); repeat"),
    ] = None,
) -> None:
    """Create a paper portfolio; `quantbeat portfolio update` (or beat, after each
    collection) then trades it."""
    rules: dict[str, Any] = parse_pairs(rule, "--rule")
    if strategies:
        rules["strategies"] = [s.strip() for s in strategies.split(",") if s.strip()]
    if max_positions is not None:
        rules["max_positions"] = max_positions
    first = parse_date_option(start, "--start") or dt.date.today()
    made = portfolio.create(name, capital=capital, start_date=first, rules=rules)
    console.print(
        f"{_label(made['simulated'])}portfolio {made['name']} created: capital "
        f"{_money(made['capital'])} KRW from {made['start_date']}, strategies "
        f"{', '.join(made['rules']['strategies'])}, at most {made['rules']['max_positions']} "
        "positions",
        soft_wrap=True,
    )


@portfolio_app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False) -> None:
    """Every portfolio with its equity and return."""
    found = portfolio.list_portfolios()
    if as_json:
        console.print_json(data=found)
        return
    if not found:
        console.print("no portfolios (quantbeat portfolio create NAME)")
        return
    simulated = any(p["simulated"] for p in found)
    table = Table(title=f"{_label(simulated)}paper portfolios".strip(), title_justify="left")
    for column in ("name", "state", "through", "equity", "return", "cash", "positions"):
        table.add_column(column, justify="left" if column in ("name", "state") else "right")
    for p in found:
        table.add_row(
            f"{p['name']}{' (SIMULATED)' if p['simulated'] else ''}",
            p["state"],
            p["through"] or "–",
            _money(p["equity"]),
            f"{p['return']:+.2%}",
            _money(p["cash"]),
            str(p["positions"]),
        )
    console.print(table)


@portfolio_app.command("show")
def show(
    name: str, as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False
) -> None:
    """A portfolio: equity, cash, return, drawdown, entries, exits, costs, open positions."""
    found = portfolio.describe(name)
    if as_json:
        console.print_json(data=found)
        return
    label = _label(found["simulated"])
    lines = [
        f"portfolio {found['name']} ({found['state']}), from {found['start_date']} through "
        f"{found['through'] or '– (not updated yet)'}",
        f"equity {_money(found['equity'])} KRW ({found['return']:+.2%} on "
        f"{_money(found['capital'])}), cash {_money(found['cash'])}, positions "
        f"{_money(found['market_value'])}",
        f"{found['days']} days, max drawdown {found['max_drawdown']:.2%}; {found['entries']} "
        f"entries, {found['exits']} exits, {found['refused']} refused; realized "
        f"{_money(found['realized'])}, fees {_money(found['fees'])}, tax {_money(found['tax'])}",
    ]
    for line in lines:
        console.print(f"{label}{line}", soft_wrap=True)
    _positions_table(found["open"], f"{label}open positions")


def _positions_table(rows: list[dict[str, Any]], title: str) -> None:
    if not rows:
        console.print(f"{title}: none")
        return
    table = Table(title=title, title_justify="left")
    for column in ("signal", "ticker", "name", "strategy", "grade", "qty", "opened", "entry",
                   "last/exit", "P&L", "state"):  # fmt: skip
        table.add_column(column)
    for p in rows:
        pnl = p["realized_pnl"] if p["state"] == "closed" else p["unrealized_pnl"]
        table.add_row(
            str(p["signal_id"]),
            p["ticker"],
            p["name"],
            f"{p['strategy']}/{p['phase']}",
            p["grade"] or "–",
            f"{p['quantity']:,}",
            p["opened_on"],
            f"{p['entry_price']:,.0f}",
            f"{(p['exit_price'] if p['state'] == 'closed' else p['last_price']):,.0f}",
            _money(pnl),
            p["state"] + (f" ({p['exit_reason']})" if p["exit_reason"] else ""),
        )
    console.print(table)


@portfolio_app.command("positions")
def positions(
    name: str,
    state: Annotated[str | None, typer.Option(help="open or closed (default: both)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """A portfolio's positions, newest first."""
    found = portfolio.positions(name, state=state)
    if as_json:
        console.print_json(data=found)
        return
    _positions_table(found, f"{_label(portfolio.is_simulated(name))}positions of {name}")


@portfolio_app.command("history")
def history(
    name: str,
    since: Annotated[str | None, typer.Option(help="From this day (YYYY-MM-DD)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """A portfolio's daily cash, equity and P&L, and why entries were blocked."""
    found = portfolio.history(name, since=parse_date_option(since, "--since"))
    if as_json:
        console.print_json(data=found)
        return
    label = _label(portfolio.is_simulated(name))
    table = Table(title=f"{label}daily equity of {name}", title_justify="left")
    for column in ("date", "cash", "positions value", "equity", "P&L", "realized", "open",
                   "entries blocked"):  # fmt: skip
        table.add_column(column)
    for d in found:
        table.add_row(
            d["trade_date"], _money(d["cash"]), _money(d["market_value"]), _money(d["equity"]),
            _money(d["pnl"]), _money(d["realized"]), str(d["positions"]), d["blocked"] or "",
        )  # fmt: skip
    console.print(table)


@portfolio_app.command("update")
def update(
    name: Annotated[str | None, typer.Argument(help="One portfolio (default: all)")] = None,
    through: Annotated[
        str | None,
        typer.Option(help="Last trading day to step (YYYY-MM-DD); default the latest ready"),
    ] = None,
) -> None:
    """Step the portfolio(s) day by day through a date — never past the latest day whose
    bars and signal outcomes are stored (what beat does after each collection); days
    already stored are left as they are."""
    day = parse_date_option(through, "--through")
    done = portfolio.update(day, name=name)
    if not done["portfolios"]:
        console.print("no portfolios (quantbeat portfolio create NAME)")
    if done["through"] is None:
        console.print("no daily bars stored yet: nothing to step (quantbeat collect …)")
        return
    for pname, counts in done["portfolios"].items():
        label = _label(portfolio.is_simulated(pname))
        equity = "" if counts["equity"] is None else f", equity {_money(counts['equity'])}"
        console.print(
            f"{label}portfolio {pname} through {done['through']}: {counts['days']} day(s) "
            f"stepped, {counts['entries']} entries, {counts['exits']} exits, "
            f"{counts['refused']} refused{equity}",
            soft_wrap=True,
        )


@portfolio_app.command("pause")
def pause(name: str) -> None:
    """No new entries (exits and marks go on)."""
    done = portfolio.set_state(name, "paused")
    console.print(f"{_label(done['simulated'])}portfolio {name} paused")


@portfolio_app.command("resume")
def resume(name: str) -> None:
    """Take new entries again."""
    done = portfolio.set_state(name, "active")
    console.print(f"{_label(done['simulated'])}portfolio {name} active")


@portfolio_app.command("rebuild")
def rebuild(
    name: str,
    through: Annotated[
        str | None, typer.Option(help="Last trading day (YYYY-MM-DD); default the latest ready")
    ] = None,
) -> None:
    """Delete what the portfolio traded and replay it from its start (after the outcome
    rules or its own rules changed)."""
    day = parse_date_option(through, "--through")
    done = portfolio.rebuild(name, through=day)
    counts = done["portfolios"][name]
    console.print(
        f"{_label(portfolio.is_simulated(name))}portfolio {name} rebuilt through "
        f"{done['through']}: {counts['days']} day(s), {counts['entries']} entries, "
        f"{counts['exits']} exits",
        soft_wrap=True,
    )
