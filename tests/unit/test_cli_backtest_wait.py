"""`quantbeat backtest submit --wait` exits as README's exit codes say: 0 when the run
completed, 5 when it failed, was cancelled or timed out, 4 when it is still running at
--timeout. The service is replaced at the CLI's boundary (the runs themselves are covered by
tests/integration/test_backtests.py)."""

from __future__ import annotations

from typing import Any

import pytest

from quantbeat.cli import backtest as cli_backtest
from quantbeat.cli import main as cli
from quantbeat.infra.settings import reset_settings
from quantbeat.services import backtests as backtest_service

ARGV = [
    "backtest", "submit", "sma_crossover", "KOSPI:005930",
    "--start", "2026-01-05", "--end", "2026-11-20", "--wait", "--timeout", "0.2",
]  # fmt: skip


def _row(state: str, error: str | None = None) -> dict[str, Any]:
    return {
        "run_id": "r1",
        "strategy": "sma_crossover",
        "state": state,
        "progress": 1.0 if state != "running" else 0.5,
        "instruments": "1/1" if state != "running" else "0/1",
        "eta_seconds": None,
        "error": error,
        "metrics": {},
        "label": None,
        "submitted_at": None,
        "started_at": None,
        "finished_at": None,
        "attempts": 1,
    }


@pytest.fixture
def final_state(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("QUANTBEAT_MODE", "distributed")  # no embedded worker for this test
    cli_backtest_service = backtest_service
    monkeypatch.setattr(cli_backtest_service, "submit_backtest", lambda spec, origin: "r1")
    monkeypatch.setattr(cli_backtest, "_print_status", lambda row: None)

    def use(row: dict[str, Any]) -> None:
        monkeypatch.setattr(cli_backtest_service, "status", lambda run_id: row)

    return use


@pytest.mark.parametrize(
    ("row", "code", "says"),
    [
        (_row("completed"), 0, ""),
        (_row("failed", "ValueError: no candles"), 5, "ended failed: ValueError: no candles"),
        (_row("cancelled"), 5, "ended cancelled"),
        (_row("timed_out", "soft time limit"), 5, "ended timed_out"),
        (_row("running"), 4, "still running after 0 s; it keeps running"),
    ],
)
def test_wait_exit_codes(final_state, capsys, row, code, says):
    reset_settings()
    final_state(row)
    assert cli.main(ARGV) == code
    err = capsys.readouterr().err
    assert says in err
    reset_settings()
