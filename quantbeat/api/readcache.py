"""A short-lived cache of hot read answers, per API process.

``GET /api/v1/signals/latest`` and the like change when a scan run completes — a few times a
day — yet dashboards poll them every few seconds. Each answer is kept as the JSON its
response model produced, plus that JSON gzip-compressed and the strong ``ETag`` of each, for
``ttl`` seconds (at most ``QUANTBEAT_API_CACHE_SECONDS``, the ``max-age`` clients are told
anyway). After that one request recomputes it (the others meanwhile get the previous answer,
at most one recomputation's time older: stale-while-revalidate); a key never seen is computed
by one request while concurrent ones wait for it (no stampede). Errors are not cached. Keys
include every query parameter; answers do not depend on the API key (its scope is checked
before).
"""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

#: Seconds an answer is reused before it is recomputed (capped by the settings' max-age).
DEFAULT_TTL = 2.0
#: Entries kept at most (oldest dropped first).
MAX_ENTRIES = 512


@dataclass(frozen=True)
class Answer:
    """One cached answer: when it was made (monotonic seconds), its JSON and gzip bodies and
    their ETags."""

    at: float
    body: bytes
    gzipped: bytes
    etag: str
    gzip_etag: str

    @classmethod
    def of(cls, body: bytes) -> Answer:
        gzipped = gzip.compress(body, compresslevel=6, mtime=0)
        return cls(
            at=time.monotonic(),
            body=body,
            gzipped=gzipped,
            etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"',
            gzip_etag=f'"{hashlib.sha256(gzipped).hexdigest()[:32]}-gz"',
        )

    def response(self, request: Request) -> Response:
        """This answer in the encoding ``request`` accepts (gzip when it says so)."""
        headers = {"Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers.update({"Content-Encoding": "gzip", "ETag": self.gzip_etag})
            return Response(self.gzipped, media_type="application/json", headers=headers)
        headers["ETag"] = self.etag
        return Response(self.body, media_type="application/json", headers=headers)


class ReadCache:
    """JSON answers by key, each reused for ``ttl`` seconds (0: never cached)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[Hashable, Answer] = {}
        self._computing: dict[Hashable, threading.Lock] = {}

    def json(
        self,
        request: Request,
        key: Hashable,
        model: type[BaseModel],
        produce: Callable[[], Any],
        *,
        ttl: float | None = None,
    ) -> Response:
        """The answer of ``key`` for ``request``: cached, or ``produce()`` validated by
        ``model`` and serialized (then cached). ``ttl`` overrides the cache's time for this
        key (an expensive, slowly changing answer). Exceptions of ``produce`` propagate and
        nothing is cached."""
        keep = self.ttl if ttl is None else ttl

        def make() -> Answer:
            return Answer.of(model.model_validate(produce()).model_dump_json().encode())

        if keep <= 0:
            return make().response(request)
        with self._lock:
            found = self._entries.get(key)
            gate = self._computing.get(key)
            if gate is None:
                if len(self._computing) >= 2 * MAX_ENTRIES:  # keys whose computation failed
                    self._computing = {k: g for k, g in self._computing.items() if g.locked()}
                gate = self._computing[key] = threading.Lock()
        if found is not None and time.monotonic() - found.at < keep:
            return found.response(request)
        if found is not None and not gate.acquire(blocking=False):
            return found.response(request)  # being recomputed: the previous answer
        if found is None:
            gate.acquire()
        try:
            with self._lock:
                again = self._entries.get(key)
            if again is not None and time.monotonic() - again.at < keep:
                return again.response(request)  # computed by the request this one waited for
            answer = make()
            with self._lock:
                if key not in self._entries and len(self._entries) >= MAX_ENTRIES:
                    self._entries.pop(next(iter(self._entries)))
                self._entries[key] = answer
            return answer.response(request)
        except BaseException:
            with self._lock:  # nothing cached for this key: forget its gate too
                if key not in self._entries:
                    self._computing.pop(key, None)
            raise
        finally:
            gate.release()

    def clear(self) -> None:
        """Forget every answer (tests; after a write this process made)."""
        with self._lock:
            self._entries.clear()
