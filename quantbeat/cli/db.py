"""``quantbeat db``: the database schema (Alembic migrations)."""

from __future__ import annotations

from typing import Annotated

import typer

from db import migrate
from db.engine import display_url
from quantbeat.cli.common import console
from quantbeat.infra.settings import get_settings

db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision")] = "head",
) -> None:
    """Apply migrations to QUANTBEAT_DATABASE_URL."""
    url = get_settings().database_url
    migrate.upgrade(url, revision)
    console.print(f"database {display_url(url)} at revision {migrate.current_revision(url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's migration revision."""
    console.print(migrate.current_revision(get_settings().database_url) or "(empty)")
