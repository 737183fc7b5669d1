"""Result handles whose waits survive a missed pub/sub message.

Celery's Redis result backend delivers a finished task's result to a waiting ``get()`` by
pub/sub, and reads the stored result only when the wait begins. If the message is missed —
seen here with Celery 5.7.0: a task stored ``SUCCESS`` at 16:28:24.7 while the client's
``get(timeout=60)``, begun a moment before, waited the whole minute — the waiter sleeps until
its timeout although the result is in Redis. :class:`SlicedResult` waits in slices of
:data:`SLICE_S`; each slice begins by reading the stored result, so a missed message costs at
most one slice instead of the whole timeout. Nothing else changes: the same ``get()``
signature, the same errors (``celery.exceptions.TimeoutError`` once the whole ``timeout`` has
passed, the task's own error re-raised).
"""

from __future__ import annotations

import time
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

#: Seconds of one slice of a wait (a missed pub/sub message delays a result by at most this).
SLICE_S = 2.0


class SlicedResult(AsyncResult):  # type: ignore[misc]
    """:class:`celery.result.AsyncResult` whose :meth:`get` re-reads the stored result every
    :data:`SLICE_S` seconds while it waits (see the module docstring)."""

    def get(self, timeout: float | None = None, *args: Any, **kwargs: Any) -> Any:
        """The task's return value, as :meth:`celery.result.AsyncResult.get`.

        Raises:
            celery.exceptions.TimeoutError: not ready within ``timeout`` seconds.
            Exception: the task's own error (``propagate=True``, the default).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            step = SLICE_S if left is None else max(min(SLICE_S, left), 0.0)
            try:
                return super().get(step, *args, **kwargs)
            except CeleryTimeout:
                if left is not None and left <= SLICE_S:
                    raise
