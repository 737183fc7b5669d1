"""``quantbeat run`` on the embedded default, as ``make run`` invokes it: a fresh directory,
no QUANTBEAT_* variables, no services. SQLite is the subject here (the embedded default), not a
stand-in for PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

QUANTBEAT = str(Path(sys.executable).with_name("quantbeat"))


def run_quantbeat(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTBEAT_")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [QUANTBEAT, "run", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedded")


def test_run_collects_a_simulated_day_for_the_whole_universe(workdir: Path):
    done = run_quantbeat(workdir, "--date", "2026-11-20")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "SIMULATED" in out
    assert "embedded mode" in out
    assert "2,500" in out  # the default universe
    assert "new 2,500" in out
    assert (workdir / "var" / "quantbeat.sqlite").exists()


def test_rerunning_the_same_day_changes_nothing(workdir: Path):
    done = run_quantbeat(workdir, "--date", "2026-11-20")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "new 0, changed 0, unchanged 2,500" in done.stdout
    (line,) = [ln for ln in done.stdout.splitlines() if "candles in database" in ln]
    assert line.split()[-1] == "2,500"


def test_a_weekend_has_no_session(workdir: Path):
    done = run_quantbeat(workdir, "--date", "2026-11-22")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no KRX session" in done.stdout


def test_bad_date_is_one_line_and_exit_2(workdir: Path):
    done = run_quantbeat(workdir, "--date", "2026-02-30")
    assert done.returncode == 2
    assert "'2026-02-30'" in done.stderr
    assert "Traceback" not in done.stderr
