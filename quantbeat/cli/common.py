"""What every command group shares: exit codes, the consoles, option parsing helpers, and
where a command runs (embedded or distributed)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table

from db import migrate
from db.engine import dispose_engines
from quant.errors import ConfigError, ValidationError
from quantbeat.infra.logging import configure_logging
from quantbeat.infra.profile import (
    EMBEDDED_DATABASE_FILE,
    Mode,
    embedded_environment,
    environment,
    resolve_mode,
)
from quantbeat.infra.settings import get_settings
from quantbeat.services.args import parse_date
from quantbeat.services.scans import Candidate
from workers.embedded import embedded_profile, embedded_worker

#: Exit codes (see :mod:`quantbeat.cli.main`).
EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_FAILED = range(6)

console = Console()
err_console = Console(stderr=True)


def parse_pairs(values: list[str] | None, option: str) -> dict[str, object]:
    """``NAME=VALUE`` options → a dict; values are JSON when they parse (numbers, true,
    ["S","A"]), text otherwise.

    Raises:
        quant.errors.ValidationError: an item without ``=`` or a name; the message names
            ``option`` and the item.
    """
    out: dict[str, object] = {}
    for item in values or []:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ValidationError(
                f"{option} must look like NAME=VALUE, got {item!r}", field=option, value=item
            )
        try:
            out[name.strip()] = json.loads(raw.strip())
        except json.JSONDecodeError:
            out[name.strip()] = raw.strip()
    return out


def parse_date_option(value: str | None, option: str) -> dt.date | None:
    """``value`` (YYYY-MM-DD) as a date, ``None`` when not given.

    Raises:
        quant.errors.ValidationError: not a date; the message names ``option``.
    """
    return None if value is None else parse_date(value, field=option)


# --- where the command runs (quantbeat.infra.profile) ----------------------------------------
#: The embedded commands' log file, under ``QUANTBEAT_DATA_DIR``.
EMBEDDED_LOG_FILE = "quantbeat.log"
#: Commands that start long-running processes other processes must reach: refused embedded.
NEEDS_DEPLOYMENT = frozenset({"worker", "beat", "flower"})
#: Commands (first word, or first two words) that send tasks: embedded, they get a Celery
#: worker in their own process for as long as they run.
NEEDS_WORKER = frozenset(
    {
        ("scan",),
        ("analyze",),
        ("collect",),
        ("news",),
        ("backtest", "submit"),
        ("indicators", "get"),
        ("dlq", "replay"),
        ("data", "gaps"),
        ("notify", "test"),
        ("crypto", "signal"),
        ("crypto", "sync"),
        ("crypto", "volatility"),
        ("api",),
    }
)


def command_path(command: Any, argv: Sequence[str]) -> tuple[str, ...]:
    """The sub-command names ``argv`` selects (``("backtest", "submit")``); options and
    arguments are skipped. Walks ``command``'s tree (typer's click commands)."""
    path: list[str] = []
    node = command
    for token in argv:
        children = getattr(node, "commands", None) or {}
        if token in children:
            path.append(token)
            node = children[token]
        elif not token.startswith("-") and not children:
            break
    return tuple(path)


def _needs_worker(path: tuple[str, ...], argv: Sequence[str]) -> bool:
    if path[:1] == ("scan",) and "--show" in argv:
        return False
    if path[:2] == ("data", "gaps") and "--backfill" not in argv:
        return False
    return path[:1] in NEEDS_WORKER or path[:2] in NEEDS_WORKER


def is_embedded() -> bool:
    """Whether this command runs on the embedded profile."""
    return resolve_mode() is Mode.EMBEDDED


def embedded_note(message: str) -> None:
    """One dim line on stderr (stdout stays parseable, e.g. ``--json``)."""
    err_console.print(f"[dim]{message}[/]", highlight=False, soft_wrap=True)


@contextmanager
def command_profile(command: Any, argv: Sequence[str]) -> Iterator[None]:
    """Run the command ``argv`` selects where quantbeat runs (:mod:`quantbeat.infra.profile`).

    Distributed: nothing changes. Embedded (nothing configured): the command uses the SQLite
    file ``make run`` wrote (created and migrated when missing), the in-memory broker and
    in-process caches; a command that sends tasks gets a real Celery worker in this process
    (:data:`NEEDS_WORKER`); one line on stderr says so. ``quantbeat run`` decides for itself;
    help and usage errors need no profile.

    Raises:
        quant.errors.ConfigError: embedded, a command that needs a deployment
            (:data:`NEEDS_DEPLOYMENT`).
    """
    path = command_path(command, argv)
    if not path or path[0] == "run" or "--help" in argv or not is_embedded():
        yield
        return
    if path[0] in NEEDS_DEPLOYMENT:
        raise ConfigError(
            f"quantbeat {path[0]} needs a broker and database that other processes reach; "
            "nothing is configured, so quantbeat runs embedded (in this process only). Set "
            "QUANTBEAT_BROKER_URL, QUANTBEAT_RESULT_BACKEND, QUANTBEAT_DATABASE_URL and "
            "QUANTBEAT_REDIS_URL (or QUANTBEAT_MODE=distributed); see README 'Running the "
            "distributed stack'"
        )
    data_dir = get_settings().data_dir
    with environment(embedded_environment(data_dir)), embedded_profile(get_settings()):
        settings = get_settings()
        database = data_dir / EMBEDDED_DATABASE_FILE
        created = not database.exists()
        database.parent.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(settings.database_url)
        worker = _needs_worker(path, argv)
        log_file = data_dir / EMBEDDED_LOG_FILE
        if worker:  # the in-process worker's log lines go to a file, as `quantbeat run`'s do
            configure_logging(settings.log_level, json=True, path=log_file)
        simulated = settings.market_source == "simulated"
        embedded_note(
            f"embedded: {database}"
            + (" (created now, empty: `make run` fills it)" if created else "")
            + (f", in-process worker (log: {log_file})" if worker else "")
            + (", SIMULATED market data" if simulated else "")
            + " — set QUANTBEAT_DATABASE_URL etc. for a deployment"
        )
        try:
            if worker:
                with embedded_worker():
                    yield
            else:
                yield
        finally:
            dispose_engines()  # the SQLite file's connections end with the command


def must_wait(wait: bool) -> bool:
    """``wait``, except embedded: the in-memory queue ends with this command, so queued work
    must finish inside it (one dim line says so when ``--no-wait`` was asked for)."""
    if not wait and is_embedded():
        embedded_note("embedded: waiting anyway (the queue lives in this process)")
        return True
    return wait


def candidates_table(
    ranked: Sequence[Candidate], *, title: str | None = None, note: bool = True
) -> Table:
    """Ranked scan candidates as a table: rank, instrument, name, score, grade, entry and
    (``note``) the status note."""
    table = Table(title=title, title_justify="left")
    columns = ("#", "instrument", "name", "score", "grade", "entry", "note")
    for column in columns if note else columns[:-1]:
        table.add_column(column, justify="right" if column in ("#", "score", "entry") else "left")
    for c in ranked:
        cells = [
            str(c.rank),
            c.instrument,
            c.name,
            "" if c.score is None else f"{c.score:.1f}",
            c.grade or "",
            "" if c.entry_price is None else f"{c.entry_price:,.0f}",
        ]
        table.add_row(*cells, *([c.status or ""] if note else []))
    return table


def crypto_book_line(book: Mapping[str, Any], label: str) -> str:
    """One line for the crypto paper portfolio's book (``quantbeat crypto book``, the run's
    report): equity, cash, positions, P&L, and whether it agreed with its ledger."""
    held = (
        ", ".join(
            f"{m} {p['volume']:.8f} (cost {p['cost']:,.0f})"
            for m, p in book.get("positions", {}).items()
            if p.get("volume")
        )
        or "no position"
    )
    drift = book.get("drift") or []
    state = "reconciled with its ledger" if not drift else f"DRIFT: {'; '.join(drift[:3])}"
    return (
        f"{label}crypto paper portfolio {book['portfolio']} (paper only, no live order is "
        f"sent): equity KRW {book['equity']:,.0f} of {book['capital']:,.0f}, cash "
        f"{book['cash']:,.0f}, {held}; realized {book['realized']:+,.0f}, fees "
        f"{book['fees']:,.0f}; {state}"
    )
