"""Queues and task families: which queue a task goes to and which time limits it runs under.

A task's family is decided by its explicit name, ``quantbeat.<area>.<action>``: the area maps to
a family here, once, and both routing and time limits follow from it. Adding an area means
adding one line below.
"""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    """The three queues. Each is consumed by workers with the pool that suits its work."""

    #: Data providers, database writes, housekeeping: waits on the network, so a threads pool
    #: with high concurrency (time limits rely on HTTP timeouts; threads ignore hard limits).
    IO = "io"
    #: Indicators, scans, backtests: CPU-bound NumPy work, so prefork (one process per core),
    #: where soft/hard time limits are enforced.
    CPU = "cpu"
    #: LLM calls: slow, rate-limited I/O kept apart so a Gemini backlog never delays collection.
    AI = "ai"


#: Area of a task name → queue. ``quantbeat.collect.daily_candles`` has area ``collect``.
AREA_QUEUES: dict[str, Queue] = {
    "collect": Queue.IO,
    "ops": Queue.IO,
    "pipeline": Queue.IO,
    "news": Queue.IO,
    "market": Queue.IO,
    "portfolio": Queue.IO,
    "notify": Queue.IO,
    "crypto": Queue.IO,
    "indicators": Queue.CPU,
    "scans": Queue.CPU,
    "backtest": Queue.CPU,
    "track": Queue.CPU,
    "ai": Queue.AI,
}

TASK_PREFIX = "quantbeat."


def area_of(task_name: str) -> str | None:
    """The area of an explicit task name, or ``None`` if it is not ``quantbeat.<area>.<x>``."""
    parts = task_name.split(".")
    if len(parts) < 3 or parts[0] != "quantbeat":
        return None
    return parts[1]


def queue_for(task_name: str) -> Queue | None:
    """The queue a task name routes to, or ``None`` for names outside quantbeat's areas."""
    area = area_of(task_name)
    return AREA_QUEUES.get(area) if area else None
