"""Where quantbeat runs: the embedded default or a distributed deployment — one notion for
every command.

* **embedded** — nothing configured: a SQLite file under ``QUANTBEAT_DATA_DIR``
  (``var/quantbeat.sqlite``, what ``make run`` writes), kombu's in-memory broker and result
  backend, rate limits and caches in-process; a command that needs workers starts a real Celery
  worker in its own process for as long as it runs (:mod:`workers.embedded`).
* **distributed** — the configured database, broker, result backend and Redis: workers started
  with ``quantbeat worker`` on any host do the work.

``QUANTBEAT_MODE`` chooses explicitly; its default ``auto`` means distributed as soon as any of
the store URLs (:data:`STORE_SETTINGS`) is set in the environment or ``.env``, else embedded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

from quantbeat.infra.settings import Settings, get_settings, reset_settings

EMBEDDED_BROKER = "memory://"
EMBEDDED_BACKEND = "cache+memory://"
EMBEDDED_REDIS = "memory://"
#: The file ``make run`` and every embedded command use, under ``QUANTBEAT_DATA_DIR``.
EMBEDDED_DATABASE_FILE = "quantbeat.sqlite"
#: Settings that, when given, mean a deployment is configured.
STORE_SETTINGS = ("database_url", "broker_url", "result_backend", "redis_url")


class Mode(StrEnum):
    """Where a command runs."""

    EMBEDDED = "embedded"
    DISTRIBUTED = "distributed"


def resolve_mode(settings: Settings | None = None) -> Mode:
    """The mode ``settings`` (default: the process's) select: ``QUANTBEAT_MODE`` when it is
    not ``auto``, else distributed if any store URL was given (environment or ``.env``)."""
    settings = settings or get_settings()
    if settings.mode != "auto":
        return Mode(settings.mode)
    if set(STORE_SETTINGS) & settings.model_fields_set:
        return Mode.DISTRIBUTED
    return Mode.EMBEDDED


def embedded_database_url(data_dir: Path) -> str:
    """The SQLite URL of the embedded database under ``data_dir`` (absolute)."""
    return f"sqlite:///{(data_dir / EMBEDDED_DATABASE_FILE).resolve()}"


def embedded_environment(data_dir: Path, database_url: str | None = None) -> dict[str, str]:
    """The ``QUANTBEAT_*`` variables that select the embedded profile (``database_url``
    replaces the SQLite file)."""
    return {
        "QUANTBEAT_MODE": Mode.EMBEDDED.value,
        "QUANTBEAT_BROKER_URL": EMBEDDED_BROKER,
        "QUANTBEAT_RESULT_BACKEND": EMBEDDED_BACKEND,
        "QUANTBEAT_DATABASE_URL": database_url or embedded_database_url(data_dir),
        # Rate limits and the indicator cache in-process: no Redis needed.
        "QUANTBEAT_REDIS_URL": EMBEDDED_REDIS,
    }


@contextmanager
def environment(overrides: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``overrides`` for the block (settings re-read on entry and exit)."""
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    reset_settings()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_settings()
