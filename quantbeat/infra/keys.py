"""Redis key names shared across processes and layers, in one place.

Every quantbeat key starts with ``qb:``. Keys written by one module and read by another (beat
writes its tick, health reads it) are defined here so neither imports the other.
"""

from __future__ import annotations

#: Epoch seconds (text) of the active beat's latest tick; ``quantbeat health`` reports its age.
BEAT_TICK_KEY = "qb:beat:last_tick"
#: Generation counter of the stored settings: bumped on every change, polled by every process.
SETTINGS_GENERATION_KEY = "qb:settings:generation"
#: Prefix of the indicator cache's hashes (``qb:ind:<instrument>:<interval>:<range>``).
INDICATOR_CACHE_PREFIX = "qb:ind"
#: redbeat's schedule and its single-active lock.
REDBEAT_PREFIX = "qb:redbeat:"
REDBEAT_LOCK_KEY = "qb:redbeat::lock"


def backtest_state_key(run_id: str) -> str:
    """The hash of a running backtest's live state (progress, ETA) in Redis."""
    return f"qb:bt:{run_id}"


def backtest_cancel_key(run_id: str) -> str:
    """The flag a cancel request sets for a backtest run."""
    return f"qb:bt:{run_id}:cancel"


def child_kill_key(task_id: str) -> str:
    """The count of pool children killed by SIGKILL while running task ``task_id``."""
    return f"qb:killed:{task_id}"
