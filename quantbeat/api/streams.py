"""Server-sent event streams of a run's progress (backtests, scans).

A stream polls a snapshot function every :data:`POLL_S` seconds in a worker thread (the
snapshot functions are synchronous service calls; each opens and closes whatever it reads,
so no database session stays open between polls and no stream blocks the event loop or the
others). It sends an event ``progress`` (data ``{"state", "progress", "eta_s"}``) whenever
the state or the progress changes, and a last event ``end`` once the run's state is final,
then closes. A comment ping goes out every :data:`PING_S` seconds; the stream stops as soon
as the client disconnects (sse-starlette cancels the generator).

A snapshot that cannot be read (Redis or the database briefly away) is retried at the next
poll; after :data:`GIVE_UP_S` seconds of failures the stream sends an event ``error`` (data
``{"detail"}``) and closes, and the client may reconnect. A process serves at most
:data:`MAX_STREAMS` streams, each for at most :data:`MAX_STREAM_S` seconds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Any

import anyio
import structlog
from sse_starlette import EventSourceResponse, ServerSentEvent

from quant.errors import NotFound
from quantbeat.api.problems import ApiProblem
from quantbeat.infra.masking import mask_text

log = structlog.get_logger(__name__)

#: Seconds between polls of a run's state.
POLL_S = 0.5
#: Seconds between keep-alive comments.
PING_S = 15
#: Seconds of consecutive failed polls after which a stream gives up (event ``error``).
GIVE_UP_S = 30.0
#: Milliseconds a client should wait before reconnecting (the ``retry`` field).
RETRY_MS = 2_000
#: Streams one API process serves at once; more are refused (503 with ``Retry-After``), so
#: streams cannot take every worker thread the other routes need.
MAX_STREAMS = 100
#: Seconds one stream lasts at most: then it closes and the client reconnects (EventSource
#: does so by itself), so a run stuck in ``running`` does not hold a stream for ever.
MAX_STREAM_S = 1_800.0

#: The progress event's fields.
PROGRESS_FIELDS = ("state", "progress", "eta_s")
#: The fields whose change sends a progress event (the ETA alone moves with the clock).
CHANGE_FIELDS = ("state", "progress")

_lock = threading.Lock()
_open = 0


def open_streams() -> int:
    """How many progress streams this process is serving now."""
    with _lock:
        return _open


def _count(delta: int) -> None:
    global _open
    with _lock:
        _open += delta


def _event(name: str, data: Mapping[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data, separators=(",", ":")), event=name)


async def progress_events(
    first: Mapping[str, Any],
    read: Callable[[bool], Mapping[str, Any]],
    end: Callable[[], Mapping[str, Any]],
    final_states: Collection[str],
    *,
    poll: float = POLL_S,
    confirm_every: int = 10,
    what: str = "run",
) -> AsyncIterator[ServerSentEvent]:
    """The events of one run: ``first`` (a snapshot read just before) at once, then every
    change of ``read(confirm)`` polled each ``poll`` seconds (``confirm`` is true every
    ``confirm_every``-th poll: the snapshot function should then read the authority rather
    than a live mirror), then ``end()`` as the event ``end`` once the state is in
    ``final_states``. Snapshots hold at least :data:`PROGRESS_FIELDS`; only those are sent
    as ``progress``."""
    _count(1)
    opened = time.monotonic()
    try:
        snapshot: Mapping[str, Any] = first
        sent: dict[str, Any] | None = None
        polls = 0
        failing_since: float | None = None
        while True:
            shown = {k: snapshot.get(k) for k in PROGRESS_FIELDS}
            changed = sent is None or any(shown[k] != sent[k] for k in CHANGE_FIELDS)
            if changed:
                event = _event("progress", shown)
                if sent is None:
                    event.retry = RETRY_MS
                yield event
                sent = shown
            if snapshot.get("state") in final_states:
                try:
                    last = dict(await anyio.to_thread.run_sync(end))
                except Exception as exc:  # the end event still goes out, with what is known
                    log.warning("api.stream_end_unreadable", what=what,
                                error=mask_text(f"{type(exc).__name__}: {exc}"))  # fmt: skip
                    last = dict(shown)
                yield _event("end", last)
                return
            if time.monotonic() - opened >= MAX_STREAM_S:
                return  # the client reconnects after RETRY_MS and gets a fresh stream
            await anyio.sleep(poll)
            polls += 1
            try:
                snapshot = await anyio.to_thread.run_sync(read, polls % confirm_every == 0)
                failing_since = None
            except NotFound as exc:  # deleted meanwhile: nothing more will come
                yield _event("error", {"detail": str(exc)})
                return
            except Exception as exc:
                now = time.monotonic()
                failing_since = failing_since or now
                error = mask_text(f"{type(exc).__name__}: {exc}")
                log.warning("api.stream_poll_failed", what=what, error=error)
                if now - failing_since >= GIVE_UP_S:
                    yield _event(
                        "error",
                        {
                            "detail": f"the {what}'s state could not be read for "
                            f"{GIVE_UP_S:.0f} s; reconnect later"
                        },
                    )
                    return
    finally:
        _count(-1)


def event_stream(events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    """The response serving ``events`` (pings every :data:`PING_S` s, no caching, no proxy
    buffering).

    Raises:
        quantbeat.api.problems.ApiProblem: 503 (``Retry-After``) when this process already
            serves :data:`MAX_STREAMS` streams.
    """
    if open_streams() >= MAX_STREAMS:
        raise ApiProblem(
            503,
            f"this API process already serves {MAX_STREAMS} progress streams; retry shortly "
            "or poll the run's status",
            slug="unavailable",
            headers={"Retry-After": "5"},
        )
    return EventSourceResponse(events, ping=PING_S)


#: One event of a progress stream, for the OpenAPI document.
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["progress", "end", "error"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "A JSON object: progress {state, progress, eta_s}; end: the final "
            "state; error {detail}",
        },
        "retry": {"type": "integer", "description": "Reconnect delay (ms), on the first event"},
        "id": {"type": "string"},
    },
}

#: The OpenAPI description of an event-stream response.
EVENTS_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "A text/event-stream: events `progress` (data: JSON `{state, progress, eta_s}`, "
            "progress 0–100) on every change, comment pings every 15 s, a last event `end` "
            "(data: the final state) after which the stream closes; an event `error` (data: "
            "`{detail}`) ends it when the state cannot be read."
        ),
        # Before OpenAPI 3.2 (no itemSchema), the schema of an event stream describes one event.
        "content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
    }
}
