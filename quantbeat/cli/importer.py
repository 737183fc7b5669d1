"""``quantbeat import csv``: move the earlier system's CSV files into the database.

Registered on the main CLI as ``quantbeat import`` (see :mod:`quantbeat.cli.main`, which maps a
:class:`quant.errors.ValidationError` to exit code 2). The work is
:func:`quantbeat.services.importer.import_csv`; this module parses the options, shows a
progress bar and prints the closing reconciliation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from quant.errors import ValidationError
from quant.migration.csv_import import CsvKind, FlowUnit, parse_market
from quant.migration.original import OriginalFile
from quantbeat.services.importer import ImportReport, import_csv
from quantbeat.services.original_import import OriginalImportReport, import_original

import_app = typer.Typer(
    help="Import files of the earlier system (CSV migration).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_KINDS = ", ".join(k.value for k in CsvKind)
_UNITS = ", ".join(u.value for u in FlowUnit)


@import_app.callback()
def _group() -> None:
    """Import files of the earlier system (CSV migration)."""


def _kind(value: str | None) -> CsvKind | None:
    if value is None:
        return None
    try:
        return CsvKind(value.strip().lower())
    except ValueError:
        raise ValidationError(
            f"--kind must be one of {_KINDS}, got {value!r}", field="--kind", value=value
        ) from None


def _flow_unit(value: str | None) -> FlowUnit | None:
    if value is None:
        return None
    try:
        return FlowUnit(value.strip().lower())
    except ValueError:
        raise ValidationError(
            f"--flow-unit must be one of {_UNITS}, got {value!r}",
            field="--flow-unit",
            value=value,
        ) from None


def _existing_file(value: Path, option: str) -> Path:
    if not value.is_file():
        what = "a directory" if value.is_dir() else "not found"
        raise ValidationError(f"{option} {str(value)!r}: {what}", field=option, value=str(value))
    return value


@import_app.command("csv")
def import_csv_command(
    path: Annotated[Path, typer.Argument(help="The CSV file to import")],
    kind: Annotated[
        str | None,
        typer.Option(help=f"What the file holds ({_KINDS}); default: detected from the header"),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Parse, check and count everything, then roll the writes back"
        ),
    ] = False,
    flow_unit: Annotated[
        str | None,
        typer.Option(help=f"Unit of flow columns whose header states none ({_UNITS})"),
    ] = None,
    market: Annotated[
        str | None,
        typer.Option(help="Market of rows without one (KOSPI, KOSDAQ, 코스피 …)"),
    ] = None,
    stocks_file: Annotated[
        Path | None,
        typer.Option(help="A stocks list giving the market and name of each ticker"),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(help="Where rejected rows go; default: <PATH>.rejects.csv"),
    ] = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows per transaction")] = 50_000,
    create_instruments: Annotated[
        bool,
        typer.Option(
            "--create-instruments",
            help="Create the instruments the file names that the database does not have "
            "(default: reject those rows, reason unknown_instrument)",
        ),
    ] = False,
) -> None:
    """Import one CSV file (daily prices, stocks list, institutional trend or signals log).

    A row naming an instrument the database does not have is rejected (unknown_instrument)
    unless --create-instruments is given; the report lists the instruments created."""
    chosen_kind = _kind(kind)
    unit = _flow_unit(flow_unit)
    default_market = parse_market(market) if market is not None else None
    if stocks_file is not None:
        _existing_file(stocks_file, "--stocks-file")
    _existing_file(path, "PATH")
    if chunk_rows < 1:
        raise ValidationError(
            f"--chunk-rows must be >= 1, got {chunk_rows}", field="--chunk-rows", value=chunk_rows
        )
    console = Console()
    with Progress(
        TextColumn("[bold]importing[/] {task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("lines"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(path.name, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            report = import_csv(
                path,
                kind=chosen_kind,
                dry_run=dry_run,
                flow_unit=unit,
                default_market=default_market,
                stocks_file=stocks_file,
                reject_file=rejects,
                chunk_rows=chunk_rows,
                progress=progress,
                create_instruments=create_instruments,
            )
        except BaseException:
            bar.update(task, visible=False)  # the error is the one line that matters
            raise
    print_report(report, console)


def print_report(report: ImportReport, console: Console) -> None:
    """The closing reconciliation of an import, as a two-column table."""
    label = " [bold yellow](DRY RUN: nothing was written)[/]" if report.dry_run else ""
    console.print(f"[bold]quantbeat import csv[/] — {report.kind.value}{label}")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column(justify="right")
    table.add_column()
    table.add_row("file", "", f"{report.path} ({report.encoding})")
    table.add_row("rows read", f"{report.rows_read:,}", "")
    verb = "would be " if report.dry_run else ""
    table.add_row("inserted", f"{report.inserted:,}", f"{verb}new" if report.dry_run else "")
    table.add_row("updated", f"{report.updated:,}", f"{verb}changed" if report.dry_run else "")
    table.add_row("unchanged", f"{report.unchanged:,}", "already stored")
    reasons = ", ".join(f"{k} {v:,}" for k, v in report.rejects_by_reason.items())
    table.add_row("rejected", f"{report.rejected:,}", reasons)
    stored = report.inserted + report.updated + report.unchanged
    check = "ok" if report.reconciles else "MISMATCH"
    table.add_row(
        "reconciliation",
        check,
        f"{report.rows_read:,} read = {report.inserted:,} + {report.updated:,} + "
        f"{report.unchanged:,} + {report.rejected:,} (= {stored + report.rejected:,})",
    )
    if report.blank_lines:
        table.add_row("blank lines", f"{report.blank_lines:,}", "skipped, not rows")
    if report.instruments_created:
        table.add_row(
            "instruments created",
            f"{report.instruments_created:,}",
            _created(report),
        )
    table.add_row("reject file", "", str(report.reject_file))
    table.add_row("run id", str(report.run_id), "import_runs")
    table.add_row("time taken", f"{report.seconds:.2f} s", "")
    console.print(table)
    for note in report.notes:
        console.print(f"[dim]note:[/] {note}")


def _created(report: ImportReport, shown: int = 10) -> str:
    """The instruments created, by name (the first ``shown``)."""
    names = list(report.created_instruments)
    listed = ", ".join(names[:shown]) + (
        f" and {len(names) - shown:,} more" if len(names) > shown else ""
    )
    note = "named by the file, not listed before" + (" (rolled back)" if report.dry_run else "")
    return f"{note}: {listed}" if listed else note


@import_app.command("original")
def import_original_command(
    path: Annotated[
        Path,
        typer.Argument(
            help="The original system's data folder (or one of its files, named as the "
            "original names it)"
        ),
    ],
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Parse, check and count everything, then roll the writes back"
        ),
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Import only these kinds ({', '.join(k.value for k in OriginalFile)}); repeatable"
        ),
    ] = None,
    stocks_file: Annotated[
        Path | None,
        typer.Option(
            help="The stocks list giving each ticker's market; default: "
            "korean_stocks_list.csv in the folder"
        ),
    ] = None,
    create_instruments: Annotated[
        bool,
        typer.Option(
            "--create-instruments",
            help="Create instruments the files name that neither the database nor the stocks "
            "list has (default: reject those rows, reason unknown_instrument)",
        ),
    ] = False,
) -> None:
    """Import the original system's own files: korean_stocks_list.csv, daily_prices.csv,
    all_institutional_trend_data.csv, signals_log.csv, jongga_v2_results_YYYYMMDD.json and
    kr_ai_analysis[_YYYYMMDD].json (also in history/). Each file reconciles (read = stored +
    unchanged + rejected) and gets a <file>.rejects.csv; a re-import changes nothing."""
    if stocks_file is not None:
        _existing_file(stocks_file, "--stocks-file")
    if not path.exists():
        raise ValidationError(f"PATH {str(path)!r}: not found", field="PATH", value=str(path))
    console = Console()

    def progress(kind: OriginalFile, file: Path) -> None:
        console.print(f"[dim]importing {kind.value}:[/] {file}")

    report = import_original(
        path,
        dry_run=dry_run,
        only=only,
        stocks_file=stocks_file,
        create_instruments=create_instruments,
        progress=progress,
    )
    print_original_report(report, console)


def print_original_report(report: OriginalImportReport, console: Console) -> None:
    """One line per file: counts, the reconciliation, rejects by reason, then the notes."""
    label = " [bold yellow](DRY RUN: nothing was written)[/]" if report.dry_run else ""
    console.print(f"[bold]quantbeat import original[/] — {report.path}{label}")
    if not report.files:
        console.print("no original files found (see `quantbeat import original --help`)")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("file", "kind", "read", "inserted", "updated", "unchanged", "rejected",
                   "check"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("file", "kind") else "right")
    for f in report.files:
        table.add_row(
            f.path.name,
            f.kind.value,
            f"{f.rows_read:,}",
            f"{f.inserted:,}",
            f"{f.updated:,}",
            f"{f.unchanged:,}",
            f"{f.rejected:,}",
            "ok" if f.reconciles else "MISMATCH",
        )
    console.print(table)
    for f in report.files:
        if f.rejects_by_reason:
            reasons = ", ".join(f"{k} {v:,}" for k, v in f.rejects_by_reason.items())
            console.print(f"{f.path.name}: rejected {reasons} → {f.reject_file}")
        if f.analyses is not None:
            a = f.analyses
            console.print(
                f"{f.path.name}: analyses inserted {a.inserted}, updated {a.updated}, "
                f"unchanged {a.unchanged}"
            )
        if f.instruments_created:
            shown = ", ".join(f.instruments_created[:10])
            more = len(f.instruments_created) - 10
            tail = f" and {more} more" if more > 0 else ""
            rolled = " (rolled back)" if report.dry_run else ""
            console.print(f"{f.path.name}: instruments created{rolled}: {shown}{tail}")
        for note in f.notes:
            console.print(f"[dim]note ({f.path.name}):[/] {note}")


__all__ = ["import_app", "print_original_report", "print_report"]
