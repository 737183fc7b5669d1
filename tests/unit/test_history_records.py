"""History writes (db.jobs) on an SQLite file: strings PostgreSQL cannot store are escaped in one
place, and spooled records replay idempotently without overwriting newer history. The same
writes against PostgreSQL are exercised by tests/integration/test_hardening.py."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.engine import create_engine_for
from db.jobs import (
    SPOOL_DEAD_LETTER,
    SPOOL_JOB_RUN,
    apply_spooled,
    contains_escape,
    end_if_still_started,
    list_attempts,
    record_dead_letter,
    record_job_end,
    record_job_start,
)
from db.models import Base, DeadLetter, JobRun
from db.store import storable

T0 = dt.datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("a\x00b", "a\\u0000b"),
        ("\x00\x00", "\\u0000\\u0000"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("한국어 ok", "한국어 ok"),
        (["x\x00", ("y\x00",)], ["x\\u0000", ["y\\u0000"]]),
        ({"k\x00": {"v": "\x00"}}, {"k\\u0000": {"v": "\\u0000"}}),
        ({"n": 1, "f": 1.5, "b": True, "none": None}, {"n": 1, "f": 1.5, "b": True, "none": None}),
        (None, None),
    ],
)
def test_storable_escapes_what_postgresql_refuses(value: Any, expected: Any) -> None:
    assert storable(value) == expected
    json.dumps(storable(value)).encode("utf-8")  # encodable: no NUL, no lone surrogate left


def test_storable_returns_clean_strings_unchanged() -> None:
    text = "x" * 1000
    assert storable(text) is text


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'history.sqlite'}")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


def _start(task_id: str = "t1", started_at: dt.datetime = T0, **extra: Any) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "task_name": "quantbeat.ops.test_permanent",
        "queue": "io",
        "args": ["a\x00b"],
        "kwargs": {"note": "\x00"},
        "worker": "w1@host",
        "retries": 0,
        "started_at": started_at,
        **extra,
    }


def _row(session: Session, task_id: str = "t1") -> JobRun:
    session.expire_all()
    return session.execute(select(JobRun).where(JobRun.task_id == task_id)).scalar_one()


def _letter(session: Session) -> DeadLetter:
    session.expire_all()
    return session.execute(select(DeadLetter)).scalar_one()


def test_every_history_write_escapes_nul(session: Session) -> None:
    record_job_start(session, **_start())
    record_job_end(
        session,
        task_id="t1",
        state="failed",
        finished_at=T0,
        duration_ms=1.0,
        error="PermanentError: bad \x00 input",
        result={"k\x00": "v\x00"},
    )
    record_dead_letter(
        session,
        fingerprint="task:t1",
        task_id="t1",
        task_name="quantbeat.ops.test_permanent",
        payload={"args": ["a\x00b"]},
        reason="permanent_error",
        error="PermanentError: bad \x00 input",
        seen_at=T0,
    )
    session.commit()
    row = _row(session)
    assert row.args == ["a\\u0000b"]
    assert row.kwargs == {"note": "\\u0000"}
    assert row.error == "PermanentError: bad \\u0000 input"
    assert row.result == {"k\\u0000": "v\\u0000"}
    letter = _letter(session)
    assert letter.payload == {"args": ["a\\u0000b"]}
    assert letter.error == "PermanentError: bad \\u0000 input"


def _iso(record: dict[str, Any]) -> dict[str, Any]:
    """The record as it comes back from a spool file (datetimes as text)."""
    loaded: dict[str, Any] = json.loads(json.dumps(record, default=str))
    return loaded


def _end(state: str = "failed", finished_at: dt.datetime = T0 + dt.timedelta(seconds=2)) -> Any:
    return {
        "task_id": "t1",
        "state": state,
        "finished_at": finished_at,
        "duration_ms": 2000.0,
        "error": "PermanentError: nope",
        "result": None,
        "started_at": T0,
    }


def test_a_spooled_run_is_written_once_however_often_it_is_replayed(session: Session) -> None:
    record = _iso({"start": _start(), "end": _end()})
    assert apply_spooled(session, SPOOL_JOB_RUN, record) is True
    session.commit()
    assert apply_spooled(session, SPOOL_JOB_RUN, record) is False
    session.commit()
    row = _row(session)
    assert (row.state, row.attempts, row.error) == ("failed", 1, "PermanentError: nope")
    assert row.args == ["a\\u0000b"]


def test_a_spooled_end_never_overwrites_a_later_execution(session: Session) -> None:
    # attempt 1 spooled (database down); attempt 2 recorded live once it was back
    spooled = _iso({"start": _start(), "end": _end("retrying")})
    later = T0 + dt.timedelta(minutes=1)
    record_job_start(session, **_start(started_at=later, retries=1))
    record_job_end(session, task_id="t1", state="succeeded", finished_at=later, duration_ms=5.0)
    session.commit()
    assert apply_spooled(session, SPOOL_JOB_RUN, spooled) is True  # counts the attempt
    session.commit()
    row = _row(session)
    assert (row.state, row.attempts, row.retries) == ("succeeded", 2, 1)


def test_a_spooled_end_of_a_recorded_start_completes_it(session: Session) -> None:
    record_job_start(session, **_start())
    session.commit()
    end_only = _iso({"start": None, "end": _end("timed_out")})
    assert apply_spooled(session, SPOOL_JOB_RUN, end_only) is True
    session.commit()
    assert apply_spooled(session, SPOOL_JOB_RUN, end_only) is False
    assert (_row(session).state, _row(session).attempts) == ("timed_out", 1)


def _spooled_letter(seen_at: dt.datetime, error: str = "PermanentError: nope") -> dict[str, Any]:
    return _iso(
        {
            "letter": {
                "fingerprint": "task:t1",
                "task_id": "t1",
                "task_name": "quantbeat.ops.test_permanent",
                "payload": {"args": ["\x00"]},
                "reason": "permanent_error",
                "error": error,
                "seen_at": seen_at,
            },
            "job_end": {
                "task_id": "t1",
                "state": "failed",
                "finished_at": seen_at,
                "duration_ms": None,
                "error": error,
            },
        }
    )


def test_a_spooled_dead_letter_is_written_once(session: Session) -> None:
    record_job_start(session, **_start())
    session.commit()
    record = _spooled_letter(T0 + dt.timedelta(seconds=1))
    assert apply_spooled(session, SPOOL_DEAD_LETTER, record) is True
    session.commit()
    assert apply_spooled(session, SPOOL_DEAD_LETTER, record) is False
    session.commit()
    letter = _letter(session)
    assert (letter.occurrences, letter.payload) == (1, {"args": ["\\u0000"]})
    assert _row(session).state == "failed"


def test_an_older_spooled_occurrence_counts_but_keeps_the_newest_payload(
    session: Session,
) -> None:
    newest = T0 + dt.timedelta(minutes=5)
    record_dead_letter(
        session,
        fingerprint="task:t1",
        task_id="t1",
        task_name="quantbeat.ops.test_permanent",
        payload={"args": ["new"]},
        reason="permanent_error",
        error="newest",
        seen_at=newest,
    )
    session.commit()
    record = _spooled_letter(T0, error="older")
    assert apply_spooled(session, SPOOL_DEAD_LETTER, record) is True
    session.commit()
    assert apply_spooled(session, SPOOL_DEAD_LETTER, record) is False  # first_seen is it now
    session.commit()
    letter = _letter(session)
    assert (letter.occurrences, letter.error, letter.payload) == (2, "newest", {"args": ["new"]})


@pytest.mark.parametrize(
    ("kind", "record"),
    [
        ("mystery", {"start": None}),
        (SPOOL_JOB_RUN, {}),
        (SPOOL_JOB_RUN, {"start": None, "end": {"task_id": "t1"}}),
        (SPOOL_JOB_RUN, {"end": {**_end("exploded"), "finished_at": "x"}}),
        (SPOOL_JOB_RUN, {"end": {**_end(), "finished_at": "2026-03-02T09:00:00"}}),  # naive
        (SPOOL_JOB_RUN, {"start": ["not", "a", "mapping"]}),
        (SPOOL_DEAD_LETTER, {"job_end": None}),
    ],
)
def test_a_malformed_record_raises_what_the_spool_sets_aside(
    session: Session, kind: str, record: dict[str, Any]
) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        apply_spooled(session, kind, _iso(record))


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        (["a\x00b"], True),
        ({"k\x00": 1}, True),
        ({"k": ["\ud800"]}, True),
        (["plain", {"k": "v"}, 3], False),
        (["C:\\data"], False),
    ],
)
def test_the_reaper_sees_arguments_that_were_stored_escaped(value: Any, escaped: bool) -> None:
    """A run whose arguments were escaped is not requeued: it would resend the escape."""
    assert contains_escape(storable(value)) is escaped


# --- the attempts history (job_attempts) ---------------------------------------------------------


def _attempts(session: Session, task_id: str = "t1") -> list[tuple[Any, ...]]:
    session.expire_all()
    return [
        (a.attempt, a.worker, a.state, a.error, a.result) for a in list_attempts(session, task_id)
    ]


def test_every_execution_is_kept_and_a_later_skipped_delivery_hides_none(session: Session) -> None:
    t1, t2, t3 = (T0 + dt.timedelta(minutes=m) for m in (0, 1, 2))
    assert record_job_start(session, **_start(started_at=t1)) == 1
    record_job_end(session, task_id="t1", state="retrying", finished_at=t1, duration_ms=1.0,
                   error="TransientError: x", attempt=1)  # fmt: skip
    assert record_job_start(session, **_start(started_at=t2, worker="w2@host")) == 2
    record_job_end(session, task_id="t1", state="succeeded", finished_at=t2, duration_ms=9.0,
                   result={"state": "completed"}, attempt=2)  # fmt: skip
    # The dead worker's original message, delivered again later: skipped, nothing done.
    assert record_job_start(session, **_start(started_at=t3, worker="w3@host")) == 3
    record_job_end(
        session,
        task_id="t1",
        state="succeeded",
        finished_at=t3,
        duration_ms=1.0,
        result={"skipped": True},
    )  # fmt: skip (attempt None: the latest)
    session.commit()
    assert _row(session).result == {"skipped": True}  # the run shows the latest delivery …
    assert _attempts(session) == [  # … and the history every one, the real work included
        (1, "w1@host", "retrying", "TransientError: x", None),
        (2, "w2@host", "succeeded", None, {"state": "completed"}),
        (3, "w3@host", "succeeded", None, {"skipped": True}),
    ]


def test_the_reapers_claim_ends_the_attempt_it_gives_up(session: Session) -> None:
    record_job_start(session, **_start())
    session.commit()
    assert not end_if_still_started(
        session, task_id="t1", attempts=2, state="requeued", error="x", finished_at=T0
    )
    assert end_if_still_started(
        session,
        task_id="t1",
        attempts=1,
        state="requeued",
        error="reaped: worker w1@host is dead",
        finished_at=T0 + dt.timedelta(seconds=40),
    )
    record_job_start(session, **_start(started_at=T0 + dt.timedelta(minutes=1), worker="w2@h"))
    session.commit()
    assert _attempts(session) == [
        (1, "w1@host", "requeued", "reaped: worker w1@host is dead", None),
        (2, "w2@h", "started", None, None),
    ]


def test_spooled_executions_join_the_history_once(session: Session) -> None:
    # attempt 1 spooled (database down); a later one recorded live once it was back
    later = T0 + dt.timedelta(minutes=1)
    record_job_start(session, **_start(started_at=later, retries=1))
    record_job_end(session, task_id="t1", state="succeeded", finished_at=later, duration_ms=5.0)
    session.commit()
    spooled = _iso({"start": _start(), "end": _end("retrying")})
    assert apply_spooled(session, SPOOL_JOB_RUN, spooled) is True
    session.commit()
    assert apply_spooled(session, SPOOL_JOB_RUN, spooled) is False
    session.commit()
    # Numbered in the order they were recorded; each keeps its own outcome.
    assert [(a, s) for a, _, s, _, _ in _attempts(session)] == [(1, "succeeded"), (2, "retrying")]
    # An end spooled alone (its start was recorded) completes its own attempt.
    record_job_start(session, **_start(task_id="t2"))
    session.commit()
    end_only = _iso({"start": None, "end": {**_end("timed_out"), "task_id": "t2"}})
    assert apply_spooled(session, SPOOL_JOB_RUN, end_only) is True
    session.commit()
    assert [(a, s) for a, _, s, _, _ in _attempts(session, "t2")] == [(1, "timed_out")]
