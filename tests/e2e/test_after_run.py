"""After `make run`, every read command works on the embedded default (issue 24): a fresh
directory, no QUANTBEAT_* variable, `quantbeat run`, then the commands a newcomer types next.
SQLite is the subject here (the embedded default), not a stand-in for PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

QUANTBEAT = str(Path(sys.executable).with_name("quantbeat"))
#: Enough instruments for candidates and trades, few enough for a quick first run.
UNIVERSE = "150"


def quantbeat(cwd: Path, *args: str, universe: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTBEAT_")}
    env["COLUMNS"] = "200"
    if universe:  # the simulated universe's size, as `make run` would have it smaller
        env["QUANTBEAT_SIM_UNIVERSE_SIZE"] = UNIVERSE
    return subprocess.run(
        [QUANTBEAT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def after_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A directory where `quantbeat run` (the latest closed session, as `make run`) ran."""
    where = tmp_path_factory.mktemp("after-run")
    done = quantbeat(where, "run", universe=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "embedded mode" in done.stdout
    return where, done.stdout


def test_scan_show_lists_the_runs_candidates(after_run):
    where, report = after_run
    (day,) = {ln.split(", ")[-1].strip() for ln in report.splitlines() if "top vcp" in ln}
    done = quantbeat(where, "scan", "vcp", "--show", "--date", day, "--json")
    assert done.returncode == 0, done.stderr
    assert "embedded: " in done.stderr  # one line says where it ran
    ranked = json.loads(done.stdout)["candidates"]
    assert ranked, "the run stored VCP candidates"
    assert ranked[0]["instrument"] in report  # the run's report lists the same top candidate


def test_backtest_list_shows_the_runs_backtests(after_run):
    where, _ = after_run
    done = quantbeat(where, "backtest", "list")
    assert done.returncode == 0, done.stderr
    for strategy in ("vcp_breakout", "closing_bet"):
        (row,) = [ln for ln in done.stdout.splitlines() if strategy in ln]
        assert "completed" in row
        assert f"{UNIVERSE}/{UNIVERSE}" in row


def test_jobs_list_shows_the_runs_tasks(after_run):
    where, _ = after_run
    done = quantbeat(where, "jobs", "list", "--json")
    assert done.returncode == 0, done.stderr
    tasks = {job["task_name"] for job in json.loads(done.stdout)}
    assert {"quantbeat.scans.run", "quantbeat.backtest.run"} <= tasks


def test_the_crypto_commands_read_the_runs_book_and_queue_to_an_in_process_worker(after_run):
    where, report = after_run
    book = quantbeat(where, "crypto", "book", "--json")
    assert book.returncode == 0, book.stderr
    stored = json.loads(book.stdout)
    assert stored["portfolio"] == "crypto-paper"
    assert stored["drift"] == []
    assert f"equity KRW {stored['equity']:,.0f}" in report  # the run's report showed it
    signals = quantbeat(where, "crypto", "signals", "--json")
    assert signals.returncode == 0, signals.stderr
    assert len(json.loads(signals.stdout)["signals"]) == 6  # the six hours the run showed
    # a command that queues a task gets a worker in its own process (nothing else runs)
    (last,) = {ln.split(" … ")[1].split(":")[0] + ":00:00+00:00" for ln in report.splitlines()
               if "crypto signals KRW-BTC" in ln}  # fmt: skip
    again = quantbeat(where, "crypto", "signal", "--at", last)
    assert again.returncode == 0, again.stderr
    assert "in-process worker" in again.stderr
    assert again.stdout.startswith(f"SIMULATED KRW-BTC at {last}: ")
    assert "(stored before)" in again.stdout


def test_health_reports_the_embedded_components_healthy(after_run):
    where, _ = after_run
    done = quantbeat(where, "health", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    components = report["components"]
    for name in ("broker", "result_backend", "workers", "beat"):
        assert components[name]["message"].startswith("embedded: ")
    assert components["database"]["status"] == "healthy"
    assert components["signals"]["status"] == "healthy"
    assert components["data_freshness"]["status"] == "healthy"


def test_a_deployment_command_is_refused_clearly(after_run):
    where, _ = after_run
    done = quantbeat(where, "worker")
    assert done.returncode == 3
    assert "embedded" in done.stderr
    assert "QUANTBEAT_BROKER_URL" in done.stderr
