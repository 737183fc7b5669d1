"""The read services' rows as every caller gets them (the CLI, the API, the dashboard):
errors masked (:func:`quantbeat.infra.masking.mask_text`) and stored times in UTC whatever
the host's zone — a naive time (SQLite) is UTC, not local time."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest

from db.models import DeadLetter, JobAttempt, JobRun, ScanRun
from quantbeat.services.dlq import letter_summary
from quantbeat.services.jobs import attempt_dict, job_dict
from quantbeat.services.scans import _run_row  # scan_run's row builder, no database

SECRET = "GET https://u:hunter2@data.example/x?api_key=sekrit42 failed"
NAIVE = dt.datetime(2026, 6, 30, 6, 10)  # stored in UTC, handed back naive by SQLite
UTC_TEXT = "2026-06-30T06:10:00+00:00"


@pytest.fixture
def seoul_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local zone is Asia/Seoul (UTC+9), as on a Korean host."""
    monkeypatch.setenv("TZ", "Asia/Seoul")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _hidden(text: str | None) -> None:
    assert text is not None
    assert "hunter2" not in text
    assert "sekrit42" not in text
    assert "***" in text


def test_a_dead_letter_is_masked_and_its_naive_times_are_utc(seoul_host: None) -> None:
    letter = DeadLetter(id=1, fingerprint="f", task_id="t", task_name="quantbeat.x",
                        payload={}, reason="retries_exhausted", error=SECRET, occurrences=2,
                        first_seen=NAIVE, last_seen=NAIVE, replays=0)  # fmt: skip
    row = letter_summary(letter)
    _hidden(row["error"])
    assert row["first_seen"] == UTC_TEXT
    assert row["last_seen"] == UTC_TEXT
    assert row["replayed_at"] is None


def test_a_job_run_and_its_executions_are_masked(seoul_host: None) -> None:
    run = JobRun(id=1, task_id="t", task_name="quantbeat.x", queue="io", state="failed",
                 attempts=1, retries=0, started_at=NAIVE, finished_at=None, error=SECRET,
                 args=[], kwargs={})  # fmt: skip
    row = job_dict(run)
    _hidden(row["error"])
    assert row["started_at"] == UTC_TEXT
    attempt = JobAttempt(task_id="t", attempt=1, state="failed", started_at=NAIVE, error=SECRET)
    _hidden(attempt_dict(attempt)["error"])
    assert (
        attempt_dict(JobAttempt(task_id="t", attempt=2, state="ok", started_at=NAIVE))["error"]
        is None
    )


def test_a_scan_run_is_masked_and_in_utc(seoul_host: None) -> None:
    run = ScanRun(id=1, strategy="vcp", trade_date=dt.date(2026, 6, 30), state="failed",
                  total=10, scanned=4, failed=6, candidates=0, chunks=1, chunks_failed=1,
                  started_at=NAIVE, finished_at=NAIVE, duration_ms=5.0, error=SECRET)  # fmt: skip
    row = _run_row(run, dt.datetime(2026, 6, 30, 7, 0, tzinfo=dt.UTC))
    _hidden(row["error"])
    assert row["started_at"] == UTC_TEXT
    assert row["finished_at"] == UTC_TEXT
