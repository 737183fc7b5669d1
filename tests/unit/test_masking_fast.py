"""The pair step's fast route (one regex split built from the decided keys) gives exactly the
result of the reference loop, on text that takes the fast route and on text that falls back."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantbeat.infra import masking
from quantbeat.infra.masking import mask_text

_PIECES = [
    "password",
    "token",
    "api_key",
    "apiKey",
    "max_tokens",
    "key",
    "sig",
    "Bearer ",
    "Token ",
    "authorization",
    "balance",
    "krw",
    "session_id",
    "true",
    "null",
    "***",
    "'***'",
    '"***"',
    "--",
    "X-Api-Key",
    "routing_key",
    "a",
    "b1",
    "\u017f",
    "\u212a",
    "//",
    "://",
    "[a,b]",
    "{x}",
    '\\"',
    "=",
    ":",
    '"=',
    "'=",
    '":',
    "= ",
    ": ",
    "=[",
    "&",
    "?",
    ";",
    ",",
    '"',
    "'",
    " ",
    "\t",
    "\n",
    "}",
    "]",
]
_text = st.lists(st.sampled_from(_PIECES), max_size=30).map("".join)


@settings(max_examples=3000, deadline=None, database=None)
@given(_text)
def test_the_fast_route_gives_the_loops_result(text: str):
    assert masking._mask_pairs(text) == masking._mask_pairs_loop(text)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(unit=_text.filter(bool), rare=st.lists(_text, max_size=3), where=st.randoms())
def test_long_text_with_keys_the_sample_does_not_show(unit: str, rare: list[str], where):
    """Longer than the sample the first guess is made from, with rare pieces anywhere."""
    body = unit * (100_000 // len(unit) + 1)
    for piece in rare:
        at = where.randrange(len(body))
        body = body[:at] + piece + body[at:]
    assert masking._mask_pairs(body) == masking._mask_pairs_loop(body)


def test_a_secret_key_first_seen_outside_the_sample_is_masked():
    text = "password=hunter2&" + "ticker=005930&" * 10_000
    assert mask_text(text).startswith("password=***&ticker=005930&")


def test_a_run_ending_in_a_secret_separator_is_left_to_the_loop():
    text = "token=Authorization: Token abc123def456 " * 3
    assert mask_text(text) == "token=*** Token *** " * 3
