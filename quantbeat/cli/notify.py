"""``quantbeat notify add|list|remove|enable|disable|test|history``: who is told what
(:mod:`quantbeat.services.notify`). Secrets are never arguments: ``--secret`` names an entry
of ``QUANTBEAT_NOTIFY_SECRETS``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from quantbeat.cli.common import console
from quantbeat.services import notify

notify_app = typer.Typer(
    help="Notifications: subscriptions to Telegram, Slack, Discord, e-mail, webhooks, files.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@notify_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Subscription name (letters, digits, - _ .)")],
    channel: Annotated[str, typer.Option(help="telegram, slack, discord, email, webhook or file")],
    target: Annotated[
        str | None,
        typer.Option(
            help="Telegram chat id (-100…, @channel), e-mail recipients (comma-separated), "
            "webhook URL, or file path (relative: under QUANTBEAT_NOTIFY_FILE_DIR)"
        ),
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            help="Name of the secret in QUANTBEAT_NOTIFY_SECRETS: bot token (telegram), webhook "
            "URL (slack, discord), signing secret (webhook)"
        ),
    ] = None,
    events: Annotated[
        str | None, typer.Option(help="Event types, comma-separated (signals.*, gate.changed …)")
    ] = None,
    strategies: Annotated[str | None, typer.Option(help="Strategies, comma-separated")] = None,
    min_grade: Annotated[
        str | None, typer.Option(help="Lowest signal grade sent (S, A, B, C)")
    ] = None,
    markets: Annotated[
        str | None, typer.Option(help="Markets, comma-separated (KOSPI, KOSDAQ)")
    ] = None,
    language: Annotated[str, typer.Option(help="ko or en")] = "ko",
) -> None:
    """Subscribe a target to events (every event when no filter is given)."""
    filters: dict[str, Any] = {}
    if events:
        filters["event_types"] = _split(events)
    if strategies:
        filters["strategies"] = _split(strategies)
    if min_grade:
        filters["min_grade"] = min_grade
    if markets:
        filters["markets"] = _split(markets)
    made = notify.add(
        name, channel, target=target, secret=secret, filters=filters, language=language
    )
    console.print(
        f"subscription {made.name} added: {made.channel}"
        + (f" → {made.target}" if made.target else "")
        + (f" (secret {made.secret_ref})" if made.secret_ref else "")
        + f", {made.language}, filters {json.dumps(made.filters, ensure_ascii=False)}",
        soft_wrap=True,
        highlight=False,
    )


@notify_app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False) -> None:
    """Every subscription (secrets by name only) and the ledger's counts."""
    found = notify.listing()
    if as_json:
        console.print_json(data=[vars(s) for s in found])
        return
    if not found:
        console.print("no subscriptions (quantbeat notify add NAME --channel …)")
        return
    table = Table(title="subscriptions", title_justify="left")
    for column in ("name", "channel", "target", "secret", "language", "filters", "state"):
        table.add_column(column)
    for s in found:
        table.add_row(
            s.name,
            s.channel,
            s.target or "–",
            s.secret_ref or "–",
            s.language,
            json.dumps(s.filters, ensure_ascii=False),
            "enabled" if s.enabled else f"disabled: {s.disabled_reason or '?'}",
        )
    console.print(table)
    counts = notify.ledger_counts()
    console.print(
        "deliveries: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
    )


@notify_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="Subscription name")]) -> None:
    """Delete a subscription and its delivery history."""
    if not notify.remove(name):
        console.print(f"no subscription called {name}")
        raise typer.Exit(1)
    console.print(f"subscription {name} removed")


@notify_app.command("enable")
def enable(name: Annotated[str, typer.Argument(help="Subscription name")]) -> None:
    """Enable a subscription again (after a permanent failure disabled it); its pending
    messages go out in order."""
    notify.enable(name, True)
    console.print(f"subscription {name} enabled")


@notify_app.command("disable")
def disable(name: Annotated[str, typer.Argument(help="Subscription name")]) -> None:
    """Stop sending to a subscription (its events keep queueing in the ledger)."""
    notify.enable(name, False)
    console.print(f"subscription {name} disabled")


@notify_app.command("test")
def send_test(
    name: Annotated[str, typer.Argument(help="Subscription name")],
    note: Annotated[str | None, typer.Option(help="A line added to the message")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the delivery (0: don't)")] = 30.0,
) -> None:
    """Send a test message to one subscription through the dispatcher and report how it
    went."""
    sent = notify.send_test(name, note)
    console.print(f"test event {sent['event_id']} recorded for {name}")
    if wait <= 0:
        return
    notify.drain(timeout=wait)
    rows = [r for r in notify.delivery_history(name, limit=20) if r["event_id"] == sent["event_id"]]
    if not rows:
        console.print(f"not delivered within {wait:g} s (is a worker consuming the io queue?)")
        raise typer.Exit(1)
    row = rows[0]
    console.print(
        f"delivery {row['state']} after {row['attempts']} attempt(s), parts {row['parts']}"
        + (f": {row['last_error']}" if row["last_error"] else ""),
        soft_wrap=True,
        highlight=False,
    )
    if row["state"] != "sent":
        raise typer.Exit(1)


@notify_app.command("history")
def history(
    name: Annotated[str | None, typer.Argument(help="Subscription name (default: all)")] = None,
    limit: Annotated[int, typer.Option(help="Rows, newest first")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """The delivery ledger, newest first."""
    rows = notify.delivery_history(name, limit=limit)
    if as_json:
        console.print_json(data=rows)
        return
    if not rows:
        console.print("no deliveries yet")
        return
    table = Table(title="deliveries (newest first)", title_justify="left")
    for column in ("subscription", "event", "day", "state", "tries", "parts", "sent", "error"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["subscription"],
            ("SIMULATED " if r["simulated"] else "") + r["type"],
            r["trade_date"] or "–",
            r["state"] + (f" (in doubt ×{r['in_doubt']})" if r["in_doubt"] else ""),
            str(r["attempts"]),
            r["parts"],
            (r["sent_at"] or "–")[:19],
            (r["last_error"] or "")[:80],
        )
    console.print(table)
