"""Bulk idempotent upsert on PostgreSQL: ``COPY`` into a temporary table, then one
``INSERT … SELECT … ON CONFLICT DO UPDATE … WHERE … IS DISTINCT FROM``.

The rows travel as COPY text (formatted by pandas in C, not row by row in Python); the
upsert runs server-side in one statement; the inserted/updated split is counted server-side
from ``xmax = 0``, so a million rows cost one round trip for the counts. Same guarantees as
:func:`db.store.upsert_rows`: unchanged rows are not rewritten, keys must be unique in the
batch.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import psycopg
from psycopg import ClientCursor, pq, sql
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Double,
    Float,
    Integer,
    SmallInteger,
    String,
    Table,
)
from sqlalchemy.orm import Session

from db import copybin, readcache
from quant.errors import ValidationError

#: A bulk upsert that inserts at least this many rows, and more than :data:`ANALYZE_SHARE` of
#: what the table's statistics know, analyzes the table before it commits.
ANALYZE_MIN_ROWS = 10_000
ANALYZE_SHARE = 0.2
#: Rows formatted and sent per COPY write (bounds the memory of the text buffer).
COPY_CHUNK_ROWS = 100_000
_temp_names = itertools.count()


def _idents(names: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def copy_text(frame: pd.DataFrame) -> str:
    """``frame`` as PostgreSQL COPY text: tab-separated, ``\\N`` for missing values, with
    backslashes, tabs and newlines in strings escaped. Floats keep full precision."""
    out = frame.copy(deep=False)
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            missing = out[col].isna()
            text = (
                out[col]
                .astype(str)
                .str.replace("\\", "\\\\", regex=False)
                .str.replace("\t", "\\t", regex=False)
                .str.replace("\n", "\\n", regex=False)
                .str.replace("\r", "\\r", regex=False)
            )
            out[col] = text.where(~missing, None)  # None is written as \N
    buffer = io.StringIO()
    out.to_csv(
        buffer,
        sep="\t",
        header=False,
        index=False,
        na_rep="\\N",
        lineterminator="\n",
        quoting=3,
        escapechar=None,
    )  # quoting=3: csv.QUOTE_NONE
    return buffer.getvalue()


def pg_types(table: Table, columns: Sequence[str]) -> dict[str, str] | None:
    """The binary COPY types (:mod:`db.copybin`) of ``columns`` of ``table``; ``None`` when
    one has no binary encoder (JSON, numeric …: such batches travel as text)."""
    out: dict[str, str] = {}
    for name in columns:
        kind = table.c[name].type
        if isinstance(kind, BigInteger):
            out[name] = "int8"
        elif isinstance(kind, SmallInteger):
            out[name] = "int2"
        elif isinstance(kind, Integer):
            out[name] = "int4"
        elif isinstance(kind, Double) or (isinstance(kind, Float) and kind.precision is None):
            out[name] = "float8"  # a plain Float is double precision on PostgreSQL
        elif isinstance(kind, DateTime):
            out[name] = "timestamptz" if kind.timezone else "timestamp"
        elif isinstance(kind, Date):
            out[name] = "date"
        elif isinstance(kind, Boolean):
            out[name] = "bool"
        elif isinstance(kind, String):
            out[name] = "text"
        else:
            return None
    return out


def copy_rows(
    session: Session,
    target: str | sql.Identifier,
    frame: pd.DataFrame,
    types: Mapping[str, str] | None = None,
) -> None:
    """``COPY target (columns of frame) FROM STDIN`` in chunks, on the session's connection
    (``target`` a table name or identifier): in the binary format when ``types`` (each
    column's type, :mod:`db.copybin`) allows it, as text otherwise.

    Raises:
        ValueError: a value that does not fit its column's type (binary path).
    """
    name = sql.Identifier(target) if isinstance(target, str) else target
    chunks: Iterable[bytes | str] | None = None
    binary = False
    if types is not None:
        try:
            # encode the first chunk before the COPY starts: a batch that cannot be binary
            # falls back to text without a failed COPY on the connection
            first = copybin.encode_rows(frame.iloc[:COPY_CHUNK_ROWS], types)
            binary = True
            chunks = itertools.chain(
                (copybin.HEADER, first),
                (
                    copybin.encode_rows(frame.iloc[at : at + COPY_CHUNK_ROWS], types)
                    for at in range(COPY_CHUNK_ROWS, len(frame), COPY_CHUNK_ROWS)
                ),
                (copybin.TRAILER,),
            )
        except copybin.UnsupportedBatch:
            binary = False
    if not binary:
        chunks = (
            copy_text(frame.iloc[at : at + COPY_CHUNK_ROWS])
            for at in range(0, len(frame), COPY_CHUNK_ROWS)
        )
    statement = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        name, _idents(list(frame.columns)), sql.SQL(" (FORMAT binary)" if binary else "")
    )
    cursor = session.connection().connection.cursor()
    try:
        with cursor.copy(statement) as copy:
            for chunk in chunks or ():
                copy.write(chunk)
    finally:
        cursor.close()


def copy_out(
    session: Session, query: str, params: Mapping[str, Any], types: Sequence[str]
) -> list[npt.NDArray[Any]]:
    """The columns of ``query`` (psycopg ``%(name)s`` parameters, merged client-side; every
    result column of a fixed-width type of ``types``, see :func:`db.copybin.decode_rows`),
    read as ``COPY (query) TO STDOUT (FORMAT binary)`` on the session's connection — inside
    its transaction when one is open.

    The rows are drained straight from libpq (``PQgetCopyData``) into one buffer: psycopg's
    ``Copy`` iterator costs about 1.5 µs of Python per row, four times the transfer itself
    (``benchmarks/read.py``).

    Raises:
        psycopg.Error: the server refused the query (the transaction is then aborted, as for
            any failed statement).
        ValueError: a result row that is not of ``types`` (a NULL, another width).
    """
    conn: psycopg.Connection[Any] = session.connection().connection.driver_connection  # type: ignore[assignment]
    statement = f"COPY ({ClientCursor(conn).mogrify(query, params)}) TO STDOUT (FORMAT binary)"
    out = io.BytesIO()
    with conn.lock:
        pgconn = conn.pgconn
        result = pgconn.exec_(statement.encode())
        if result.status != pq.ExecStatus.COPY_OUT:
            raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
        get, write = pgconn.get_copy_data, out.write
        while True:
            size, data = get(0)
            if size < 0:
                break
            write(data)
        failure = None
        while (end := pgconn.get_result()) is not None:
            if end.status != pq.ExecStatus.COMMAND_OK and failure is None:
                failure = psycopg.errors.error_from_result(end, encoding=conn.info.encoding)
        if failure is not None:
            raise failure
    return copybin.decode_rows(out.getbuffer(), types)


def binary_rows(session: Session, query: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of ``query`` (psycopg ``%(name)s`` parameters) fetched in PostgreSQL's binary
    format on the session's connection, inside its transaction when one is open: ``bytea``
    arrives as the bytes themselves (the text format would send them hex-encoded, twice the
    size, and decode them in Python).

    Raises:
        psycopg.Error: the server refused the query.
    """
    conn: psycopg.Connection[Any] = session.connection().connection.driver_connection  # type: ignore[assignment]
    with conn.cursor(binary=True) as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def sqlite_matrix(session: Session, query: str, params: Sequence[Any], width: int) -> Any:
    """The rows of ``query`` (``?`` placeholders; ``width`` numeric result columns) on
    SQLite as one ``float64`` matrix of shape ``(rows, width)``, ``NULL`` as NaN — through
    the sqlite3 driver directly: SQLAlchemy's row objects cost five times the query."""
    driver: Any = session.connection().connection.driver_connection

    def load() -> Any:
        rows = driver.execute(query, params).fetchall()
        if not rows:
            return np.empty((0, width), dtype=np.float64)
        return np.array(rows, dtype=np.float64)

    # the embedded run's repeated reads come from memory (db.readcache: inside its scope only)
    return readcache.read((str(session.get_bind().engine.url), query, tuple(params)), load)


def _check_batch(
    table: Table, frame: pd.DataFrame, key: Sequence[str], compare: Sequence[str]
) -> list[str]:
    """The batch's column order (``key`` + ``compare``), after checking that ``frame`` has
    exactly those columns and repeats no key.

    Raises:
        quant.errors.ValidationError: other columns, or a repeated key.
    """
    columns = [*key, *compare]
    if sorted(frame.columns) != sorted(columns):
        raise ValidationError(
            f"bulk upsert into {table.name} needs columns {columns}, got {list(frame.columns)}",
            field="columns",
        )
    if not frame.empty and frame.duplicated(subset=list(key)).any():
        raise ValidationError(
            f"duplicate {'/'.join(key)} in a batch for {table.name}", field=",".join(key)
        )
    return columns


def copy_upsert(
    session: Session,
    table: Table,
    frame: pd.DataFrame,
    *,
    key: Sequence[str],
    compare: Sequence[str],
) -> tuple[int, int, int]:
    """Upsert ``frame`` (whose columns are ``key`` + ``compare``, named as in ``table``) into
    ``table``; return ``(inserted, updated, unchanged)``.

    Raises:
        quant.errors.ValidationError: ``frame`` repeats a key, or its columns are not exactly
            ``key`` + ``compare``.
    """
    columns = _check_batch(table, frame, key, compare)
    if frame.empty:
        return 0, 0, 0
    frame = frame[columns]
    temp = sql.Identifier(f"_qb_bulk_{next(_temp_names)}")
    target = sql.Identifier(table.name)
    cols = _idents(columns)
    excluded = sql.Identifier("excluded")
    create = sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA")
    upsert = sql.SQL(
        "WITH written AS ("
        " INSERT INTO {target} ({cols}) SELECT {cols} FROM {temp}"
        " ON CONFLICT ({key}) DO UPDATE SET {assignments}, updated_at = now() WHERE {changed}"
        " RETURNING (xmax = 0) AS inserted)"
        " SELECT count(*) FILTER (WHERE inserted), count(*) FROM written"
    ).format(
        target=target,
        cols=cols,
        temp=temp,
        key=_idents(list(key)),
        assignments=sql.SQL(", ").join(
            sql.SQL("{} = {}.{}").format(sql.Identifier(c), excluded, sql.Identifier(c))
            for c in compare
        ),
        changed=sql.SQL(" OR ").join(
            sql.SQL("{}.{} IS DISTINCT FROM {}.{}").format(
                target, sql.Identifier(c), excluded, sql.Identifier(c)
            )
            for c in compare
        ),
    )
    cursor = session.connection().connection.cursor()
    try:
        # Temporary tables are not WAL-logged and have no indexes: the cheapest place to land.
        cursor.execute(create.format(temp, cols, target))
        copy_rows(session, temp, frame, pg_types(table, columns))
        cursor.execute(upsert)
        row = cursor.fetchone()
        cursor.execute(sql.SQL("DROP TABLE {}").format(temp))
        inserted = int(row[0]) if row else 0
        if inserted >= ANALYZE_MIN_ROWS:
            cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (table.name,))
            known = cursor.fetchone()
            if known is None or known[0] < 0 or inserted > ANALYZE_SHARE * known[0]:
                # Without fresh statistics the planner guesses a few rows where a bulk load
                # put hundreds of thousands, and reads them by the wrong index (a range of
                # 250 instruments took 10x its time until autovacuum came round): analyze now,
                # as PostgreSQL advises after a bulk load.
                _analyze_unless_busy(cursor, target)
    finally:
        cursor.close()
    inserted, affected = (int(row[0]), int(row[1])) if row else (0, 0)
    return inserted, affected - inserted, len(frame) - affected


def _analyze_unless_busy(cursor: Any, target: sql.Identifier) -> None:
    """``ANALYZE target`` inside the caller's transaction, unless another transaction holds
    the table's ``SHARE UPDATE EXCLUSIVE`` lock (a concurrent load analyzing it, autovacuum):
    then it is left to them rather than waited for — a parallel backfill's chunks must not
    queue behind each other's statistics, nor run into their lock timeout."""
    cursor.execute("SAVEPOINT qb_analyze")
    try:
        cursor.execute(
            sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE NOWAIT").format(target)
        )
    except psycopg.errors.LockNotAvailable:
        cursor.execute("ROLLBACK TO SAVEPOINT qb_analyze")
        return
    cursor.execute(sql.SQL("ANALYZE {}").format(target))
    cursor.execute("RELEASE SAVEPOINT qb_analyze")


def _sqlite_value(value: object) -> object:
    """One value as SQLAlchemy stores it in SQLite: dates ``YYYY-MM-DD``, date-times as naive
    UTC ``YYYY-MM-DD HH:MM:SS.ffffff``, missing values ``None``, numpy scalars as Python."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, dt.datetime):  # includes pandas.Timestamp
        moment = value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN
        return None
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _sqlite_column(values: pd.Series) -> list[object]:
    """One column's values as :func:`_sqlite_value` gives them, converted a column at a time
    where the dtype allows (floats, integers, dates, date-times, texts) and value by value
    otherwise."""
    kind = values.dtype.kind
    if kind == "f":
        floats = values.to_numpy(dtype=np.float64)
        missing = np.isnan(floats)
        if not missing.any():
            return floats.tolist()
        boxed = floats.astype(object)
        boxed[missing] = None
        return boxed.tolist()
    if kind in "iub":
        return values.tolist()
    if kind == "M":
        stamps = pd.DatetimeIndex(values)
        if stamps.tz is not None:
            stamps = stamps.tz_convert("UTC").tz_localize(None)
        text = np.char.replace(
            np.datetime_as_string(stamps.to_numpy("datetime64[us]"), unit="us"), "T", " "
        ).astype(object)
        text[stamps.isna()] = None
        return text.tolist()  # type: ignore[no-any-return]
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred == "string":
        return values.astype(object).where(values.notna(), None).tolist()
    if inferred == "date":
        # a batch holds few distinct days: each converted once, then repeated by its code
        # (a missing value has code -1: the None appended last)
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        text = np.array([*(_sqlite_value(u) for u in uniques), None], dtype=object)
        return text[codes].tolist()  # type: ignore[no-any-return]
    return [_sqlite_value(v) for v in values.astype(object).tolist()]


def _sqlite_values(frame: pd.DataFrame) -> list[tuple[object, ...]]:
    """Rows as Python values stored the way SQLAlchemy stores them in SQLite (see
    :func:`_sqlite_value`), so the same key always has the same text and re-runs match."""
    return list(zip(*(_sqlite_column(frame[c]) for c in frame.columns), strict=True))


def sqlite_upsert(
    session: Session,
    table: Table,
    frame: pd.DataFrame,
    *,
    key: Sequence[str],
    compare: Sequence[str],
) -> tuple[int, int, int]:
    """The SQLite counterpart of :func:`copy_upsert`, for the embedded default: one
    ``executemany`` of ``INSERT … ON CONFLICT DO UPDATE … WHERE … IS NOT`` through the
    sqlite3 driver. Counts come from the table's row count and the connection's
    ``total_changes`` — exact, because the embedded engine begins every transaction
    ``IMMEDIATE``, so no other writer interleaves.

    Raises:
        quant.errors.ValidationError: ``frame`` repeats a key or has other columns.
    """
    columns = _check_batch(table, frame, key, compare)
    if frame.empty:
        return 0, 0, 0

    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    name = q(table.name)
    statement = (
        f"INSERT INTO {name} ({', '.join(q(c) for c in columns)}) "  # noqa: S608 - our names
        f"VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT ({', '.join(q(k) for k in key)}) DO UPDATE SET "
        + ", ".join(f"{q(c)} = excluded.{q(c)}" for c in compare)
        + ", updated_at = CURRENT_TIMESTAMP WHERE "
        + " OR ".join(f"{name}.{q(c)} IS NOT excluded.{q(c)}" for c in compare)
    )
    raw: Any = session.connection().connection.driver_connection
    cursor = raw.cursor()
    try:
        before = cursor.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # noqa: S608
        changes = raw.total_changes
        cursor.executemany(statement, _sqlite_values(frame[columns]))
        affected = raw.total_changes - changes
        after = cursor.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # noqa: S608
    finally:
        cursor.close()
    inserted = int(after) - int(before)
    return inserted, affected - inserted, len(frame) - affected
