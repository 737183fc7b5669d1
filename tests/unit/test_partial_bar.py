"""The day so far as the scan day's bar (quant.indicators.candles.with_partial_bar)."""

from __future__ import annotations

import numpy as np
import pytest

from quant.errors import ValidationError
from quant.indicators.candles import Candles, with_partial_bar


def test_a_partial_bar_is_appended_or_replaces_the_day_s_bar():
    times = np.array(["2026-11-18", "2026-11-19"], dtype="datetime64[D]")
    ones = np.ones(2)
    base = Candles(times, ones, ones * 2, ones * 0.5, ones, ones * 10, ones * 100)
    bar = (1.0, 3.0, 0.9, 2.5, 7.0, 70.0)
    appended = with_partial_bar(base, np.datetime64("2026-11-20"), bar)
    assert list(appended.time.astype(str)) == ["2026-11-18", "2026-11-19", "2026-11-20"]
    assert appended.close[-1] == 2.5
    assert appended.volume[-1] == 7.0
    assert appended.traded_value[-1] == 70.0
    assert list(base.close) == [1.0, 1.0]  # the input is not changed
    replaced = with_partial_bar(appended, np.datetime64("2026-11-20"), (1, 2, 1, 1.5, 1, 1))
    assert len(replaced) == 3
    assert replaced.close[-1] == 1.5
    with pytest.raises(ValidationError, match="before the last stored bar"):
        with_partial_bar(base, np.datetime64("2026-11-17"), bar)
