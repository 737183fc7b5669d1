from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantbeat.infra import masking
from quantbeat.infra.masking import MASK, is_sensitive_key, mask_text, mask_value

GOOGLE_KEY = "AIzaSyA-" + "a" * 31
GITHUB_TOKEN = "ghp_" + "A1b2" * 9
M = MASK


def _same(text: str) -> tuple[str, str]:
    """A case whose text must come out unchanged."""
    return text, text


# input -> expected output: every decision of the key and value tables, and the false
# positives of issue 16 (max_tokens, tokens_in, token_count, balance_date, ...).
CASES: list[tuple[str, str]] = [
    # URLs: user-info passwords, also with '/', '@' and ':' in them; query parameters.
    ("redis://:hunter2@redis:6379/0", f"redis://:{M}@redis:6379/0"),
    (
        "postgresql+psycopg://quant:pw0rd@db/quantbeat",
        f"postgresql+psycopg://quant:{M}@db/quantbeat",
    ),
    ("redis://:p/a@ss@host:6379/0", f"redis://:{M}@host:6379/0"),
    ("amqp://user:a:b/c@rabbit//vhost", f"amqp://user:{M}@rabbit//vhost"),
    ("redis://:a@h1,redis://:b@h2 up", f"redis://:{M}@h1,redis://:{M}@h2 up"),
    (
        "see http://host:8080/x?next=redis://:pw@h now",
        f"see http://host:8080/x?next=redis://:{M}@h now",
    ),
    _same("http://host:8080/path and user@example.com"),
    _same("https://user@host/x"),
    ("https://h/x?api_key=SECRET&a=1", f"https://h/x?api_key={M}&a=1"),
    ("https://h/x?a=1&access_token=SECRET", f"https://h/x?a=1&access_token={M}"),
    (f"https://h/v1?key={GOOGLE_KEY}&lang=ko", f"https://h/v1?key={M}&lang=ko"),
    ("https://h/x?sig=abc123&expires=99", f"https://h/x?sig={M}&expires=99"),
    ("https://h/api?serviceKey=abc%2F1&numOfRows=10", f"https://h/api?serviceKey={M}&numOfRows=10"),
    # Headers.
    ("Authorization: Bearer abcdefghijklmnop", f"Authorization: Bearer {M}"),
    ("Authorization: Token abc123def456", f"Authorization: Token {M}"),
    ("authorization: basic dXNlcjpwYXNz", f"authorization: basic {M}"),
    ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {M}"),
    ("Proxy-Authorization: secretvalue", f"Proxy-Authorization: {M}"),
    ("X-Api-Key: k-123", f"X-Api-Key: {M}"),
    ("Cookie: sessionid=abc; csrftoken=def", f"Cookie: {M}; csrftoken={M}"),
    ("retrying with Bearer eyJhbGciOi.J9.x after 401", f"retrying with Bearer {M} after 401"),
    _same("Basic authentication failed"),
    # found by the 1 MB property test: "Basic" before a pair whose value was masked; the
    # second pass took "password=" before the mask for a Basic credential (not idempotent)
    ("=Basic password=PLANTEDzz9Q =Basic", f"=Basic password={M} =Basic"),
    _same("a bearer of bad news"),
    # Query strings and env-style text.
    ("secret_key=s3cr3t&x=1", f"secret_key={M}&x=1"),
    ("QUANTBEAT_KRX_PW=pa55", f"QUANTBEAT_KRX_PW={M}"),
    (
        "GEMINI_API_KEY=abc\nQUANTBEAT_ENV=production",
        f"GEMINI_API_KEY={M}\nQUANTBEAT_ENV=production",
    ),
    ("export DB_PASSWORD='x y z'", f"export DB_PASSWORD='{M}'"),
    ("quantbeat run --api-key=abc --market KOSPI", f"quantbeat run --api-key={M} --market KOSPI"),
    ("password = hunter2, user = bob", f"password = {M}, user = bob"),
    # JSON and Python reprs.
    ('{"password": "x y"}', f'{{"password": "{M}"}}'),
    ('{"api_key": "a\\"b", "n": 1}', f'{{"api_key": "{M}", "n": 1}}'),
    ("{'apiKey': 'k', 'market': 'KOSPI'}", f"{{'apiKey': '{M}', 'market': 'KOSPI'}}"),
    (
        '{"balance": 1234.5, "krw": "50000", "btc": 0.25}',
        f'{{"balance": {M}, "krw": "{M}", "btc": {M}}}',
    ),
    ('{"credentials": ["a", "b"], "x": 1}', f'{{"credentials": {M}, "x": 1}}'),
    _same('{"password": null, "token": "", "secret": true}'),
    # Tokens of known shapes, wherever they are.
    (f"calling with key {GOOGLE_KEY} now", f"calling with key {M} now"),
    (f"cloned with {GITHUB_TOKEN}", f"cloned with {M}"),
    # Money balances are secret (seed 001), flows and dates are not.
    ("krw_balance=50000 cash_balance=1", f"krw_balance={M} cash_balance={M}"),
    _same("balance_date=2026-11-20 foreign_net_krw=123456"),
    # False positives of issue 16 and other ordinary fields.
    _same("max_tokens=1024 tokens_in=1200 tokens_out=80"),
    _same("token_count=3 prompt_tokens=12 total_token_count=99"),
    _same("auth_type=basic access_key_id=AKIA1 session_date=2026-11-20"),
    _same("routing_key=cpu order_imbalance=0.3 unbalanced=1"),
    _same("settings.set key=QUANTBEAT_AI_MODEL"),
    _same("trade_date=2026-11-20 market=KOSPI at 15:30:00"),
    _same("no_auth=True password=None"),
    ("prompt_version=3 prompt: summarise the news", f"prompt_version=3 prompt: {M} the news"),
    _same(""),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_mask_text_table(text: str, expected: str):
    assert mask_text(text) == expected


def test_the_table_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("text", [text for text, _ in CASES])
def test_masking_is_idempotent(text: str):
    once = mask_text(text)
    assert mask_text(once) == once


@pytest.mark.parametrize(
    ("key", "sensitive"),
    [
        ("api_key", True),
        ("X-Api-Key", True),
        ("apiKey", True),
        ("APIKEY", True),
        ("gemini_api_key", True),
        ("serviceKey", True),
        ("private_key", True),
        ("flower_basic_auth", True),
        ("krx_pw", True),
        ("dbpassword", True),
        ("accessToken", True),
        ("refresh_token", True),
        ("session_id", True),
        ("sessionId", True),
        ("prompt", True),
        ("cash_balance", True),
        ("Balance", True),
        ("krw", True),
        ("authorization", True),
        ("set-cookie", True),
        ("prompt_version", False),
        ("prompt_tokens", False),
        ("max_tokens", False),
        ("tokens_in", False),
        ("token_count", False),
        ("balance_date", False),
        ("auth_type", False),
        ("primary_key", False),
        ("routing_key", False),
        ("key", False),
        ("ticker", False),
        ("session_date", False),
        ("foreign_net_krw", False),
        ("", False),
    ],
)
def test_sensitive_keys(key: str, sensitive: bool):
    assert is_sensitive_key(key) is sensitive


@pytest.mark.parametrize("key", ["key", "sig", "signature"])
def test_query_parameter_names(key: str):
    assert is_sensitive_key(key, in_query=True)
    assert not is_sensitive_key(key)


def test_mask_value_walks_structures_and_keeps_what_reveals_nothing():
    value = {
        "args": [{"gemini_api_key": "k", "ticker": "005930"}],
        "password": None,
        "token": "",
        "no_auth": True,
        "nested": {"Balance": 10, "krw": 5, "url": "redis://u:p@h/0"},
        "foreign_net_krw": 99,
        "max_tokens": 1024,
        "tuple": ("https://h/x?api_key=SECRET", 1),
        "credentials": {"user": "u", "password": "p"},
    }
    assert mask_value(value) == {
        "args": [{"gemini_api_key": MASK, "ticker": "005930"}],
        "password": None,
        "token": "",
        "no_auth": True,
        "nested": {"Balance": MASK, "krw": MASK, "url": f"redis://u:{MASK}@h/0"},
        "foreign_net_krw": 99,
        "max_tokens": 1024,
        "tuple": [f"https://h/x?api_key={MASK}", 1],
        "credentials": MASK,
    }


def test_a_huge_key_is_decided_without_the_cache():
    assert is_sensitive_key("x" * 1000 + "_password")
    assert not is_sensitive_key("x" * 1000 + "_count")


# --- properties --------------------------------------------------------------------------

SECRET = "PLANTEDzz9Q"
PLANTS = [
    f" password={SECRET} ",
    f' {{"api_key": "{SECRET} x"}} ',
    f" redis://:p/{SECRET}@host:6379/0 ",
    f" https://h/x?api_key={SECRET}&a=1 ",
    f" Authorization: Token {SECRET} ",
    f" Bearer {SECRET} ",
    f" --db-password={SECRET} ",
    " AIza" + SECRET * 3 + "ab ",
]
PLANTED_GOOGLE_KEY = "AIza" + SECRET * 3 + "ab"

_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
_SEPARATORS = [*"=:&?,\"' ", "://", "@", "\\", "\n"]
_WORDS = [
    "password",
    "token",
    "api_key",
    "max_tokens",
    "key",
    "Bearer",
    "Basic",
    "AIza",
    "redis",
    "https",
    "balance",
    "krw",
]

# A piece of input: a long run of one identifier character or of a short identifier (the
# shape that made the old pattern quadratic), a separator, a word the tables know, or a plant.
_run = st.builds(
    lambda chars, n: (chars * (n // max(len(chars), 1) + 1))[:n],
    st.text(alphabet=_ID_CHARS, min_size=1, max_size=8),
    st.integers(min_value=1, max_value=300_000),
)
_piece = st.one_of(
    _run,
    st.text(alphabet=_ID_CHARS, max_size=20),
    st.sampled_from(_SEPARATORS),
    st.sampled_from(_WORDS),
    st.builds(lambda s, n: s * n, st.sampled_from(_SEPARATORS + _WORDS), st.integers(1, 50_000)),
)
_MB = 1 << 20


def _assemble(pieces: list[str], size: int, plants: list[str]) -> str:
    """``pieces`` repeated to ``size`` characters (at most 1 MiB with the plants), with the
    plants spread through it."""
    body = "".join(pieces) or "a"
    size = min(size, _MB - sum(len(p) for p in plants))
    text = (body * (size // len(body) + 1))[:size]
    step = max(len(text) // (len(plants) + 1), 1)
    out: list[str] = []
    at = 0
    for plant in plants:
        out += (text[at : at + step], plant)
        at += step
    out.append(text[at:])
    return "".join(out)


@settings(
    max_examples=60,
    deadline=None,
    database=None,  # no .hypothesis folder in the work tree
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(
    pieces=st.lists(_piece, max_size=40),
    size=st.integers(min_value=0, max_value=_MB),
    plants=st.lists(st.sampled_from(PLANTS), max_size=len(PLANTS)),
)
def test_any_input_up_to_1mb_is_masked_without_leaking_planted_secrets(pieces, size, plants):
    text = _assemble(pieces, size, plants)
    assert len(text) <= _MB
    masked = mask_text(text)  # returns (the benchmark times it), never raises
    assert SECRET not in masked
    assert PLANTED_GOOGLE_KEY not in masked
    assert mask_text(masked) == masked


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet=_ID_CHARS + "=:&?,\"' @/{}[]\n\\", max_size=200))
def test_short_random_text_is_idempotent(text):
    once = mask_text(text)
    assert mask_text(once) == once


# Keys spelled the ways the key rules see them, from the table's own terms.
_TERMS = sorted({t for rule in masking.KEY_RULES for term in rule.terms for t in term.split("_")})
_spelled = st.sampled_from([*_TERMS, "x", "db", "max", "total", "ab1", "Z9"]).flatmap(
    lambda w: st.sampled_from([w, w.upper(), w.capitalize()])
)
_key = st.builds(
    lambda words, seps: "".join(w + s for w, s in zip(words[:-1], seps, strict=False)) + words[-1],
    st.lists(_spelled, min_size=1, max_size=4),
    st.lists(st.sampled_from(["_", "-", ".", ""]), min_size=3, max_size=3),
)


@settings(max_examples=1500, deadline=None, database=None)
@given(key=_key, in_query=st.booleans(), quoted=st.booleans())
def test_the_fast_pair_scan_lets_every_sensitive_key_through(key, in_query, quoted):
    """The regex prefilter derived from KEY_RULES must never drop a key that
    is_sensitive_key would mask (else its value would leak)."""
    if len(key) > 64 or not key[0].isalpha():
        return
    pair = f"{'?' if in_query else ' '}{key}{chr(34) if quoted else ''}=value1"
    masked = mask_text(pair)
    if is_sensitive_key(key, in_query=in_query):
        assert "value1" not in masked, pair
    else:
        assert masked == pair


def test_a_long_identifier_run_is_not_a_key():
    run = "x" * 100_000
    assert mask_text(f"{run}_password=abc") == f"{run}_password=abc"
    assert mask_text(f"{run} password=abc") == f"{run} password={MASK}"


def test_json_round_trip_of_masked_payload_stays_json():
    payload = json.dumps({"password": "a\"b'c", "nested": {"token": "t"}, "n": [1, 2]})
    masked = json.loads(mask_text(payload))
    assert masked == {"password": MASK, "nested": {"token": MASK}, "n": [1, 2]}
