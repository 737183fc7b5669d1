"""A short-lived cache of hot read answers, per API process.

``GET /api/v1/signals/latest`` and the like change when a scan run completes — a few times a
day — yet dashboards poll them every few seconds. Each answer is kept as the JSON bytes its
response model produced, for ``ttl`` seconds (at most ``QUANTBEAT_API_CACHE_SECONDS``, the
``max-age`` clients are told anyway): an answer is at most ``ttl`` seconds older than the
database. One request computes a missing entry while concurrent ones for the same key wait
for it (no stampede). Errors are not cached. Keys include every query parameter; answers do
not depend on the API key (its scope is checked before).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from fastapi.responses import Response
from pydantic import BaseModel

#: Seconds an answer is reused (capped by the settings' max-age).
DEFAULT_TTL = 2.0
#: Entries kept at most (oldest dropped first).
MAX_ENTRIES = 512


class ReadCache:
    """JSON answers by key, each reused for ``ttl`` seconds (0: never cached)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[float, bytes]] = {}
        self._computing: dict[Hashable, threading.Lock] = {}

    def json(self, key: Hashable, model: type[BaseModel], produce: Callable[[], Any]) -> Response:
        """The answer of ``key``: cached bytes, or ``produce()`` validated by ``model`` and
        serialized (then cached). Exceptions of ``produce`` propagate, nothing cached."""
        if self.ttl <= 0:
            return self._response(model.model_validate(produce()).model_dump_json().encode())
        hit = self._fresh(key)
        if hit is not None:
            return self._response(hit)
        with self._lock:
            gate = self._computing.setdefault(key, threading.Lock())
        with gate:
            hit = self._fresh(key)  # computed by the request this one waited for
            if hit is not None:
                return self._response(hit)
            body = model.model_validate(produce()).model_dump_json().encode()
            with self._lock:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.pop(next(iter(self._entries)))
                self._entries[key] = (time.monotonic(), body)
                self._computing.pop(key, None)
        return self._response(body)

    def clear(self) -> None:
        """Forget every answer (tests; after a write this process made)."""
        with self._lock:
            self._entries.clear()

    def _fresh(self, key: Hashable) -> bytes | None:
        with self._lock:
            found = self._entries.get(key)
        if found is None or time.monotonic() - found[0] >= self.ttl:
            return None
        return found[1]

    @staticmethod
    def _response(body: bytes) -> Response:
        return Response(body, media_type="application/json")
