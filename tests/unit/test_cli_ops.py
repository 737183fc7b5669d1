"""``quantbeat jobs`` / ``quantbeat dlq`` without services: time options, task globs, and the
usage errors caught before any database is touched."""

from __future__ import annotations

import datetime as dt

import pytest

from db.jobs import glob_to_like
from quant.errors import ValidationError
from quantbeat.cli import main as cli
from quantbeat.infra.timespec import parse_duration, parse_since

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90s", dt.timedelta(seconds=90)),
        ("15m", dt.timedelta(minutes=15)),
        ("1h", dt.timedelta(hours=1)),
        ("2d", dt.timedelta(days=2)),
        (" 3h ", dt.timedelta(hours=3)),
    ],
)
def test_durations(value: str, expected: dt.timedelta) -> None:
    assert parse_duration(value, option="--older-than") == expected
    assert parse_since(value, option="--since", now=NOW) == NOW - expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-20", dt.datetime(2026, 11, 20, tzinfo=dt.UTC)),
        ("2026-11-20T09:30", dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)),  # naive = UTC
        ("2026-11-20T09:00:00+09:00", dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC)),
        ("2026-11-20T09:00:00Z", dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)),
    ],
)
def test_iso_points_in_time(value: str, expected: dt.datetime) -> None:
    parsed = parse_since(value, option="--since", now=NOW)
    assert parsed == expected
    assert parsed.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    "value", ["", "1", "h", "1w", "-1h", "0s", "1.5h", "yesterday", "2026-13-01"]
)
def test_bad_times_name_the_option_and_the_value(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_since(value, option="--since", now=NOW)
    assert "--since" in str(caught.value)
    assert repr(value) in str(caught.value)
    assert caught.value.field == "--since"


def test_durations_refuse_points_in_time() -> None:
    with pytest.raises(ValidationError, match="--older-than"):
        parse_duration("2026-11-20", option="--older-than")


@pytest.mark.parametrize(
    ("glob", "like"),
    [
        ("quantbeat.collect.*", "quantbeat.collect.%"),
        ("quantbeat.ops.test_?", "quantbeat.ops.test\\__"),
        ("100%", "100\\%"),
        ("a\\b", "a\\\\b"),
        ("quantbeat.scans.run", "quantbeat.scans.run"),
    ],
)
def test_task_globs_become_escaped_like_patterns(glob: str, like: str) -> None:
    assert glob_to_like(glob) == like


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["jobs", "list", "--since", "2x"], "--since"),
        (["jobs", "list", "--state", "bogus"], "bogus"),
        (["jobs", "list", "--failed", "--state", "succeeded"], "--failed"),
        (["jobs", "list", "--limit", "0"], "--limit"),
        (["dlq", "list", "--since", "tomorrow"], "'tomorrow'"),
        (["dlq", "purge"], "needs a filter"),
        (["dlq", "purge", "--reason", "unknown_task"], "--yes"),
        (["dlq", "purge", "--older-than", "soon", "--yes"], "--older-than"),
        (["dlq", "replay"], "IDs, --all or --reason"),
        (["dlq", "replay", "3", "--all"], "not both"),
    ],
)
def test_usage_errors_exit_2_and_say_why(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == cli.EXIT_USAGE
    assert named in capsys.readouterr().err
