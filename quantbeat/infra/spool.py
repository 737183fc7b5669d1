"""A durable local spool for history records the database refused.

When a worker cannot write a job-history or dead-letter record (PostgreSQL down, a network
cut), the record is not only logged: :func:`write` keeps it as one JSON file in
``<QUANTBEAT_DATA_DIR>/spool/`` — written to a temporary file, ``fsync``'d, renamed into place
and the directory ``fsync``'d, so a file under its final name is always complete and survives
a crash or a power cut. The reaper (:func:`quantbeat.services.reaper.housekeeping`) calls
:func:`replay` with a function that writes one record into the database; a replayed file is
deleted only after that write committed. ``quantbeat health`` reports how many wait
(:func:`status`).

Files: ``<time_ns>-<kind>-<uuid>.json`` holding ``{"version": 1, "kind": …, "id": …,
"spooled_at": ISO, "record": {…}}``; replayed oldest first. A file that cannot be read as such
a record is moved to ``spool/corrupt/`` (kept for an operator, logged ``spool.corrupt`` with the
reason) and never retried. One replay runs at a time per spool directory (an ``flock`` on
``spool/.lock``, released if the process dies); a second one finds it busy and does nothing.

The spool is local to each host: every host's reaper (any ``io`` worker running
``quantbeat.ops.reap``) replays only its own ``QUANTBEAT_DATA_DIR``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from quantbeat.infra.settings import get_settings

log = structlog.get_logger("quantbeat.spool")

#: Format version written in every file.
VERSION = 1
#: Sub-directory (of the spool) where unreadable files are kept aside.
CORRUPT_DIR = "corrupt"
#: Temporary files (``.<name>.tmp``) older than this many seconds were left by a crash
#: mid-write: they are deleted by the next replay.
STALE_TMP_SECONDS = 3_600.0
#: Consecutive failed records after which a replay stops (the database is still down).
MAX_CONSECUTIVE_FAILURES = 3

#: What a replay's ``apply`` raises for a record it cannot understand: the file is corrupt.
INVALID_RECORD_ERRORS: tuple[type[Exception], ...] = (KeyError, TypeError, ValueError)


def spool_dir(data_dir: Path | None = None) -> Path:
    """The spool directory: ``<data_dir>/spool`` (default ``QUANTBEAT_DATA_DIR``)."""
    base = data_dir if data_dir is not None else get_settings().data_dir
    return base / "spool"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(kind: str, record: Mapping[str, Any], *, directory: Path | None = None) -> Path | None:
    """Keep ``record`` (JSON-safe; datetimes are written as ISO strings by ``default=str``) as
    one durable file of ``kind``; return its path, or ``None`` when it could not be written
    (then ``spool.write_failed`` is logged). Never raises."""
    where = directory if directory is not None else spool_dir()
    ident = uuid.uuid4().hex
    name = f"{time.time_ns():020d}-{kind}-{ident}.json"
    document = {
        "version": VERSION,
        "kind": kind,
        "id": ident,
        "spooled_at": dt.datetime.now(dt.UTC).isoformat(),
        "record": record,
    }
    tmp = where / f".{name}.tmp"
    try:
        data = json.dumps(document, default=str, ensure_ascii=False).encode("utf-8")
        where.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        final = where / name
        os.rename(tmp, final)
        _fsync_dir(where)
    except Exception as exc:
        log.error("spool.write_failed", kind=kind, directory=str(where), error=f"{exc!r}"[:500])
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        return None
    log.warning("spool.written", kind=kind, file=str(final))
    return final


def pending(directory: Path | None = None) -> list[Path]:
    """The spooled files waiting for replay, oldest first."""
    where = directory if directory is not None else spool_dir()
    try:
        return sorted(p for p in where.glob("*.json") if p.is_file())
    except OSError:
        return []


@dataclass(frozen=True)
class SpoolStatus:
    """How many records wait in ``directory`` and how many corrupt files are kept aside."""

    directory: Path
    waiting: int
    corrupt: int
    oldest: dt.datetime | None


def status(directory: Path | None = None) -> SpoolStatus:
    """The spool's state (a missing directory is an empty spool)."""
    where = directory if directory is not None else spool_dir()
    files = pending(where)
    oldest = None
    if files:
        try:
            oldest = dt.datetime.fromtimestamp(files[0].stat().st_mtime, dt.UTC)
        except OSError:
            oldest = None
    return SpoolStatus(where, len(files), len(pending(where / CORRUPT_DIR)), oldest)


@dataclass
class ReplayReport:
    """What one replay did: records written, already written before (nothing changed), kept
    for the next replay (their write failed), moved aside as corrupt; ``busy`` when another
    replay held the spool."""

    replayed: int = 0
    already: int = 0
    failed: int = 0
    corrupt: list[str] = field(default_factory=list)
    remaining: int = 0
    busy: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "replayed": self.replayed,
            "already": self.already,
            "failed": self.failed,
            "corrupt": list(self.corrupt),
            "remaining": self.remaining,
            "busy": self.busy,
        }


@contextmanager
def _locked(where: Path) -> Iterator[bool]:
    where.mkdir(parents=True, exist_ok=True)
    fd = os.open(where / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _set_aside(path: Path, why: str) -> None:
    target_dir = path.parent / CORRUPT_DIR
    target_dir.mkdir(exist_ok=True)
    target = target_dir / path.name
    os.rename(path, target)
    _fsync_dir(path.parent)
    log.error("spool.corrupt", file=str(path), kept_as=str(target), reason=why[:500])


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    """``(kind, record)`` of a spooled file; raises ValueError (with the reason) if it is not
    one."""
    try:
        document = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise ValueError("not a spool record (no version 1 envelope)")
    kind, record = document.get("kind"), document.get("record")
    if not isinstance(kind, str) or not isinstance(record, dict):
        raise ValueError("the envelope has no kind or no record")
    return kind, record


def _remove_stale_tmp(where: Path) -> None:
    cutoff = time.time() - STALE_TMP_SECONDS
    for tmp in where.glob(".*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                log.warning("spool.stale_tmp_removed", file=str(tmp))
        except OSError:
            continue


def replay(
    apply: Callable[[str, dict[str, Any]], bool],
    *,
    directory: Path | None = None,
    limit: int = 1_000,
) -> ReplayReport:
    """Write up to ``limit`` spooled records, oldest first, with ``apply(kind, record)`` (which
    commits, and returns ``False`` if the record was already written) and delete each file once
    ``apply`` returned.

    ``apply`` raising one of :data:`INVALID_RECORD_ERRORS`, or a file that cannot be read, moves
    the file to ``spool/corrupt/``; any other exception keeps the file for the next replay
    (``spool.replay_failed``), and :data:`MAX_CONSECUTIVE_FAILURES` of them in a row end this
    replay. Never raises for a record; returns what was done.
    """
    where = directory if directory is not None else spool_dir()
    report = ReplayReport()
    if not where.is_dir():
        return report
    with _locked(where) as acquired:
        if not acquired:
            report.busy = True
            report.remaining = len(pending(where))
            return report
        _remove_stale_tmp(where)
        streak = 0
        for path in pending(where)[:limit]:
            try:
                kind, record = _read(path)
            except ValueError as exc:
                _set_aside(path, str(exc))
                report.corrupt.append(path.name)
                continue
            except OSError as exc:  # vanished or unreadable now: try again next time
                log.warning("spool.unreadable", file=str(path), error=f"{exc!r}"[:300])
                report.failed += 1
                continue
            try:
                wrote = apply(kind, record)
            except INVALID_RECORD_ERRORS as exc:
                _set_aside(path, f"{type(exc).__name__}: {exc}")
                report.corrupt.append(path.name)
                continue
            except Exception as exc:
                report.failed += 1
                streak += 1
                log.warning("spool.replay_failed", file=str(path), error=f"{exc!r}"[:500])
                if streak >= MAX_CONSECUTIVE_FAILURES:
                    break
                continue
            streak = 0
            path.unlink(missing_ok=True)
            if wrote:
                report.replayed += 1
            else:
                report.already += 1
        _fsync_dir(where)
        report.remaining = len(pending(where))
    if report.replayed or report.already or report.corrupt or report.failed:
        log.info("spool.replayed", directory=str(where), **report.as_dict())
    return report
