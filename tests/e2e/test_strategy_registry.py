"""One registration makes a scan strategy known everywhere (issue 15): a throwaway strategy is
registered once, in quantbeat.services.strategies, and `quantbeat run` (embedded, in this
process, so its in-process worker sees the registration) scans it, analyses its candidates,
backtests it and prints it; health's signal check and the stored settings know it too. SQLite
is the embedded default here, not a stand-in for PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pytest

from quant.errors import ValidationError
from quant.scans.inputs import ScanInputs
from quantbeat.cli.run import _print_report
from quantbeat.infra.profile import embedded_environment, environment
from quantbeat.infra.settings import reset_settings
from quantbeat.services import health, runner
from quantbeat.services.pipeline import pipeline_scans
from quantbeat.services.strategies import (
    Evaluation,
    ScanStrategy,
    Strategy,
    build_params,
    register,
    unregister,
)

NAME = "test_throwaway"
DAY = dt.date(2026, 11, 20)


def _rising(inputs: ScanInputs) -> Evaluation:
    """A candidate when the scan day closed above the close 20 sessions earlier."""
    close = np.asarray(inputs.candles.close, dtype=float)
    if len(close) < 21 or not np.isfinite(close[-21:]).all():
        return Evaluation(candidate=False, reasons=("too little history",))
    change = close[-1] / close[-21] - 1.0
    return Evaluation(
        candidate=bool(change > 0),
        score=float(change * 100),
        grade="T",
        entry_price=float(close[-1]),
        status="rising",
        reasons=(f"20-session change {change:+.1%}",),
    )


@pytest.fixture
def throwaway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for key in [k for k in os.environ if k.startswith("QUANTBEAT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUANTBEAT_SIM_UNIVERSE_SIZE", "60")
    reset_settings()
    register(
        ScanStrategy(
            name=NAME, label="throwaway", evaluator=Strategy(_rising), backtest="sma_crossover"
        )
    )
    yield tmp_path / "var"
    unregister(NAME)
    reset_settings()


def test_one_registration_reaches_scans_ai_backtests_health_and_the_report(throwaway, capsys):
    assert NAME in pipeline_scans("krx_close")  # it reads no flows: it runs after the close

    report = runner.run(trade_date=DAY, distributed=False, timeout=600)

    scanned = report.scans[NAME]
    assert scanned["coverage"] == "60/60"
    assert scanned["top"], "some simulated instrument rose over 20 sessions"
    assert all(c.grade == "T" for c in scanned["top"])
    analysed = report.analysis[NAME]
    assert analysed["analysed"] == len(scanned["top"])
    assert analysed["failed"] == 0
    assert report.backtests["sma_crossover"]["state"] == "completed"

    _print_report(report)
    printed = capsys.readouterr().out
    assert f"{NAME} scan" in printed
    assert "sma_crossover backtest" in printed

    with environment(embedded_environment(throwaway)):
        signals = health.check_health(now=dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC))
        (component,) = [c for c in signals.components if c.name == "signals"]
        assert NAME in component.details
        assert component.details[NAME]["latest"] == DAY.isoformat()

    with pytest.raises(ValidationError, match="has no parameters to override"):
        build_params(NAME, {"window": 5})  # the settings store asks the same registry
