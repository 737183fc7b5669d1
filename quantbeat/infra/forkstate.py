"""Process-wide state and the one registry of what a forked child must reset.

Modules keep clients in process-wide registries (database engines, Redis clients, caches, rate
limiters). A prefork pool child inherits them from its parent, sockets included; two processes
writing to one socket corrupt both streams. Every module with such a registry registers its
reset here, at import, with :func:`after_fork`; :mod:`workers.process` calls
:func:`reset_after_fork` in each new pool child and knows no module by name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

Reset = TypeVar("Reset", bound=Callable[[], object])

_resets: dict[str, Callable[[], object]] = {}
_lock = threading.Lock()


def _name(fn: Callable[[], object]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def after_fork(fn: Reset) -> Reset:
    """Register ``fn`` (no arguments) to run in every forked child; returns it unchanged, so
    it works as a decorator. Registering the same function twice keeps one entry."""
    with _lock:
        _resets[_name(fn)] = fn
    return fn


def registered() -> tuple[str, ...]:
    """Names (``module.qualname``) of the registered resets, in registration order."""
    with _lock:
        return tuple(_resets)


def reset_after_fork() -> list[str]:
    """Run every registered reset, in registration order; returns their names.

    A reset that raises does not stop the others; the first error is re-raised at the end
    (a child that kept a parent's socket must not start serving tasks).
    """
    with _lock:
        resets = list(_resets.items())
    first: BaseException | None = None
    for _, fn in resets:
        try:
            fn()
        except Exception as exc:  # run the rest, then fail loudly
            first = first or exc
    if first is not None:
        raise first
    return [name for name, _ in resets]
