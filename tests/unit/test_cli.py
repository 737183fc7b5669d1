"""The CLI turns every error into one line and an exit code; no tracebacks."""

from __future__ import annotations

import pytest

from quantbeat.cli import main as cli
from quantbeat.infra.settings import reset_settings


@pytest.fixture(autouse=True)
def _fresh_settings():
    reset_settings()
    yield
    reset_settings()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["collect", "daily", "--date", "2026-13-01", "--no-wait"], "'2026-13-01'"),
        (["collect", "daily", "--market", "NYSE", "--no-wait"], "'NYSE'"),
        (["run", "--date", "yesterday"], "'yesterday'"),
        (["crypto", "signal", "--at", "2026-11-20T10:00", "--no-wait"], "'2026-11-20T10:00'"),
        (["crypto", "sync", "--at", "tomorrow", "--no-wait"], "'tomorrow'"),
        (["worker", "--queues", "gpu"], "'gpu'"),
        (["analyze", "KOSPI:005930", "--strategy", "momentum", "--no-wait"], "'momentum'"),
        (["analyze", "KOSPI:005930", "--date", "2026-13-01", "--no-wait"], "'2026-13-01'"),
        (
            [
                "backtest",
                "submit",
                "nope",
                "KOSPI:005930",
                "--start",
                "2026-01-02",
                "--end",
                "2026-06-30",
            ],
            "unknown strategy 'nope'",
        ),
        (
            [
                "backtest",
                "submit",
                "sma_crossover",
                "KOSPI:005930",
                "--start",
                "2026-01-02",
                "--end",
                "2026-06-30",
                "-p",
                "fast",
            ],
            "'fast'",
        ),
        (
            [
                "backtest",
                "submit",
                "sma_crossover",
                "KOSPI:005930",
                "--start",
                "2026-01-02",
                "--end",
                "2026-06-30",
                "-p",
                "fast=40",
            ],
            "fast < slow",
        ),
        (
            [
                "backtest",
                "submit",
                "sma_crossover",
                "KOSPI:005930",
                "--start",
                "June",
                "--end",
                "2026-06-30",
            ],
            "start",
        ),
    ],
)
def test_invalid_input_is_one_line_exit_2(capsys, argv, needle):
    code, err = run_cli(capsys, *argv)
    assert code == cli.EXIT_USAGE
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_unknown_option_is_a_usage_error(capsys):
    code, err = run_cli(capsys, "collect", "daily", "--dat", "x")
    assert code == cli.EXIT_USAGE
    assert "No such option" in err


def test_config_error_names_the_variable(capsys, monkeypatch):
    monkeypatch.setenv("QUANTBEAT_VISIBILITY_TIMEOUT", "100")
    code, err = run_cli(capsys, "db", "current")
    assert code == cli.EXIT_CONFIG
    assert "QUANTBEAT_VISIBILITY_TIMEOUT=100" in err
    assert len(err.strip().splitlines()) == 1


def test_unreachable_database_is_exit_4(capsys, monkeypatch):
    monkeypatch.setenv(
        "QUANTBEAT_DATABASE_URL", "postgresql+psycopg://quant:topsecret@127.0.0.1:1/nope"
    )
    code, err = run_cli(capsys, "db", "current")
    assert code == cli.EXIT_UNAVAILABLE
    assert "cannot reach the database" in err
    assert "topsecret" not in err
    assert len(err.strip().splitlines()) == 1


def test_flower_refuses_to_start_without_basic_auth(capsys, monkeypatch):
    monkeypatch.delenv("QUANTBEAT_FLOWER_BASIC_AUTH", raising=False)
    code, err = run_cli(capsys, "flower")
    assert code == cli.EXIT_CONFIG
    assert "QUANTBEAT_FLOWER_BASIC_AUTH" in err


def test_help_lists_the_commands(capsys):
    code = cli.main(["--help"])
    out = capsys.readouterr().out
    assert code == 0
    for command in ("run", "worker", "beat", "flower", "db", "collect", "backtest", "analyze"):
        assert command in out
