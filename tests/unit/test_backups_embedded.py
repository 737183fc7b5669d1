"""Backups of the embedded default's SQLite file (issue 22): the backup API's copy and its
manifest, a verified restore into a new file, damaged and tampered backups refused with the
target left untouched, a non-empty target refused, retention, the CLI, and the same round trip
through S3 (moto's in-memory S3). The PostgreSQL path: tests/integration/test_backups.py."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from db import migrate
from db.backup import compare, read_manifest, sqlite_sums
from quant.errors import ValidationError
from quantbeat.cli.main import app as cli_app
from quantbeat.infra.settings import reset_settings
from quantbeat.services.backups import BackupError, backup, list_backups, restore


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    path = tmp_path / "quantbeat.sqlite"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        INSERT INTO instruments (market, ticker, name, currency, listing_status, source)
        VALUES ('KOSPI', '005930', '삼성전자', 'KRW', 'listed', 'simulated'),
               ('KOSDAQ', '035720', '카카오', 'KRW', 'listed', 'simulated');
        """
    )
    for k in range(300):
        conn.execute(
            "INSERT INTO daily_candles (instrument_id, trade_date, open, high, low, close, "
            "volume, traded_value, source, quality_flags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                1 + k % 2,
                (dt.date(2025, 1, 1) + dt.timedelta(days=k // 2)).isoformat(),
                70_000.0 + k,
                71_000.5,
                69_999.25,
                0.1 + 0.2 * k,
                1e6 + k,
                None if k == 7 else 7.1e10,
                "simulated",
                "[]",
            ),
        )
    conn.commit()
    conn.close()
    monkeypatch.setenv("QUANTBEAT_DATABASE_URL", url)
    monkeypatch.setenv("QUANTBEAT_BACKUP_DIR", str(tmp_path / "backups"))
    reset_settings()
    yield url
    reset_settings()


def _sums(path: Path) -> Any:
    conn = sqlite3.connect(path)
    try:
        return sqlite_sums(conn)
    finally:
        conn.close()


def test_backup_and_restore_round_trip(source: str, tmp_path: Path) -> None:
    lines: list[str] = []
    summary = backup(progress=lines.append)
    folder = tmp_path / "backups"
    assert summary["location"] == str(folder)
    manifest = read_manifest(folder / summary["manifest"])
    assert manifest.engine == "sqlite"
    assert manifest.tables["daily_candles"].rows == 300
    assert manifest.revision is not None
    original = _sums(tmp_path / "quantbeat.sqlite")
    assert compare(manifest.tables, original) == []
    assert any("copying" in line for line in lines)

    target = tmp_path / "restored" / "new.sqlite"
    done = restore(str(folder / summary["dump"]), into=f"sqlite:///{target}")
    assert done["tables"] == len(original)
    assert _sums(target) == original
    # a restore into the now populated file is refused
    with pytest.raises(ValidationError, match=r"already has \d+ table\(s\)"):
        restore(str(folder / summary["manifest"]), into=f"sqlite:///{target}")


def test_the_checksum_sees_a_changed_value(source: str, tmp_path: Path) -> None:
    before = _sums(tmp_path / "quantbeat.sqlite")
    conn = sqlite3.connect(tmp_path / "quantbeat.sqlite")
    conn.execute("UPDATE daily_candles SET close = close + 1e-9 WHERE id = 5")
    conn.commit()
    conn.close()
    after = _sums(tmp_path / "quantbeat.sqlite")
    assert compare(after, before) == [
        f"table daily_candles has 300 rows (checksum {after['daily_candles'].checksum}), the "
        f"manifest says 300 ({before['daily_candles'].checksum})"
    ]


@pytest.mark.parametrize("damage", ["corrupted", "truncated"])
def test_damaged_backups_are_refused_and_the_target_untouched(
    source: str, tmp_path: Path, damage: str
) -> None:
    summary = backup()
    dump = tmp_path / "backups" / summary["dump"]
    data = bytearray(dump.read_bytes())
    if damage == "corrupted":
        data[len(data) // 2] ^= 0x01
    else:
        data = data[:-4096]
    dump.write_bytes(bytes(data))
    target = tmp_path / "target.sqlite"
    with pytest.raises(ValidationError, match=f"is {damage}") as refused:
        restore(str(dump), into=f"sqlite:///{target}")
    assert str(dump) in str(refused.value)
    assert not target.exists()


def test_a_tampered_manifest_is_refused_and_nothing_is_restored(
    source: str, tmp_path: Path
) -> None:
    summary = backup()
    meta = tmp_path / "backups" / summary["manifest"]
    data = json.loads(meta.read_text())
    data["tables"]["instruments"]["rows"] = 3
    meta.write_text(json.dumps(data))
    target = tmp_path / "target.sqlite"
    with pytest.raises(BackupError, match="table instruments has 2 rows"):
        restore(str(meta), into=f"sqlite:///{target}")
    assert not target.exists()
    assert not (tmp_path / "target.sqlite.restoring").exists()


def test_malformed_manifests_name_the_problem(source: str, tmp_path: Path) -> None:
    summary = backup()
    meta = tmp_path / "backups" / summary["manifest"]
    good = json.loads(meta.read_text())
    for change, message in (
        ({"format": "other/9"}, "has format 'other/9'"),
        ({"tables": {"x; DROP TABLE y": {"rows": 1, "checksum": "1"}}}, "malformed"),
        ({"file": "../etc/passwd"}, "bad file name"),
    ):
        meta.write_text(json.dumps(good | change))
        with pytest.raises(ValidationError, match=message):
            restore(str(meta), into=f"sqlite:///{tmp_path / 'never.sqlite'}")
    meta.write_text("{not json")
    with pytest.raises(ValidationError, match="unreadable"):
        read_manifest(meta)


def test_a_postgres_backup_is_not_restored_into_sqlite(source: str, tmp_path: Path) -> None:
    summary = backup()
    with pytest.raises(ValidationError, match="is a sqlite backup"):
        restore(
            str(tmp_path / "backups" / summary["dump"]),
            into="postgresql+psycopg://u:hidden-pw@127.0.0.1:1/x",
        )


def test_retention_keeps_the_newest_and_drops_partials(source: str, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    (folder / "quantbeat-20200101T000000Z.sqlite.partial").write_bytes(b"half")
    start = dt.datetime(2026, 12, 1, 18, 30, tzinfo=dt.UTC)
    deleted: list[str] = []
    for day in range(4):
        deleted += backup(keep=2, now=start + dt.timedelta(days=day))["deleted"]
    assert [m.name for m in list_backups(folder)] == [
        "quantbeat-20261204T183000Z",
        "quantbeat-20261203T183000Z",
    ]
    assert deleted == ["quantbeat-20261201T183000Z", "quantbeat-20261202T183000Z"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"quantbeat-2026120{d}T183000Z.{ext}" for d in (3, 4) for ext in ("sqlite", "manifest.json")
    )
    with pytest.raises(ValidationError, match="keep must be >= 1"):
        backup(keep=0)


def test_the_cli(source: str, tmp_path: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(cli_app, ["db", "backup", "--json"], env={"COLUMNS": "200"})
    assert made.exit_code == 0, made.output
    # (invoked without the entrypoint, whose logging setup sends log lines to stderr, so
    # structlog's default prints its line first)
    shown = json.loads(made.stdout[made.stdout.index("{\n") :])
    assert shown["engine"] == "sqlite"
    dump = tmp_path / "backups" / shown["dump"]
    target = tmp_path / "cli.sqlite"
    done = runner.invoke(
        cli_app,
        ["db", "restore", str(dump), "--into", f"sqlite:///{target}"],
        env={"COLUMNS": "200"},
    )
    assert done.exit_code == 0, done.output
    assert "restored and verified" in done.output
    assert _sums(target) == _sums(tmp_path / "quantbeat.sqlite")


def test_backup_to_s3_and_restore_from_it(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTINGKEYID0002")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "backup-secret-never-shown")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="qb-backups")
        start = dt.datetime(2026, 12, 1, 18, 30, tzinfo=dt.UTC)
        for day in range(3):
            summary = backup(
                to="s3://qb-backups/nightly", keep=2, now=start + dt.timedelta(days=day)
            )
        assert summary["location"] == "s3://qb-backups/nightly"
        assert summary["deleted"] == ["quantbeat-20261201T183000Z"]
        keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="qb-backups")["Contents"])
        assert keys == sorted(
            f"nightly/quantbeat-2026120{d}T183000Z.{ext}"
            for d in (2, 3)
            for ext in ("sqlite", "manifest.json")
        )
        assert not list(tmp_path.glob("backups/*"))  # nothing left behind locally
        target = tmp_path / "from-s3.sqlite"
        restore(
            f"s3://qb-backups/nightly/{summary['name']}.manifest.json", into=f"sqlite:///{target}"
        )
        assert _sums(target) == _sums(tmp_path / "quantbeat.sqlite")
        with pytest.raises(ValidationError, match="could not be downloaded"):
            restore("s3://qb-backups/nightly/quantbeat-19990101T000000Z.sqlite", into="sqlite:///x")
