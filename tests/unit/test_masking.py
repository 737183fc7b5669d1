from __future__ import annotations

import pytest

from quantbeat.infra.masking import MASK, is_sensitive_key, mask_text, mask_value

GOOGLE_KEY = "AIzaSyA-" + "a" * 31


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ('{"api_key": "abc123"}', "abc123"),
        ("secret_key=s3cr3t&x=1", "s3cr3t"),
        ("access_key: AKIA123", "AKIA123"),
        ('"balance": 1234.5', "1234.5"),
        ('"krw": "50000"', "50000"),
        ('"btc": 0.25', "0.25"),
        ("QUANTBEAT_KRX_PW=pa55", "pa55"),
        ("redis://:hunter2@redis:6379/0", "hunter2"),
        ("postgresql+psycopg://quant:pw0rd@db/quantbeat", "pw0rd"),
        ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop"),
        (f"calling with key {GOOGLE_KEY} now", GOOGLE_KEY),
        ("password='x y z'", "x y z"),
    ],
)
def test_mask_text_hides_secrets(text: str, secret: str):
    masked = mask_text(text)
    assert secret not in masked
    assert MASK in masked


@pytest.mark.parametrize(
    "text",
    ["trade_date=2026-11-20 market=KOSPI", "foreign_net_krw=123456", "tokens_in=1200", ""],
)
def test_mask_text_keeps_ordinary_values(text: str):
    assert mask_text(text) == text


def test_mask_value_walks_structures_and_keeps_none():
    value = {
        "args": [{"gemini_api_key": "k", "ticker": "005930"}],
        "password": None,
        "nested": {"Balance": 10, "krw": 5, "url": "redis://u:p@h/0"},
        "foreign_net_krw": 99,
    }
    assert mask_value(value) == {
        "args": [{"gemini_api_key": MASK, "ticker": "005930"}],
        "password": None,
        "nested": {"Balance": MASK, "krw": MASK, "url": f"redis://u:{MASK}@h/0"},
        "foreign_net_krw": 99,
    }


def test_masking_is_idempotent():
    text = 'api_key="abc" redis://:pw@h'
    assert mask_text(mask_text(text)) == mask_text(text)


@pytest.mark.parametrize(
    ("key", "sensitive"),
    [
        ("api_key", True),
        ("X-Api-Key", True),
        ("flower_basic_auth", True),
        ("krx_pw", True),
        ("prompt", True),
        ("prompt_version", False),
        ("ticker", False),
        ("session_date", False),
        ("tokens_out", False),
        ("cash_balance", True),
    ],
)
def test_sensitive_keys(key: str, sensitive: bool):
    assert is_sensitive_key(key) is sensitive
