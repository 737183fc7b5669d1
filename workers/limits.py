"""The size limit of task messages (``QUANTBEAT_MAX_MESSAGE_BYTES``, default 256 KiB).

A task message carries a task's arguments as JSON; the data itself lives in PostgreSQL. A
message larger than the limit is refused before anything else looks at it — before masking,
before its start is recorded, before its attempts are counted — everywhere one is handled:

* at publish (:class:`workers.process.QuantbeatAMQP`, every ``send_task``/``apply_async``/
  retry of this app): :func:`check_publish` raises :class:`quant.errors.ValidationError`
  naming the task, the size and the limit, and nothing is queued;
* at consume (:class:`workers.consumer.QuantbeatConsumer`): the raw body's length is compared
  with the limit before the body is decoded; a larger message (sent by a client that skipped
  the check) is dead-lettered ``oversized`` with :func:`sample` of its body, acknowledged, and
  its result failed;
* in the task (:class:`workers.base.QuantbeatTask`, for a run that did not come through the
  consumer, e.g. an in-process call with a task id): :func:`arguments_size` of its arguments.

The size of a message is the byte length of its body as the client serializes it (kombu's
JSON, UTF-8): ``[args, kwargs, embed]`` for task protocol 2.
"""

from __future__ import annotations

from typing import Any

from kombu.utils.json import dumps as kombu_dumps

from quant.errors import ValidationError
from quantbeat.infra.masking import mask_text
from quantbeat.infra.settings import get_settings

#: Characters of an oversized body kept (masked) in its dead letter.
SAMPLE_CHARS = 400
#: The dead-letter reason of an oversized message.
OVERSIZED = "oversized"


def max_message_bytes() -> int:
    """The limit in bytes (``QUANTBEAT_MAX_MESSAGE_BYTES``)."""
    return get_settings().max_message_bytes


def body_size(body: Any) -> int:
    """Bytes of ``body`` serialized as kombu's JSON serializer does (UTF-8); linear in its size.

    Raises:
        TypeError: ``body`` holds a value JSON cannot encode.
    """
    text = kombu_dumps(body)
    return len(text) if text.isascii() else len(text.encode("utf-8", errors="surrogatepass"))


def arguments_size(args: Any, kwargs: Any) -> int:
    """Bytes of a task's arguments as a message body would carry them (``[args, kwargs]``);
    ``0`` when they are not JSON (an in-process call, never a message)."""
    try:
        return body_size([list(args or ()), dict(kwargs or {})])
    except (TypeError, ValueError):
        return 0


def oversized_error(task_name: Any, size: int, limit: int, *, where: str) -> ValidationError:
    """The error of an oversized message of ``task_name``: ``where`` says what happened to it
    (e.g. ``"nothing was queued"``)."""
    return ValidationError(
        f"task {task_name!r}: message of {size:,} bytes exceeds QUANTBEAT_MAX_MESSAGE_BYTES "
        f"({limit:,} bytes); {where}. Pass large data through the database or a file, "
        "not as task arguments",
        field="message",
        value=size,
    )


def check_publish(task_name: str, body: Any) -> None:
    """Refuse to publish a message of ``task_name`` whose ``body`` exceeds the limit.

    Raises:
        quant.errors.ValidationError: the body is larger than ``QUANTBEAT_MAX_MESSAGE_BYTES``
            (the message names the task, the size and the limit).
    """
    limit = max_message_bytes()
    try:
        size = body_size(body)
    except (TypeError, ValueError):
        return  # not JSON: kombu's serializer refuses it with its own error
    if size > limit:
        raise oversized_error(task_name, size, limit, where="nothing was queued")


def sample(raw: bytes | str, chars: int = SAMPLE_CHARS) -> str:
    """The first ``chars`` characters of a message body, decoded leniently and masked; only
    a bounded prefix is ever decoded or masked, whatever the body's size."""
    head = raw[: chars * 4]
    text = head.decode("utf-8", errors="backslashreplace") if isinstance(head, bytes) else head
    return mask_text(text[:chars])
