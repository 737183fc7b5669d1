"""celeryconfig's promises, checked on the configured app."""

from __future__ import annotations

import re

import pytest

from quant.errors import ConfigError
from quantbeat.infra.settings import Settings, get_settings, load_settings
from workers.app import app
from workers.queues import AREA_QUEUES, Queue

NAME = re.compile(r"^quantbeat\.[a-z_]+\.[a-z_]+$")


def quantbeat_tasks() -> list[str]:
    app.loader.import_default_modules()
    return sorted(n for n in app.tasks if not n.startswith("celery."))


def test_visibility_timeout_exceeds_longest_hard_limit_plus_longest_retry_delay():
    s = get_settings()
    longest_hard = max(app.tasks[n].time_limit or 0 for n in quantbeat_tasks())
    longest_hard = max(longest_hard, s.longest_hard_time_limit)
    for options in (app.conf.broker_transport_options, app.conf.result_backend_transport_options):
        assert options["visibility_timeout"] > longest_hard + s.retry_backoff_max


def test_settings_refuse_a_visibility_timeout_that_would_redeliver_running_tasks():
    with pytest.raises(ConfigError, match="QUANTBEAT_VISIBILITY_TIMEOUT=3000"):
        load_settings(visibility_timeout=3000, cpu_time_limit=3720, retry_backoff_max=600)


def test_max_attempts_must_leave_room_for_every_retry():
    with pytest.raises(ConfigError, match="QUANTBEAT_MAX_ATTEMPTS=6"):
        load_settings(max_attempts=6, max_retries=5)
    assert load_settings(max_attempts=7, max_retries=5).max_attempts == 7


def test_soft_limit_must_be_below_hard_limit():
    with pytest.raises(ConfigError, match="QUANTBEAT_IO_SOFT_TIME_LIMIT"):
        load_settings(io_soft_time_limit=400, io_time_limit=300)


def test_json_only():
    conf = app.conf
    assert conf.task_serializer == conf.result_serializer == conf.event_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert list(conf.result_accept_content) == ["json"]


def test_delivery_guarantees_and_monitoring():
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_track_started is True
    assert conf.worker_send_task_events is True
    assert conf.broker_connection_retry_on_startup is True
    assert conf.timezone == "Asia/Seoul"
    assert conf.result_expires == get_settings().result_expires


def test_three_queues_declared():
    assert {q.name for q in app.conf.task_queues} == {"io", "cpu", "ai"}
    assert app.conf.task_create_missing_queues is False


def test_every_task_has_an_explicit_name_and_routes_to_its_family_queue():
    names = quantbeat_tasks()
    assert "quantbeat.collect.daily_candles" in names
    router = app.amqp.router
    for name in names:
        assert NAME.match(name), name
        area = name.split(".")[1]
        assert area in AREA_QUEUES, f"{name}: area {area!r} has no queue"
        route = router.route({}, name, (), {})
        assert route["queue"].name == AREA_QUEUES[area].value, name


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("quantbeat.collect.daily_candles", Queue.IO),
        ("quantbeat.collect.investor_flows", Queue.IO),
        ("quantbeat.backtest.test_sleep", Queue.CPU),
    ],
)
def test_time_limits_follow_the_task_family(name: str, family: Queue):
    import tests.support.worker_app  # noqa: F401  (registers a cpu-area task)

    soft, hard = get_settings().time_limits(family.value)
    task = app.tasks[name]
    assert (task.soft_time_limit, task.time_limit) == (soft, hard)
    assert soft < hard


def test_a_task_keeps_the_limits_its_decorator_sets():
    import tests.support.worker_app  # noqa: F401

    task = app.tasks["quantbeat.backtest.test_own_limits"]
    assert (task.soft_time_limit, task.time_limit) == (7, 9)


def test_default_settings_keep_the_visibility_timeout_safe(monkeypatch: pytest.MonkeyPatch):
    import os

    for key in [k for k in os.environ if k.startswith("QUANTBEAT_")]:
        monkeypatch.delenv(key)
    s = Settings(_env_file=None)
    assert s.visibility_timeout > s.longest_hard_time_limit + s.retry_backoff_max
    assert s.longest_hard_time_limit == s.cpu_time_limit


def test_every_beat_entry_names_a_registered_task_and_expires():
    names = set(quantbeat_tasks())
    assert app.conf.beat_schedule, "beat schedule is empty"
    for entry_name, entry in app.conf.beat_schedule.items():
        assert entry["task"] in names, entry_name
        assert entry.get("options", {}).get("expires"), f"{entry_name} never expires"
        assert entry["options"]["expires"] < get_settings().visibility_timeout
