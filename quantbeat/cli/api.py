"""``quantbeat api`` (the HTTP API and dashboard) and ``quantbeat api-key
create|list|revoke``."""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Annotated

import typer
from rich.table import Table

from quant.errors import ConfigError, ValidationError
from quantbeat.cli.common import console, is_embedded
from quantbeat.infra.logging import configure_logging
from quantbeat.infra.settings import address_option, get_settings, is_loopback, reset_settings
from quantbeat.services import api_keys

api_key_app = typer.Typer(
    help="API keys of the HTTP API: create (shown once), list, revoke.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def api(
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on; default QUANTBEAT_API_ADDRESS, else "
            "QUANTBEAT_BIND_ADDRESS (127.0.0.1). 0.0.0.0: every interface (put a TLS proxy "
            "in front)."
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (0: any free one); default QUANTBEAT_API_PORT")
    ] = None,
    open_: Annotated[
        bool,
        typer.Option(
            "--open",
            help="Serve without API keys (every scope): only on a loopback address, never in "
            "production — the newcomer's dashboard on the embedded database",
        ),
    ] = False,
) -> None:
    """Serve the HTTP API (/api/v1, OpenAPI at /api/docs) and the dashboard (/).

    Every API route needs an API key (quantbeat api-key create); the dashboard asks for one
    once and keeps it in a cookie. Listens on 127.0.0.1 unless --host,
    QUANTBEAT_API_ADDRESS or QUANTBEAT_BIND_ADDRESS say otherwise. Prints one line with the
    address it serves on, then serves until stopped (Ctrl-C).

    Raises:
        quant.errors.ConfigError: --open on an address other hosts can reach, or in
            production.
        quant.errors.ValidationError: a port outside 0..65535.
    """
    import uvicorn  # noqa: PLC0415 (the API's stack loads only for this command)

    settings = get_settings()
    if not is_embedded():  # embedded, the command's log file is set up already
        # JSON lines on stderr (one per request, with its request id); stdout carries only
        # the line saying where the API serves.
        configure_logging(settings.log_level, json=True)
    address = settings.listen_address("api") if host is None else address_option(host, "--host")
    chosen = settings.api_port if port is None else port
    if not 0 <= chosen <= 65_535:
        raise ValidationError(f"--port must be 0..65535, got {chosen}", field="--port")
    if open_ or settings.api_open:
        if not is_loopback(address):
            raise ConfigError(
                f"--open serves without API keys and is refused on {address}, which other "
                "hosts can reach: listen on 127.0.0.1, or create keys (quantbeat api-key create)"
            )
        if settings.env == "production":
            raise ConfigError("--open is refused with QUANTBEAT_ENV=production")
        os.environ["QUANTBEAT_API_OPEN"] = "true"
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, chosen))
    # Listening before the line is printed: a client that reads it may connect at once (the
    # backlog holds it until uvicorn accepts).
    sock.listen(2048)
    bound_host, bound_port = sock.getsockname()[:2]
    # The app is built by uvicorn from its import string (an entry point never imports
    # another): it reads the address it listens on from the settings, for open mode.
    os.environ["QUANTBEAT_API_ADDRESS"] = address
    reset_settings()
    shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
    mode = " (open: no API key needed)" if get_settings().api_open_on(address) else ""
    # One plain, flushed line: supervisors and tests read the port from it.
    sys.stdout.write(f"serving API and dashboard on http://{shown}:{bound_port}/{mode}\n")
    sys.stdout.flush()
    config = uvicorn.Config(
        "quantbeat.api.app:create_app",
        factory=True,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    # uvicorn re-raises the signal that stopped it once it has drained; a handler installed
    # meanwhile (the embedded worker's) may swallow it. Ctrl-C ends the command as Ctrl-C
    # ends any command (exit 130), whoever handled it.
    if signal.SIGINT in getattr(server, "_captured_signals", ()):
        raise KeyboardInterrupt


@api_key_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Key name (letters, digits, _ . -)")],
    scope: Annotated[
        list[str],
        typer.Option(help="read, run (implies read) or admin (implies both); repeatable"),
    ],
    rate: Annotated[
        int | None,
        typer.Option(help="Requests per minute (default QUANTBEAT_API_RATE_PER_MINUTE)"),
    ] = None,
    expires_days: Annotated[
        float | None, typer.Option(help="Days until the key expires (default: never)")
    ] = None,
) -> None:
    """Create a key and print it once: it is stored only as a hash and cannot be shown again."""
    token, described = api_keys.create(name, scope, rate_per_minute=rate, expires_days=expires_days)
    console.print(
        f"API key {described['name']} (scopes {', '.join(described['scopes'])}) — shown once, "
        "keep it now:",
        soft_wrap=True,
    )
    # The key alone on its line, unstyled: scripts read it.
    sys.stdout.write(token + "\n")
    sys.stdout.flush()


@api_key_app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False) -> None:
    """Every key with its scopes and state (never the key itself)."""
    found = api_keys.list_keys()
    if as_json:
        console.print_json(data=found)
        return
    if not found:
        console.print("no API keys (quantbeat api-key create NAME --scope read)")
        return
    table = Table(title="API keys", title_justify="left")
    for column in ("name", "prefix", "scopes", "rate/min", "state", "created", "last used"):
        table.add_column(column)
    for k in found:
        table.add_row(
            k["name"],
            f"qb_{k['prefix']}_…",
            ", ".join(k["scopes"]),
            str(k["rate_per_minute"] or "default"),
            k["state"],
            (k["created_at"] or "")[:16],
            (k["last_used_at"] or "never")[:16],
        )
    console.print(table)


@api_key_app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="Key name")]) -> None:
    """Revoke a key: refused from now on (within a few seconds on running API processes)."""
    described = api_keys.revoke(name)
    console.print(f"API key {described['name']} revoked")
