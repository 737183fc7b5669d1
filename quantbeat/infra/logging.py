"""structlog configuration: JSON lines (or a console renderer), context from contextvars,
masking of secrets on every event.

Celery's and the standard library's loggers are routed through the same processors, so a worker
writes one JSON object per line whichever library logged it. Task id and name are bound to the
context by the worker signals in :mod:`workers.process`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

from quantbeat.infra.masking import mask_value


def _mask_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    masked: MutableMapping[str, Any] = mask_value(dict(event_dict))
    return masked


def configure_logging(
    level: str | int = "INFO", *, json: bool = True, path: Path | None = None
) -> None:
    """Configure structlog and the standard library root logger. Safe to call repeatedly.

    Lines go to stderr, or appended to ``path`` when given (its folder is created).
    """
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
        structlog.processors.format_exc_info,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _mask_processor,
            renderer,
        ],
    )
    handler: logging.Handler
    if path is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(formatter)
    numeric = level if isinstance(level, int) else logging.getLevelNamesMapping()[level.upper()]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Chatty libraries stay at WARNING unless we debug.
    for noisy in ("sqlalchemy.engine", "alembic.runtime.migration", "kombu", "amqp"):
        logging.getLogger(noisy).setLevel(
            logging.WARNING if numeric > logging.DEBUG else logging.INFO
        )


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger; ``name`` defaults to the caller's module via the stdlib factory."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
