"""Fuzzing masking with arbitrary values. ``tests/unit/test_masking.py`` already covers
``mask_text`` on long texts built from identifier characters, separators and key words (up to
1 MiB, planted secrets); this adds what it does not generate: any Unicode (NUL, lone
surrogates, combining marks, right-to-left text) for ``mask_text``, and arbitrary nested
JSON-like values for ``mask_value`` (the task arguments a worker masks before recording).

The contract: never raises; idempotent; keeps the shape of the value (mapping keys, list
lengths, non-string scalars); a string under a sensitive key never survives.
"""

from __future__ import annotations

import json
import math

from hypothesis import example, given
from hypothesis import strategies as st

from quantbeat.infra.masking import MASK, is_sensitive_key, mask_text, mask_value
from tests.unit.fuzz.common import fuzz

_SECRET = "Zq9-secret-Xv7"
_KEYS = st.one_of(
    st.sampled_from(
        [
            "password",
            "api_key",
            "apiKey",
            "Authorization",
            "token",
            "max_tokens",
            "secret",
            "gemini_api_key",
            "krx_pw",
            "market",
            "trade_date",
            "",
            "\x00",
            "pass\x00word",
        ]
    ),
    st.text(max_size=12),
)
_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.just(_SECRET),
    st.sampled_from(
        [
            f"redis://:{_SECRET}@host:6379/0",
            f"Authorization: Bearer {_SECRET}",
            f"https://x.test/cb?api_key={_SECRET}&a=1",
            f"password={_SECRET}",
            MASK,
            "\ud800",
            "\x00" * 3,
        ]
    ),
)
json_like = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.dictionaries(_KEYS, inner, max_size=5),
        st.dictionaries(st.integers(-3, 3), inner, max_size=3),  # non-string keys
    ),
    max_leaves=20,
)


def _same_shape(before: object, after: object) -> None:
    if isinstance(before, dict):
        assert isinstance(after, dict)
        assert list(after) == list(before)
        for key, value in before.items():
            if after[key] == MASK and value != MASK:
                assert isinstance(key, str)
                assert is_sensitive_key(key)
                continue
            _same_shape(value, after[key])
    elif isinstance(before, list | tuple):
        assert isinstance(after, list)
        assert len(after) == len(before)
        for one, other in zip(before, after, strict=True):
            _same_shape(one, other)
    elif isinstance(before, str):
        assert isinstance(after, str)
    elif isinstance(before, float) and math.isnan(before):
        assert isinstance(after, float)
        assert math.isnan(after)
    else:
        assert after == before


def _strings_under_sensitive_keys(value: object) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and is_sensitive_key(key) and isinstance(item, str) and item:
                found.append(item)
            found += _strings_under_sensitive_keys(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found += _strings_under_sensitive_keys(item)
    return found


@fuzz(max_examples=400)
@given(value=json_like)
@example(value={"password": _SECRET, "nested": [{"token": [_SECRET]}], 1: {"api_key": 5}})
def test_mask_value_never_raises_keeps_shape_and_is_idempotent(value: object) -> None:
    masked = mask_value(value)
    _same_shape(value, masked)
    assert mask_value(masked) == masked or _has_nan(masked)
    assert _SECRET not in repr(_strings_under_sensitive_keys(masked))
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        json.dumps(masked)  # a JSON-able input stays JSON-able (NaN as JSON's NaN)


def _has_nan(value: object) -> bool:
    return "nan" in repr(value)


@fuzz(max_examples=400)
@given(text=st.text(max_size=300))
@example(text="\ud800password=\x00" + _SECRET)
@example(text="token=\u202e" + _SECRET)
def test_mask_text_on_any_unicode_never_raises_and_is_idempotent(text: str) -> None:
    masked = mask_text(text)
    assert isinstance(masked, str)
    assert mask_text(masked) == masked


@fuzz(max_examples=300)
@given(
    prefix=st.text(max_size=30),
    key=st.sampled_from(["password", "api_key", "token", "secret", "Authorization"]),
    separator=st.sampled_from(["=", ": ", '="', '": "']),
    suffix=st.text(alphabet=" ,;&\n\"'}", max_size=3),
)
def test_a_sensitive_pair_inside_any_unicode_is_masked(
    prefix: str, key: str, separator: str, suffix: str
) -> None:
    """Whatever comes before it, ``<key><sep><secret>`` loses the secret (a key glued to a
    preceding letter or digit is another word, e.g. ``xpassword``, and is left alone)."""
    if prefix and (prefix[-1].isalnum() or prefix[-1] in "_-."):
        prefix += " "
    text = f"{prefix}{key}{separator}{_SECRET}{suffix}"
    assert _SECRET not in mask_text(text), text


def test_regression_a_quoted_secret_cut_before_its_closing_quote_is_masked() -> None:
    """Found by the test above: ``password="secret`` (a truncated sample, such as the first
    400 characters an ``oversized`` dead letter keeps, or a cut log line) kept the secret."""
    assert mask_text(f'password="{_SECRET}') == f'password="{MASK}'
    assert mask_text(f"{{'api_key': '{_SECRET}\nnext") == f"{{'api_key': '{MASK}\nnext"
    assert mask_text(f'{{"token": "{_SECRET}\\') == f'{{"token": "{MASK}'
    assert mask_text(f'{{"password": "{_SECRET}", "n": 1}}') == f'{{"password": "{MASK}", "n": 1}}'
