"""Backups that restore (issue 22): a populated PostgreSQL database backed up with
``quantbeat db backup`` (pg_dump from one snapshot, a manifest of every table's count and
checksum), restored into an empty database on a throwaway PostgreSQL server of the test's own
and compared table by table; a corrupted, a truncated and a tampered backup are refused with
a clear error and leave the target empty; a non-empty target is refused; retention keeps the
newest; passwords never show."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from db.backup import TableSum, pg_settings_sql, pg_table_query, read_manifest
from db.engine import session_scope
from quant.errors import ValidationError
from quantbeat.cli.main import app as cli_app
from quantbeat.services.backups import BackupError, backup, list_backups, restore
from tests.faults.servers import ThrowawayPostgres
from tests.integration.helpers import small_kospi_history

pytestmark = pytest.mark.usefixtures("clean_db")


def _sums(url: str) -> dict[str, TableSum]:
    """Every public table's count and checksum, computed here (not by the code under test)."""
    plain = url.replace("+psycopg", "")
    with psycopg.connect(plain) as conn:
        for statement in pg_settings_sql().strip().splitlines():
            conn.execute(statement)
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        out = {}
        for table in tables:
            count, checksum = conn.execute(pg_table_query(table)).fetchone()  # type: ignore[misc]
            out[table] = TableSum(int(count), str(checksum))
        return out


def _tables(url: str) -> int:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture(scope="module")
def server() -> Iterator[ThrowawayPostgres]:
    with ThrowawayPostgres(dbname="quantbeat_restore") as pg:
        yield pg


def _fresh(server: ThrowawayPostgres, name: str) -> str:
    with psycopg.connect(
        f"postgresql://postgres@{server.host}:{server.port}/postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres:not-a-real-pw-7731@{server.host}:{server.port}/{name}"


def _dead_letter(session: Any, fingerprint: str, at: str) -> None:
    session.execute(
        text(
            "INSERT INTO dead_letters (fingerprint, task_id, task_name, payload, reason, error, "
            "occurrences, first_seen, last_seen) VALUES (:f, 't-1', 'quantbeat.x', "
            "CAST(:p AS jsonb), 'unit', 'err ✓ 종가', 1, CAST(:at AS timestamptz), "
            "CAST(:at AS timestamptz))"
        ),
        {"f": fingerprint, "p": '{"a": 1.5e-300, "b": [1, null]}', "at": at},
    )


@pytest.fixture
def populated(database: str) -> dict[str, TableSum]:
    small_kospi_history(database, "2026-09-01", "2026-10-30", universe_size=30)
    with session_scope() as session:  # values that test the row text: NULLs, JSON, time zones
        _dead_letter(session, "fp-1", "2026-11-20 15:30:00+09")
    sums = _sums(database)
    assert sums["daily_candles"].rows >= 400
    assert sums["dead_letters"].rows == 1
    return sums


def test_backup_then_restore_into_an_empty_database_is_identical(
    database: str, populated: dict[str, TableSum], server: ThrowawayPostgres, tmp_path: Path
) -> None:
    lines: list[str] = []
    summary = backup(to=str(tmp_path), database_url=database, progress=lines.append)
    dump = tmp_path / summary["dump"]
    manifest = read_manifest(tmp_path / summary["manifest"])
    assert manifest.engine == "postgresql"
    assert manifest.tables == populated  # the manifest's sums are the database's
    assert manifest.revision is not None
    assert dump.stat().st_size == manifest.bytes
    assert any(line.startswith("checksummed daily_candles") for line in lines)  # progress

    target = _fresh(server, "restored_ok")
    done = restore(str(dump), into=target)
    assert _sums(target) == populated
    assert done["rows"] == sum(t.rows for t in populated.values())
    assert "not-a-real-pw-7731" not in json.dumps(done)

    # a second restore into the now populated database is refused, and names it
    with pytest.raises(ValidationError, match=r"already has \d+ table\(s\)") as refused:
        restore(str(dump), into=target)
    assert "not-a-real-pw-7731" not in str(refused.value)


@pytest.mark.parametrize("damage", ["corrupted", "truncated"])
def test_a_damaged_file_is_refused_before_anything_is_restored(
    database: str,
    populated: dict[str, TableSum],
    server: ThrowawayPostgres,
    tmp_path: Path,
    damage: str,
) -> None:
    summary = backup(to=str(tmp_path), database_url=database)
    dump = tmp_path / summary["dump"]
    data = bytearray(dump.read_bytes())
    if damage == "corrupted":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) * 2 // 3]
    dump.write_bytes(bytes(data))
    target = _fresh(server, f"restored_{damage}")
    with pytest.raises(ValidationError, match=f"is {damage}") as refused:
        restore(str(dump), into=target)
    assert str(dump) in str(refused.value)
    assert _tables(target) == 0


def test_a_restore_that_does_not_verify_is_rolled_back(
    database: str, populated: dict[str, TableSum], server: ThrowawayPostgres, tmp_path: Path
) -> None:
    # the dump is intact but the manifest expects one more candle: the restore runs, the
    # verification at its end fails, and the whole transaction is rolled back
    summary = backup(to=str(tmp_path), database_url=database)
    meta = tmp_path / summary["manifest"]
    data = json.loads(meta.read_text())
    data["tables"]["daily_candles"]["rows"] += 1
    meta.write_text(json.dumps(data))
    target = _fresh(server, "restored_tampered")
    with pytest.raises(BackupError, match=r"rolled back.*table daily_candles has"):
        restore(str(meta), into=target)
    assert _tables(target) == 0


def test_the_manifest_describes_one_snapshot_while_writes_go_on(
    database: str, populated: dict[str, TableSum], server: ThrowawayPostgres, tmp_path: Path
) -> None:
    # rows written after the backup started are in neither the dump nor the manifest: the
    # restore verifies (it would not if the sums and the dump saw different moments)
    def write_meanwhile(line: str) -> None:
        if line.startswith("checksummed"):
            with session_scope() as session:
                _dead_letter(session, f"later-{line[:40]}", "2026-12-06 10:00:00+00")

    summary = backup(to=str(tmp_path), database_url=database, progress=write_meanwhile)
    assert _sums(database)["dead_letters"].rows > populated["dead_letters"].rows
    target = _fresh(server, "restored_snapshot")
    restore(str(tmp_path / summary["dump"]), into=target)
    assert _sums(target)["dead_letters"] == populated["dead_letters"]


def test_retention_and_the_cli(
    database: str, populated: dict[str, TableSum], tmp_path: Path
) -> None:
    start = dt.datetime(2026, 12, 1, 18, 30, tzinfo=dt.UTC)
    for day in range(3):
        backup(to=str(tmp_path), keep=2, database_url=database, now=start + dt.timedelta(days=day))
    kept = [m.name for m in list_backups(tmp_path)]
    assert kept == ["quantbeat-20261203T183000Z", "quantbeat-20261202T183000Z"]
    assert not list(tmp_path.glob("quantbeat-20261201T*"))

    missing = CliRunner().invoke(
        cli_app,
        ["db", "restore", str(tmp_path / "nothing.dump"), "--into", database],
        env={"COLUMNS": "200"},
    )
    assert missing.exit_code != 0
    assert isinstance(missing.exception, ValidationError)  # the entrypoint maps it to exit 2
    assert "nothing.manifest.json not found" in str(missing.exception)
