"""Backfills: a range of KRX sessions split into ``quantbeat.collect.daily_range`` tasks.

:func:`plan_backfill` is the one planner — ``quantbeat collect backfill``, ``quantbeat data gaps
--backfill`` and the first ``quantbeat run`` (a year of history) all split their sessions with
it; :func:`send_plan` queues a plan and :func:`wait_backfill` follows it to the end.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from celery.result import AsyncResult

from quant.errors import TransientError, ValidationError
from quant.market.types import Market
from quantbeat.infra.sources import krx_calendar
from quantbeat.services.collect import DATASETS, MAX_RANGE_SESSIONS
from quantbeat.services.dispatch import TaskCall, send

#: The task a backfill chunk runs.
RANGE_TASK = "quantbeat.collect.daily_range"
#: Sessions per task by default: small enough for a real provider (>= 1 s per call, several
#: calls per session for flows) inside the io time limit.
DEFAULT_CHUNK_SESSIONS = 20


def plan_backfill(
    sessions: Sequence[dt.date],
    *,
    chunk_sessions: int = DEFAULT_CHUNK_SESSIONS,
    datasets: Sequence[str] = ("candles", "flows"),
    market: str | None = None,
) -> list[TaskCall]:
    """The tasks that collect ``datasets`` for ``sessions``: one ``quantbeat.collect.daily_range``
    per dataset and run of ``chunk_sessions`` sessions, dataset by dataset, oldest chunk first.

    ``sessions`` are consecutive sessions of the calendar, ascending (as
    ``calendar.sessions(first, last)`` returns them): a chunk covers every session from its
    first to its last. ``market`` is a KRX market name, or ``None`` for both. Pure: no
    calendar, broker or database is touched.

    Raises:
        quant.errors.ValidationError: ``chunk_sessions`` is not 1..MAX_RANGE_SESSIONS, or a
            dataset is unknown.
    """
    if not 1 <= chunk_sessions <= MAX_RANGE_SESSIONS:
        raise ValidationError(
            f"chunk_sessions must be 1..{MAX_RANGE_SESSIONS}, got {chunk_sessions}",
            field="chunk_sessions",
            value=chunk_sessions,
        )
    for name in datasets:
        if name not in DATASETS:
            raise ValidationError(
                f"dataset must be one of {sorted(DATASETS)}, got {name!r}",
                field="dataset",
                value=name,
            )
    chunks = [sessions[i : i + chunk_sessions] for i in range(0, len(sessions), chunk_sessions)]
    return [
        TaskCall(
            RANGE_TASK,
            {
                "start": chunk[0].isoformat(),
                "end": chunk[-1].isoformat(),
                "market": market,
                "dataset": name,
            },
        )
        for name in datasets
        for chunk in chunks
    ]


def send_plan(calls: Sequence[TaskCall]) -> list[tuple[TaskCall, AsyncResult]]:
    """Queue every call of a plan; returns each with its result handle, in plan order."""
    return [(call, send(call)) for call in calls]


@dataclass
class Backfill:
    """A backfill that was queued: its sessions and its tasks."""

    sessions: list[dt.date]
    datasets: tuple[str, ...]
    sent: list[tuple[TaskCall, AsyncResult]] = field(default_factory=list)


@dataclass
class BackfillOutcome:
    """What the tasks of a finished backfill did: per dataset the summed row counts
    (``inserted``, ``updated``, ``unchanged``, ``rejected``), and the ids of failed tasks."""

    totals: dict[str, dict[str, int]]
    failed: list[str]


def start_backfill(
    first: dt.date,
    last: dt.date,
    *,
    market: Market | None = None,
    datasets: Sequence[str] = ("candles", "flows"),
    chunk_sessions: int = DEFAULT_CHUNK_SESSIONS,
) -> Backfill:
    """Queue the backfill of ``datasets`` for the KRX sessions in ``[first, last]`` (nothing
    when there is none) for one market (``None``: both).

    Raises:
        quant.errors.ValidationError: as :func:`plan_backfill`; ``first`` after ``last``.
    """
    sessions = krx_calendar().sessions(first, last)
    calls = plan_backfill(
        sessions,
        chunk_sessions=chunk_sessions,
        datasets=datasets,
        market=market.value if market else None,
    )
    return Backfill(sessions, tuple(datasets), send_plan(calls))


def wait_backfill(
    backfill: Backfill,
    *,
    timeout: float,
    on_progress: Callable[[int, int], None] | None = None,
    poll: float = 0.5,
) -> BackfillOutcome:
    """Wait until every task of ``backfill`` has finished, calling ``on_progress(done,
    total)`` on each poll, then sum their counts.

    Raises:
        quant.errors.TransientError: tasks still unfinished after ``timeout`` seconds (they
            keep running on the workers).
    """
    results = [result for _, result in backfill.sent]
    deadline = time.monotonic() + timeout
    while True:
        done = sum(1 for r in results if r.ready())
        if on_progress is not None:
            on_progress(done, len(results))
        if done == len(results):
            break
        if time.monotonic() > deadline:
            raise TransientError(
                f"backfill: {len(results) - done} task(s) unfinished after {timeout:.0f} s; "
                "they keep running on the workers"
            )
        time.sleep(poll)
    totals: dict[str, dict[str, int]] = {name: {} for name in backfill.datasets}
    failed = []
    for call, result in backfill.sent:
        if not result.successful():
            failed.append(result.id)
            continue
        name = call.kwargs["dataset"]
        summary = result.result
        counts = {**(summary.get(name) or {}), "rejected": summary.get("rejected") or 0}
        for k, v in counts.items():
            totals[name][k] = totals[name].get(k, 0) + int(v)
    return BackfillOutcome(totals, failed)
