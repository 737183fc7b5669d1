"""``quantbeat settings``: operator settings stored in the database (see
:mod:`quantbeat.services.settings_store`): strategy parameter overrides and schedule switches."""

from __future__ import annotations

import getpass
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from quant.errors import ValidationError
from quantbeat.services.settings_store import (
    list_stored,
    set_setting,
    stored_value,
    unset_setting,
)

console = Console()

settings_app = typer.Typer(
    help="Stored settings: strategy.<name> parameters, schedule.<entry>.enabled.",
    no_args_is_help=True,
)


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f'VALUE must be JSON (true, false, 3, {{"min_contractions": 3}}), got {raw!r}: '
            f"{exc.msg}",
            field="VALUE",
            value=raw,
        ) from None


@settings_app.command("list")
def settings_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Every stored setting, with who changed it and when."""
    rows = list_stored()
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        console.print("no stored settings (every strategy and schedule entry uses its default)")
        return
    table = Table("key", "value", "updated by", "updated at")
    for row in rows:
        table.add_row(
            row["key"],
            json.dumps(row["value"], ensure_ascii=False),
            row["updated_by"] or "",
            row["updated_at"] or "",
        )
    console.print(table)


@settings_app.command("get")
def settings_get(key: Annotated[str, typer.Argument(help="e.g. strategy.vcp")]) -> None:
    """Print one setting's stored value as JSON (``null`` when it is not set)."""
    typer.echo(json.dumps(stored_value(key), ensure_ascii=False))


@settings_app.command("set")
def settings_set(
    key: Annotated[str, typer.Argument(help="strategy.<name> or schedule.<entry>.enabled")],
    value: Annotated[str, typer.Argument(help="a JSON value")],
) -> None:
    """Validate and store a setting; running beat and workers pick it up within seconds."""
    stored = set_setting(key, _parse_value(value), updated_by=getpass.getuser())
    console.print(f"{key} = {json.dumps(stored, ensure_ascii=False)}")


@settings_app.command("unset")
def settings_unset(key: Annotated[str, typer.Argument(help="the setting to remove")]) -> None:
    """Remove a setting (back to its default)."""
    existed = unset_setting(key)
    console.print(f"{key} removed" if existed else f"{key} was not set")
