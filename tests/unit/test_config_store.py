"""Stored settings: validation of keys and values, and the in-process TTL cache (hits,
misses, TTL expiry, invalidation on set, the cross-process generation check)."""

from __future__ import annotations

import pytest

from quant.errors import ValidationError
from quantbeat.services.settings_store import SettingsCache, validate
from quantbeat.services.strategies import build_params


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_cache(values, *, ttl=3600.0, generation=None, check_every=5.0):
    clock = Clock()
    loads = []

    def load():
        loads.append(clock.now)
        return dict(values)

    cache = SettingsCache(
        load, ttl=ttl, generation=generation, check_every=check_every, clock=clock
    )
    return cache, clock, loads


def test_reads_are_served_from_memory_until_the_ttl_passes():
    cache, clock, loads = make_cache({"strategy.vcp": {"window": 100}})
    assert cache.get("strategy.vcp") == {"window": 100}
    for _ in range(9):
        clock.now += 60
        assert cache.get("strategy.vcp") == {"window": 100}
    assert cache.get("missing", "default") == "default"
    stats = cache.stats()
    assert (stats.hits, stats.misses, len(loads)) == (10, 1, 1)
    assert stats.hit_rate == pytest.approx(10 / 11)
    clock.now = 3600.0  # one hour after the load
    cache.get("strategy.vcp")
    assert len(loads) == 2
    assert cache.stats().misses == 2


def test_invalidate_forces_a_reload():
    cache, _, loads = make_cache({})
    cache.get("x")
    cache.invalidate()
    cache.get("x")
    assert len(loads) == 2


def test_a_generation_change_elsewhere_is_seen_within_check_every():
    generation = {"n": 1}
    cache, clock, loads = make_cache({}, generation=lambda: generation["n"], check_every=5.0)
    cache.get("x")
    generation["n"] = 2  # another process changed a setting
    clock.now = 4.0
    cache.get("x")
    assert len(loads) == 1  # not checked yet
    clock.now = 5.0
    cache.get("x")
    assert len(loads) == 2
    clock.now = 11.0
    cache.get("x")
    assert len(loads) == 2  # same generation: still a hit


def test_an_unreachable_generation_store_falls_back_to_the_ttl():
    def broken() -> int:
        raise ConnectionError("redis down")

    cache, clock, loads = make_cache({"a": 1}, generation=broken, check_every=1.0)
    assert cache.get("a") == 1
    clock.now = 30.0
    assert cache.get("a") == 1
    assert len(loads) == 1


def test_stats_before_any_read():
    cache, _, _ = make_cache({})
    assert cache.stats().hit_rate is None
    assert cache.stats().age_s is None


def test_schedule_switch_must_name_an_entry_and_be_boolean():
    assert validate("schedule.krx-close.enabled", False) is False
    with pytest.raises(ValidationError, match="no schedule entry 'nope'"):
        validate("schedule.nope.enabled", False)
    with pytest.raises(ValidationError, match="must be true or false, got 'no'"):
        validate("schedule.krx-close.enabled", "no")


def test_unknown_key_is_named():
    with pytest.raises(ValidationError, match="unknown setting 'colour'"):
        validate("colour", "blue")


def test_strategy_overrides_are_checked_by_the_strategy():
    assert validate("strategy.vcp", {"min_contractions": 3}) == {"min_contractions": 3}
    with pytest.raises(ValidationError, match="unknown vcp parameter 'bogus'"):
        validate("strategy.vcp", {"bogus": 1})
    with pytest.raises(ValidationError, match="closing_bet"):
        validate("strategy.closing_bet", {"min_change_pct": 30.0, "max_change_pct": 10.0})
    with pytest.raises(ValidationError, match="no parameters to override"):
        validate("strategy.sma", {})
    with pytest.raises(ValidationError, match="must be an object"):
        validate("strategy.vcp", [1, 2])


def test_build_params_routes_fields_and_converts_json_lists():
    _trend, vcp = build_params("vcp", {"min_contractions": 3, "window": 90})
    assert (vcp.min_contractions, vcp.window) == (3, 90)
    bet, _supply = build_params(
        "closing_bet", {"volume_ratio_bonus": [[10.0, 5], [2.0, 1]], "min_change_pct": 4.0}
    )
    assert bet.volume_ratio_bonus == ((10.0, 5), (2.0, 1))
    assert bet.min_change_pct == 4.0
