"""The packed candle months' format and helpers (db.candle_months), and the embedded
default's side: SQLite keeps no packed months, so packing is a no-op there and its reads stay
on the rows (the PostgreSQL behaviour: tests/integration/test_candle_months.py)."""

from __future__ import annotations

import datetime as dt
import struct

import numpy as np
import pytest
from typer.testing import CliRunner

from db import candle_months
from db.candle_months import RECORD, decode, month_start, next_month
from db.candles import _PRICE_COLUMNS
from quantbeat.cli.main import app as cli_app
from quantbeat.services import candle_months as packing


def _record(day: dt.date, *values: float) -> bytes:
    """One bar as PostgreSQL's int8send/float8send write it (network byte order)."""
    return struct.pack(">q6d", (day - dt.date(1970, 1, 1)).days, *values)


def test_the_record_is_a_day_and_the_price_columns_in_their_order():
    assert RECORD.names == ("day", *_PRICE_COLUMNS)
    assert RECORD.itemsize == 56


def test_months_joined_end_to_end_decode_as_one_array():
    packed = _record(dt.date(2026, 1, 30), 1.0, 2.0, 0.5, 1.5, 1e4, float("nan")) + _record(
        dt.date(2026, 2, 2), 1.5, 2.5, 1.0, 2.25, 2e4, 3.3e6
    )
    days, values = decode(packed)
    assert days.dtype == np.int64
    assert days.astype("datetime64[D]").tolist() == [dt.date(2026, 1, 30), dt.date(2026, 2, 2)]
    assert values.dtype == np.float64
    assert values.shape == (2, 6)
    assert np.array_equal(values[1], [1.5, 2.5, 1.0, 2.25, 2e4, 3.3e6])
    assert np.isnan(values[0, 5])
    assert decode(b"")[1].shape == (0, 6)


def test_a_cut_record_is_refused_with_its_length():
    with pytest.raises(ValueError, match="of 60 bytes: not whole 56-byte bars"):
        decode(_record(dt.date(2026, 1, 30), *(1.0,) * 6) + b"\x00" * 4)


@pytest.mark.parametrize(
    ("day", "first", "after"),
    [
        (dt.date(2026, 1, 31), dt.date(2026, 1, 1), dt.date(2026, 2, 1)),
        (dt.date(2026, 2, 28), dt.date(2026, 2, 1), dt.date(2026, 3, 1)),
        (dt.date(2028, 2, 29), dt.date(2028, 2, 1), dt.date(2028, 3, 1)),
        (dt.date(2026, 12, 1), dt.date(2026, 12, 1), dt.date(2027, 1, 1)),
    ],
)
def test_months(day: dt.date, first: dt.date, after: dt.date):
    assert month_start(day) == first
    assert next_month(first) == after


def test_sqlite_keeps_no_packed_months(sqlite_url: str):
    assert packing.status() == {"supported": False, "stale": 0}
    report = packing.pack()
    assert (report["packed"], report["listed"], report["remaining"]) == (0, 0, 0)
    result = CliRunner().invoke(cli_app, ["db", "pack-candles"])
    assert result.exit_code == 0, result.output
    assert "nothing to pack: SQLite reads its candles directly" in result.output


def test_a_bad_batch_or_limit_is_refused_before_any_statement():
    with pytest.raises(ValueError, match="batch must be at least 1, got 0"):
        candle_months.pack_batch(None, batch=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be at least 1, got 0"):
        candle_months.pack(None, limit=0)  # type: ignore[arg-type]
