"""quant.backtest.trade_kpis: a backtest's trades in the track record's KPI terms, against
figures worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quant.backtest.trade_kpis import KPI_NAMES, trade_kpis
from quant.errors import ValidationError


def test_kpis_of_a_hand_computed_sequence():
    r = [0.05, -0.02, -0.03, 0.0, 0.04, -0.01, -0.01, -0.02]
    k = trade_kpis(r)
    assert k["count"] == 8
    assert k["wins"] == 2
    assert k["win_rate"] == pytest.approx(0.25)
    assert k["mean_net_return"] == pytest.approx(0.0 / 8)
    assert k["median_net_return"] == pytest.approx(-0.01)
    # gains 0.09, losses 0.09: profit factor 1
    assert k["profit_factor"] == pytest.approx(1.0)
    # 0.25 · 0.045 − 0.75 · mean(|-0.02, -0.03, 0, -0.01, -0.01, -0.02|) = 0.01125 − 0.01125
    assert k["expectancy"] == pytest.approx(0.0, abs=1e-15)
    assert k["expectancy"] == pytest.approx(k["mean_net_return"], abs=1e-15)
    assert k["max_consecutive_losses"] == 3  # -0.01, -0.01, -0.02 at the end
    assert set(KPI_NAMES) <= set(k)


def test_expectancy_is_the_mean_net_return():
    rng = np.random.default_rng(5)
    r = rng.normal(0.002, 0.03, 500)
    k = trade_kpis(r)
    assert k["expectancy"] == pytest.approx(float(r.mean()), rel=1e-12)
    assert k["profit_factor"] == pytest.approx(r[r > 0].sum() / -r[r < 0].sum())


def test_no_trades_and_no_losses():
    empty = trade_kpis([])
    assert empty["count"] == 0
    assert empty["win_rate"] is None
    assert empty["profit_factor"] is None
    only_gains = trade_kpis([0.01, 0.02])
    assert only_gains["profit_factor"] is None
    assert only_gains["no_losses"] is True
    assert only_gains["max_consecutive_losses"] == 0


@pytest.mark.parametrize("bad", [[0.01, math.nan], [math.inf], [[0.01]]])
def test_bad_input_is_named(bad):
    with pytest.raises(ValidationError) as info:
        trade_kpis(bad)
    assert info.value.field == "net_returns"
