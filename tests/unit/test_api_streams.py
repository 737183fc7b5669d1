"""Progress streams' limits: a process serves at most MAX_STREAMS, each at most
MAX_STREAM_S seconds (then the client reconnects)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import pytest
from sse_starlette import ServerSentEvent

from quantbeat.api import streams
from quantbeat.api.problems import ApiProblem


async def _none() -> AsyncIterator[ServerSentEvent]:
    if False:  # pragma: no cover - an empty stream
        yield ServerSentEvent(data="")


def test_streams_over_the_cap_are_refused_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "MAX_STREAMS", 0)
    with pytest.raises(ApiProblem) as refused:
        streams.event_stream(_none())
    assert refused.value.status == 503
    assert refused.value.headers == {"Retry-After": "5"}


def test_a_stream_of_a_run_that_never_ends_closes_after_its_lifetime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streams, "MAX_STREAM_S", 0.3)
    running: Mapping[str, Any] = {"state": "running", "progress": 10, "eta_s": None}

    async def collect() -> list[ServerSentEvent]:
        out = []
        async for event in streams.progress_events(
            running, lambda _confirm: running, lambda: running, {"completed"}, poll=0.05
        ):
            out.append(event)
        return out

    events = anyio.run(collect)
    assert [e.event for e in events] == ["progress"]  # then closed, no "end": not finished
    assert streams.open_streams() == 0
