"""The one scan-strategy registry (quantbeat.services.strategies): what it holds and how the
capabilities that list strategies read it. The end-to-end check — a throwaway strategy
registered once and found by scans, backtests, health, the AI analysis and the `quantbeat run`
report — is tests/integration/test_strategy_registry.py."""

from __future__ import annotations

import pytest

from quant.backtest.strategies import STRATEGIES as BACKTESTS
from quant.errors import ValidationError
from quant.scans.inputs import ScanInputs
from quantbeat.services import strategies
from quantbeat.services.strategies import (
    Evaluation,
    ScanStrategy,
    Strategy,
    build_params,
    canonical_strategy,
    configured,
    register,
    scan_strategy,
    scan_strategy_names,
    unregister,
)


def test_the_production_strategies_are_registered_with_their_backtests():
    names = [n for n in scan_strategy_names() if not n.startswith("test_")]
    assert names == ["vcp", "closing_bet"]
    for name in names:
        found = scan_strategy(name)
        assert found.backtest in BACKTESTS
        assert found.params  # both take stored overrides
    assert scan_strategy("closing_bet").grades == ("S", "A", "B", "C")
    assert scan_strategy("vcp").backtest == "vcp_breakout"


def test_unknown_names_are_refused_naming_the_known_ones():
    with pytest.raises(ValidationError, match=r"unknown strategy 'nope' \(known: .*closing_bet"):
        scan_strategy("nope")
    with pytest.raises(ValidationError):
        scan_strategy(42)
    assert canonical_strategy(" Closing-Bet ") == "closing_bet"


def test_a_registered_strategy_is_listed_configured_and_forgotten():
    def evaluate(inputs: ScanInputs) -> Evaluation:
        return Evaluation(candidate=False)

    throwaway = ScanStrategy(name="test_registry_unit", label="t", evaluator=Strategy(evaluate))
    register(throwaway)
    try:
        assert "test_registry_unit" in scan_strategy_names()
        assert configured("test_registry_unit", None) is throwaway.evaluator
        with pytest.raises(ValidationError, match="has no parameters to override"):
            build_params("test_registry_unit", {"x": 1})
    finally:
        unregister("test_registry_unit")
    assert "test_registry_unit" not in scan_strategy_names()


def test_overrides_build_a_configured_evaluator():
    default = scan_strategy("vcp").evaluator
    tuned = configured("vcp", {"min_contractions": 3})
    assert tuned is not default
    assert tuned.series == default.series
    bet = configured("closing_bet", {"min_change_pct": 3.0})
    assert bet.flows
    assert bet.needs_flows is not None


def test_no_other_module_keeps_a_list_of_scan_strategies():
    """The lists that used to exist five times (health, AI tasks, the runner, the backtest
    mapping) are gone: nothing but the registry spells out both names together."""
    import pathlib

    root = pathlib.Path(strategies.__file__).resolve().parents[2]
    offenders = []
    for path in [*root.glob("quantbeat/**/*.py"), *root.glob("tasks/*.py")]:
        if path.name == "strategies.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if ('"vcp"' in code and '"closing_bet"' in code) or "FOR_SCAN" in code:
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert offenders == []
