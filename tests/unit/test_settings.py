from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from quant.errors import ConfigError
from quantbeat.infra.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_documents_every_setting():
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*(QUANTBEAT_[A-Z0-9_]+)=", text, flags=re.M))
    expected = {f"QUANTBEAT_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "undocumented settings"
    assert documented - expected == set(), "documented settings that do not exist"


def test_env_prefix_and_types(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("QUANTBEAT_DB_POOL_SIZE", "12")
    monkeypatch.setenv("QUANTBEAT_GEMINI_API_KEY", "AIza-secret")
    monkeypatch.setenv("QUANTBEAT_LOG_LEVEL", "debug")
    s = load_settings()
    assert s.db_pool_size == 12
    assert isinstance(s.gemini_api_key, SecretStr)
    assert "AIza-secret" not in repr(s)
    assert "AIza-secret" not in str(s.gemini_api_key)
    assert s.log_level == "DEBUG"


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("QUANTBEAT_SIM_SEED", raising=False)
    (tmp_path / ".env").write_text("QUANTBEAT_SIM_SEED=777\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings().sim_seed == 777


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("QUANTBEAT_DB_POOL_SIZE", "lots")
    with pytest.raises(ConfigError, match=r"QUANTBEAT_DB_POOL_SIZE.*'lots'"):
        load_settings()


def test_defaults_follow_seed_000():
    s = Settings(_env_file=None)
    assert (s.db_pool_size, s.db_max_overflow) == (10, 10)
    assert s.timezone == "Asia/Seoul"
    assert s.broker_url.startswith("redis://")
    assert s.result_backend.startswith("redis://")


def test_an_empty_gemini_key_means_the_offline_analyzer():
    from quantbeat.infra.settings import Settings

    assert Settings(_env_file=None, gemini_api_key="").gemini_api_key is None
    assert Settings(_env_file=None, gemini_api_key="  ").gemini_api_key is None
    key = Settings(_env_file=None, gemini_api_key="AIza-test").gemini_api_key
    assert key is not None
    assert key.get_secret_value() == "AIza-test"
