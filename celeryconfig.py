"""Celery configuration: lower-case settings derived from
:class:`quantbeat.infra.settings.Settings`.

Loaded by ``workers.app`` with ``app.config_from_object("celeryconfig")``. Every value that an
operator may need to change comes from a ``QUANTBEAT_*`` variable; the rest are decisions,
explained where they are made. See docs/reliability.md for the failure modes behind
them.
"""

from __future__ import annotations

from typing import Any

from kombu.entity import Exchange
from kombu.entity import Queue as KombuQueue

from quantbeat.infra.keys import REDBEAT_LOCK_KEY, REDBEAT_PREFIX
from quantbeat.infra.settings import get_settings
from workers.queues import AREA_QUEUES, Queue, queue_for

_settings = get_settings()

# --- broker and results ---------------------------------------------------------------------
broker_url = _settings.broker_url
result_backend = _settings.result_backend
# Redis emulates acknowledgement: an unacked message is restored after visibility_timeout even
# while a worker still runs it. It must exceed the longest hard time limit plus the longest
# retry delay; Settings refuses a smaller value. The same value applies to the result backend.
broker_transport_options: dict[str, Any] = {
    "visibility_timeout": _settings.visibility_timeout,
}
result_backend_transport_options: dict[str, Any] = {
    "visibility_timeout": _settings.visibility_timeout,
}
if broker_url.startswith(("amqp://", "pyamqp://")):
    # RabbitMQ: the broker confirms every publish, so a send that returns was not lost.
    broker_transport_options["confirm_publish"] = True
broker_connection_retry_on_startup = True
broker_connection_max_retries = None  # keep reconnecting; a supervisor decides when to give up
# A lost broker connection would hand running acks_late tasks to another worker; cancel them
# here so they are redelivered once instead of running twice.
worker_cancel_long_running_tasks_on_connection_loss = True
result_expires = _settings.result_expires
# Not result_extended: it would copy raw task arguments (which may hold secrets) into Redis for
# a day. Job history with masked arguments lives in PostgreSQL (job_runs).
result_extended = False

# --- serialization: JSON only (pickle executes code on load) ----------------------------------
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
event_serializer = "json"

# --- time -------------------------------------------------------------------------------------
timezone = _settings.timezone
enable_utc = True

# --- queues and routing -----------------------------------------------------------------------
_exchange = Exchange("quantbeat", type="direct")
task_queues = tuple(KombuQueue(q.value, _exchange, routing_key=q.value) for q in Queue)
task_default_queue = Queue.IO.value
task_default_exchange = "quantbeat"
task_default_routing_key = Queue.IO.value
task_create_missing_queues = False
# Routed by explicit name: one glob per area, e.g. quantbeat.collect.* → io.
task_routes: dict[str, dict[str, str]] = {
    f"quantbeat.{area}.*": {"queue": queue.value, "routing_key": queue.value}
    for area, queue in AREA_QUEUES.items()
}

# --- delivery guarantees ----------------------------------------------------------------------
task_acks_late = True  # ack after the task ran: a crash mid-task redelivers it
task_reject_on_worker_lost = True  # a killed pool child requeues instead of acking
worker_prefetch_multiplier = 1  # a long task never holds a second message hostage
task_acks_on_failure = True  # a failure is final once recorded in dead_letters
task_acks_on_timeout = True
# Messages that can never run (unknown task, undecodable body, broken protocol) are recorded in
# dead_letters before Celery drops them; a malformed body no longer stops the worker.
worker_consumer = "workers.consumer:QuantbeatConsumer"

# --- time limits per task family ----------------------------------------------------------------
# No global task_soft_time_limit/task_time_limit: Celery would copy it onto every task class
# before annotations run, hiding whether a task set its own. Every quantbeat.* task gets its
# family's limits below; Celery's built-in canvas tasks run unlimited.


class _FamilyAnnotations:
    """Celery annotation object: sets soft/hard time limits by the task's family (queue).

    Celery calls ``annotate(task)`` for every task when it is bound to the app. Limits set in
    the task's decorator are kept.
    """

    def annotate(self, task: Any) -> dict[str, int] | None:
        queue = queue_for(task.name)
        if queue is None:
            return None
        soft, hard = _settings.time_limits(queue.value)
        limits = {"soft_time_limit": soft, "time_limit": hard}
        # A limit given in the task's own decorator wins over its family's. (Celery passes the
        # task class here, not an instance.)
        own = (task if isinstance(task, type) else type(task)).__dict__
        return {k: v for k, v in limits.items() if own.get(k) is None}


task_annotations = (_FamilyAnnotations(),)

# --- state and monitoring ---------------------------------------------------------------------
task_track_started = True
worker_send_task_events = True  # Flower needs task events
task_send_sent_event = True

# --- worker hygiene ---------------------------------------------------------------------------
worker_max_tasks_per_child = _settings.worker_max_tasks_per_child
worker_max_memory_per_child = _settings.worker_max_memory_per_child_kib
worker_hijack_root_logger = False  # logging is configured by workers.process (structlog JSON)
worker_redirect_stdouts = False

# --- beat -----------------------------------------------------------------------------------------
from beat_schedule import BEAT_SCHEDULE  # noqa: E402  (import after settings are read)

beat_schedule = BEAT_SCHEDULE
# celery-redbeat: the schedule and last-run times in Redis, one active beat behind a lock;
# workers.beat adds the per-slot headers that make a duplicate tick a no-op in PostgreSQL.
beat_scheduler = "workers.beat:QuantbeatScheduler"
beat_max_loop_interval = _settings.beat_max_interval
redbeat_redis_url = None if _settings.redis_url.startswith("memory://") else _settings.redis_url
redbeat_key_prefix = REDBEAT_PREFIX
redbeat_lock_key = REDBEAT_LOCK_KEY
redbeat_lock_timeout = _settings.beat_lock_timeout
