"""``quantbeat db``: the database schema (Alembic migrations), backups and restores."""

from __future__ import annotations

from typing import Annotated

import typer

from db import migrate
from db.engine import display_url
from quantbeat.cli.common import console
from quantbeat.infra.settings import get_settings

db_app = typer.Typer(
    help="Database schema (Alembic migrations), backups and restores.", no_args_is_help=True
)


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


@db_app.command("backup")
def db_backup(
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="A directory or s3://bucket/prefix (default QUANTBEAT_BACKUP_URL, else "
            "QUANTBEAT_BACKUP_DIR)",
        ),
    ] = None,
    keep: Annotated[
        int | None,
        typer.Option(min=1, help="Complete backups to keep there (default QUANTBEAT_BACKUP_KEEP)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Back up QUANTBEAT_DATABASE_URL: pg_dump (custom format) from one snapshot, or the
    SQLite backup API, with a manifest of every table's row count and checksum."""
    from quantbeat.services import backups  # noqa: PLC0415 (boto3/psycopg only when used)

    if as_json:
        console.print_json(data=backups.backup(to=to, keep=keep))
        return
    summary = backups.backup(to=to, keep=keep, progress=lambda line: console.print(line))
    console.print(
        f"backup {summary['name']}: {summary['tables']} tables, {summary['rows']:,} rows, "
        f"{summary['bytes']:,} bytes in {summary['seconds']:.1f} s → {summary['location']}"
    )


@db_app.command("restore")
def db_restore(
    file: Annotated[
        str, typer.Argument(help="The backup's dump or manifest (a path or s3:// URL)")
    ],
    into: Annotated[
        str, typer.Option("--into", help="The empty database to restore into (a database URL)")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Restore a backup into an empty database, verified against its manifest; a truncated or
    corrupted file is refused first, and a failed restore leaves nothing behind."""
    from quantbeat.services import backups  # noqa: PLC0415 (boto3/psycopg only when used)

    if as_json:
        console.print_json(data=backups.restore(file, into=into))
        return
    summary = backups.restore(file, into=into, progress=lambda line: console.print(line))
    console.print(
        f"restored {summary['name']} into {summary['into']}: {summary['tables']} tables, "
        f"{summary['rows']:,} rows verified in {summary['seconds']:.1f} s"
    )


@db_app.command("pack-candles")
def db_pack_candles(
    limit: Annotated[
        int | None, typer.Option(min=1, help="Pack at most this many instrument-months")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Pack the daily candles written since they were last packed (one row per instrument and
    month: what universe loads read on PostgreSQL). Collections pack their own and beat packs
    every ten minutes; run this after a large import or a migration. Nothing to do on SQLite."""
    from quantbeat.services import candle_months  # noqa: PLC0415 (only this command needs it)

    if as_json:
        console.print_json(data=candle_months.pack(limit=limit))
        return
    if not candle_months.status()["supported"]:
        console.print("nothing to pack: SQLite reads its candles directly")
        return
    report = candle_months.pack(
        limit=limit,
        progress=lambda taken, total: console.print(f"  packed {taken:,} of {total:,} months"),
    )
    busy = " (another pass is packing: the rest is left to it)" if report["busy"] else ""
    console.print(
        f"packed {report['packed']:,} instrument-months in {report['seconds']:.1f} s; "
        f"{report['remaining']:,} left{busy}"
    )
