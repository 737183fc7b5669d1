"""Reference bars' checks (quant.market.quality.check_reference_bars) and the sector-ETF
setting (quant.gate_config.parse_sector_etfs, QUANTBEAT_SECTOR_ETFS)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from quant.errors import ValidationError
from quant.gate_config import parse_sector_etfs
from quant.market.quality import check_reference_bars
from quant.market.types import REFERENCE_BAR_COLUMNS
from quantbeat.infra.settings import Settings

DAY = dt.date(2026, 11, 20)


def _frame(*rows: tuple[object, ...]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(REFERENCE_BAR_COLUMNS))


def test_good_bars_pass_and_an_exchange_rate_may_lack_volume():
    frame = _frame(
        ("1001", DAY, 2500.0, 2520.0, 2490.0, 2510.0, 4.1e8, 9.0e12),
        ("USDKRW", DAY, 1390.0, 1395.0, 1385.0, 1392.5, np.nan, np.nan),
    )
    kept, rejected = check_reference_bars(frame)
    assert rejected == []
    assert list(kept["code"]) == ["1001", "USDKRW"]
    assert list(kept.columns) == list(REFERENCE_BAR_COLUMNS)


@pytest.mark.parametrize(
    ("row", "reason", "words"),
    [
        (("1028", DAY, 2500.0, 2480.0, 2490.0, 2485.0, 1.0, 1.0), "high_below_low",
         "1028 at 2026-11-20: high 2480.0 < low 2490.0"),
        (("2001", DAY, 800.0, 810.0, 790.0, np.nan, 1.0, 1.0), "non_finite",
         "a price of 2001 at 2026-11-20 is not a finite number"),
        (("069500", DAY, 0.0, 10.0, 0.0, 5.0, 1.0, 1.0), "non_positive_price",
         "069500 at 2026-11-20: prices must be > 0"),
        (("1028", DAY, 340.0, 335.0, 330.0, 332.0, 1.0, 1.0), "open_outside_range",
         "open 340.0 outside"),
        (("1028", DAY, 332.0, 335.0, 330.0, 336.0, 1.0, 1.0), "close_outside_range",
         "close 336.0 outside"),
        (("091160", DAY, 10.0, 11.0, 9.0, 10.0, -5.0, 1.0), "negative_volume",
         "volume -5.0 / value 1.0 must be finite and ≥ 0"),
        (("091160", DAY, 10.0, 11.0, 9.0, 10.0, 5.0, np.inf), "negative_volume",
         "must be finite and ≥ 0"),
        ((None, DAY, 10.0, 11.0, 9.0, 10.0, 5.0, 5.0), "missing_key", "is missing"),
    ],
)  # fmt: skip
def test_bad_bars_are_rejected_naming_the_value_and_the_rest_is_kept(row, reason, words):
    good = ("1001", DAY, 2500.0, 2520.0, 2490.0, 2510.0, 4.1e8, 9.0e12)
    kept, rejected = check_reference_bars(_frame(good, row))
    assert list(kept["code"]) == ["1001"]
    assert len(rejected) == 1
    assert rejected[0].reason == reason
    assert rejected[0].dataset == "reference_bars"
    assert words in rejected[0].detail


def test_a_duplicate_bar_is_rejected():
    bar = ("1001", DAY, 2500.0, 2520.0, 2490.0, 2510.0, 4.1e8, 9.0e12)
    kept, rejected = check_reference_bars(_frame(bar, bar))
    assert len(kept) == 1
    assert [r.reason for r in rejected] == ["duplicate_row"]


def test_a_frame_without_a_column_is_refused():
    with pytest.raises(ValidationError, match="reference bars frame lacks columns"):
        check_reference_bars(pd.DataFrame({"code": ["1001"]}))


def test_sector_etfs_parse_in_order():
    assert parse_sector_etfs(" 091160:반도체 , 069500:KOSPI200,") == {
        "091160": "반도체",
        "069500": "KOSPI200",
    }


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("091160", "entry '091160' must be CODE:NAME"),
        ("91160:반도체", "entry '91160:반도체' must be CODE:NAME"),
        ("091160:", "must be CODE:NAME"),
        ("091160:a,091160:b", "code 091160 appears twice"),
        (" , ", "no sector ETF given"),
    ],
)
def test_bad_sector_etfs_are_refused_naming_the_entry(text, words):
    with pytest.raises(ValidationError, match=words):
        parse_sector_etfs(text)


def test_the_setting_is_validated():
    assert Settings(_env_file=None, sector_etfs="091160:반도체").sector_etfs == "091160:반도체"
    with pytest.raises(Exception, match="QUANTBEAT_SECTOR_ETFS: entry 'x' must be CODE:NAME"):
        Settings(_env_file=None, sector_etfs="x")
