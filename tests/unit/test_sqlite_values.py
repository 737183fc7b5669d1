"""The embedded upsert's values (db.bulk._sqlite_values), converted a column at a time, are
exactly what converting value by value (db.bulk._sqlite_value) gives — for every dtype a
frame brings, with its missing values."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from db.bulk import _sqlite_value, _sqlite_values


def _one_by_one(frame: pd.DataFrame) -> list[tuple[object, ...]]:
    columns = [frame[c].astype(object).tolist() for c in frame.columns]
    return [tuple(_sqlite_value(v) for v in row) for row in zip(*columns, strict=True)]


AT_CLOSE = dt.datetime(2026, 11, 20, 15, 30)


def test_every_dtype_matches_the_value_by_value_conversion():
    kst = dt.timezone(dt.timedelta(hours=9))
    frame = pd.DataFrame(
        {
            "f": [1.5, np.nan, -0.0],
            "f_full": [0.1 + 0.2, 1e300, 3.0],
            "i": np.array([1, -(2**62), 7], dtype=np.int64),
            "b": [True, False, True],
            "d": [dt.date(2026, 11, 20), None, dt.date(1999, 12, 31)],
            "naive": pd.Series([dt.datetime(2026, 11, 20, 6, 30, 0, 123456), None, AT_CLOSE]),
            "aware": pd.Series(
                [AT_CLOSE.replace(tzinfo=kst), None, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
            ).astype("datetime64[ns, UTC]"),
            "s": ["simulated", None, "종가 ✓"],
            "s_nan": ["a", np.nan, "c"],
            "mixed": [1, "x", dt.date(2026, 1, 2)],
            "d_repeated": [dt.date(2026, 11, 20), dt.date(2026, 11, 20), None],
        }
    )
    got = _sqlite_values(frame)
    assert got == _one_by_one(frame)
    assert got[1][0] is None  # NaN
    assert got[0][4] == "2026-11-20"
    assert got[0][6] == "2026-11-20 06:30:00.000000"  # 15:30 KST as naive UTC
    assert got[1][5] is None  # NaT


def test_an_empty_frame_and_all_missing_columns():
    frame = pd.DataFrame({"f": [np.nan, np.nan], "d": [None, None], "s": [None, None]})
    assert _sqlite_values(frame) == _one_by_one(frame)
    assert _sqlite_values(frame.iloc[:0]) == []
