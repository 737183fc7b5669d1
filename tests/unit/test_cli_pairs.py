"""``NAME=VALUE`` options (backtest --param/--exec, portfolio --rule) parse one way."""

from __future__ import annotations

import pytest

from quant.errors import ValidationError
from quantbeat.cli.common import parse_pairs


def test_values_are_json_when_they_parse_and_text_otherwise():
    assert parse_pairs(
        ["risk=0.01", 'grades=["S","A"]', "on=true", "name=vcp", " spaced = 3 "], "--rule"
    ) == {"risk": 0.01, "grades": ["S", "A"], "on": True, "name": "vcp", "spaced": 3}
    assert parse_pairs(None, "--rule") == {}


@pytest.mark.parametrize("item", ["nope", "=3"])
def test_an_item_without_a_name_or_equals_is_refused_naming_the_option(item):
    with pytest.raises(ValidationError, match=f"--exec must look like NAME=VALUE, got '{item}'"):
        parse_pairs([item], "--exec")
