"""scripts/coverage_floors.py, the floors ``make test`` checks after the suite: one line per
floor with the measured figure, exit 1 when a floor is missed or there is no data."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def floors() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "coverage_floors", ROOT / "scripts/coverage_floors.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["coverage_floors"] = module
    spec.loader.exec_module(module)
    return module


def test_each_floor_is_printed_with_its_verdict(
    floors: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = {"quant/*": 93.04, None: 84.96}
    monkeypatch.setattr(floors, "measure", lambda include, config: figures[include])
    assert floors.main(["pyproject.toml"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "coverage quant/: 93.0 % (floor 90 %) met",
        "coverage project: 84.9 % (floor 85 %) missed",  # shown truncated, never rounded up
    ]
    figures[None] = 85.0
    assert floors.main(["pyproject.toml"]) == 0


def test_no_data_fails_with_a_reason(
    floors: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cov.toml"
    config.write_text(f'[tool.coverage.run]\ndata_file = "{tmp_path / "none" / ".coverage"}"\n')
    assert floors.main([str(config)]) == 1
    assert "no data" in capsys.readouterr().err
    assert floors.main([str(tmp_path / "missing.toml")]) == 1
