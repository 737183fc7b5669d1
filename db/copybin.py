"""PostgreSQL's binary ``COPY`` format, to and from NumPy arrays, without a Python loop per row.

The format (PostgreSQL documentation, "COPY — Binary Format"): a 19-byte header (the
11-byte signature, a 32-bit flags field, a 32-bit header-extension length), then one tuple
per row — a 16-bit field count, and per field a 32-bit length (``-1`` for NULL, then no data)
followed by the value in network byte order — and a 16-bit ``-1`` trailer.

When every field of a row has a fixed width, every row has the same layout and a NumPy
structured dtype with big-endian fields *is* the row: encoding is filling a structured array
and decoding is :func:`numpy.frombuffer`. Two things make widths vary: NULLs (no data) and
text. :func:`encode_rows` therefore groups the rows by their NULL pattern and text values (a
candle batch has a handful of groups: one source, a few quality flags, traded value known or
not) and writes each group as one structured array; the order of rows in a COPY does not
matter. :func:`decode_rows` reads fixed-width results only; queries make them so
(``COALESCE(x, 'NaN')`` for a nullable double).

Supported PostgreSQL types: ``int2``, ``int4``, ``int8``, ``float8``, ``bool``, ``date``,
``timestamptz``/``timestamp`` (microseconds since 2000-01-01) and ``text`` (UTF-8 bytes, the
client encoding quantbeat's connections use).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

#: The header: signature, flags (no OIDs), no extension.
HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
#: The trailer: a field count of -1.
TRAILER = b"\xff\xff"
#: 2000-01-01, PostgreSQL's epoch, in days and microseconds since 1970-01-01.
PG_EPOCH_DAYS = 10_957
PG_EPOCH_MICROS = PG_EPOCH_DAYS * 86_400 * 1_000_000

#: Fixed-width PostgreSQL types and their big-endian NumPy types.
FIXED: dict[str, str] = {
    "int2": ">i2",
    "int4": ">i4",
    "int8": ">i8",
    "float8": ">f8",
    "bool": "?",
    "date": ">i4",
    "timestamptz": ">i8",
    "timestamp": ">i8",
}
#: Groups beyond which :func:`encode_rows` declines (many distinct texts: use text COPY).
MAX_GROUPS = 256


class UnsupportedBatch(ValueError):
    """The batch cannot be written as binary COPY (an unsupported type, or too many distinct
    texts); the caller falls back to text COPY."""


def _column(values: pd.Series, pgtype: str, name: str) -> tuple[npt.NDArray[Any], np.ndarray]:
    """``(null mask, values)`` of one column: fixed types as big-endian arrays (garbage where
    NULL), text as an object array of UTF-8 bytes (``None`` where NULL), each distinct text
    encoded once.

    Raises:
        UnsupportedBatch: ``pgtype`` is not supported.
        ValueError: a value that is not of the column's type (named with the column).
    """
    if pgtype == "text":
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        table = np.array([None, *(str(u).encode() for u in uniques)], dtype=object)
        return codes < 0, table[codes + 1]
    if pgtype not in FIXED:
        raise UnsupportedBatch(f"column {name}: type {pgtype} has no binary encoder")
    try:
        if pgtype == "date":
            days = pd.to_datetime(values).to_numpy("datetime64[D]")
            nulls = np.isnat(days)
            out = (days.astype(np.int64) - PG_EPOCH_DAYS).astype(">i4")
        elif pgtype in ("timestamptz", "timestamp"):
            moments = pd.to_datetime(values, utc=pgtype == "timestamptz")
            if pgtype == "timestamptz":
                moments = moments.dt.tz_localize(None)  # UTC wall time
            micros = moments.to_numpy("datetime64[us]")
            nulls = np.isnat(micros)
            out = (micros.astype(np.int64) - PG_EPOCH_MICROS).astype(">i8")
        elif pgtype == "float8":
            floats = values.to_numpy(dtype=np.float64, na_value=np.nan)
            nulls = np.isnan(floats)  # NaN is stored as NULL, as text COPY writes it
            out = floats.astype(">f8")
        elif pgtype == "bool":
            nulls = values.isna().to_numpy()
            out = np.zeros(len(values), dtype=bool)
            out[~nulls] = values.to_numpy(dtype=object)[~nulls].astype(bool)
        else:
            nulls = values.isna().to_numpy()
            out = values.fillna(0).to_numpy(dtype=np.int64).astype(FIXED[pgtype])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"column {name} ({pgtype}): {exc}") from exc
    return nulls, out


def encode_rows(frame: pd.DataFrame, types: Mapping[str, str]) -> bytes:
    """The rows of ``frame`` as binary COPY tuples (no header or trailer), in the order of
    ``frame``'s columns, each typed by ``types[column]``. Rows come out grouped by their NULL
    pattern and text values, not in ``frame``'s order.

    Raises:
        UnsupportedBatch: a type without an encoder, or more than :data:`MAX_GROUPS`
            distinct combinations of NULLs and texts.
        ValueError: a value that does not fit its column's type.
    """
    n = len(frame)
    if n == 0:
        return b""
    names = list(frame.columns)
    columns = [_column(frame[c], types[c], c) for c in names]
    # One group code per row: the NULL bits of nullable columns and the codes of texts.
    code = np.zeros(n, dtype=np.int64)
    radix = 1
    for (nulls, vals), name in zip(columns, names, strict=True):
        if types[name] == "text":
            codes, uniques = pd.factorize(vals, use_na_sentinel=True)
            part, size = codes + 1, len(uniques) + 1  # 0: NULL (factorized bytes: cheap)
        elif nulls.any():
            part, size = nulls.astype(np.int64), 2
        else:
            continue
        code += part * radix
        radix *= size
        if radix > 1 << 40:
            raise UnsupportedBatch(f"too many distinct values in column {name}")
    groups, inverse = np.unique(code, return_inverse=True)
    if len(groups) > MAX_GROUPS:
        raise UnsupportedBatch(f"{len(groups)} distinct NULL/text patterns in one batch")
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(groups) + 1))
    parts: list[bytes] = []
    for g in range(len(groups)):
        rows = order[bounds[g] : bounds[g + 1]]
        first = int(rows[0])
        fields: list[tuple[str, str]] = [("n", ">i2")]
        fill: list[tuple[str, Any]] = [("n", len(names))]
        for k, ((nulls, vals), name) in enumerate(zip(columns, names, strict=True)):
            if nulls[first]:
                fields.append((f"l{k}", ">i4"))
                fill.append((f"l{k}", -1))
            elif types[name] == "text":
                text = vals[first]
                fields.append((f"l{k}", ">i4"))
                fill.append((f"l{k}", len(text)))
                if text:  # an empty string is a zero-length field
                    fields.append((f"v{k}", f"S{len(text)}"))
                    fill.append((f"v{k}", text))
            else:
                width = np.dtype(FIXED[types[name]]).itemsize
                fields += [(f"l{k}", ">i4"), (f"v{k}", FIXED[types[name]])]
                fill += [(f"l{k}", width), (f"v{k}", vals[rows])]
        block = np.empty(len(rows), dtype=np.dtype(fields))
        for field, value in fill:
            block[field] = value
        parts.append(block.tobytes())
    return b"".join(parts)


def copy_chunks(frame: pd.DataFrame, types: Mapping[str, str], rows: int) -> Iterator[bytes]:
    """A whole binary COPY stream of ``frame``: the header, the rows ``rows`` at a time (to
    bound memory), the trailer.

    Raises:
        UnsupportedBatch, ValueError: as :func:`encode_rows`, before anything is yielded
            for the first chunk.
    """
    yield HEADER
    for start in range(0, len(frame), rows):
        yield encode_rows(frame.iloc[start : start + rows], types)
    yield TRAILER


def row_dtype(types: Sequence[str]) -> np.dtype[Any]:
    """The structured dtype of a fixed-width binary COPY tuple of ``types`` (fields ``n``,
    then ``l0``/``v0``, ``l1``/``v1`` …).

    Raises:
        UnsupportedBatch: a type that is not fixed-width.
    """
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for k, pgtype in enumerate(types):
        if pgtype not in FIXED:
            raise UnsupportedBatch(f"type {pgtype} is not fixed-width")
        fields += [(f"l{k}", ">i4"), (f"v{k}", FIXED[pgtype])]
    return np.dtype(fields)


def decode_rows(data: bytes | memoryview, types: Sequence[str]) -> list[npt.NDArray[Any]]:
    """The columns (native byte order) of a whole binary COPY stream whose rows are all
    fixed-width ``types``: ``int*`` as ``int64``, ``float8`` as ``float64``, ``date`` as
    ``datetime64[D]``, timestamps as ``datetime64[us]``, ``bool`` as ``bool``.

    Raises:
        ValueError: not a binary COPY stream, or a row that is not of ``types`` (a NULL, a
            different field count or width) — the stream is not trusted blindly.
    """
    view = memoryview(data)
    if bytes(view[:11]) != HEADER[:11]:
        raise ValueError("not a binary COPY stream (bad signature)")
    extension = int.from_bytes(view[15:19], "big")
    start = 19 + extension
    if bytes(view[-2:]) != TRAILER:
        raise ValueError("binary COPY stream without its trailer")
    dtype = row_dtype(types)
    body = len(view) - start - 2
    if body % dtype.itemsize:
        raise ValueError(
            f"binary COPY body of {body} bytes is not a whole number of {dtype.itemsize}-byte "
            "rows: a NULL or a field of another width"
        )
    rows = np.frombuffer(view, dtype=dtype, count=body // dtype.itemsize, offset=start)
    if len(rows):
        if not (rows["n"] == len(types)).all():
            raise ValueError("binary COPY rows with another field count")
        for k, pgtype in enumerate(types):
            if not (rows[f"l{k}"] == dtype[f"v{k}"].itemsize).all():
                raise ValueError(f"binary COPY field {k} ({pgtype}) is NULL or of another width")
    out: list[npt.NDArray[Any]] = []
    for k, pgtype in enumerate(types):
        column = rows[f"v{k}"]
        if pgtype == "date":
            out.append((column.astype(np.int64) + PG_EPOCH_DAYS).astype("datetime64[D]"))
        elif pgtype in ("timestamptz", "timestamp"):
            out.append((column.astype(np.int64) + PG_EPOCH_MICROS).astype("datetime64[us]"))
        elif pgtype == "float8":
            out.append(column.astype(np.float64))
        elif pgtype == "bool":
            out.append(column.astype(bool))
        else:
            out.append(column.astype(np.int64))
    return out


def join_chunks(chunks: Iterable[bytes | memoryview]) -> bytes:
    """The chunks of a ``COPY … TO STDOUT`` read as one buffer."""
    return b"".join(chunks)
