"""``quantbeat health [--json]`` and ``quantbeat health serve``: the deployment's health.

Registered on the main CLI as ``quantbeat health``. Unlike other commands, the exit code is the
health itself: 0 healthy, 1 degraded, 2 unhealthy (see :mod:`quantbeat.services.health`).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from quant.errors import ValidationError
from quantbeat.infra.settings import address_option, get_settings
from quantbeat.services import health as service
from quantbeat.services.health import DEFAULT_TIMEOUT, CachedHealth, HealthReport, Status

health_app = typer.Typer(
    help="Health of the deployment: database, broker, workers, beat, data, signals, AI. "
    "Exit code 0 healthy, 1 degraded, 2 unhealthy.",
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()

_STYLE = {
    Status.HEALTHY: "green",
    Status.WARNING: "yellow",
    Status.UNHEALTHY: "bold red",
}
_OVERALL_STYLE = {"healthy": "green", "degraded": "yellow", "unhealthy": "bold red"}


def _print_report(report: HealthReport) -> None:
    state = report.status.value
    console.print(
        f"quantbeat is [{_OVERALL_STYLE[state]}]{state}[/] "
        f"(checked in {report.duration_ms / 1000:.1f} s, exit code {report.exit_code})"
    )
    table = Table()
    table.add_column("component")
    table.add_column("status")
    table.add_column("latency", justify="right")
    table.add_column("message", overflow="fold")
    for c in report.components:
        table.add_row(
            c.name + (" *" if c.critical else ""),
            f"[{_STYLE[c.status]}]{c.status.value}[/]",
            "" if c.latency_ms is None else f"{c.latency_ms:,.0f} ms",
            c.message,
        )
    console.print(table)
    console.print("[dim]* critical: unhealthy makes the deployment unhealthy[/]")


@health_app.callback(invoke_without_command=True)
def health(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds the whole check may take")
    ] = DEFAULT_TIMEOUT,
) -> None:
    """Check every component and print the report; exit 0 healthy, 1 degraded, 2 unhealthy."""
    if ctx.invoked_subcommand is not None:
        return
    report = service.check_health(timeout=service.check_timeout(timeout, field="--timeout"))
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
        sys.stdout.flush()
    else:
        _print_report(report)
    raise typer.Exit(report.exit_code)


@health_app.command("serve")
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on; default QUANTBEAT_HEALTH_ADDRESS, else "
            "QUANTBEAT_BIND_ADDRESS (127.0.0.1). 0.0.0.0: every interface."
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (0: any free one); default QUANTBEAT_HEALTH_PORT")
    ] = None,
    cache: Annotated[float, typer.Option(help="Seconds a report is reused")] = 5.0,
    timeout: Annotated[float, typer.Option(help="Seconds one check may take")] = DEFAULT_TIMEOUT,
) -> None:
    """Serve the report over HTTP for container healthchecks.

    GET /health: the JSON report, 200 when healthy or degraded, 503 when unhealthy.
    GET /health/live: 200 while this process runs.

    Listens on 127.0.0.1 unless the option --host, QUANTBEAT_HEALTH_ADDRESS or
    QUANTBEAT_BIND_ADDRESS say otherwise: the report names every component and its state,
    without authentication."""
    budget = service.check_timeout(timeout, field="--timeout")
    settings = get_settings()
    address = settings.listen_address("health") if host is None else address_option(host, "--host")
    if not 0 <= cache <= 3600:
        raise ValidationError(f"--cache must be 0..3600 seconds, got {cache}", field="--cache")
    chosen = settings.health_port if port is None else port
    if not 0 <= chosen <= 65_535:
        raise ValidationError(f"--port must be 0..65535, got {chosen}", field="--port")
    server = service.make_server(
        address, chosen, CachedHealth(lambda: service.check_health(timeout=budget), cache)
    )
    bound_host, bound_port = server.server_address[:2]
    # One plain, flushed line: supervisors and tests read the port from it.
    sys.stdout.write(f"serving health on http://{bound_host!s}:{bound_port}/health\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
