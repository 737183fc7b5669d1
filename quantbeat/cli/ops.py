"""``quantbeat jobs list|show`` (job history) and ``quantbeat dlq list|show|replay|purge`` (dead
letters).

Registered on the main CLI (see :mod:`quantbeat.cli.main` for exit codes: an unknown id or a bad
option value is a usage error, exit code 2). Times are printed in UTC. ``--since`` and
``--older-than`` take a duration (``90s``, ``15m``, ``1h``, ``2d``) or an ISO date/datetime
(:mod:`quantbeat.infra.timespec`); ``--task`` takes names or globs (``quantbeat.collect.*``) and may
be repeated. Arguments, payloads and errors are shown as stored: masked. The queries are
:mod:`quantbeat.services.jobs` and :mod:`quantbeat.services.dlq`.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from quant.errors import ValidationError
from quantbeat.infra.timespec import parse_since
from quantbeat.services import dlq, jobs

jobs_app = typer.Typer(
    help="Job history: every task execution with its attempts, timings and error.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
dlq_app = typer.Typer(
    help="Dead letters: messages and tasks that will not run without an operator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()

_ERROR_WIDTH = 60


def _when(iso: str | None) -> str:
    """An ISO 8601 instant (as the services return it) in UTC, to the second."""
    if not iso:
        return ""
    return dt.datetime.fromisoformat(iso).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _short(text: str | None, width: int = _ERROR_WIDTH) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _duration(ms: float | None) -> str:
    if ms is None:
        return ""
    return f"{ms:.0f} ms" if ms < 1_000 else f"{ms / 1_000:.1f} s"


def _since(value: str | None) -> dt.datetime | None:
    return None if value is None else parse_since(value, option="--since")


def _table(columns: tuple[str, ...], *, numeric: tuple[str, ...]) -> Table:
    """A listing, times in UTC: a narrow terminal wraps the error column (shortened to
    :data:`_ERROR_WIDTH` characters) and leaves the others on one line."""
    table = Table(
        box=box.SIMPLE_HEAD, pad_edge=False, caption="times in UTC", caption_justify="left"
    )
    for column in columns:
        table.add_column(
            column,
            justify="right" if column in numeric else "left",
            no_wrap=column != "error",
            overflow="ellipsis",
        )
    return table


def _print_listing(table: Table) -> None:
    """Print a listing: fitted to a terminal, at its natural width when piped (so ``grep``
    sees whole lines)."""
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(1_000), table).maximum
    # Console.print never renders wider than the console; a console as wide as the table does.
    Console(file=console.file, width=max(console.width, natural)).print(table)


def _print_fields(rows: list[tuple[str, Any]]) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, Text("" if value is None else str(value)))
    console.print(table)


def _print_json_block(title: str, value: Any) -> None:
    console.print(f"[dim]{title}[/]")
    console.print(
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str),
        soft_wrap=True,
        markup=False,
    )


# --- jobs -------------------------------------------------------------------------------------
@jobs_app.command("list")
def jobs_list(
    failed: Annotated[
        bool,
        typer.Option("--failed", help=f"Only failed runs ({', '.join(jobs.FAILED_STATES)})"),
    ] = False,
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Only runs in this state (repeatable)")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Started since: 90s, 15m, 1h, 2d or an ISO datetime")
    ] = None,
    task: Annotated[
        list[str] | None,
        typer.Option("--task", help="Task name or glob, e.g. quantbeat.collect.* (repeatable)"),
    ] = None,
    limit: Annotated[int, typer.Option(help="Runs to show (most recent first)")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """Recent task executions: id, task, state, attempts, retries, start, duration, error."""
    rows = jobs.list_jobs(
        states=state or (), failed=failed, tasks=task, since=_since(since), limit=limit
    )
    if as_json:
        console.print_json(data=rows)
        return
    if not rows:
        console.print("no job runs match")
        return
    table = _table(
        ("id", "task", "state", "attempts", "retries", "started", "duration", "error"),
        numeric=("id", "attempts", "retries", "duration"),
    )
    for run in rows:
        table.add_row(
            str(run["id"]),
            Text(run["task_name"]),
            run["state"],
            str(run["attempts"]),
            str(run["retries"]),
            _when(run["started_at"]),
            _duration(run["duration_ms"]),
            Text(_short(run["error"])),
        )
    _print_listing(table)


@jobs_app.command("show")
def jobs_show(
    ident: Annotated[
        str, typer.Argument(metavar="ID", help="Row id (jobs list) or Celery task id")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """Everything recorded about one task id: arguments (masked), attempts, retries, worker,
    queue, timings, error and result, and every execution (worker, state, timings, error)."""
    row = jobs.get_job(ident)
    if as_json:
        console.print_json(data=row)
        return
    _print_fields(
        [
            ("id", row["id"]),
            ("task id", row["task_id"]),
            ("task", row["task_name"]),
            ("state", row["state"]),
            ("attempts", row["attempts"]),
            ("retries", row["retries"]),
            ("queue", row["queue"]),
            ("worker", row["worker"]),
            ("started", row["started_at"]),
            ("finished", row["finished_at"]),
            ("duration", _duration(row["duration_ms"])),
            ("error", row["error"]),
        ]
    )
    _print_json_block("args", row["args"])
    _print_json_block("kwargs", row["kwargs"])
    _print_json_block("result", row["result"])
    executions = row.get("executions") or []
    if executions:
        table = _table(
            ("attempt", "worker", "state", "started", "duration", "error", "result"),
            numeric=("attempt", "duration"),
        )
        for ex in executions:
            table.add_row(
                str(ex["attempt"]),
                Text(ex["worker"] or ""),
                ex["state"],
                _when(ex["started_at"]),
                _duration(ex["duration_ms"]),
                Text(_short(ex["error"])),
                Text(_short(json.dumps(ex["result"], default=str)) if ex["result"] else ""),
            )
        console.print("[dim]executions[/]")
        _print_listing(table)


# --- dlq --------------------------------------------------------------------------------------
@dlq_app.command("list")
def dlq_list(
    reason: Annotated[
        list[str] | None,
        typer.Option("--reason", help="Only this reason, e.g. unknown_task (repeatable)"),
    ] = None,
    task: Annotated[
        list[str] | None, typer.Option("--task", help="Task name or glob (repeatable)")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Last seen since: 90s, 15m, 1h, 2d or an ISO datetime")
    ] = None,
    limit: Annotated[int, typer.Option(help="Letters to show (most recently seen first)")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """Dead letters: id, reason, task, occurrences, last seen, replays, error."""
    rows = dlq.list_letters(reasons=reason, tasks=task, since=_since(since), limit=limit)
    if as_json:
        console.print_json(data=rows)
        return
    if not rows:
        console.print("no dead letters match")
        return
    table = _table(
        ("id", "reason", "task", "seen", "last seen", "replays", "error"),
        numeric=("id", "seen", "replays"),
    )
    for letter in rows:
        table.add_row(
            str(letter["id"]),
            Text(letter["reason"]),
            Text(letter["task_name"] or ""),
            str(letter["occurrences"]),
            _when(letter["last_seen"]),
            str(letter["replays"]),
            Text(_short(letter["error"])),
        )
    _print_listing(table)


@dlq_app.command("show")
def dlq_show(
    letter_id: Annotated[int, typer.Argument(metavar="ID", help="Dead letter id (dlq list)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """Everything about one dead letter, its (masked) payload pretty-printed."""
    row = dlq.show_letter(letter_id)
    if as_json:
        console.print_json(data=row)
        return
    _print_fields([(k.replace("_", " "), v) for k, v in row.items() if k != "payload"])
    _print_json_block("payload", row["payload"])


@dlq_app.command("replay")
def dlq_replay(
    ids: Annotated[list[int] | None, typer.Argument(metavar="ID", help="Dead letter ids")] = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="Every dead letter (narrowed by --reason)")
    ] = False,
    reason: Annotated[
        list[str] | None, typer.Option("--reason", help="Only letters of this reason (repeatable)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent; send nothing")
    ] = False,
) -> None:
    """Send dead letters' tasks again with their stored arguments, as new tasks.

    Refuses (exit code 2, nothing sent when IDs are given) letters whose task is not
    registered, that hold no decodable arguments, or whose arguments were masked when stored.
    With --all/--reason the letters that can be replayed are sent and the others listed.
    """
    done = dlq.replay(ids=ids or (), replay_all=replay_all, reasons=reason, dry_run=dry_run)
    sent = [r for r in done if r.refused is None]
    for r in sent:
        call = f"{r.task_name}(args={json.dumps(r.args)}, kwargs={json.dumps(r.kwargs)})"
        if dry_run:
            console.print(
                f"would replay dead letter {r.letter_id}: {call}", soft_wrap=True, markup=False
            )
        else:
            console.print(
                f"replayed dead letter {r.letter_id} as task {r.task_id}: {call}",
                soft_wrap=True,
                markup=False,
            )
    skipped = [r for r in done if r.refused is not None]
    for r in skipped:
        console.print(f"skipped {r.refused}", soft_wrap=True, markup=False)
    verb = "would replay" if dry_run else "replayed"
    console.print(f"{verb} {len(sent)} dead letter(s), skipped {len(skipped)}")


@dlq_app.command("purge")
def dlq_purge(
    older_than: Annotated[
        str | None,
        typer.Option(help="Last seen longer ago than this: 30d, 12h or an ISO datetime"),
    ] = None,
    reason: Annotated[
        list[str] | None, typer.Option("--reason", help="Only this reason (repeatable)")
    ] = None,
    ids: Annotated[
        list[int] | None, typer.Option("--id", help="Only this dead letter id (repeatable)")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete")] = False,
) -> None:
    """Delete dead letters matching every given filter (at least one is required)."""
    if older_than is None and not reason and not ids:
        raise ValidationError(
            "dlq purge needs a filter: --older-than, --reason or --id", field="--older-than"
        )
    if not yes:
        raise ValidationError(
            "dlq purge deletes dead letters; pass --yes to confirm", field="--yes"
        )
    cutoff = None if older_than is None else parse_since(older_than, option="--older-than")
    deleted = dlq.purge(older_than=cutoff, reasons=reason, ids=ids)
    console.print(f"deleted {deleted} dead letter(s)")
