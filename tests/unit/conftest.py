"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from db.engine import forget_engines
from db.migrate import upgrade
from quantbeat.infra.settings import reset_settings


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated SQLite file (the embedded default's database) that the settings, and so
    ``session_scope()``, point at for the test; its URL."""
    url = f"sqlite:///{tmp_path / 'unit.sqlite'}"
    monkeypatch.setenv("QUANTBEAT_DATABASE_URL", url)
    reset_settings()
    forget_engines()
    upgrade(url)
    yield url
    forget_engines()
    reset_settings()
