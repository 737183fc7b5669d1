"""One registration makes a scan strategy known everywhere (issue 15): a throwaway strategy is
registered once, in quantbeat.services.strategies, and `quantbeat run` (embedded, in the same
process as the registration, so its in-process worker sees it) scans it, analyses its
candidates, backtests it and prints it; health's signal check and the stored settings know it
too. The run happens in a child process (an embedded worker leaves Celery's process-wide state
behind, which the test process must not inherit). SQLite is the embedded default here, not a
stand-in for PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

NAME = "test_throwaway"

DRIVER = r'''
import datetime as dt, json, sys
import numpy as np
from quant.errors import ValidationError
from quantbeat.cli.run import _print_report
from quantbeat.infra.profile import embedded_environment, environment
from quantbeat.services import health, runner
from quantbeat.services.pipeline import pipeline_scans
from quantbeat.services.strategies import Evaluation, ScanStrategy, Strategy, build_params, register

NAME = "test_throwaway"
DAY = dt.date(2026, 11, 20)


def rising(inputs):
    """A candidate when the scan day closed above the close 20 sessions earlier."""
    close = np.asarray(inputs.candles.close, dtype=float)
    if len(close) < 21 or not np.isfinite(close[-21:]).all():
        return Evaluation(candidate=False, reasons=("too little history",))
    change = close[-1] / close[-21] - 1.0
    return Evaluation(
        candidate=bool(change > 0), score=float(change * 100), grade="T",
        entry_price=float(close[-1]), status="rising",
        reasons=(f"20-session change {change:+.1%}",),
    )


# the one place the strategy is registered
register(ScanStrategy(name=NAME, label="throwaway", evaluator=Strategy(rising),
                      backtest="sma_crossover"))
report = runner.run(trade_date=DAY, distributed=False, timeout=600)
_print_report(report)
with environment(embedded_environment(report_dir := __import__("pathlib").Path("var"))):
    checked = health.check_health(now=dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC))
signals = next(c for c in checked.components if c.name == "signals")
try:
    build_params(NAME, {"window": 5})
    settings_refusal = None
except ValidationError as exc:
    settings_refusal = str(exc)
facts = {
    "pipeline": pipeline_scans("krx_close"),
    "scan": {k: v for k, v in report.scans[NAME].items() if k != "top"},
    "top_grades": [c.grade for c in report.scans[NAME]["top"]],
    "analysis": report.analysis[NAME],
    "backtest": report.backtests.get("sma_crossover", {}).get("state"),
    "health": signals.details.get(NAME),
    "settings_refusal": settings_refusal,
}
print("FACTS " + json.dumps(facts, default=str))
'''


def test_one_registration_reaches_scans_ai_backtests_health_and_the_report(tmp_path: Path):
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTBEAT_")}
    env.update({"QUANTBEAT_SIM_UNIVERSE_SIZE": "60", "COLUMNS": "200"})
    done = subprocess.run(
        [sys.executable, "driver.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("FACTS ")]
    facts = json.loads(line.removeprefix("FACTS "))

    assert NAME in facts["pipeline"]  # it reads no flows: it runs after the close
    assert facts["scan"]["coverage"] == "60/60"
    assert facts["top_grades"], "some simulated instrument rose over 20 sessions"
    assert set(facts["top_grades"]) == {"T"}
    assert facts["analysis"]["analysed"] == len(facts["top_grades"])
    assert facts["analysis"]["failed"] == 0
    assert facts["backtest"] == "completed"
    assert facts["health"]["latest"] == "2026-11-20"
    assert "has no parameters to override" in facts["settings_refusal"]
    printed = done.stdout
    assert f"{NAME} scan" in printed
    assert f"{NAME} analysis" in printed
    assert "sma_crossover backtest" in printed
