"""The local spool (quantbeat.infra.spool): durable writes, replay, idempotence, corrupt files,
and the health component that reports it. The database side of a replay (db.jobs.apply_spooled)
is in test_history_records.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from quantbeat.infra import spool
from quantbeat.services.health import Status, assess_spool

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def _write(where: Path, n: int = 1, kind: str = "dead_letter") -> list[Path]:
    out = []
    for i in range(n):
        path = spool.write(kind, {"n": i, "at": NOW}, directory=where)
        assert path is not None
        out.append(path)
    return out


def test_a_record_is_one_complete_private_json_file_and_no_temporary_is_left(
    tmp_path: Path,
) -> None:
    where = tmp_path / "spool"
    (path,) = _write(where)
    assert path.parent == where
    assert path.name.endswith(".json")
    assert "-dead_letter-" in path.name
    document = json.loads(path.read_text())
    assert document["version"] == spool.VERSION
    assert document["kind"] == "dead_letter"
    assert document["record"] == {"n": 0, "at": str(NOW)}  # datetimes as ISO text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in where.iterdir()) == [path.name]  # no .tmp left behind


def test_files_replay_oldest_first_and_are_deleted_once_written(tmp_path: Path) -> None:
    where = tmp_path / "spool"
    paths = _write(where, 3)
    assert spool.pending(where) == paths
    seen: list[int] = []

    def apply(kind: str, record: dict[str, Any]) -> bool:
        assert kind == "dead_letter"
        seen.append(record["n"])
        return True

    report = spool.replay(apply, directory=where)
    assert seen == [0, 1, 2]
    assert (report.replayed, report.failed, report.remaining) == (3, 0, 0)
    assert spool.pending(where) == []
    # replaying again writes nothing: the files are gone
    again = spool.replay(apply, directory=where)
    assert (again.replayed, again.already, seen) == (0, 0, [0, 1, 2])


def test_a_record_already_in_the_database_is_counted_apart(tmp_path: Path) -> None:
    where = tmp_path / "spool"
    _write(where, 2)
    report = spool.replay(lambda kind, record: record["n"] == 0, directory=where)
    assert (report.replayed, report.already, report.remaining) == (1, 1, 0)


def test_a_failed_write_keeps_the_file_and_a_run_of_failures_stops_the_replay(
    tmp_path: Path,
) -> None:
    where = tmp_path / "spool"
    _write(where, 5)
    calls: list[int] = []

    def down(kind: str, record: dict[str, Any]) -> bool:
        calls.append(record["n"])
        raise ConnectionError("database down")

    with capture_logs() as logs:
        report = spool.replay(down, directory=where)
    assert calls == [0, 1, 2]  # MAX_CONSECUTIVE_FAILURES, then it gives up for this pass
    assert (report.failed, report.remaining) == (3, 5)
    assert [e["event"] for e in logs].count("spool.replay_failed") == 3
    # the database is back: everything is written once
    report = spool.replay(lambda kind, record: True, directory=where)
    assert (report.replayed, report.remaining) == (5, 0)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'{"kind": "dead_letter", "record": {}}', "no version 1 envelope"),
        (b'{"version": 1, "kind": "dead_letter", "record": []}', "no kind or no record"),
    ],
)
def test_a_corrupt_file_is_kept_aside_with_a_clear_log_and_the_rest_replays(
    tmp_path: Path, content: bytes, why: str
) -> None:
    where = tmp_path / "spool"
    good = _write(where, 2)
    bad = where / f"{time.time_ns() - 10**12:020d}-dead_letter-bad.json"  # oldest
    bad.write_bytes(content)
    with capture_logs() as logs:
        report = spool.replay(lambda kind, record: True, directory=where)
    assert report.corrupt == [bad.name]
    assert report.replayed == len(good)
    assert not bad.exists()
    kept = where / spool.CORRUPT_DIR / bad.name
    assert kept.read_bytes() == content
    (event,) = [e for e in logs if e["event"] == "spool.corrupt"]
    assert event["file"] == str(bad)
    assert event["kept_as"] == str(kept)
    assert why in event["reason"]
    # never retried, but counted by the status
    assert spool.replay(lambda kind, record: True, directory=where).corrupt == []
    assert spool.status(where).corrupt == 1


def test_a_record_the_database_side_cannot_understand_is_corrupt(tmp_path: Path) -> None:
    where = tmp_path / "spool"
    (path,) = _write(where, kind="mystery")

    def apply(kind: str, record: dict[str, Any]) -> bool:
        raise ValueError(f"unknown spool record kind {kind!r}")

    report = spool.replay(apply, directory=where)
    assert report.corrupt == [path.name]
    assert (where / spool.CORRUPT_DIR / path.name).exists()


def test_one_replay_at_a_time(tmp_path: Path) -> None:
    where = tmp_path / "spool"
    _write(where, 2)
    inner: list[spool.ReplayReport] = []

    def apply(kind: str, record: dict[str, Any]) -> bool:
        if not inner:  # a second replay while the first holds the spool
            inner.append(spool.replay(lambda k, r: True, directory=where))
        return True

    report = spool.replay(apply, directory=where)
    assert inner[0].busy
    assert inner[0].replayed == 0
    assert report.replayed == 2


def test_an_unwritable_spool_returns_none_and_logs(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with capture_logs() as logs:
        assert spool.write("dead_letter", {"n": 1}, directory=blocker / "spool") is None
    assert [e["event"] for e in logs] == ["spool.write_failed"]


def test_a_temporary_file_left_by_a_crash_is_removed_when_stale(tmp_path: Path) -> None:
    where = tmp_path / "spool"
    _write(where)
    stale = where / ".123-dead_letter-x.json.tmp"
    stale.write_text('{"half')
    old = time.time() - spool.STALE_TMP_SECONDS - 10
    os.utime(stale, (old, old))
    fresh = where / ".456-dead_letter-y.json.tmp"
    fresh.write_text('{"being written')
    report = spool.replay(lambda kind, record: True, directory=where)
    assert report.replayed == 1
    assert report.corrupt == []
    assert not stale.exists()
    assert fresh.exists()


def test_a_missing_spool_is_empty(tmp_path: Path) -> None:
    where = tmp_path / "nowhere"
    assert spool.status(where) == spool.SpoolStatus(where, 0, 0, None)
    assert spool.replay(lambda kind, record: True, directory=where).as_dict()["remaining"] == 0
    assert not where.exists()


def test_the_spool_lives_under_the_data_dir(tmp_path: Path) -> None:
    assert spool.spool_dir(tmp_path) == tmp_path / "spool"


# --- health -------------------------------------------------------------------------------------
def test_health_is_healthy_with_an_empty_spool(tmp_path: Path) -> None:
    found = assess_spool(spool.status(tmp_path / "spool"), NOW)
    assert found.status is Status.HEALTHY
    assert found.details["waiting"] == 0


def test_health_warns_naming_how_many_records_wait_and_corrupt_files(tmp_path: Path) -> None:
    where = tmp_path / "spool"
    _write(where, 3)
    found = assess_spool(spool.status(where), dt.datetime.now(dt.UTC))
    assert found.status is Status.WARNING
    assert "3 history record(s) wait in the spool" in found.message
    assert str(where) in found.message
    assert found.details["waiting"] == 3
    assert found.details["corrupt"] == 0
    (where / spool.CORRUPT_DIR).mkdir()
    (where / spool.CORRUPT_DIR / "x.json").write_text("{")
    found = assess_spool(spool.status(where), dt.datetime.now(dt.UTC))
    assert "1 corrupt spool file(s)" in found.message
    assert found.status is Status.WARNING
