"""What a backup is checked against: the manifest, and each table's row count and checksum.

A backup is two files side by side: the dump (``<name>.dump``, a ``pg_dump`` custom-format
archive, or ``<name>.sqlite``, a SQLite database copied with the backup API) and its manifest
(``<name>.manifest.json``). The manifest is written last, so a backup without one is
incomplete. It records the dump's size and SHA-256 (a truncated or corrupted file is refused
before anything is restored), the schema revision, and every table's row count and checksum
taken from the same snapshot as the dump (a restore is verified against them).

Checksums are order-independent sums of per-row hashes:

* PostgreSQL: ``sum(hashtextextended(row::text, 0))`` with the row's text fixed by the
  session settings in :data:`PG_TEXT_SETTINGS` (UTC, ISO dates, exact floats), so the same
  rows give the same sum on any server of the same major version.
* SQLite: the sum modulo 2⁶⁴ of an 8-byte BLAKE2b of each row's ``repr`` (exact for floats).
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from quant.errors import ValidationError

#: The manifest's format tag; a manifest with another one is refused.
MANIFEST_FORMAT = "quantbeat-backup/1"
#: Session settings under which a row's text (and so its checksum) is the same everywhere.
PG_TEXT_SETTINGS: tuple[tuple[str, str], ...] = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
)
#: A table name quantbeat creates (and the only kind a manifest may name: it goes into SQL).
TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class TableSum:
    """One table's row count and checksum (decimal text: PostgreSQL's is a numeric)."""

    rows: int
    checksum: str


@dataclass(frozen=True)
class Manifest:
    """The manifest of one backup (see the module docstring). ``engine`` is ``postgresql``
    or ``sqlite``; ``file`` the dump's name beside the manifest; ``bytes`` and ``sha256``
    the dump's; ``tables`` every table's :class:`TableSum`."""

    name: str
    engine: str
    created_at: str
    database: str
    revision: str | None
    file: str
    bytes: int
    sha256: str
    tables: dict[str, TableSum]
    format: str = MANIFEST_FORMAT
    checksum_method: str = field(default="")

    def to_json(self) -> str:
        data = asdict(self)
        data["tables"] = {k: asdict(v) for k, v in sorted(self.tables.items())}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables.values())


def manifest_path(dump: Path) -> Path:
    """The manifest beside ``dump`` (``x.dump`` → ``x.manifest.json``)."""
    return dump.with_name(dump.name.rsplit(".", 1)[0] + ".manifest.json")


def read_manifest(path: Path) -> Manifest:
    """The manifest at ``path``, checked.

    Raises:
        quant.errors.ValidationError: no such file, not JSON, another format, a table name
            that is not a quantbeat table name, a count or checksum that is not a number —
            the message names the file and the bad value.
    """
    where = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationError(
            f"backup manifest {where} not found: a backup without its manifest is incomplete",
            field="manifest",
            value=where,
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(
            f"backup manifest {where} is unreadable: {exc}", field="manifest", value=where
        ) from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValidationError(
            f"backup manifest {where} has format {found!r}, expected {MANIFEST_FORMAT!r}",
            field="format",
            value=found,
        )
    try:
        tables: dict[str, TableSum] = {}
        for name, entry in dict(data["tables"]).items():
            if not TABLE_NAME.fullmatch(str(name)):
                raise ValueError(f"table name {name!r}")
            rows, checksum = int(entry["rows"]), str(entry["checksum"])
            if rows < 0 or not re.fullmatch(r"-?\d+", checksum):
                raise ValueError(f"table {name}: rows {rows!r}, checksum {checksum!r}")
            tables[str(name)] = TableSum(rows, checksum)
        manifest = Manifest(
            name=str(data["name"]),
            engine=str(data["engine"]),
            created_at=str(data["created_at"]),
            database=str(data["database"]),
            revision=None if data.get("revision") is None else str(data["revision"]),
            file=str(data["file"]),
            bytes=int(data["bytes"]),
            sha256=str(data["sha256"]),
            tables=tables,
            checksum_method=str(data.get("checksum_method", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(
            f"backup manifest {where} is malformed: {exc}", field="manifest", value=where
        ) from None
    if manifest.engine not in ("postgresql", "sqlite"):
        raise ValidationError(
            f"backup manifest {where}: unknown engine {manifest.engine!r}",
            field="engine",
            value=manifest.engine,
        )
    if Path(manifest.file).name != manifest.file or not re.fullmatch(
        r"[0-9a-f]{64}", manifest.sha256
    ):
        raise ValidationError(
            f"backup manifest {where}: bad file name {manifest.file!r} or SHA-256",
            field="file",
            value=manifest.file,
        )
    return manifest


def file_digest(path: Path) -> tuple[int, str]:
    """``(size in bytes, SHA-256 hex)`` of the file at ``path``."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def verify_file(dump: Path, manifest: Manifest) -> None:
    """Check ``dump`` against its manifest's size and SHA-256.

    Raises:
        quant.errors.ValidationError: the file is missing, truncated (smaller), grown or
            corrupted — the message says which and names the file.
    """
    if not dump.is_file():
        raise ValidationError(f"backup file {dump} not found", field="file", value=str(dump))
    size, sha = file_digest(dump)
    if size != manifest.bytes:
        what = "truncated" if size < manifest.bytes else "longer than recorded"
        raise ValidationError(
            f"backup file {dump} is {what}: {size:,} bytes, the manifest says "
            f"{manifest.bytes:,}; refusing to restore it",
            field="file",
            value=str(dump),
        )
    if sha != manifest.sha256:
        raise ValidationError(
            f"backup file {dump} is corrupted: SHA-256 {sha}, the manifest says "
            f"{manifest.sha256}; refusing to restore it",
            field="file",
            value=str(dump),
        )


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def pg_settings_sql() -> str:
    """``SET`` statements for :data:`PG_TEXT_SETTINGS` (for the current transaction)."""
    return "".join(f"SET LOCAL {k} = '{v}';\n" for k, v in PG_TEXT_SETTINGS)


def pg_table_query(table: str) -> str:
    """The row count and checksum of ``public.<table>`` (see the module docstring).

    Raises:
        quant.errors.ValidationError: ``table`` is not a quantbeat table name.
    """
    check_table_name(table)
    sums = "count(*), coalesce(sum(pg_catalog.hashtextextended(t::text, 0)), 0)::text"
    return f'SELECT {sums} FROM public."{table}" AS t'  # noqa: S608 - a checked table name


def pg_verify_block(tables: Mapping[str, TableSum]) -> str:
    """A ``DO`` block that raises if ``public`` does not hold exactly ``tables`` with their
    counts and checksums: appended to a restore inside its transaction, it rolls the whole
    restore back on any mismatch. Runs under :data:`PG_TEXT_SETTINGS`."""
    lines = [
        *(f"SET {k} = '{v}';" for k, v in PG_TEXT_SETTINGS),
        "DO $verify$",
        "DECLARE n bigint; s numeric; found integer;",
        "BEGIN",
        "  SELECT count(*) INTO found FROM pg_catalog.pg_tables WHERE schemaname = 'public';",
        f"  IF found <> {len(tables)} THEN",
        "    RAISE EXCEPTION 'quantbeat restore: % tables restored, the manifest names "
        f"{len(tables)}', found;",
        "  END IF;",
    ]
    for table, expected in sorted(tables.items()):
        check_table_name(table)
        sums = "count(*), coalesce(sum(pg_catalog.hashtextextended(t::text, 0)), 0)"
        lines += [
            f'  SELECT {sums} INTO n, s FROM public."{table}" AS t;',  # noqa: S608 - checked
            f"  IF n <> {int(expected.rows)} OR s <> {int(expected.checksum)} THEN",
            f"    RAISE EXCEPTION 'quantbeat restore: table {table} has % rows (checksum %), "
            f"the manifest says {int(expected.rows)} ({int(expected.checksum)})', n, s;",
            "  END IF;",
        ]
    lines += ["END", "$verify$;", ""]
    return "\n".join(lines)


def check_table_name(table: str) -> None:
    """Raises :class:`quant.errors.ValidationError` unless ``table`` matches
    :data:`TABLE_NAME`."""
    if not TABLE_NAME.fullmatch(table):
        raise ValidationError(f"table name {table!r} is not allowed", field="table", value=table)


# --------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------


def sqlite_tables(conn: sqlite3.Connection) -> list[str]:
    """The user tables of a SQLite database, by name."""
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    ).fetchall()
    return [str(r[0]) for r in rows]


def sqlite_sums(conn: sqlite3.Connection) -> dict[str, TableSum]:
    """Every table's :class:`TableSum` (see the module docstring)."""
    out: dict[str, TableSum] = {}
    for table in sqlite_tables(conn):
        check_table_name(table)
        rows = 0
        total = 0
        cursor = conn.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - a checked name
        while batch := cursor.fetchmany(10_000):
            rows += len(batch)
            for row in batch:
                h = hashlib.blake2b(repr(row).encode(), digest_size=8).digest()
                total += int.from_bytes(h, "big")
        out[table] = TableSum(rows, str(total % (1 << 64)))
    return out


def compare(found: Mapping[str, TableSum], expected: Mapping[str, TableSum]) -> list[str]:
    """One sentence per difference between two sets of table sums (empty: identical)."""
    problems: list[str] = []
    for table in sorted(set(found) | set(expected)):
        got, want = found.get(table), expected.get(table)
        if got is None:
            problems.append(f"table {table} is missing")
        elif want is None:
            problems.append(f"table {table} is not in the manifest")
        elif got != want:
            problems.append(
                f"table {table} has {got.rows} rows (checksum {got.checksum}), the manifest "
                f"says {want.rows} ({want.checksum})"
            )
    return problems


def json_ready(value: Any) -> Any:
    """``value`` with Paths as strings (manifests and summaries are JSON)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value
