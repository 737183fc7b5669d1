"""Loaded at start-up by the processes a test runs under libfaketime (this directory is put
first on their ``PYTHONPATH``; see tests/integration/test_beat_trading_day.py).

Debian's libfaketime 0.9.10 with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` breaks
``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, …)``: the kernel gets a negative deadline
and the call fails with EINVAL (https://github.com/wolfcw/libfaketime/issues/426). Python
3.11's ``time.sleep`` makes exactly that call, so every ``time.sleep`` in such a process
raises ``OSError: [Errno 22]``. Faking the monotonic clock too is worse: timed lock and
condition waits then block for the offset. So the monotonic clock stays real and
``time.sleep`` waits in ``select`` instead (unaffected), before any library imports it.
Nothing changes in a process whose ``LD_PRELOAD`` does not name libfaketime.
"""

from __future__ import annotations

import os
import select
import time
from typing import SupportsIndex


def _sleep(seconds: float | SupportsIndex) -> None:
    """``time.sleep`` on the real monotonic clock, through ``select``.

    Raises:
        ValueError: ``seconds`` is negative (as ``time.sleep`` does).
    """
    length = float(seconds)
    if length < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + length
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)


if "libfaketime" in os.environ.get("LD_PRELOAD", ""):
    time.sleep = _sleep
