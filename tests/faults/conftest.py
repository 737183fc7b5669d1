"""Fault scenarios (issue 9): real PostgreSQL, Redis and worker processes; a test that kills
or restarts a server uses a throwaway one. Each test records its outcome for the README's
reliability table (see tests/faults/outcomes.py). The service fixtures (``database``,
``clean_db``, ``worker``, ``celery_app`` …) come from tests/support/services.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults.outcomes import Outcome, record


@pytest.fixture
def outcome() -> Callable[[Outcome], None]:
    """``outcome(Outcome(...))`` records the scenario's result for the reliability table."""

    def _record(result: Outcome) -> None:
        record(result)

    return _record
