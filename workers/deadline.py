"""Time limits a task body runs under: its family's database limits, and a soft deadline on
pools that cannot interrupt a task.

Celery enforces ``soft_time_limit``/``time_limit`` only in prefork pool children (a signal
interrupts the child, the parent kills it). On a threads pool (``io``, ``ai``), ``solo`` or the
embedded in-process worker nothing can stop a running thread, so every blocking call below a
task carries its own bound (HTTP timeouts, bounded provider retry loops, rate-limiter waits,
database ``statement_timeout``/``lock_timeout``). What remains is the deadline: a task still
running when its soft limit passes is recorded ``timed_out`` (and dead-lettered, reason
``timed_out``, as a prefork soft limit is) when it finally returns or raises — its result, or
its error, comes too late to count, and it is not retried. While it runs it stays in its
worker's ``active`` list, so the reaper leaves it alone.

What this cannot do: free the thread before the blocked call returns (a call without a
timeout, e.g. a DNS lookup, which no socket timeout covers, holds its thread until it
returns), or stop Redis from handing the message to another worker if the thread is still
busy after ``QUANTBEAT_VISIBILITY_TIMEOUT`` (then two executions overlap; idempotent tasks
make that harmless, the others are refused by their business keys).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded
from celery.signals import worker_process_init

from db.engine import timeout_family
from workers.queues import queue_for

_in_prefork_child = False


@worker_process_init.connect
def _prefork_child(**_: Any) -> None:
    """Sent only in prefork pool children: there the pool enforces the time limits."""
    global _in_prefork_child
    _in_prefork_child = True


def pool_enforces_limits() -> bool:
    """Whether this process is a prefork pool child, where Celery interrupts a task at its
    soft time limit and kills it at its hard one."""
    return _in_prefork_child


class DeadlineExceeded(SoftTimeLimitExceeded):  # type: ignore[misc]
    """A task on a pool that cannot interrupt it (threads, solo) returned or raised after its
    soft time limit had passed: it is recorded ``timed_out``, not succeeded or retried."""


def soft_deadline(task: Any) -> float | None:
    """Seconds the running ``task`` may take before it counts as timed out: the soft limit of
    its message (``apply_async(soft_time_limit=…)``), else of the task (its family's, from
    ``celeryconfig``); ``None`` when the pool enforces limits itself or there is none."""
    if pool_enforces_limits():
        return None
    limits = getattr(task.request, "timelimit", None) or (None, None)
    soft = limits[1] if len(limits) > 1 and limits[1] else task.soft_time_limit
    return float(soft) if soft else None


def run_limited(
    task: Any, call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], t0: float
) -> Any:
    """``call(*args, **kwargs)`` — the body of ``task``, which started at ``t0``
    (``time.perf_counter()``) — with the database limits of ``task``'s family, returning its
    result.

    Raises:
        DeadlineExceeded: the body returned, or raised an ordinary exception (chained as the
            cause), after ``task``'s :func:`soft_deadline`. ``Ignore``/``Reject`` and the
            pool's own time-limit exceptions pass unchanged, as does anything raised in time.
    """
    queue = queue_for(task.name)
    family = queue.value if queue is not None else None
    deadline = soft_deadline(task)
    with timeout_family(family):
        try:
            result = call(*args, **kwargs)
        except (Ignore, Reject, SoftTimeLimitExceeded):
            raise
        except Exception as exc:
            late = _overrun(deadline, t0, family, f"raised {type(exc).__name__}: {exc}")
            if late is not None:
                raise late from exc
            raise
    late = _overrun(deadline, t0, family, "returned (its writes stand; its result is not reported)")
    if late is not None:
        raise late
    return result


def _overrun(
    deadline: float | None, t0: float, family: str | None, outcome: str
) -> DeadlineExceeded | None:
    if deadline is None:
        return None
    elapsed = time.perf_counter() - t0
    if elapsed <= deadline:
        return None
    return DeadlineExceeded(
        f"ran {elapsed:.1f} s, over its {family or 'task'} soft time limit of {deadline:g} s "
        f"(this pool cannot interrupt a task, so it ended when it {outcome[:500]})"
    )
