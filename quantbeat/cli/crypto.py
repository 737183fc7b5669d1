"""``quantbeat crypto signal|sync|volatility|signals|book``: the crypto jobs of issue 23 —
the hourly signal, the paper portfolio's order sync and the volatility check, queued to the
workers like beat queues them (``--no-wait`` returns the task id at once), and what they
stored. Every line says SIMULATED when the crypto source is simulated. Paper only: no live
order is ever sent."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from quantbeat.cli.common import console, crypto_book_line, must_wait
from quantbeat.infra.settings import get_settings
from quantbeat.services import dispatch
from quantbeat.services.args import parse_moment
from quantbeat.services.crypto_paper import book_view
from quantbeat.services.crypto_signals import recent_signals, track_record
from quantbeat.services.dispatch import TaskCall

crypto_app = typer.Typer(
    help="Crypto jobs: the hourly signal, the paper order sync, the volatility check.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_AT = typer.Option(help="ISO date-time with a zone (default: now)")


def _label(simulated: Any) -> str:
    return "SIMULATED " if simulated else ""


def _at(value: str | None) -> str | None:
    """``--at`` checked here (a bad value is refused before anything is queued), in UTC."""
    return None if value is None else parse_moment(value, field="--at").isoformat()


def _queue(task: str, kwargs: dict[str, Any], wait: bool, timeout: float) -> dict[str, Any] | None:
    result = dispatch.send(TaskCall(task, {k: v for k, v in kwargs.items() if v is not None}))
    if not must_wait(wait):
        console.print(f"{task} queued: {result.id}")
        return None
    summary: dict[str, Any] = dispatch.wait(result, timeout=timeout, what=task)
    return summary


@crypto_app.command("signal")
def signal(
    at: Annotated[str | None, _AT] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the result")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 120.0,
) -> None:
    """Decide (or read back) the hourly signal of each signal market for the hour of --at."""
    done = _queue("quantbeat.crypto.signal", {"at": _at(at)}, wait, timeout)
    if done is None:
        return
    label = _label(done.get("simulated"))
    for market, s in done["signals"].items():
        if not s.get("action"):
            console.print(f"{label}{market} at {done['at']}: no signal ({s.get('reason')})")
            continue
        flags = ", ".join(s.get("risk_flags") or []) or "none"
        console.print(
            f"{label}{market} at {done['at']}: {s['action']} at {s['confidence']:.0%} by "
            f"{s['analyst']} ({s['model']}){'' if s['new'] else ' (stored before)'}; risk "
            f"flags: {flags}",
            soft_wrap=True,
            highlight=False,
        )
        for reason in s.get("reasons", [])[:5]:
            console.print(f"{label}  · {reason}", soft_wrap=True, highlight=False)


@crypto_app.command("sync")
def sync(
    at: Annotated[str | None, _AT] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the result")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 120.0,
) -> None:
    """Run the paper portfolio's order sync up to --at: orders, fills, reconciliation."""
    done = _queue("quantbeat.crypto.order_sync", {"at": _at(at)}, wait, timeout)
    if done is None:
        return
    _print_book(done, _label(_simulated()))
    console.print(
        f"{_label(_simulated())}sync at {done['at']}: {done['placed']} placed, "
        f"{done['filled']} filled, {done['rejected']} rejected, {done['pending']} pending",
        highlight=False,
    )


@crypto_app.command("volatility")
def volatility(
    at: Annotated[str | None, _AT] = None,
    sigma: Annotated[float | None, typer.Option(help="Threshold in sigmas")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the result")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 120.0,
) -> None:
    """Run the volatility check of the hour ending at --at."""
    done = _queue(
        "quantbeat.crypto.volatility_check", {"at": _at(at), "sigma": sigma}, wait, timeout
    )
    if done is None:
        return
    label = _label(done.get("simulated"))
    for market, r in done["markets"].items():
        verdict = (
            f"no verdict: {r.get('reason')}"
            if r.get("unusual") is None
            else ("UNUSUAL" if r["unusual"] else "usual")
            + f" (move {r['move_sigma']:+.1f}σ, realized {r['realized_sigma']:.1f}σ, "
            f"threshold {done['threshold']:g}σ)"
        )
        console.print(f"{label}{market} at {done['at']}: {verdict}", highlight=False)


@crypto_app.command("signals")
def signals(
    limit: Annotated[int, typer.Option(help="Newest signals shown", min=1, max=1000)] = 24,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """The newest stored signals with their returns since, and the track record."""
    found = recent_signals(limit)
    record = track_record()
    if as_json:
        console.print_json(data={"signals": found, "track_record": record})
        return
    if not found:
        console.print("no crypto signals stored (quantbeat crypto signal)")
        return
    label = _label(any(f["simulated"] for f in found))
    table = Table(title=f"{label}crypto signals".strip(), title_justify="left")
    for column in ("market", "UTC hour", "action", "conf", "price", "by", "1h", "4h", "24h"):
        table.add_column(column, no_wrap=True)
    for f in found:
        table.add_row(
            f["market"], f["at"][5:13].replace("T", " "), f["action"], f"{f['confidence']:.0%}",
            f"{f['price']:,.0f}", f["analyst"][:3],
            *(_pct(f[f"return_{h}"]) for h in ("1h", "4h", "24h")),
        )  # fmt: skip
    console.print(table)
    for action, entry in sorted(record["actions"].items()):
        parts = [
            f"{h}: {st['count']} · hit {st['hit_rate']:.0%} · edge {st['mean_edge'] * 100:+.2f}%"
            for h, st in entry["horizons"].items()
        ]
        console.print(
            f"{label}track record {action}: {entry['signals']} signals"
            + (f"; {'; '.join(parts)}" if parts else ""),
            soft_wrap=True,
            highlight=False,
        )


@crypto_app.command("book")
def book(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False) -> None:
    """The crypto paper portfolio: cash, positions, P&L, and its latest orders."""
    data = book_view()
    if data is None:
        console.print("no crypto paper portfolio yet (quantbeat crypto sync)")
        return
    if as_json:
        console.print_json(data=data)
        return
    label = _label(_simulated())
    _print_book(data, label)
    for o in data["orders"]:
        filled = (
            f"{o['volume']:.8f} at {o['fill_price']:,.0f} (fee {o['fee']:,.0f})"
            if o["state"] == "filled"
            else (o["reason"] or "")
        )
        console.print(
            f"{label}  {o['requested_at'][:16]} {o['side']} {o['market']}: {o['state']} {filled}",
            highlight=False,
        )


def _print_book(b: dict[str, Any], label: str) -> None:
    console.print(crypto_book_line(b, label), soft_wrap=True, highlight=False)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.2f}%"


def _simulated() -> bool:
    """Whether the configured crypto source is the simulated market."""
    return get_settings().crypto_source == "simulated"
