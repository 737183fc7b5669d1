"""The worker's message consumer: messages that can never run become dead letters.

Installed with ``worker_consumer = "workers.consumer:QuantbeatConsumer"`` (``celeryconfig``).
Celery's own consumer logs such messages and drops them; this subclass first records each in
``dead_letters`` with a reason, the error and the masked payload, then lets Celery drop it
(ack or reject), so it neither loops nor vanishes:

==================  =============================================================================
reason              message
==================  =============================================================================
``unknown_task``    names a task this worker does not have (Celery also fails its result with
                    ``NotRegistered``); fingerprint ``task:<id>``
``undecodable``     a body that cannot be decoded (bad JSON, a corrupt compressed body) or a
                    content type the worker refuses (pickle, …); the payload keeps the raw body as
                    text (masked, first 4 KiB), its content type, encoding and headers;
                    fingerprint ``body:<sha256 of task id, name and body>``, so a redelivered
                    copy is another occurrence of the same letter
``invalid_message`` decodes but breaks the task protocol: no task id, a body that is not
                    ``[args, kwargs, embed]``, args not a list, kwargs not a mapping, a bad ETA,
                    time limit or retry count, or no task name at all
``oversized``       a body larger than ``QUANTBEAT_MAX_MESSAGE_BYTES`` (:mod:`workers.limits`),
                    checked first, before the body is decoded: the payload keeps the task name
                    and id from the headers, the body's size and a masked sample of its first
                    :data:`workers.limits.SAMPLE_CHARS` characters, never the body; the message is
                    acknowledged and its result failed with a ValidationError
==================  =============================================================================

An ``undecodable`` or ``invalid_message`` letter whose task id is known (headers, or a
protocol-1 body) also fails that id's result with a ValidationError naming the reason, as
``oversized`` does: a client waiting on ``AsyncResult.get()`` gets the error, not a hang.

Malformed protocol-2 messages are checked *before* Celery builds its request: stock Celery 5.7
raises ``ValueError`` on a body such as ``{"foo": 1}``, which stops the whole worker, and the
message is restored for the next worker to die on.

Recording never raises: when the database is unreachable the dead letter (masked payload
included) is written to the local spool (:mod:`quantbeat.infra.spool`; the reaper replays it)
and logged (``dead_letter.not_recorded``), as :func:`workers.base._store_failure` does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any

import structlog
from celery.exceptions import InvalidTaskError
from celery.utils.log import get_logger
from celery.utils.objects import Bunch
from celery.worker.consumer.consumer import Consumer
from kombu.exceptions import ContentDisallowed
from vine import promise  # type: ignore[import-untyped]

from db.engine import session_scope
from db.jobs import SPOOL_DEAD_LETTER, record_dead_letter
from quant.errors import ValidationError
from quantbeat.infra import spool
from quantbeat.infra.masking import mask_text, mask_value
from workers.limits import OVERSIZED, max_message_bytes, oversized_error, sample

log = structlog.get_logger("quantbeat.consumer")
#: Celery's logger, for its ack helpers.
_celery_log = get_logger(__name__)

#: Characters of an undecodable body kept in its dead letter.
MAX_BODY_CHARS = 4_096
#: Header values that repeat the arguments unmasked (as reprs); never stored.
_DROPPED_HEADERS = frozenset({"argsrepr", "kwargsrepr"})
#: What Celery's request construction raises on a malformed message that passed the checks
#: below; caught as a last resort so one message cannot stop the worker.
_MALFORMED_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def protocol2_problem(headers: dict[str, Any], body: Any) -> str | None:
    """What is wrong with a decoded protocol-2 task message whose headers name a known task, or
    ``None`` when Celery can run it. ``body`` is the decoded body."""
    if isinstance(body, dict):
        # A protocol-1 style (hybrid) body: Celery reads args/kwargs from it and checks them.
        if "args" not in body:
            return "the body is a mapping without 'args' (neither task protocol 1 nor 2)"
        args, kwargs = body.get("args"), body.get("kwargs", {})
    else:
        if not isinstance(body, list | tuple) or len(body) != 3:
            size = f" of {len(body)} items" if isinstance(body, list | tuple) else ""
            return f"the body must be [args, kwargs, embed], got {type(body).__name__}{size}"
        args, kwargs, embed = body
        if embed is not None and not isinstance(embed, dict):
            return f"the body's embed (third item) must be a mapping, got {type(embed).__name__}"
    if not isinstance(args, list | tuple):
        return f"the task args must be a list, got {type(args).__name__}"
    if not isinstance(kwargs, dict):
        return f"the task kwargs must be a mapping, got {type(kwargs).__name__}"
    timelimit = headers.get("timelimit")
    if timelimit and not (
        isinstance(timelimit, list | tuple)
        and len(timelimit) == 2
        and all(v is None or _is_number(v) for v in timelimit)
    ):
        return f"headers['timelimit'] must be [hard, soft] seconds, got {timelimit!r}"
    retries = headers.get("retries")
    if retries is not None and not (isinstance(retries, int) and not isinstance(retries, bool)):
        return f"headers['retries'] must be an integer, got {retries!r}"
    return None


def protocol1_problem(body: dict[str, Any]) -> str | None:
    """What is wrong with a decoded protocol-1 task body (``{"task", "id", "args", "kwargs",
    …}``) naming a known task, or ``None`` when Celery can run it."""
    ident = body.get("id")
    if not isinstance(ident, str) or not ident:
        return f"body['id'] must be the task id, got {ident!r}"
    if not isinstance(body.get("args", []), list | tuple):
        return f"the task args must be a list, got {type(body.get('args')).__name__}"
    if not isinstance(body.get("kwargs", {}), dict):
        return f"the task kwargs must be a mapping, got {type(body.get('kwargs')).__name__}"
    return None


def _precheck(message: Any, known: Callable[[str], bool]) -> tuple[Any, Exception] | None:
    """``(decoded body or None, error)`` for a task message naming a known task that must not
    reach Celery's request construction; ``None`` to let Celery handle the message (it reports
    unknown tasks, undecodable bodies and non-task messages itself)."""
    headers = message.headers
    if not isinstance(headers, dict):
        return None
    if "task" not in headers:  # protocol 1: everything is in the body
        try:
            body = message.decode()
        except Exception:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("task"), str):
            return None
        if not known(body["task"]):
            return None
        problem = protocol1_problem(body)
        return None if problem is None else (body, InvalidTaskError(problem))
    name = headers["task"]
    if not isinstance(name, str) or not name:
        return None, InvalidTaskError(f"headers['task'] must be a task name, got {name!r}")
    ident = headers.get("id")
    if not isinstance(ident, str) or not ident:
        return None, InvalidTaskError(f"headers['id'] must be the task id, got {ident!r}")
    if not known(name):
        return None
    try:
        body = message.decode()
    except Exception:
        return None
    problem = protocol2_problem(headers, body)
    return None if problem is None else (body, InvalidTaskError(problem))


class QuantbeatConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, dead-lettering the messages it would otherwise only log and drop."""

    def create_task_handler(self, promise: Any = promise) -> Callable[[Any], Any]:
        handle = super().create_task_handler(promise)
        strategies = self.strategies

        def on_task_received(message: Any) -> Any:
            # First, before the body is decoded, masked or recorded anywhere.
            size, limit = len(_raw_body(message)), max_message_bytes()
            if size > limit:
                return self.on_oversized(message, size, limit)
            found = _precheck(message, strategies.__contains__)
            if found is not None:
                body, exc = found
                return self.on_invalid_task(body, message, exc)
            try:
                return handle(message)
            except _MALFORMED_ERRORS as exc:
                if message.acknowledged:
                    raise
                return self.on_invalid_task(None, message, exc)

        return on_task_received

    def on_oversized(self, message: Any, size: int, limit: int) -> None:
        """Dead-letter a message whose body is ``size`` bytes, over ``limit``, without decoding
        it (reason ``oversized``, a masked sample of the body), acknowledge it and fail its
        result so a client waiting on it gets the ValidationError."""
        headers = message.headers if isinstance(message.headers, dict) else {}
        name = headers.get("task")
        exc = oversized_error(name, size, limit, where="the worker refused it unread")
        record_message(
            message,
            reason=OVERSIZED,
            error=_error_text(exc),
            payload=describe_oversized(message, size=size, limit=limit),
        )
        message.ack_log_error(_celery_log, self.connection_errors)
        self.fail_result(message, exc)

    def fail_result(self, message: Any, exc: BaseException, body: Any = None) -> bool:
        """Store a ``FAILURE`` result with ``exc`` for the message's task id (from its headers,
        or a protocol-1 ``body``), so a client waiting on ``AsyncResult.get()`` gets the error
        instead of waiting for ever. Returns whether a result was stored; never raises (the
        dead letter is the record, the result a courtesy)."""
        headers = message.headers if isinstance(message.headers, dict) else {}
        ident, name = headers.get("id"), headers.get("task")
        if not (isinstance(ident, str) and ident) and isinstance(body, dict):
            ident, name = body.get("id"), name or body.get("task")
        if not isinstance(ident, str) or not ident or len(ident) > 255:
            return False
        properties = message.properties if isinstance(message.properties, dict) else {}
        request = Bunch(
            name=name if isinstance(name, str) else None,
            chord=None,
            root_id=headers.get("root_id"),
            correlation_id=properties.get("correlation_id"),
            reply_to=properties.get("reply_to"),
            errbacks=None,
        )
        try:
            self.app.backend.mark_as_failure(ident, exc, request=request)
        except Exception as error:
            log.warning("message.result_not_stored", task_id=ident, error=_error_text(error))
            return False
        return True

    # -- Celery's callbacks: record, then let Celery log and ack/reject ------------------------
    def on_unknown_task(self, body: Any, message: Any, exc: BaseException) -> None:
        headers = message.headers if isinstance(message.headers, dict) else {}
        ident, name = headers.get("id"), headers.get("task")
        if ident is None:  # protocol 1: the id and name are in the body
            try:
                decoded = body if body is not None else message.decode()
            except Exception:
                decoded = None
            if isinstance(decoded, dict):
                ident, name = decoded.get("id"), name or decoded.get("task")
        if not isinstance(ident, str) or not ident:
            # Celery needs the id to fail the task's result; without one it would crash here.
            self.on_invalid_task(body, message, InvalidTaskError("a task message without an id"))
            return
        record_message(
            message,
            reason="unknown_task",
            error=f"NotRegistered: no task named {name!r} is registered in this worker",
            body=body,
        )
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: BaseException) -> None:
        reason = "undecodable" if isinstance(exc, ContentDisallowed) else "invalid_message"
        record_message(message, reason=reason, error=_error_text(exc), body=body)
        super().on_invalid_task(body, message, exc)
        self.fail_result(message, _unrunnable(reason, exc), body)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        record_message(
            message,
            reason="invalid_message",
            error="not a task message: it names no task (headers['task'] or body['task'])",
            body=body,
        )
        super().on_unknown_message(body, message)
        self.fail_result(message, _unrunnable("invalid_message", ValueError("names no task")), body)

    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        record_message(message, reason="undecodable", error=_error_text(exc))
        super().on_decode_error(message, exc)
        self.fail_result(message, _unrunnable("undecodable", exc))


def _unrunnable(reason: str, exc: BaseException) -> ValidationError:
    """The error a client waiting on a dead-lettered message's result gets."""
    return ValidationError(
        f"the worker could not run this message ({reason}, dead-lettered): {_error_text(exc)}",
        field="message",
    )


def _error_text(exc: BaseException) -> str:
    return mask_text(f"{type(exc).__name__}: {exc}")[:4000]


def _raw_body(message: Any) -> bytes:
    body = getattr(message, "body", None)
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8", errors="surrogatepass")
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    return repr(body).encode()


def describe_message(message: Any, *, reason: str, body: Any = None) -> dict[str, Any]:
    """The dead-letter payload of a message (masked): ``task``, ``id``, ``args``, ``kwargs``,
    ``queue`` and ``retries`` (as the base task stores them, ``None`` where the message has
    none), plus ``content_type``, ``content_encoding``, ``headers`` (without the argument
    reprs), ``delivery_info`` and, unless the arguments could be extracted, the body: decoded
    (``body``) or, for an undecodable one, its first :data:`MAX_BODY_CHARS` characters as text,
    with ``body_bytes`` and ``body_truncated``. ``body`` is the decoded body if the caller has
    it."""
    raw_headers = getattr(message, "headers", None)
    headers = raw_headers if isinstance(raw_headers, dict) else {}
    delivery = getattr(message, "delivery_info", None) or {}
    decoded, decode_failed = body, False
    if decoded is None and reason != "undecodable":
        try:
            decoded = message.decode()
        except Exception:
            decode_failed = True
    args: Any = None
    kwargs: Any = None
    if isinstance(decoded, list | tuple) and len(decoded) == 3:
        if isinstance(decoded[0], list | tuple) and isinstance(decoded[1], dict):
            args, kwargs = list(decoded[0]), decoded[1]
    elif isinstance(decoded, dict) and "args" in decoded:  # protocol 1
        args, kwargs = decoded.get("args"), decoded.get("kwargs", {})
    name = headers.get("task")
    ident = headers.get("id")
    if isinstance(decoded, dict):
        name = name or decoded.get("task")
        ident = ident or decoded.get("id")
    payload: dict[str, Any] = {
        "task": name,
        "id": ident,
        "args": args,
        "kwargs": kwargs,
        "queue": delivery.get("routing_key"),
        "retries": headers.get("retries"),
        "content_type": getattr(message, "content_type", None),
        "content_encoding": getattr(message, "content_encoding", None),
        "headers": {k: v for k, v in headers.items() if k not in _DROPPED_HEADERS},
        "delivery_info": {
            "exchange": delivery.get("exchange"),
            "routing_key": delivery.get("routing_key"),
            "redelivered": delivery.get("redelivered"),
        },
    }
    if args is None or not isinstance(kwargs, dict):
        raw = _raw_body(message)
        payload["body_bytes"] = len(raw)
        if decoded is not None and not decode_failed:
            payload["body"] = decoded
        else:
            text = raw.decode("utf-8", errors="backslashreplace")
            payload["body"] = text[:MAX_BODY_CHARS]
            payload["body_truncated"] = len(text) > MAX_BODY_CHARS
    # Headers of other transports may hold values JSON cannot store (datetimes, bytes).
    masked: dict[str, Any] = json.loads(json.dumps(mask_value(payload), default=str))
    return masked


#: Headers kept (as short strings) in an oversized message's dead letter.
_OVERSIZED_HEADERS = (
    "task",
    "id",
    "root_id",
    "parent_id",
    "group",
    "retries",
    "eta",
    "expires",
    "timelimit",
    "origin",
    "qb_beat_entry",
    "qb_beat_slot",
)


def describe_oversized(message: Any, *, size: int, limit: int) -> dict[str, Any]:
    """The dead-letter payload of an oversized message, built without decoding its body:
    ``task``, ``id`` and ``retries`` from the headers, ``args``/``kwargs`` ``None``, ``queue``,
    ``content_type``, ``content_encoding``, a few headers (each at most 200 characters),
    ``body_bytes``, ``limit_bytes``, ``body_sample`` (masked, at most
    :data:`workers.limits.SAMPLE_CHARS` characters) and ``body_truncated``."""
    raw_headers = getattr(message, "headers", None)
    headers = raw_headers if isinstance(raw_headers, dict) else {}
    delivery = getattr(message, "delivery_info", None) or {}

    def short(value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        return mask_text(str(value)[:200])

    return {
        "task": short(headers.get("task")),
        "id": short(headers.get("id")),
        "args": None,
        "kwargs": None,
        "queue": short(delivery.get("routing_key")),
        "retries": short(headers.get("retries")),
        "content_type": short(getattr(message, "content_type", None)),
        "content_encoding": short(getattr(message, "content_encoding", None)),
        "headers": {k: short(headers[k]) for k in _OVERSIZED_HEADERS if k in headers},
        "body_bytes": size,
        "limit_bytes": limit,
        "body_sample": sample(_raw_body(message)),
        "body_truncated": True,
    }


def fingerprint(message: Any, *, reason: str, task_id: Any) -> str:
    """``task:<id>`` for a message with a usable task id (unless undecodable), else
    ``body:<sha256>`` of the task id, the task name in the headers and the raw body: a
    redelivered copy has the same one."""
    if reason != "undecodable" and isinstance(task_id, str) and 0 < len(task_id) <= 64:
        return f"task:{task_id}"
    headers = getattr(message, "headers", None)
    name = headers.get("task") if isinstance(headers, dict) else None
    digest = hashlib.sha256()
    for part in (task_id, name):
        if isinstance(part, str):
            digest.update(part.encode("utf-8", errors="backslashreplace"))
        digest.update(b"\0")
    digest.update(_raw_body(message))
    return f"body:{digest.hexdigest()}"


def record_message(
    message: Any,
    *,
    reason: str,
    error: str,
    body: Any = None,
    payload: dict[str, Any] | None = None,
) -> int | None:
    """Record ``message`` as a dead letter with ``reason``; return its row id, or ``None`` when
    it could not be stored: then the letter goes to the local spool (replayed by the reaper)
    and is logged, masked, as ``dead_letter.not_recorded`` (with the spool file, if written).
    ``payload``: the masked payload if the caller built it (else :func:`describe_message`).
    Never raises."""
    if payload is None:
        try:
            payload = describe_message(message, reason=reason, body=body)
        except Exception as exc:  # a message too odd to describe: keep what is certain
            payload = {"description_error": _error_text(exc)}
    task_id = payload.get("id")
    task_name = payload.get("task")
    letter: dict[str, Any] = {}
    try:
        letter = {
            "fingerprint": fingerprint(message, reason=reason, task_id=task_id),
            "task_id": task_id if isinstance(task_id, str) and len(task_id) <= 64 else None,
            "task_name": task_name[:200] if isinstance(task_name, str) else None,
            "payload": payload,
            "reason": reason,
            "error": error,
            "seen_at": dt.datetime.now(dt.UTC),
        }
        with session_scope() as session:
            letter_id = record_dead_letter(session, **letter)
    except Exception as exc:
        spooled = spool.write(SPOOL_DEAD_LETTER, {"letter": letter}) if letter else None
        log.error(
            "dead_letter.not_recorded",
            reason=reason,
            payload=payload,
            error=error,
            store_error=_error_text(exc),
            spooled=str(spooled) if spooled else None,
        )
        return None
    log.warning(
        "message.dead_lettered",
        reason=reason,
        dead_letter_id=letter_id,
        task=task_name,
        task_id=task_id,
        error=error,
    )
    return letter_id
