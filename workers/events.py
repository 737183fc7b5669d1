"""Task events carry masked arguments, results and errors, whoever reads them.

Celery's task events repeat what a task was called with and what came of it: ``args`` and
``kwargs`` (reprs), ``result``, ``exception`` and ``traceback``. Flower shows them and keeps them
in its state file. Two places mask these fields (:func:`mask_event`, with
:func:`quantbeat.infra.masking.mask_text`):

* :class:`QuantbeatEventDispatcher`, the event dispatcher of ``workers.app`` (through
  :class:`QuantbeatEvents`): every event a quantbeat process publishes, ``task-sent`` of the
  client (built from the raw argument reprs before any ``before_task_publish`` receiver runs)
  and the worker's ``task-received`` ... ``task-failed``;
* :func:`install_flower_masking`, called by ``quantbeat flower``: every event Flower receives,
  also from clients that run no quantbeat code (a bare Celery app sending a task by name with
  its own ``task-sent`` events), before Flower stores or shows it.
"""

from __future__ import annotations

from typing import Any

from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher

from quantbeat.infra.masking import mask_text, mask_value

#: Event fields that may repeat secrets: the call's arguments and what came of it.
MASKED_FIELDS = ("args", "kwargs", "result", "exception", "traceback")


def mask_event(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` of a task event with :data:`MASKED_FIELDS` masked (strings by
    :func:`~quantbeat.infra.masking.mask_text`, other values by
    :func:`~quantbeat.infra.masking.mask_value`); the mapping itself when none is present.
    Never raises."""
    if not any(name in fields for name in MASKED_FIELDS):
        return fields
    masked = dict(fields)
    for name in MASKED_FIELDS:
        if name in masked:
            value = masked[name]
            masked[name] = mask_text(value) if isinstance(value, str) else mask_value(value)
    return masked


class QuantbeatEventDispatcher(EventDispatcher):  # type: ignore[misc]
    """Celery's event dispatcher, masking the fields of task events before they are sent
    (:meth:`send`: the worker's events; :meth:`publish`: the client's ``task-sent``)."""

    def send(self, type: str, *args: Any, **fields: Any) -> Any:
        if type.startswith("task-"):
            fields = mask_event(fields)
        return super().send(type, *args, **fields)

    def publish(self, type: str, fields: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if type.startswith("task-"):
            fields = mask_event(fields)
        return super().publish(type, fields, *args, **kwargs)


class QuantbeatEvents(Events):  # type: ignore[misc]
    """``app.events`` of ``workers.app``: Celery's, with :class:`QuantbeatEventDispatcher`."""

    dispatcher_cls = "workers.events:QuantbeatEventDispatcher"


def install_flower_masking() -> None:
    """Make Flower (run in this process) mask every task event it receives before it updates
    its state, the pages and API it serves and its state file. Idempotent."""
    from flower.events import Events as FlowerEvents  # noqa: PLC0415 (flower: 80 ms, Flower only)

    original = FlowerEvents.on_event
    if getattr(original, "quantbeat_masked", False):
        return

    def on_event(self: Any, event: dict[str, Any]) -> Any:
        if str(event.get("type", "")).startswith("task-"):
            event = mask_event(event)
        return original(self, event)

    on_event.quantbeat_masked = True  # type: ignore[attr-defined]
    FlowerEvents.on_event = on_event
