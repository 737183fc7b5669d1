"""Task messages published the way a foreign client would: straight to the broker with kombu,
bypassing Celery's and quantbeat's publish checks (size limit, masking)."""

from __future__ import annotations

import json
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange
from kombu.messaging import Producer


def publish_task(
    broker: str,
    name: str,
    task_id: str,
    args: list[Any],
    kwargs: Any,
    *,
    routing_key: str = "io",
    origin: str = "test@bypass",
) -> int:
    """Publish a protocol-2 task message of task ``name`` to ``routing_key`` on ``broker``;
    returns the body's size in bytes."""
    body = json.dumps([args, kwargs, {"callbacks": None, "errbacks": None, "chain": None}])
    headers = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "timelimit": [None, None],
        "argsrepr": "(...)",
        "kwargsrepr": "{...}",
        "origin": origin,
        "ignore_result": False,
    }
    with Connection(broker) as conn:
        Producer(conn.channel(), exchange=Exchange("quantbeat", type="direct")).publish(
            body,
            routing_key=routing_key,
            content_type="application/json",
            content_encoding="utf-8",
            headers=headers,
            correlation_id=task_id,
        )
    return len(body.encode())
