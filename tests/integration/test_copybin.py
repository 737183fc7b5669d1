"""Binary COPY (db.copybin) against PostgreSQL itself: what we encode, the server reads back
as the same values; what the server writes, we decode — NULLs, empty and non-ASCII texts,
dates and times around PostgreSQL's epoch, and a stream that is not what it claims."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    select,
)

from db import copybin
from db.bulk import copy_out, copy_rows, pg_types
from db.engine import get_engine, session_scope

pytestmark = pytest.mark.integration

probe = Table(
    "copybin_probe",
    MetaData(),
    Column("i8", BigInteger),
    Column("i4", Integer),
    Column("i2", SmallInteger),
    Column("f8", Double),
    Column("d", Date),
    Column("ts", DateTime(timezone=True)),
    Column("naive", DateTime(timezone=False)),
    Column("s", String(40)),
    Column("b", Boolean),
)

ROWS = [
    (1, 1, 1, 1.5, dt.date(2026, 11, 20), dt.datetime(2026, 11, 20, 6, 30, tzinfo=dt.UTC),
     dt.datetime(2026, 11, 20, 15, 30), "simulated", True),
    (-(2**62), -(2**31), -(2**15), -0.0, dt.date(1999, 12, 31),
     dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC), dt.datetime(2000, 1, 1),
     "", False),
    (2**62, 2**31 - 1, 2**15 - 1, 1e-300, dt.date(2000, 1, 1),
     dt.datetime(2000, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=9))),
     dt.datetime(1970, 1, 1), "종가베팅 ✓ a\tb\\c\nd", None),
    (7, None, None, None, None, None, None, None, None),
    (8, 8, 8, float("inf"), dt.date(2026, 1, 2), None, None, "zero_volume", True),
    (9, 9, 9, 2.25, dt.date(2026, 1, 2), None, None, "zero_volume", True),
]  # fmt: skip


@pytest.fixture
def table(database: str):
    engine = get_engine(database)
    probe.drop(engine, checkfirst=True)
    probe.create(engine)
    yield probe
    probe.drop(engine, checkfirst=True)


def test_types_of_the_model_columns():
    assert pg_types(probe, [c.name for c in probe.c]) == {
        "i8": "int8",
        "i4": "int4",
        "i2": "int2",
        "f8": "float8",
        "d": "date",
        "ts": "timestamptz",
        "naive": "timestamp",
        "s": "text",
        "b": "bool",
    }
    numeric = Table("n", MetaData(), Column("x", Numeric(10, 2)))
    assert pg_types(numeric, ["x"]) is None


def test_encoded_rows_read_back_as_the_same_values(table):
    frame = pd.DataFrame(ROWS, columns=[c.name for c in probe.c])
    types = pg_types(probe, list(frame.columns))
    assert types is not None
    with session_scope() as session:
        copy_rows(session, "copybin_probe", frame, types)
    with session_scope() as session:
        got = session.execute(select(probe).order_by(probe.c.i8)).all()
    by_key = {r[0]: r for r in got}
    assert len(got) == len(ROWS)
    for row in ROWS:
        stored = by_key[row[0]]
        for want, have, column in zip(row, stored, probe.c, strict=True):
            if isinstance(want, dt.datetime) and want.tzinfo is not None:
                assert have == want, column.name  # the same instant
            else:
                assert have == want, column.name


def test_more_groups_than_allowed_is_refused_and_copy_rows_falls_back_to_text(table):
    texts = [f"t{n}" for n in range(copybin.MAX_GROUPS + 1)]
    frame = pd.DataFrame({"i8": range(len(texts)), "s": texts})
    with pytest.raises(copybin.UnsupportedBatch):
        copybin.encode_rows(frame, {"i8": "int8", "s": "text"})
    with session_scope() as session:
        copy_rows(session, "copybin_probe", frame, {"i8": "int8", "s": "text"})
    with session_scope() as session:
        stored = session.execute(select(probe.c.s).order_by(probe.c.i8)).scalars().all()
    assert stored == texts


def test_a_value_that_is_not_of_its_type_names_the_column():
    frame = pd.DataFrame({"d": ["2026-11-20", "not a date"]})
    with pytest.raises(ValueError, match=r"column d \(date\)"):
        copybin.encode_rows(frame, {"d": "date"})


def test_decoded_columns_of_a_server_stream(table):
    frame = pd.DataFrame(ROWS[:3], columns=[c.name for c in probe.c])
    with session_scope() as session:
        copy_rows(session, "copybin_probe", frame, pg_types(probe, list(frame.columns)))
    with session_scope() as session:
        i8, d, ts, f8 = copy_out(
            session,
            "SELECT i8, d, ts, f8 FROM copybin_probe WHERE i8 > %(low)s ORDER BY i8",
            {"low": -(2**63)},
            ("int8", "date", "timestamptz", "float8"),
        )
    assert i8.tolist() == [-(2**62), 1, 2**62]
    assert d.tolist() == [dt.date(1999, 12, 31), dt.date(2026, 11, 20), dt.date(2000, 1, 1)]
    assert ts.astype("datetime64[us]").tolist() == [
        dt.datetime(1999, 12, 31, 23, 59, 59, 999999),
        dt.datetime(2026, 11, 20, 6, 30),
        dt.datetime(1999, 12, 31, 15, 0),
    ]
    assert np.signbit(f8[0])  # -0.0 kept
    assert f8[1:].tolist() == [1.5, 1e-300]


def test_a_null_in_a_stream_read_as_fixed_width_is_an_error_not_garbage(table):
    frame = pd.DataFrame(ROWS, columns=[c.name for c in probe.c])
    with session_scope() as session:
        copy_rows(session, "copybin_probe", frame, pg_types(probe, list(frame.columns)))
    with (
        session_scope() as session,
        pytest.raises(ValueError, match=r"NULL or a field of another width|NULL or of another"),
    ):
        copy_out(session, "SELECT i8, i4 FROM copybin_probe", {}, ("int8", "int4"))


def test_a_stream_that_is_not_binary_copy_is_refused():
    with pytest.raises(ValueError, match="bad signature"):
        copybin.decode_rows(b"1\t2\n", ("int8",))
    truncated = copybin.HEADER + b"\x00\x01\x00\x00\x00\x08" + b"\x00" * 3
    with pytest.raises(ValueError, match=r"trailer|whole number"):
        copybin.decode_rows(truncated, ("int8",))
