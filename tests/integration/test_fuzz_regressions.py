"""Inputs the fuzz tests (tests/unit/fuzz) found crashing a task's argument parsing, sent to a
real worker: each fails at once as a ValidationError, recorded as any bad input is — a
``failed`` job run naming the argument and a dead letter ``validation_error`` (before the
fixes: OverflowError, dead-lettered ``unexpected_error``)."""

from __future__ import annotations

from typing import Any

import pytest

from quant.errors import ValidationError
from tests.integration.helpers import dead_letter, eventually, job_run

pytestmark = pytest.mark.integration

CASES: list[tuple[str, dict[str, Any], str]] = [
    # a date-time whose offset moves it before year 1 in UTC
    (
        "quantbeat.collect.crypto_candles",
        {"interval": "60m", "start": "0001-01-01T00:00:00+23:59"},
        "start is outside years 1–9999 in UTC",
    ),
    # an integer beyond a float, for a float indicator parameter
    (
        "quantbeat.indicators.compute",
        {
            "request": {
                "instrument": "KOSPI:005930",
                "indicator": "bbands",
                "params": {"stddev": 10**400},
            }
        },
        "request.params.stddev",
    ),
    # an integer beyond a float, for the reaper's grace
    ("quantbeat.ops.reap", {"grace": 10**400}, "grace must be a finite number of seconds"),
]


@pytest.mark.parametrize(("task", "kwargs", "message"), CASES, ids=[c[0] for c in CASES])
def test_fuzz_found_inputs_fail_as_validation_errors_and_are_dead_lettered(
    celery_app: Any, clean_db: Any, task: str, kwargs: dict[str, Any], message: str
) -> None:
    result = celery_app.send_task(task, kwargs=kwargs)
    with pytest.raises(ValidationError) as caught:
        result.get(timeout=120)
    assert message in str(caught.value)
    letter = eventually(lambda: dead_letter(result.id), lambda row: row is not None, timeout=30)
    assert letter is not None
    assert letter.reason == "validation_error"
    run = job_run(result.id)
    assert run.state == "failed"
    assert run.error is not None
    assert message in run.error
