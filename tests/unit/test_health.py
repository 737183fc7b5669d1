"""Health report: aggregation, thresholds, exit codes, the runner's timeouts, the CLI and the
HTTP endpoint, all on injected check results (no services)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from quant.calendar import krx_approximate_calendar
from quant.errors import ValidationError
from quantbeat.cli import main as cli
from quantbeat.infra.keys import BEAT_TICK_KEY
from quantbeat.infra.settings import reset_settings
from quantbeat.services import health
from quantbeat.services.health import (
    CachedHealth,
    CheckContext,
    ComponentHealth,
    HealthReport,
    Overall,
    ScanSummary,
    Status,
)

NOW = dt.datetime(2026, 11, 20, 7, 0, tzinfo=dt.UTC)  # Friday 16:00 KST
H, W, U = Status.HEALTHY, Status.WARNING, Status.UNHEALTHY


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    reset_settings()
    yield
    reset_settings()


def report(**statuses: Status) -> HealthReport:
    components = tuple(
        ComponentHealth(name, status, f"{name} is {status.value}")
        for name, status in statuses.items()
    )
    return HealthReport(components, NOW, 12.0)


# --- aggregation and exit codes -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("statuses", "overall", "code"),
    [
        ({"database": H, "workers": H, "beat": H}, Overall.HEALTHY, 0),
        ({"database": H, "workers": H, "beat": W}, Overall.DEGRADED, 1),
        ({"database": W, "workers": H, "beat": H}, Overall.DEGRADED, 1),
        ({"database": H, "workers": H, "beat": U, "ai": U}, Overall.DEGRADED, 1),
        ({"database": H, "workers": U, "beat": H}, Overall.UNHEALTHY, 2),
        ({"database": U, "workers": H, "beat": H}, Overall.UNHEALTHY, 2),
        ({"broker": U}, Overall.UNHEALTHY, 2),
        ({"result_backend": U, "beat": W}, Overall.UNHEALTHY, 2),
    ],
)
def test_overall_state_and_exit_code(
    statuses: dict[str, Status], overall: Overall, code: int
) -> None:
    found = report(**statuses)
    assert found.status is overall
    assert found.exit_code == code
    assert found.as_dict()["status"] == overall.value
    assert found.as_dict()["exit_code"] == code


def test_critical_components_are_the_services_work_depends_on() -> None:
    assert {"database", "broker", "result_backend", "workers"} == health.CRITICAL_COMPONENTS
    assert [name for name, _ in health.DEFAULT_CHECKS] == [
        "database",
        "broker",
        "result_backend",
        "workers",
        "beat",
        "data_freshness",
        "signals",
        "ai",
        "spool",
        "outbox",
        "snapshots",
        "crypto_jobs",
    ]
    assert [name for name, _ in health.EMBEDDED_CHECKS] == [n for n, _ in health.DEFAULT_CHECKS]


def test_reasons_put_unhealthy_and_critical_first_and_skip_healthy() -> None:
    found = report(beat=W, ai=U, database=H, workers=U)
    assert found.reasons == [
        "workers: workers is unhealthy",
        "ai: ai is unhealthy",
        "beat: beat is warning",
    ]


def test_as_dict_is_json_with_every_component() -> None:
    found = HealthReport(
        (
            ComponentHealth("database", H, "SELECT 1 in 1.2 ms", 1.234, {"url": "x"}),
            ComponentHealth("beat", U, "beat has never ticked"),
        ),
        NOW,
        50.0,
    )
    data = json.loads(json.dumps(found.as_dict()))
    assert data["checked_at"] == NOW.isoformat()
    assert data["components"]["database"] == {
        "status": "healthy",
        "critical": True,
        "latency_ms": 1.2,
        "message": "SELECT 1 in 1.2 ms",
        "details": {"url": "x"},
    }
    assert data["components"]["beat"]["critical"] is False
    assert data["components"]["beat"]["latency_ms"] is None


# --- the runner -----------------------------------------------------------------------------------
def test_run_checks_reports_a_raising_check_unhealthy_with_a_masked_message() -> None:
    def boom(ctx: CheckContext) -> ComponentHealth:
        raise ConnectionError("cannot connect to redis://admin:hunter2@db.example:6379/0")

    def fine(ctx: CheckContext) -> ComponentHealth:
        return ComponentHealth("ignored-name", H, "fine", 3.0)

    found = health.run_checks([("broker", boom), ("beat", fine)], timeout=2.0, now=NOW)
    broker = found.component("broker")
    assert broker.status is U
    assert "ConnectionError" in broker.message
    assert "hunter2" not in broker.message
    assert broker.latency_ms is not None
    beat = found.component("beat")
    assert (beat.name, beat.status, beat.latency_ms) == ("beat", H, 3.0)
    assert found.status is Overall.UNHEALTHY


def test_run_checks_reports_a_check_that_does_not_finish_as_timed_out() -> None:
    release = threading.Event()

    def hangs(ctx: CheckContext) -> ComponentHealth:
        release.wait(30)
        return ComponentHealth("workers", H, "late")

    def fine(ctx: CheckContext) -> ComponentHealth:
        return ComponentHealth("database", H, "fine")

    try:
        found = health.run_checks([("database", fine), ("workers", hangs)], timeout=0.3, now=NOW)
    finally:
        release.set()
    workers = found.component("workers")
    assert workers.status is U
    assert workers.message == "workers check did not finish within 0.3 s"
    assert workers.details == {"timed_out": True}
    assert found.component("database").status is H
    assert [c.name for c in found.components] == ["database", "workers"]
    assert found.exit_code == 2


@pytest.mark.parametrize("bad", [0, -1, 121, float("nan"), "5", True])
def test_run_checks_refuses_a_bad_timeout(bad: Any) -> None:
    with pytest.raises(ValidationError, match="timeout"):
        health.run_checks([], timeout=bad)


def test_describe_error_uses_the_driver_error_and_masks_it() -> None:
    class Wrapped(Exception):
        orig = OSError("password=s3cret refused\n  on host")

    text = health.describe_error(Wrapped("SQL noise"))
    assert text.startswith("OSError: ")
    assert "s3cret" not in text
    assert "SQL noise" not in text
    assert "\n" not in text


# --- beat -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("age", "status"),
    [(0, H), (12.5, H), (90, H), (91, W), (300, W), (301, U), (86_400, U), (-5, H)],
)
def test_beat_thresholds(age: float, status: Status) -> None:
    now = 1_800_000_000.0
    found = health.assess_beat(str(now - age).encode(), now)
    assert found.status is status
    assert found.details["age_s"] == round(max(0.0, age), 1)


def test_beat_missing_or_garbled_is_unhealthy() -> None:
    missing = health.assess_beat(None, 1_800_000_000.0)
    assert missing.status is U
    assert "never ticked" in missing.message
    assert BEAT_TICK_KEY in missing.message
    garbled = health.assess_beat(b"yesterday", 1_800_000_000.0)
    assert garbled.status is U
    assert "'yesterday'" in garbled.message


def test_beat_message_names_the_age() -> None:
    assert health.assess_beat("1000", 1030.0).message == "beat ticked 30 s ago"
    assert "has not ticked for 10 min" in health.assess_beat("1000", 1600.0).message


# --- data freshness -------------------------------------------------------------------------------
KST = dt.timezone(dt.timedelta(hours=9))
CAL = krx_approximate_calendar()


@pytest.mark.parametrize(
    ("local", "at", "expected"),
    [
        (dt.datetime(2026, 11, 20, 16, 9, tzinfo=KST), (15, 40), dt.date(2026, 11, 19)),
        (dt.datetime(2026, 11, 20, 16, 10, tzinfo=KST), (15, 40), dt.date(2026, 11, 20)),
        (dt.datetime(2026, 11, 20, 18, 39, tzinfo=KST), (18, 10), dt.date(2026, 11, 19)),
        (dt.datetime(2026, 11, 20, 18, 40, tzinfo=KST), (18, 10), dt.date(2026, 11, 20)),
        (dt.datetime(2026, 11, 22, 12, 0, tzinfo=KST), (18, 10), dt.date(2026, 11, 20)),
        (dt.datetime(2026, 11, 23, 9, 0, tzinfo=KST), (15, 40), dt.date(2026, 11, 20)),
    ],
)
def test_expected_session_waits_for_the_schedule_plus_grace(
    local: dt.datetime, at: tuple[int, int], expected: dt.date
) -> None:
    assert health.expected_session(CAL, local, at, health.DATA_GRACE) == expected


@pytest.mark.parametrize(
    ("latest", "expected", "behind"),
    [
        (dt.date(2026, 11, 20), dt.date(2026, 11, 20), 0),
        (dt.date(2026, 11, 23), dt.date(2026, 11, 20), 0),
        (dt.date(2026, 11, 20), dt.date(2026, 11, 23), 1),  # over a weekend
        (dt.date(2026, 11, 19), dt.date(2026, 11, 23), 2),
        (dt.date(2026, 11, 21), dt.date(2026, 11, 23), 1),  # a Saturday date stored
    ],
)
def test_sessions_behind_counts_sessions_not_days(
    latest: dt.date, expected: dt.date, behind: int
) -> None:
    assert health.sessions_behind(CAL, latest, expected) == behind


@pytest.mark.parametrize(
    ("latest", "behind", "status", "needle"),
    [
        (None, 0, W, "no candles stored yet"),
        (dt.date(2026, 11, 20), 0, H, "candles up to date (2026-11-20)"),
        (dt.date(2026, 11, 19), 1, W, "one session behind: latest 2026-11-19, expected 2026-11-20"),
        (dt.date(2026, 11, 18), 2, U, "2 sessions behind"),
    ],
)
def test_dataset_freshness(
    latest: dt.date | None, behind: int, status: Status, needle: str
) -> None:
    found, message = health.assess_dataset("candles", latest, dt.date(2026, 11, 20), behind)
    assert found is status
    assert needle in message


@pytest.mark.parametrize(
    ("latest", "status"),
    [
        (dt.datetime(2026, 11, 20, 5, 0, tzinfo=dt.UTC), H),  # the 05:00-06:00 bar at 07:00
        (dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC), H),
        (dt.datetime(2026, 11, 20, 4, 0, tzinfo=dt.UTC), W),
        (dt.datetime(2026, 11, 20, 3, 0, tzinfo=dt.UTC), U),
        (dt.datetime(2026, 11, 20, 5, 0), H),  # naive means UTC
        (None, W),
    ],
)
def test_crypto_freshness(latest: dt.datetime | None, status: Status) -> None:
    assert health.expected_crypto_bar(NOW) == dt.datetime(2026, 11, 20, 5, 0, tzinfo=dt.UTC)
    assert health.assess_crypto(latest, NOW)[0] is status


# --- signals --------------------------------------------------------------------------------------
def scan(
    day: dt.date, state: str, *, minutes_ago: float = 5, error: str | None = None
) -> ScanSummary:
    return ScanSummary(day, state, 7, NOW - dt.timedelta(minutes=minutes_ago), error)


FRI, THU, WED = dt.date(2026, 11, 20), dt.date(2026, 11, 19), dt.date(2026, 11, 18)


@pytest.mark.parametrize(
    ("run", "behind", "status", "needle"),
    [
        (None, 0, W, "no vcp scan has run yet"),
        (scan(FRI, "completed"), 0, H, "vcp scan of 2026-11-20 completed with 7 candidate(s)"),
        (scan(FRI, "running", minutes_ago=10), 0, H, "running for 10 min"),
        (scan(FRI, "running", minutes_ago=200), 0, W, "still running after 3.3 h"),
        (
            scan(FRI, "failed", error="boom at redis://u:pw@h/0"),
            0,
            U,
            "vcp scan of 2026-11-20 failed: boom at redis://u:***@h/0",
        ),
        (scan(THU, "completed"), 1, W, "no vcp scan for 2026-11-20 (latest 2026-11-19, completed)"),
        (scan(WED, "completed"), 2, U, "no vcp scan for 2 sessions up to 2026-11-20"),
    ],
)
def test_scan_assessment(run: ScanSummary | None, behind: int, status: Status, needle: str) -> None:
    found, message = health.assess_scan("vcp", run, FRI, behind, NOW)
    assert found is status
    assert needle in message


# --- AI -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("used", "cooldown", "status", "needle"),
    [
        (3, 0.0, H, "3/20 requests used today, no cooldown"),
        (None, 0.0, H, "kept in-process"),
        (16, 0.0, W, "16/20 of today's requests used"),
        (5, 12.0, W, "cooling down for 12 s"),
        (20, 0.0, U, "daily quota of 20 requests is used up"),
        (25, 30.0, U, "used up"),
    ],
)
def test_ai_assessment(used: int | None, cooldown: float, status: Status, needle: str) -> None:
    found = health.assess_ai(
        model="gemini-x", used=used, rpd=20, cooldown_left=cooldown, reset_in=7200.0
    )
    assert found.status is status
    assert needle in found.message


def test_ai_without_a_key_is_healthy_and_says_the_offline_analyzer_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("QUANTBEAT_GEMINI_API_KEY", raising=False)
    found = health.run_checks([("ai", health.check_ai)], timeout=2.0, now=NOW).component("ai")
    assert found.status is H
    assert "offline" in found.message


# --- workers --------------------------------------------------------------------------------------
QUEUES = ["io", "cpu", "ai"]


def test_workers_healthy_when_every_queue_has_a_live_consumer() -> None:
    found = health.assess_workers(
        QUEUES,
        ["a@h", "b@h"],
        {"a@h": ["io", "ai"], "b@h": ["cpu"]},
        {"a@h": 2, "b@h": 1},
        {"a@h": 0, "b@h": 3},
        {"io": 0, "cpu": 12, "ai": None},
    )
    assert found.status is H
    assert "2 worker(s) answer ping, 3 task(s) active, 3 reserved" in found.message
    assert "cpu: 1 worker(s), 12 waiting" in found.message
    assert "ai: 1 worker(s), unknown waiting" in found.message
    assert found.details["workers"]["b@h"] == {"queues": ["cpu"], "active": 1, "reserved": 3}
    assert found.details["queues"]["io"] == {"length": 0, "consumers": ["a@h"]}


def test_a_queue_without_a_live_consumer_is_unhealthy_and_named() -> None:
    found = health.assess_workers(
        QUEUES, ["a@h"], {"a@h": ["io", "ai"]}, {"a@h": 0}, {"a@h": 0}, {"cpu": 12}
    )
    assert found.status is U
    assert found.message.startswith("no worker answers ping for queue cpu (queue length 12)")


def test_no_worker_at_all_names_every_queue() -> None:
    found = health.assess_workers(QUEUES, [], {}, {}, {}, {"io": 0, "cpu": 4, "ai": 0})
    assert found.status is U
    assert found.message == (
        "no worker answers ping for queues io, cpu, ai (queue lengths io 0, cpu 4, ai 0)"
    )


# --- CLI ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ({"database": H, "beat": H}, 0),
        ({"database": H, "beat": W}, 1),
        ({"database": U, "beat": H}, 2),
    ],
)
def test_cli_json_prints_the_report_and_exits_with_its_code(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    statuses: dict[str, Status],
    code: int,
) -> None:
    seen: dict[str, float] = {}

    def fake(settings: Any = None, *, timeout: float, now: Any = None) -> HealthReport:
        seen["timeout"] = timeout
        return report(**statuses)

    monkeypatch.setattr(health, "check_health", fake)
    assert cli.main(["health", "--json", "--timeout", "3"]) == code
    data = json.loads(capsys.readouterr().out)
    assert data["exit_code"] == code
    assert set(data["components"]) == set(statuses)
    assert seen["timeout"] == 3.0


def test_cli_table_names_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(health, "check_health", lambda **_: report(workers=U, beat=H))
    assert cli.main(["health"]) == 2
    out = capsys.readouterr().out
    assert "unhealthy" in out
    assert "workers is unhealthy" in out


def test_cli_refuses_a_bad_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["health", "--timeout", "0"]) == cli.EXIT_USAGE
    assert "--timeout" in capsys.readouterr().err


# --- HTTP endpoint --------------------------------------------------------------------------------
def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def served() -> Iterator[tuple[str, list[HealthReport], list[int]]]:
    """A server on a free loopback port whose reports are taken from ``queue`` (the last one
    repeats); ``calls`` counts how often a report was produced."""
    queue: list[HealthReport] = []
    calls: list[int] = []

    def produce() -> HealthReport:
        calls.append(1)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    server = health.make_server("127.0.0.1", 0, CachedHealth(produce, ttl=0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host!s}:{port}", queue, calls
    finally:
        server.shutdown()
        server.server_close()


def test_http_health_is_200_unless_unhealthy(
    served: tuple[str, list[HealthReport], list[int]],
) -> None:
    base, queue, _ = served
    first = report(database=H)
    queue.extend([first, report(database=H, beat=U), report(workers=U)])
    assert get(f"{base}/health") == (200, first.as_dict())
    code, body = get(f"{base}/health")
    assert (code, body["status"]) == (200, "degraded")
    code, body = get(f"{base}/health/")
    assert (code, body["status"]) == (503, "unhealthy")
    assert body["reasons"] == ["workers: workers is unhealthy"]


def test_http_live_and_unknown_paths(served: tuple[str, list[HealthReport], list[int]]) -> None:
    base, queue, calls = served
    queue.append(report(workers=U))
    assert get(f"{base}/health/live") == (200, {"status": "alive"})
    assert get(f"{base}/nope")[0] == 404
    assert calls == []  # neither ran a check


def test_cached_health_reuses_a_report_within_its_ttl() -> None:
    calls: list[int] = []

    def produce() -> HealthReport:
        calls.append(1)
        return report(database=H)

    cache = CachedHealth(produce, ttl=3600)
    first = cache.get()
    assert cache.get() is first
    assert len(calls) == 1
    cache.ttl = 0
    cache.get()
    assert len(calls) == 2


def test_snapshot_freshness() -> None:
    now = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)  # 11:00 KST
    closed = health.assess_snapshots(False, None, now, 10)
    assert closed.status == Status.HEALTHY
    none = health.assess_snapshots(True, None, now, 10)
    assert none.status == Status.WARNING
    assert "no intraday snapshot was ever taken" in none.message
    fresh = health.assess_snapshots(True, now - dt.timedelta(minutes=21), now, 10)
    assert fresh.status == Status.HEALTHY
    stale = health.assess_snapshots(True, now - dt.timedelta(minutes=22), now, 10)
    assert stale.status == Status.WARNING
    assert "expected every 10 min" in stale.message
