"""Backups that restore: ``quantbeat db backup`` / ``quantbeat db restore`` and the nightly
``quantbeat.ops.backup`` task.

**PostgreSQL.** ``pg_dump --format=custom`` (compressed, one file) reads a snapshot exported
by a ``REPEATABLE READ`` transaction that stays open meanwhile; every table's row count and
checksum (:mod:`db.backup`) is taken in that same transaction, beside the dump, so the
manifest describes exactly the dumped rows while workers keep writing. A restore checks the
file's size and SHA-256 first (a truncated or corrupted file is refused before anything is
touched), refuses a target that already has tables, then runs ``pg_restore``'s SQL through
``psql --single-transaction`` with a verification block at the end: a failure anywhere — a
bad archive, a constraint, a count or checksum that does not match — rolls the whole restore
back, so nothing is ever half-restored. (One transaction rules out ``pg_restore --jobs``:
atomicity was chosen over a parallel restore.)

**SQLite** (the embedded default): the backup API copies the file page by page while it is
in use; the manifest is computed from the copy. A restore verifies the file, copies it beside
the target, checks it (``PRAGMA integrity_check`` and the sums), then renames it into place.

**Where.** A directory (default ``QUANTBEAT_BACKUP_DIR``, ``<data_dir>/backups``), or
``s3://bucket/prefix`` (uploaded with boto3's multipart ``upload_file``; credentials from
boto's chain, never from arguments). ``keep`` complete backups are kept, older ones deleted.

Passwords never reach a command line or a log: ``pg_dump``/``psql`` get them through
``PGPASSWORD`` in their environment, and URLs are shown with the password hidden.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import structlog
from sqlalchemy.engine import make_url

from db.backup import (
    MANIFEST_FORMAT,
    Manifest,
    TableSum,
    compare,
    file_digest,
    manifest_path,
    pg_settings_sql,
    pg_table_query,
    pg_verify_block,
    read_manifest,
    sqlite_sums,
    sqlite_tables,
    verify_file,
)
from db.engine import display_url
from quant.errors import ConfigError, PermanentError, ServiceUnavailable, ValidationError
from quantbeat.infra.masking import mask_text
from quantbeat.infra.settings import get_settings
from quantbeat.services.export import S3Target

log = structlog.get_logger(__name__)

#: Called with one line of progress (the CLI prints it; the task logs nothing more).
Progress = Callable[[str], None]
#: Prefix of every backup's name: ``quantbeat-20261206T183000Z``.
NAME_PREFIX = "quantbeat-"
PG_METHOD = "count(*), sum(hashtextextended(row::text, 0)) under db.backup.PG_TEXT_SETTINGS"
SQLITE_METHOD = "count, sum of blake2b-64(repr(row)) mod 2**64"


class BackupError(PermanentError):
    """A backup or restore that failed for a reason retrying will not fix (the message says
    which tool failed and its last output lines, passwords masked)."""


def _quiet(_: str) -> None:
    return None


# --------------------------------------------------------------------------------------------
# Backup
# --------------------------------------------------------------------------------------------


def backup(
    *,
    to: str | None = None,
    keep: int | None = None,
    database_url: str | None = None,
    progress: Progress = _quiet,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Back up the database (default: the configured one) to ``to`` (a directory or
    ``s3://bucket/prefix``; default ``QUANTBEAT_BACKUP_URL`` or ``QUANTBEAT_BACKUP_DIR``),
    then keep the newest ``keep`` (default ``QUANTBEAT_BACKUP_KEEP``) backups there.

    Returns ``{"name", "engine", "location", "dump", "manifest", "bytes", "tables", "rows",
    "seconds", "deleted"}``.

    Raises:
        quant.errors.ValidationError: ``keep`` < 1 or a malformed ``s3://`` URL.
        BackupError: ``pg_dump`` failed (its last lines in the message).
        quant.errors.ServiceUnavailable: the database could not be reached.
        quantbeat.services.export.ExportError: the upload failed.
    """
    settings = get_settings()
    url = database_url or settings.database_url
    keep = settings.backup_keep if keep is None else keep
    if keep < 1:
        raise ValidationError(f"keep must be >= 1, got {keep}", field="keep", value=keep)
    target = to or settings.backup_url or str(settings.backup_path)
    s3 = _s3_target(target) if target.startswith("s3://") else None
    started = now or dt.datetime.now(dt.UTC)
    name = NAME_PREFIX + started.strftime("%Y%m%dT%H%M%SZ")
    t0 = dt.datetime.now(dt.UTC)
    with _workdir(None if s3 else Path(target)) as folder:
        if url.startswith("sqlite"):
            manifest = _backup_sqlite(url, folder, name, started, progress)
        else:
            manifest = _backup_postgres(url, folder, name, started, progress)
        dump = folder / manifest.file
        meta = manifest_path(dump)
        meta.write_text(manifest.to_json(), encoding="utf-8")  # last: the backup is complete
        if s3 is not None:
            location = _upload(s3, [dump, meta], progress)
            deleted = _prune_s3(s3, keep)
        else:
            location = str(folder)
            deleted = _prune_dir(folder, keep)
    seconds = (dt.datetime.now(dt.UTC) - t0).total_seconds()
    for old in deleted:
        progress(f"deleted old backup {old} (keeping {keep})")
    summary = {
        "name": name,
        "engine": manifest.engine,
        "location": location,
        "dump": manifest.file,
        "manifest": meta.name,
        "bytes": manifest.bytes,
        "tables": len(manifest.tables),
        "rows": manifest.total_rows,
        "seconds": round(seconds, 3),
        "deleted": deleted,
    }
    log.info("backup.done", **{k: v for k, v in summary.items() if k != "deleted"})
    return summary


@contextmanager
def _workdir(folder: Path | None) -> Iterator[Path]:
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="quantbeat-backup-") as tmp:
        yield Path(tmp)


def _backup_postgres(
    url: str, folder: Path, name: str, started: dt.datetime, progress: Progress
) -> Manifest:
    uri, env = _libpq(url)
    dump = folder / f"{name}.dump"
    partial = dump.with_name(dump.name + ".partial")
    try:
        conn = psycopg.connect(uri, autocommit=True)
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(
            f"backup: cannot connect to {display_url(url)}: {mask_text(str(exc))}"
        ) from exc
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for statement in pg_settings_sql().strip().splitlines():
            conn.execute(statement)
        snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
        revision = conn.execute(
            "SELECT version_num FROM alembic_version LIMIT 1"
        ).fetchone()  # a table every migrated database has
        tables = [
            str(r[0])
            for r in conn.execute(
                "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = 'public' "
                "ORDER BY tablename"
            )
        ]
        progress(f"dumping {display_url(url)} ({len(tables)} tables) to {dump.name}")
        argv = [
            _tool("pg_dump"),
            "--format=custom",
            f"--snapshot={snapshot}",
            f"--file={partial}",
            "--no-password",
            f"--dbname={uri}",
        ]
        proc = subprocess.Popen(  # noqa: S603 - our argv, no shell
            argv,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        errors: list[bytes] = []
        reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()))  # type: ignore[union-attr]
        reader.start()
        sums: dict[str, TableSum] = {}
        try:
            for k, table in enumerate(tables, 1):
                count, checksum = conn.execute(pg_table_query(table)).fetchone()  # type: ignore[misc]
                sums[table] = TableSum(int(count), str(checksum))
                progress(f"checksummed {table}: {int(count):,} rows ({k}/{len(tables)})")
        finally:
            code = proc.wait()
            reader.join()
        if code != 0:
            raise BackupError(f"pg_dump failed (exit {code}): {_tail(b''.join(errors))}")
        conn.execute("COMMIT")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        conn.close()
    partial.replace(dump)
    size, sha = file_digest(dump)
    progress(f"dumped {size:,} bytes")
    return Manifest(
        name=name,
        engine="postgresql",
        created_at=started.isoformat(),
        database=display_url(url),
        revision=None if revision is None else str(revision[0]),
        file=dump.name,
        bytes=size,
        sha256=sha,
        tables=sums,
        checksum_method=PG_METHOD,
    )


def _backup_sqlite(
    url: str, folder: Path, name: str, started: dt.datetime, progress: Progress
) -> Manifest:
    source = _sqlite_path(url)
    if not source.is_file():
        raise ValidationError(
            f"backup: the SQLite database {source} does not exist", field="database_url"
        )
    dump = folder / f"{name}.sqlite"
    partial = dump.with_name(dump.name + ".partial")
    progress(f"copying {source} to {dump.name} (SQLite backup API)")
    try:
        src = sqlite3.connect(str(source))
        dst = sqlite3.connect(str(partial))
        try:

            def pages(_status: int, remaining: int, total: int) -> None:
                if total and remaining == 0:
                    progress(f"copied {total:,} pages")

            src.backup(dst, pages=4096, progress=pages)
            sums = sqlite_sums(dst)
            revision = _sqlite_revision(dst)
        finally:
            dst.close()
            src.close()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(dump)
    size, sha = file_digest(dump)
    return Manifest(
        name=name,
        engine="sqlite",
        created_at=started.isoformat(),
        database=display_url(url),
        revision=revision,
        file=dump.name,
        bytes=size,
        sha256=sha,
        tables=sums,
        checksum_method=SQLITE_METHOD,
    )


# --------------------------------------------------------------------------------------------
# Restore
# --------------------------------------------------------------------------------------------


def restore(file: str, *, into: str, progress: Progress = _quiet) -> dict[str, Any]:
    """Restore the backup ``file`` (its dump or its manifest; a path or an ``s3://`` URL of
    either) into the empty database ``into``, verified against the manifest.

    Returns ``{"name", "engine", "into", "tables", "rows", "seconds"}``.

    Raises:
        quant.errors.ValidationError: the manifest is missing or malformed; the dump is
            missing, truncated or corrupted; its engine is not the target's; the target
            already has tables. Nothing is changed.
        BackupError: the restore failed (the tool's last lines; nothing was restored, or
            — SQLite — the target was left as it was).
        quant.errors.ServiceUnavailable: the target could not be reached.
    """
    t0 = dt.datetime.now(dt.UTC)
    with _fetched(file, progress) as (dump, manifest):
        progress(f"checking {dump.name} against its manifest")
        verify_file(dump, manifest)
        target_engine = "sqlite" if into.startswith("sqlite") else "postgresql"
        if manifest.engine != target_engine:
            raise ValidationError(
                f"backup {manifest.name} is a {manifest.engine} backup; it cannot be restored "
                f"into {display_url(into)} ({target_engine})",
                field="into",
                value=display_url(into),
            )
        if target_engine == "sqlite":
            _restore_sqlite(dump, manifest, into, progress)
        else:
            _restore_postgres(dump, manifest, into, progress)
    seconds = (dt.datetime.now(dt.UTC) - t0).total_seconds()
    summary = {
        "name": manifest.name,
        "engine": manifest.engine,
        "into": display_url(into),
        "tables": len(manifest.tables),
        "rows": manifest.total_rows,
        "seconds": round(seconds, 3),
    }
    log.info("backup.restored", **summary)
    return summary


def _restore_postgres(dump: Path, manifest: Manifest, into: str, progress: Progress) -> None:
    uri, env = _libpq(into)
    try:
        with psycopg.connect(uri, autocommit=True) as conn:
            found = conn.execute(
                "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'"
            ).fetchone()
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(
            f"restore: cannot connect to {display_url(into)}: {mask_text(str(exc))}"
        ) from exc
    if found is not None and int(found[0]) > 0:
        raise ValidationError(
            f"restore target {display_url(into)} already has {int(found[0])} table(s) in "
            "schema public; restore into an empty database (createdb a new one)",
            field="into",
            value=display_url(into),
        )
    progress(
        f"restoring {manifest.name}: {len(manifest.tables)} tables, "
        f"{manifest.total_rows:,} rows, in one transaction"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".sql", prefix="quantbeat-verify-") as verify:
        verify.write(pg_verify_block(manifest.tables))
        verify.flush()
        restore_sql = subprocess.Popen(  # noqa: S603 - our argv, no shell
            [_tool("pg_restore"), "--no-owner", "--no-privileges", "--file=-", str(dump)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        psql = subprocess.run(  # noqa: S603 - our argv, no shell
            [
                _tool("psql"),
                "--no-psqlrc",
                "--quiet",
                "--no-password",
                "--set=ON_ERROR_STOP=1",
                "--single-transaction",
                "--file=-",
                f"--file={verify.name}",
                f"--dbname={uri}",
            ],
            stdin=restore_sql.stdout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            check=False,
        )
        assert restore_sql.stdout is not None
        restore_sql.stdout.close()
        archive_errors = restore_sql.stderr.read() if restore_sql.stderr else b""
        archive_code = restore_sql.wait()
    # psql commits only if every statement and the verification at the end succeeded: an
    # archive that broke off mid-stream leaves tables short, which the verification refuses
    if psql.returncode != 0:
        archive = f"; pg_restore: {_tail(archive_errors)}" if archive_code != 0 else ""
        raise BackupError(
            f"restore of {dump.name} into {display_url(into)} failed and was rolled back, "
            f"nothing was restored: {_tail(psql.stderr)}{archive}"
        )
    if archive_code != 0:  # pragma: no cover - the verification fails first (see above)
        raise BackupError(
            f"restore of {dump.name}: pg_restore (exit {archive_code}): {_tail(archive_errors)}"
        )
    progress(f"restored and verified {len(manifest.tables)} tables")


def _restore_sqlite(dump: Path, manifest: Manifest, into: str, progress: Progress) -> None:
    target = _sqlite_path(into)
    if target.exists() and target.stat().st_size > 0:
        conn = sqlite3.connect(str(target))
        try:
            tables = sqlite_tables(conn)
        finally:
            conn.close()
        if tables:
            raise ValidationError(
                f"restore target {target} already has {len(tables)} table(s); restore into "
                "a new file",
                field="into",
                value=str(target),
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + ".restoring")
    shutil.copyfile(dump, staging)
    try:
        conn = sqlite3.connect(str(staging))
        try:
            check = conn.execute("PRAGMA integrity_check").fetchone()
            sums = sqlite_sums(conn)
        finally:
            conn.close()
        if check is None or check[0] != "ok":
            raise BackupError(f"restore of {dump.name}: integrity check failed: {check}")
        problems = compare(sums, manifest.tables)
        if problems:
            raise BackupError(
                f"restore of {dump.name} does not match its manifest, nothing was restored: "
                + "; ".join(problems[:5])
            )
        for suffix in ("-wal", "-shm"):
            Path(str(target) + suffix).unlink(missing_ok=True)
        staging.replace(target)
    finally:
        staging.unlink(missing_ok=True)
    progress(f"restored and verified {len(manifest.tables)} tables into {target}")


@contextmanager
def _fetched(file: str, progress: Progress) -> Iterator[tuple[Path, Manifest]]:
    """The dump and its manifest as local files (downloaded first for ``s3://``)."""
    if not file.startswith("s3://"):
        path = Path(file)
        if path.name.endswith(".manifest.json"):
            manifest = read_manifest(path)
            yield path.with_name(manifest.file), manifest
        else:
            manifest = read_manifest(manifest_path(path))
            if manifest.file != path.name:
                raise ValidationError(
                    f"backup manifest {manifest_path(path)} describes {manifest.file}, "
                    f"not {path.name}",
                    field="file",
                    value=str(path),
                )
            yield path, manifest
        return
    target = _s3_target(file.rsplit("/", 1)[0])
    name = file.rsplit("/", 1)[1]
    base = name.removesuffix(".manifest.json").rsplit(".", 1)[0] if "." in name else name
    client = _s3_client(target)
    with tempfile.TemporaryDirectory(prefix="quantbeat-restore-") as tmp:
        meta = Path(tmp) / f"{base}.manifest.json"
        _download(client, target, meta, progress)
        manifest = read_manifest(meta)
        dump = Path(tmp) / manifest.file
        _download(client, target, dump, progress)
        yield dump, manifest


# --------------------------------------------------------------------------------------------
# Retention and listing
# --------------------------------------------------------------------------------------------


def list_backups(folder: Path) -> list[Manifest]:
    """The complete backups in ``folder`` (those with a readable manifest), newest first."""
    found: list[Manifest] = []
    for meta in folder.glob(f"{NAME_PREFIX}*.manifest.json"):
        try:
            found.append(read_manifest(meta))
        except ValidationError:
            continue
    return sorted(found, key=lambda m: m.name, reverse=True)


def _prune_dir(folder: Path, keep: int) -> list[str]:
    deleted: list[str] = []
    for old in list_backups(folder)[keep:]:
        (folder / old.file).unlink(missing_ok=True)
        (folder / f"{old.name}.manifest.json").unlink(missing_ok=True)
        deleted.append(old.name)
    # a dump whose run died before its manifest: incomplete, never restorable
    for partial in folder.glob(f"{NAME_PREFIX}*.partial"):
        partial.unlink(missing_ok=True)
    return deleted


def _prune_s3(target: S3Target, keep: int) -> list[str]:
    client = _s3_client(target)
    prefix = f"{target.prefix}/" if target.prefix else ""
    names: set[str] = set()
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=target.bucket, Prefix=prefix + NAME_PREFIX
    ):
        for item in page.get("Contents", []):
            key = str(item["Key"])
            keys.append(key)
            if key.endswith(".manifest.json"):
                names.add(key[len(prefix) :].removesuffix(".manifest.json"))
    old = sorted(names, reverse=True)[keep:]
    doomed = [k for k in keys if any(k[len(prefix) :].startswith(n + ".") for n in old)]
    for start in range(0, len(doomed), 1000):
        client.delete_objects(
            Bucket=target.bucket,
            Delete={"Objects": [{"Key": k} for k in doomed[start : start + 1000]]},
        )
    return old


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and an environment carrying it (``PGPASSWORD``)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        raise ValidationError(f"{display_url(url)} is not a PostgreSQL URL", field="database_url")
    password = parsed.password
    bare = parsed.set(drivername="postgresql", password=None)
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    if password:
        env["PGPASSWORD"] = str(password)
    return bare.render_as_string(hide_password=False), env


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ValidationError(f"{url} names no SQLite file", field="database_url", value=url)
    return Path(database)


def _sqlite_revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version LIMIT 1").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigError(
            f"{name} is not installed: backups of PostgreSQL need the PostgreSQL client tools "
            "(Debian: apt install postgresql-client), of the server's major version or newer"
        )
    return found


def _tail(stderr: bytes, lines: int = 6) -> str:
    text = stderr.decode("utf-8", "replace").strip().splitlines()[-lines:]
    return mask_text(" | ".join(text)) or "(no output)"


def _s3_target(url: str) -> S3Target:
    settings = get_settings()
    try:
        return S3Target.parse(url, endpoint_url=settings.s3_endpoint_url)
    except ValueError as exc:
        raise ValidationError(str(exc), field="to", value=url) from None


def _s3_client(target: S3Target) -> Any:
    from quantbeat.services.export import _make_client  # noqa: PLC0415 (boto3: only for S3)

    return _make_client(target)


def _upload(target: S3Target, files: list[Path], progress: Progress) -> str:
    client = _s3_client(target)
    for path in files:
        key = f"{target.prefix}/{path.name}" if target.prefix else path.name
        progress(f"uploading {path.name} to {target.uri(key)}")
        client.upload_file(str(path), target.bucket, key)
    return f"s3://{target.bucket}/{target.prefix}".rstrip("/")


def _download(client: Any, target: S3Target, local: Path, progress: Progress) -> None:
    key = f"{target.prefix}/{local.name}" if target.prefix else local.name
    progress(f"downloading {target.uri(key)}")
    try:
        client.download_file(target.bucket, key, str(local))
    except Exception as exc:
        raise ValidationError(
            f"backup object {target.uri(key)} could not be downloaded: {mask_text(str(exc))}",
            field="file",
            value=target.uri(key),
        ) from exc


__all__ = [
    "MANIFEST_FORMAT",
    "BackupError",
    "backup",
    "list_backups",
    "restore",
]
