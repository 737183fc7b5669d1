"""The API's short-lived read cache: reuse within its time, recomputation after it (the
previous answer served meanwhile), one computation for concurrent first requests, errors
never cached, and each encoding with its own ETag."""

from __future__ import annotations

import gzip
import json
import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from quantbeat.api.readcache import ReadCache


class Body(BaseModel):
    n: int


def _body(response: Response) -> Any:
    return json.loads(bytes(response.body))


def _request(encoding: str = "") -> Request:
    headers = [(b"accept-encoding", encoding.encode())] if encoding else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


class Counter:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
            n = self.calls
        time.sleep(self.delay)
        return {"n": n}


def test_an_answer_is_reused_within_its_time_and_recomputed_after() -> None:
    cache, produce = ReadCache(ttl=0.2), Counter()
    first = cache.json(_request(), "k", Body, produce)
    assert _body(first) == {"n": 1}
    assert _body(cache.json(_request(), "k", Body, produce)) == {"n": 1}
    assert _body(cache.json(_request(), "other", Body, produce)) == {"n": 2}
    time.sleep(0.25)
    assert _body(cache.json(_request(), "k", Body, produce)) == {"n": 3}
    assert ReadCache(ttl=0).json(_request(), "k", Body, produce).body == b'{"n":4}'


def test_each_encoding_has_its_own_etag_and_gzip_is_the_same_json() -> None:
    cache = ReadCache(ttl=10)
    plain = cache.json(_request(), "k", Body, lambda: {"n": 7})
    packed = cache.json(_request("gzip, deflate"), "k", Body, lambda: {"n": 8})
    assert gzip.decompress(bytes(packed.body)) == plain.body == b'{"n":7}'
    assert packed.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert plain.headers["etag"] != packed.headers["etag"]
    assert plain.headers["vary"] == packed.headers["vary"] == "Accept-Encoding"


def test_errors_are_not_cached_and_bad_answers_fail_validation() -> None:
    cache = ReadCache(ttl=10)

    def broken() -> dict[str, Any]:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        cache.json(_request(), "k", Body, broken)
    with pytest.raises(ValueError, match="n"):
        cache.json(_request(), "k", Body, lambda: {"n": "not a number"})
    assert _body(cache.json(_request(), "k", Body, lambda: {"n": 1})) == {"n": 1}


def test_concurrent_first_requests_compute_once_and_a_stale_answer_is_served_meanwhile() -> None:
    cache, produce = ReadCache(ttl=0.3), Counter(delay=0.2)
    answers: list[bytes] = []

    def ask() -> None:
        answers.append(bytes(cache.json(_request(), "k", Body, produce).body))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert produce.calls == 1
    assert set(answers) == {b'{"n":1}'}
    time.sleep(0.35)  # stale now: one request recomputes (0.2 s), the others get n=1 at once
    answers.clear()
    refresher = threading.Thread(target=ask)
    refresher.start()
    time.sleep(0.05)
    started = time.monotonic()
    ask()
    waited = time.monotonic() - started
    refresher.join()
    assert produce.calls == 2
    assert sorted(answers) == [b'{"n":1}', b'{"n":2}']
    assert waited < 0.15  # it did not wait for the recomputation
