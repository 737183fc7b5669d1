"""COPY text formatting: what PostgreSQL will parse back is exactly what we had."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from db.bulk import copy_text


def test_escapes_nulls_and_precision():
    frame = pd.DataFrame(
        {
            "i": [1, 2],
            "d": [dt.date(2026, 11, 20), None],
            "s": ["tab\there\\back\nline", None],
            "f": [0.1 + 0.2, np.nan],
        }
    )
    lines = copy_text(frame).split("\n")
    assert lines[-1] == ""  # a trailing newline ends the last row
    first, second = (line.split("\t") for line in lines[:2])
    assert first == ["1", "2026-11-20", "tab\\there\\\\back\\nline", repr(0.1 + 0.2)]
    assert second == ["2", "\\N", "\\N", "\\N"]
    assert float(first[3]) == 0.1 + 0.2  # full precision survives


def test_string_dtype_columns_are_escaped_too():
    frame = pd.DataFrame({"s": pd.array(["a\\b", "t\tab", None], dtype="string")})
    assert copy_text(frame).split("\n")[:3] == ["a\\\\b", "t\\tab", "\\N"]


def test_sqlite_values_match_sqlalchemy_storage_whatever_the_dtype():
    from db.bulk import _sqlite_values

    aware = pd.DataFrame(
        {"ts": pd.to_datetime(["2026-11-20T09:00:00+09:00"], utc=True), "n": np.array([3])}
    )
    naive = pd.DataFrame({"ts": [pd.Timestamp("2026-11-20 00:00:00")], "n": [3]})
    objects = pd.DataFrame(
        {"ts": [dt.datetime(2026, 11, 20, 9, tzinfo=dt.timezone(dt.timedelta(hours=9)))], "n": [3]}
    )
    dates = pd.DataFrame({"ts": [dt.date(2026, 11, 20)], "n": [np.nan]})
    expected = ("2026-11-20 00:00:00.000000", 3)
    assert _sqlite_values(aware) == [expected]
    assert _sqlite_values(naive) == [expected]
    assert _sqlite_values(objects) == [expected]
    assert _sqlite_values(dates) == [("2026-11-20", None)]
    assert type(_sqlite_values(aware)[0][1]) is int
