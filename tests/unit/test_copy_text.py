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
