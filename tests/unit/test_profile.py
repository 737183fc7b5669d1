"""Where commands run (quantbeat.infra.profile) and which ones the CLI runs embedded."""

from __future__ import annotations

from pathlib import Path

import pytest

from quant.errors import ConfigError
from quantbeat.cli.common import command_path, command_profile
from quantbeat.cli.main import cli_command
from quantbeat.infra.profile import Mode, embedded_environment, resolve_mode
from quantbeat.infra.settings import load_settings, reset_settings

STORES = ("DATABASE_URL", "BROKER_URL", "RESULT_BACKEND", "REDIS_URL")


@pytest.fixture
def bare_env(monkeypatch, tmp_path):
    """No QUANTBEAT_* variable and no .env file."""
    for key in [k for k in __import__("os").environ if k.startswith("QUANTBEAT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    reset_settings()
    yield monkeypatch
    reset_settings()


def test_nothing_configured_is_embedded(bare_env):
    assert resolve_mode(load_settings()) is Mode.EMBEDDED


@pytest.mark.parametrize("store", STORES)
def test_any_store_url_means_distributed(bare_env, store):
    bare_env.setenv(f"QUANTBEAT_{store}", "redis://somewhere:6379/0")
    assert resolve_mode(load_settings()) is Mode.DISTRIBUTED


def test_a_dotenv_file_counts_and_the_explicit_mode_wins(bare_env, tmp_path):
    (tmp_path / ".env").write_text("QUANTBEAT_DATABASE_URL=postgresql+psycopg://db/quantbeat\n")
    assert resolve_mode(load_settings()) is Mode.DISTRIBUTED
    bare_env.setenv("QUANTBEAT_MODE", "embedded")
    assert resolve_mode(load_settings()) is Mode.EMBEDDED


def test_the_embedded_environment_points_at_the_run_file(tmp_path):
    env = embedded_environment(tmp_path / "var")
    assert (
        env["QUANTBEAT_DATABASE_URL"]
        == f"sqlite:///{(tmp_path / 'var').resolve()}/quantbeat.sqlite"
    )
    assert env["QUANTBEAT_BROKER_URL"] == "memory://"
    assert env["QUANTBEAT_MODE"] == "embedded"


@pytest.mark.parametrize(
    ("argv", "path"),
    [
        (
            ["backtest", "submit", "sma_crossover", "KOSPI:005930", "--start", "x"],
            ("backtest", "submit"),
        ),
        (["scan", "vcp", "--show"], ("scan",)),
        (["--help"], ()),
        (["jobs", "list", "--since", "1h"], ("jobs", "list")),
    ],
)
def test_the_command_path_skips_arguments_and_options(argv, path):
    assert command_path(cli_command(), argv) == path


@pytest.mark.parametrize("command", ["worker", "beat", "flower"])
def test_deployment_commands_are_refused_embedded(bare_env, command):
    with (
        pytest.raises(ConfigError, match=f"quantbeat {command} needs a broker"),
        command_profile(cli_command(), [command]),
    ):
        pass


def test_distributed_commands_change_nothing(bare_env, tmp_path):
    bare_env.setenv("QUANTBEAT_MODE", "distributed")
    reset_settings()
    with command_profile(cli_command(), ["worker"]):
        pass  # not refused: a deployment is configured
    assert not (Path(tmp_path) / "var").exists()
