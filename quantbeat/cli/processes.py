"""``quantbeat worker``, ``beat`` and ``flower``: the long-running processes."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from quant.errors import ConfigError, ValidationError
from quantbeat.infra.settings import (
    address_option,
    flower_auth_problems,
    get_settings,
    is_loopback,
    reset_settings,
)
from workers.app import app as celery_app
from workers.events import install_flower_masking
from workers.queues import Queue


def _queues(value: str) -> list[str]:
    names = [q.strip() for q in value.split(",") if q.strip()]
    known = {q.value for q in Queue}
    bad = [q for q in names if q not in known]
    if not names or bad:
        raise ValidationError(
            f"--queues must list queues from {sorted(known)}, got {value!r}",
            field="--queues",
            value=value,
        )
    return names


def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated: io, cpu, ai")] = "io,cpu,ai",
    pool: Annotated[
        str | None, typer.Option(help="prefork|threads|solo; default: prefork for cpu")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="Processes or threads")] = None,
    hostname: Annotated[str | None, typer.Option(help="Node name; default <queues>@%h")] = None,
    loglevel: Annotated[str, typer.Option(help="Log level")] = "INFO",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Prometheus /metrics port; default QUANTBEAT_METRICS_PORT (9808); 0: off. "
            "Two workers on one host need different ports."
        ),
    ] = None,
    metrics_address: Annotated[
        str | None,
        typer.Option(
            help="Address /metrics listens on; default QUANTBEAT_METRICS_ADDRESS, else "
            "QUANTBEAT_BIND_ADDRESS (127.0.0.1). 0.0.0.0: every interface."
        ),
    ] = None,
) -> None:
    """Start a Celery worker consuming the given queues."""
    names = _queues(queues)
    chosen_pool = pool or ("prefork" if "cpu" in names else "threads")
    if chosen_pool not in ("prefork", "threads", "solo"):
        raise ValidationError(f"--pool must be prefork, threads or solo, got {pool!r}")
    if metrics_port is not None:
        if not 0 <= metrics_port <= 65_535:
            raise ValidationError(
                f"--metrics-port must be 0 (off) or a port 1-65535, got {metrics_port}",
                field="--metrics-port",
                value=metrics_port,
            )
        # The worker's signal handlers read settings; this process is the worker.
        os.environ["QUANTBEAT_METRICS_PORT"] = str(metrics_port)
        reset_settings()
    if metrics_address is not None:
        os.environ["QUANTBEAT_METRICS_ADDRESS"] = address_option(
            metrics_address, "--metrics-address"
        )
        reset_settings()
    if concurrency is None:
        concurrency = (os.cpu_count() or 2) if chosen_pool == "prefork" else 16
    _celery(
        celery_app,
        [
            "worker",
            f"--queues={','.join(names)}",
            f"--pool={chosen_pool}",
            f"--concurrency={concurrency}",
            f"--hostname={hostname or '-'.join(names) + '@%h'}",
            f"--loglevel={loglevel}",
        ],
    )


def _celery(celery_app: Any, argv: list[str]) -> None:
    """Run a celery sub-command in this process; a non-zero exit becomes ours."""
    code = celery_app.start(argv)
    if code:
        raise typer.Exit(int(code))


def beat(
    loglevel: Annotated[str, typer.Option(help="Log level")] = "INFO",
) -> None:
    """Start Celery beat (celery-redbeat). Several may run: one ticks, the others wait for
    its lock, and a duplicate tick is a no-op (see workers/beat.py)."""
    settings = get_settings()
    if settings.redis_url.startswith("memory://"):
        raise ConfigError(
            "beat keeps its schedule and lock in Redis; QUANTBEAT_REDIS_URL is "
            f"{settings.redis_url!r}: set it to a redis:// URL"
        )
    _celery(
        celery_app,
        [
            "beat",
            "--scheduler=workers.beat:QuantbeatScheduler",
            f"--max-interval={settings.beat_max_interval:g}",
            f"--loglevel={loglevel}",
        ],
    )


def flower(
    port: Annotated[
        int | None, typer.Option(help="HTTP port; default QUANTBEAT_FLOWER_PORT")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on; default QUANTBEAT_FLOWER_ADDRESS, else "
            "QUANTBEAT_BIND_ADDRESS (127.0.0.1). 0.0.0.0: every interface (put a TLS proxy "
            "in front)."
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="Run without basic auth: only on a loopback address, never in production",
        ),
    ] = False,
) -> None:
    """Start Flower, the Celery monitoring UI, with basic auth from QUANTBEAT_FLOWER_BASIC_AUTH.

    Flower listens on 127.0.0.1 unless the option --address, QUANTBEAT_FLOWER_ADDRESS or
    QUANTBEAT_BIND_ADDRESS say otherwise; it speaks plain HTTP, so reach it from elsewhere
    through a TLS reverse proxy (README, "Operating it").

    Task history persists across restarts in
    QUANTBEAT_FLOWER_DB (default <data dir>/flower/flower.db), saved every
    QUANTBEAT_FLOWER_STATE_SAVE_INTERVAL seconds and at shutdown, capped at
    QUANTBEAT_FLOWER_MAX_TASKS tasks.

    Raises:
        quant.errors.ConfigError: no basic auth and no ``--no-auth``; ``--no-auth`` on an
            address other hosts can reach, or with ``QUANTBEAT_ENV=production``; basic auth
            that is not ``user:password`` (comma-separated for several users). Every problem
            found is named in the one message.
        quant.errors.ValidationError: ``--address`` is not an IP address or host name.
    """
    settings = get_settings()
    listen = (
        settings.listen_address("flower")
        if address is None
        else address_option(address, "--address")
    )
    problems = flower_problems(
        settings.flower_basic_auth.get_secret_value()
        if settings.flower_basic_auth is not None
        else None,
        address=listen,
        no_auth=no_auth,
        production=settings.env == "production",
    )
    if problems:
        # Never echo the credentials: they hold passwords.
        raise ConfigError("; ".join(problems))
    if settings.flower_basic_auth is not None:
        # Through Flower's own environment option, not argv: argv is visible in `ps`.
        os.environ["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth.get_secret_value()
    # Every task event Flower receives is masked before it is stored or shown, also the
    # events of clients that run no quantbeat code.
    install_flower_masking()
    db = settings.flower_db_path
    # The state file is a pickle (shelve): whoever can write it can run code in Flower.
    db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _celery(
        celery_app,
        [
            "flower",
            f"--port={port or settings.flower_port}",
            # Always given: Flower's own default (an empty address) is every interface.
            f"--address={listen}",
            "--persistent=True",
            f"--db={db}",
            f"--state_save_interval={round(settings.flower_state_save_interval * 1000)}",
            f"--max_tasks={settings.flower_max_tasks}",
        ],
    )


def flower_problems(
    credentials: str | None, *, address: str, no_auth: bool, production: bool
) -> list[str]:
    """Why Flower may not start with these credentials (``QUANTBEAT_FLOWER_BASIC_AUTH``, ``None``
    when unset) on ``address``: every problem, one sentence each, never quoting a password.

    Without credentials Flower needs ``--no-auth``, which is refused on an address other hosts
    can reach (:func:`quantbeat.infra.settings.is_loopback`) and in production. Credentials
    must be ``user:password`` entries; in production weak ones are refused as well
    (:func:`quantbeat.infra.settings.flower_auth_problems`).
    """
    problems: list[str] = []
    if credentials is None:
        if production:
            problems.append(
                "QUANTBEAT_FLOWER_BASIC_AUTH is not set (user:password): "
                "QUANTBEAT_ENV=production never runs Flower unprotected"
            )
        elif not no_auth:
            problems.append(
                "QUANTBEAT_FLOWER_BASIC_AUTH is not set (user:password); "
                "pass --no-auth to run Flower unprotected on this machine's loopback address"
            )
    elif production:
        problems += flower_auth_problems(credentials)
    elif not all(user and ":" in user for user in credentials.split(",")):
        problems.append(
            "QUANTBEAT_FLOWER_BASIC_AUTH must be user:password (several: comma-separated)"
        )
    if no_auth and credentials is None and not is_loopback(address):
        problems.append(
            f"--no-auth serves Flower to anyone who can reach {address}: only allowed on a "
            "loopback address (127.0.0.1, ::1, localhost); set QUANTBEAT_FLOWER_BASIC_AUTH "
            "or listen on 127.0.0.1"
        )
    return problems
