"""Shared hypothesis settings of the fuzz tests.

Reproducible by default: ``derandomize=True`` (the examples follow from the test's code, so
CI sees the same inputs every run) and no example database (no ``.hypothesis`` folder in the
work tree). Deadlines are generous (2 s per example): these are crash and hang tests, not
speed tests. ``QUANTBEAT_FUZZ_SCALE=N`` multiplies every test's example count and turns the
derandomisation off (new inputs each run) for a longer hunt, e.g.
``QUANTBEAT_FUZZ_SCALE=50 pytest tests/unit/fuzz -q``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

F = TypeVar("F", bound=Callable[..., Any])

SCALE = max(1, int(os.environ.get("QUANTBEAT_FUZZ_SCALE", "1") or "1"))


def fuzz(max_examples: int) -> Callable[[F], F]:
    """The settings of one fuzz test: ``max_examples`` (× ``QUANTBEAT_FUZZ_SCALE``), a 2 s
    deadline per example, derandomised unless scaled up."""
    chosen: Callable[[F], F] = settings(
        max_examples=max_examples * SCALE,
        deadline=2_000,
        derandomize=SCALE == 1,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )
    return chosen
