"""The ``quantbeat`` command line.

Every error ends as one line on stderr and a non-zero exit code, never a bare traceback
(set ``QUANTBEAT_DEBUG=1`` to see one):

====  ==========================================================
code  meaning
====  ==========================================================
0     success
1     unexpected error (a bug: please report it)
2     bad usage, invalid input, or something named that does not exist (an instrument,
      a run id; the message names the value)
3     configuration error (the message names the variable)
4     a service is unavailable (database, broker, worker); retry later
5     the work failed permanently (see ``job_runs`` / ``dead_letters``)
====  ==========================================================
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from typing import Any

import click
import typer
from kombu.exceptions import OperationalError as KombuOperationalError
from redis import exceptions as redis_exc
from sqlalchemy import exc as sa_exc
from typer.exceptions import TyperException

from quant.errors import (
    ConfigError,
    NotFound,
    PermanentError,
    QuantbeatError,
    TransientError,
    ValidationError,
)
from quantbeat.cli import (
    ai,
    backtest,
    collect,
    crypto,
    db,
    health,
    importer,
    indicators,
    market,
    notify,
    ops,
    portfolio,
    processes,
    run,
    scan,
    settings,
    track,
)
from quantbeat.cli import api as api_cli
from quantbeat.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    command_profile,
)
from quantbeat.infra.masking import mask_text

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_UNEXPECTED",
    "EXIT_USAGE",
    "app",
    "entrypoint",
    "main",
]

app = typer.Typer(
    name="quantbeat",
    help="Scheduled market analysis on Celery: collect, scan, backtest, analyse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(run.run)
app.command()(processes.worker)
app.command()(processes.beat)
app.command()(processes.flower)
app.command()(api_cli.api)
app.command()(scan.scan)
app.command("analyze")(ai.analyze)
app.command()(market.gate)
app.command()(market.sectors)
app.add_typer(db.db_app, name="db")
app.add_typer(indicators.indicators_app, name="indicators")
app.add_typer(collect.collect_app, name="collect")
app.add_typer(collect.data_app, name="data")
app.add_typer(importer.import_app, name="import")
app.add_typer(backtest.backtest_app, name="backtest")
app.add_typer(portfolio.portfolio_app, name="portfolio")
app.add_typer(crypto.crypto_app, name="crypto")
app.add_typer(track.track_app, name="track-record")
app.add_typer(notify.notify_app, name="notify")
app.add_typer(ai.news_app, name="news")
app.add_typer(settings.settings_app, name="settings")
app.add_typer(health.health_app, name="health")
app.add_typer(ops.jobs_app, name="jobs")
app.add_typer(ops.dlq_app, name="dlq")
app.add_typer(api_cli.api_key_app, name="api-key")


# --- entry point ------------------------------------------------------------------------------
def _classify(exc: BaseException) -> tuple[int, str]:
    """Exit code and one-line message for an exception escaping a command."""
    if isinstance(exc, ValidationError):
        return EXIT_USAGE, f"invalid input: {exc}"
    if isinstance(exc, NotFound):  # what the command was given names nothing that exists
        return EXIT_USAGE, f"not found: {exc}"
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG, f"configuration error: {exc}"
    if isinstance(exc, TransientError):
        return EXIT_UNAVAILABLE, f"unavailable: {exc}"
    if isinstance(exc, PermanentError):
        return EXIT_FAILED, f"failed: {exc}"
    if isinstance(exc, QuantbeatError):
        return EXIT_FAILED, f"failed: {exc}"

    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return EXIT_UNAVAILABLE, mask_text(f"cannot reach the database: {exc.orig}")
    if isinstance(exc, KombuOperationalError | ConnectionError):
        return EXIT_UNAVAILABLE, mask_text(f"cannot reach the broker: {exc}")
    if isinstance(exc, redis_exc.ConnectionError | redis_exc.TimeoutError) or (
        isinstance(exc, RuntimeError) and "result store" in str(exc)
    ):
        return EXIT_UNAVAILABLE, mask_text(f"cannot reach the result backend: {exc}")
    return EXIT_UNEXPECTED, mask_text(f"unexpected error: {type(exc).__name__}: {exc}")


#: A line that starts one of these keeps its own line in a help text (lists, tables, code).
_KEEP_LINE = re.compile(r"^\s*([-*•]\s|\||\d+[.)]\s|[A-Z_]+=|\$ |quantbeat |\\b)")


_DEVELOPER_SECTIONS = ("Raises:", "Returns:", "Args:", "Yields:")


def reflow(text: str | None) -> str | None:
    """A docstring as help text: each paragraph one line, so the terminal wraps it at its own
    width — docstrings' hard line breaks would otherwise split sentences in the middle.

    Paragraphs are separated by blank lines; a paragraph whose lines are list items, table
    rows, code or indented (see :data:`_KEEP_LINE`) keeps its lines; ``Raises:``-style
    sections (for callers of the function, not users of the command) are left out.
    """
    if not text:
        return text
    paragraphs = []
    for block in re.split(r"\n\s*\n", inspect.cleandoc(text)):
        if block.startswith(_DEVELOPER_SECTIONS):
            continue  # a docstring's contract for callers, not help for users
        lines = block.split("\n")
        if any(_KEEP_LINE.match(line) or line.startswith("  ") for line in lines[1:]):
            paragraphs.append(block)
        else:
            paragraphs.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


def _readable(command: Any) -> Any:
    """Reflow the help texts of ``command`` and every sub-command and option (in place).
    Duck-typed: typer builds its commands on its own vendored copy of click."""
    command.help = reflow(command.help)
    command.short_help = reflow(command.short_help)
    for param in command.params:
        if isinstance(getattr(param, "help", None), str):
            param.help = reflow(param.help)
    for sub in (getattr(command, "commands", None) or {}).values():
        _readable(sub)
    return command


def cli_command() -> Any:
    """The click command of the whole CLI, help texts reflowed."""
    return _readable(typer.main.get_command(app))


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    command = cli_command()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # embedded (nothing configured) or distributed: see quantbeat.infra.profile
        with command_profile(command, args):
            rv = command.main(args=args, prog_name="quantbeat", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("quantbeat: aborted\n")
        return 130
    except (TyperException, click.ClickException) as exc:
        # Usage errors from typer's (vendored) click parser, or from Celery's click commands
        # that worker/beat/flower delegate to.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            sys.stderr.write(f"quantbeat: {exc}\n")
        return EXIT_USAGE
    except Exception as exc:
        if os.environ.get("QUANTBEAT_DEBUG"):
            raise
        code, message = _classify(exc)
        one_line = " ".join(message.split())[:1000] or type(exc).__name__
        sys.stderr.write(f"quantbeat: {one_line}\n")
        return code
    return int(rv) if isinstance(rv, int) else EXIT_OK


def entrypoint() -> None:  # pragma: no cover - thin wrapper for the console script
    """The ``quantbeat`` console script: :func:`main` with its code as the exit status."""
    sys.exit(main())
