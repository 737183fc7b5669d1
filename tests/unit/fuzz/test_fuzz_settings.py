"""Fuzzing settings values: every ``QUANTBEAT_*`` variable of :class:`Settings` given
arbitrary and adversarial text (ints, floats, booleans, durations, URLs, JSON lists and
objects, paths, literals) — and the stored settings (``quantbeat settings set``) given
arbitrary JSON values.

The contract: :func:`load_settings` returns settings whose values work where they are used
(a time zone ZoneInfo knows, finite positive provider rates, cache TTLs Redis accepts), or
raises :class:`quant.errors.ConfigError` naming the variable. Stored settings: ``validate``
returns the value to store or raises :class:`quant.errors.ValidationError` naming the key;
an accepted strategy override builds parameters the scan can use.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from beat_schedule import BEAT_SCHEDULE
from quant.errors import ConfigError, ValidationError
from quantbeat.infra.settings import Settings, load_settings
from quantbeat.services.settings_store import validate
from quantbeat.services.strategies import build_params, scan_strategy_names, with_parameters
from tests.unit.fuzz.common import fuzz
from tests.unit.fuzz.test_fuzz_args import values

FIELDS = sorted(Settings.model_fields)
#: Redis refuses an expiry beyond this (seconds): SET ... EX takes milliseconds in an int64.
REDIS_MAX_EXPIRE_S = (2**63 - 1) // 1000

# Text an environment variable can hold: no NUL, no lone surrogate.
_env_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
    max_size=40,
)
_ENV_VALUES = st.sampled_from(
    [
        "",
        " ",
        "0",
        "-1",
        "1",
        " 7 ",
        "1_000",
        "0x10",
        "5.0",
        "1e3",
        "1" * 5000,
        "9" * 30,
        "nan",
        "inf",
        "-inf",
        "1e309",
        "-0",
        "true",
        "yes",
        "on",
        "2",
        "[]",
        "{}",
        "null",
        '["a"]',
        "[1]",
        "[[1]]",
        "a,b",
        "notjson",
        '{"1d": 0}',
        '{"1d": 99999999999999999999999999}',
        '{"krx": -1}',
        '{"krx": 0}',
        '{"krx": "nan"}',
        '{"krx": 1e999}',
        '{"nope": 1}',
        '{"1d": "x"}',
        '["sma", "nope"]',
        "redis://[::1",
        "rediss://h:6379/0?ssl_cert_reqs=",
        "redis://:pw@h:99999/0",
        "redis://h/0?ssl_ca_certs=/x",
        "postgresql://u:p@h:-1/x",
        "postgresql://u:p@[::1/x",
        "memory://",
        "Not/A_Zone",
        "../../etc/passwd",
        "UTC",
        "Asia/Seoul",
        "DEBUG",
        "debug",
        "production",
        "0.0.0.0",
        "::",
        "[::1]",
        "999.1.1.1",
        "-host",
        "a" * 300,
        "\udcff",  # an undecodable byte as os.environ keeps it
    ]
)


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _usable(settings: Settings) -> None:
    """Accepted values work where they are used."""
    ZoneInfo(settings.timezone)
    for provider, rate in settings.provider_rates.items():
        assert math.isfinite(rate), (provider, rate)
        assert rate > 0, (provider, rate)
    for interval, ttl in settings.cache_ttl.items():
        assert 1 <= ttl <= REDIS_MAX_EXPIRE_S, (interval, ttl)


@fuzz(max_examples=400)
@given(
    assignments=st.dictionaries(
        st.sampled_from(FIELDS), st.one_of(_ENV_VALUES, _env_text), min_size=1, max_size=3
    )
)
@example(assignments={"crypto_tickers": "notjson"})
@example(assignments={"provider_rates": "{"})
@example(assignments={"timezone": "Not/A_Zone"})
@example(assignments={"timezone": "../../etc/passwd"})
@example(assignments={"provider_rates": '{"krx": 1e999}'})
@example(assignments={"provider_rates": '{"krx": 0}'})
@example(assignments={"cache_ttl": '{"1d": 99999999999999999999999999}'})
def test_any_environment_value_loads_or_raises_config_error(assignments: dict[str, str]) -> None:
    env = {f"QUANTBEAT_{name.upper()}": value for name, value in assignments.items()}
    with _env(env):
        try:
            settings = load_settings()
        except ConfigError as exc:
            error = exc
        else:
            _usable(settings)
            return
    message = str(error)
    assert message.startswith("invalid configuration"), message
    assert any(variable in message for variable in env) or "QUANTBEAT_" in message, message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        # Regressions found by the test above.
        ("QUANTBEAT_CRYPTO_TICKERS", "notjson"),  # pydantic_settings.SettingsError escaped
        ("QUANTBEAT_PROVIDER_RATES", "{"),  # idem
        ("QUANTBEAT_TIMEZONE", "Not/A_Zone"),  # accepted; ZoneInfo raised KeyError at use
        ("QUANTBEAT_PROVIDER_RATES", '{"krx": 1e999}'),  # an infinite rate disabled the limit
        ("QUANTBEAT_PROVIDER_RATES", '{"krx": 0}'),  # refused later, inside every task
        ("QUANTBEAT_CACHE_TTL", '{"1d": 99999999999999999999999999}'),  # Redis refuses it
    ],
)
def test_regressions_bad_values_raise_config_error_naming_the_variable(
    variable: str, value: str
) -> None:
    with _env({variable: value}), pytest.raises(ConfigError) as caught:
        load_settings()
    assert variable in str(caught.value)


# --------------------------------------------------------------------------- stored settings

_KEYS = st.one_of(
    st.sampled_from([f"strategy.{name}" for name in scan_strategy_names()]),
    st.sampled_from([f"schedule.{entry}.enabled" for entry in sorted(BEAT_SCHEDULE)]),
    st.sampled_from(["strategy.", "strategy.nope", "schedule..enabled", "schedule.x.enabled"]),
    st.text(max_size=20),
)


@st.composite
def _overrides(draw: st.DrawFn, strategy: str) -> object:
    """Parameter overrides for ``strategy``: real field names with odd values, mostly."""
    if draw(st.integers(0, 5)) == 0:
        return draw(values)
    fields: list[str] = []
    for kind in build_params_types(strategy):
        fields += [f.name for f in dataclasses.fields(kind)]
    names = st.sampled_from(fields) if fields else st.text(max_size=8)
    return draw(st.dictionaries(st.one_of(names, st.text(max_size=8)), values, max_size=3))


def build_params_types(strategy: str) -> tuple[type, ...]:
    try:
        return tuple(type(p) for p in build_params(strategy, {}))
    except ValidationError:
        return ()


@fuzz(max_examples=400)
@given(data=st.data(), key=_KEYS)
def test_any_stored_setting_validates_or_raises_validation_error(
    data: st.DataObject, key: str
) -> None:
    strategy = key.removeprefix("strategy.")
    value = data.draw(_overrides(strategy) if strategy in with_parameters() else values)
    try:
        stored = validate(key, value)
    except ValidationError as exc:
        error = exc
    else:
        if key.startswith("strategy."):
            assert isinstance(stored, dict)
            build_params(strategy, stored)  # what a scan does with it
        return
    assert error.field is not None
    message = str(error)
    assert repr(key) in message or strategy in message or "setting" in message, error


def _scan_inputs() -> object:
    """One instrument's 300 daily bars (a noisy uptrend) and investor flows."""
    import numpy as np

    from quant.indicators.candles import Candles
    from quant.scans.inputs import FLOW_COLUMNS, ScanInputs

    rng = np.random.default_rng(7)
    n = 300
    close = 10_000 * np.exp(np.cumsum(rng.normal(0.002, 0.02, n)))
    high, low = close * 1.01, close * 0.99
    candles = Candles.from_columns(
        np.datetime64("2025-01-01", "D") + np.arange(n),
        unit="D",
        open=close,
        high=high,
        low=low,
        close=close,
        volume=rng.uniform(1e5, 1e6, n),
        traded_value=rng.uniform(1e10, 1e12, n),
    )
    flows = {c: rng.normal(0, 1e9, n) for c in FLOW_COLUMNS}
    return ScanInputs("005930", candles, flows=flows, rs_rating=90.0, benchmark_rs_raw=1.0)


_INPUTS = _scan_inputs()


@fuzz(max_examples=200)
@given(data=st.data(), strategy=st.sampled_from(sorted(with_parameters())))
def test_accepted_strategy_overrides_evaluate_without_crashing(
    data: st.DataObject, strategy: str
) -> None:
    """What ``settings set strategy.<name>`` accepts, a scan can evaluate with: an override
    that validates must not make every instrument's evaluation fail later."""
    from quantbeat.services.strategies import scan_strategy

    value = data.draw(_overrides(strategy))
    try:
        stored = validate(f"strategy.{strategy}", value)
    except ValidationError:
        return
    scan = scan_strategy(strategy)
    assert scan.configure is not None
    evaluator = scan.configure(build_params(strategy, stored))
    evaluator.evaluate(_INPUTS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        # Regressions found by the two tests above: validate() raised TypeError, or accepted a
        # value every later evaluation of the strategy failed on (TypeError, IndexError ...).
        ("strategy.vcp", None, "strategy.vcp"),
        ("strategy.vcp", {"dry_up_weak": None}, "dry_up_weak"),
        ("strategy.vcp", {"dry_up_weak": []}, "dry_up_weak"),
        ("strategy.vcp", {"dry_up_weak": [1, None]}, "dry_up_weak[1]"),
        ("strategy.vcp", {"dry_up_scores": [""]}, "dry_up_scores[0]"),
        ("strategy.vcp", {"stop_factor": None}, "stop_factor"),
        ("strategy.vcp", {"max_chase": "0.1"}, "max_chase"),
        ("strategy.vcp", {"invalid_contraction_points": 10**400}, "invalid_contraction_points"),
        ("strategy.closing_bet", {"volume_lookback": 2.5}, "volume_lookback"),
        ("strategy.closing_bet", {"change_bonus": [[5.0, 1, 2]]}, "change_bonus[0]"),
    ],
)
def test_regressions_bad_overrides_raise_validation_error_naming_the_parameter(
    key: str, value: object, named: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        validate(key, value)
    assert caught.value.field == key
    assert named in str(caught.value)
