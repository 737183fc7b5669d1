"""The dashboard's pure parts: both languages hold every label a template names, the
language choice, the server-drawn SVG charts (scaled, clamped, escaped) and the form reader's
size limit (refused before reading, or as soon as the limit is passed)."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from quant.errors import ValidationError
from quantbeat.api.dashboard import i18n, svg
from quantbeat.api.dashboard.pages import MAX_FORM_BYTES, NAV, TEMPLATES, _form, _safe_next, _spec
from quantbeat.api.problems import ApiProblem


def test_both_languages_hold_the_same_labels_none_empty() -> None:
    ko, en = i18n.LABELS["ko"], i18n.LABELS["en"]
    assert set(ko) == set(en)
    assert all(v.strip() for v in (*ko.values(), *en.values()))
    # translated, not copied: most labels differ between the languages
    same = [k for k in ko if ko[k] == en[k]]
    assert len(same) < len(ko) // 20, same


def _static_keys(text: str) -> set[str]:
    return set(re.findall(r"\bt\('([^']+)'\)", text))


def test_every_label_a_template_names_exists() -> None:
    keys = set(i18n.LABELS["ko"])
    named: set[str] = set()
    for path in Path(TEMPLATES).glob("*.html"):
        named |= _static_keys(path.read_text())
    assert named  # the scan finds the labels
    assert named - keys == set()
    # labels built from a prefix: the navigation, run states, phases, health states
    for key, _ in NAV:
        assert f"nav.{key}" in keys
    for state in ("queued", "running", "completed", "failed", "cancelled", "timed_out"):
        assert f"state.{state}" in keys
    for phase in ("final", "preliminary"):
        assert f"phase.{phase}" in keys
    for status in ("healthy", "warning", "unhealthy"):
        assert f"health.{status}" in keys


def test_a_missing_label_fails_loudly() -> None:
    with pytest.raises(KeyError):
        i18n.translator("en")("no.such.label")


@pytest.mark.parametrize(
    ("query", "cookie", "expected"),
    [("en", None, "en"), ("ko", "en", "ko"), (None, "en", "en"), ("xx", "en", "en"),
     (None, None, "ko"), ("fr", "de", "ko")],
)  # fmt: skip
def test_the_language_is_the_query_then_the_cookie_then_korean(query, cookie, expected) -> None:
    assert i18n.pick(query, cookie) == expected


def test_the_gauge_draws_the_score_share_in_the_gate_colour_and_escapes_its_label() -> None:
    drawn = str(svg.gauge(55.0, "YELLOW", label="<b>노랑</b>"))
    assert drawn.startswith('<svg class="gauge"')
    assert svg.COLOURS["YELLOW"] in drawn
    assert ">55.0<" in drawn
    assert "&lt;b&gt;노랑&lt;/b&gt;" in drawn
    assert "<b>" not in drawn
    # the value arc ends at 55 % of the half circle: angle 0.55π from the left end
    end = re.search(r'class="gauge-value" d="M [0-9.]+ [0-9.]+ A 90.0 90.0 0 0 1 ([0-9.]+) ', drawn)
    assert end is not None
    assert float(end.group(1)) == pytest.approx(110 - 90 * math.cos(0.55 * math.pi), abs=0.1)
    empty = str(svg.gauge(None, None))
    assert "gauge-value" not in empty
    assert ">–<" in empty
    full = str(svg.gauge(140.0, "GREEN"))  # clamped: the whole arc, to the right end
    assert re.search(r'class="gauge-value" d="M 20.0 110.0 A 90.0 90.0 0 0 1 200.0 110.0"', full)


def test_the_line_chart_scales_to_the_values_and_skips_non_finite_ones() -> None:
    points = [("2026-01-02", 100.0), ("2026-01-05", float("nan")), ("2026-01-06", 120.0),
              ("2026-01-07", 110.0)]  # fmt: skip
    drawn = str(svg.line_chart(points, label="equity <x>", baseline=100.0))
    coords = re.search(r'class="series" points="([^"]+)"', drawn)
    assert coords is not None
    pairs = [tuple(map(float, p.split(","))) for p in coords.group(1).split()]
    assert len(pairs) == 3
    ys = [y for _, y in pairs]
    assert ys[1] == min(ys)  # the highest value is drawn at the top
    assert ys[0] == max(ys)
    assert "equity &lt;x&gt;" in drawn
    assert "2026-01-02" in drawn
    assert "2026-01-07" in drawn
    assert svg.COLOURS["GREEN"] in drawn  # ended above the baseline
    assert "polyline" not in str(svg.line_chart([("a", 1.0)]))


def test_compact_numbers() -> None:
    assert svg.compact(104_250_000.0) == "104M"
    assert svg.compact(1_234.0) == "1.23K"
    assert svg.compact(-2_500_000_000.0) == "-2.5B"
    assert svg.compact(950.0) == "950"


def test_the_bar_chart_clamps_and_shows_unknown_values_as_a_dash() -> None:
    drawn = str(svg.bar_chart([("반도체", 25.0, "BEARISH"), ("자동차", 130.0, "BULLISH"),
                               ("<i>x</i>", None, None)], width=640))  # fmt: skip
    widths = [
        float(w) for w in re.findall(r'class="bar" x="150" y="[0-9]+" width="([0-9.]+)"', drawn)
    ]
    assert widths == [pytest.approx(442 * 0.25, abs=0.1), pytest.approx(442.0)]
    assert svg.COLOURS["BEARISH"] in drawn
    assert "&lt;i&gt;x&lt;/i&gt;" in drawn
    assert ">–<" in drawn


@pytest.mark.parametrize(
    ("value", "expected"),
    [("/signals?date=2026-06-30", "/signals?date=2026-06-30"), ("https://evil.example/", "/"),
     ("//evil.example", "/"), ("/\\evil.example", "/"), ("", "/"), (None, "/")],
)  # fmt: skip
def test_only_local_paths_are_returned_to(value, expected) -> None:
    assert _safe_next(value) == expected


def test_the_backtest_form_becomes_a_spec_or_a_named_error() -> None:
    spec = _spec({"strategy": " sma_crossover ", "instruments": "KOSPI:005930, 000660\n035420",
                  "start": "2026-01-02", "end": "2026-06-30", "initial_cash": "50,000,000",
                  "params": '{"fast": 5}', "label": ""})  # fmt: skip
    assert spec == {
        "strategy": "sma_crossover",
        "instruments": ["KOSPI:005930", "000660", "035420"],
        "start": "2026-01-02",
        "end": "2026-06-30",
        "initial_cash": 50_000_000.0,
        "params": {"fast": 5},
    }
    with pytest.raises(ValidationError, match="params: not JSON") as caught:
        _spec({"params": "{fast"})
    assert caught.value.field == "params"
    with pytest.raises(ValidationError, match="a JSON object is needed"):
        _spec({"params": "[1, 2]"})
    with pytest.raises(ValidationError, match="initial_cash: 'ten' is not a number"):
        _spec({"initial_cash": "ten"})


def _posted(headers: dict[str, str], chunks: list[bytes]) -> tuple[Request, list[int]]:
    """A POST request whose body arrives in ``chunks``; the list records each chunk read."""
    reads: list[int] = []
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        body = pending.pop(0) if pending else b""
        reads.append(len(body))
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/login",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope, receive), reads


FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_a_form_is_read_last_value_of_each_field() -> None:
    request, _ = _posted(FORM, [b"a=1&b=x", b"&a=2"])
    assert asyncio.run(_form(request)) == {"a": "2", "b": "x"}


def test_a_form_announced_over_the_limit_is_refused_unread() -> None:
    request, reads = _posted({**FORM, "content-length": str(MAX_FORM_BYTES + 1)}, [b"a=1"])
    with pytest.raises(ApiProblem) as caught:
        asyncio.run(_form(request))
    assert caught.value.status == 413
    assert reads == []  # not one byte of the body was read


def test_a_form_without_a_length_is_cut_off_once_over_the_limit() -> None:
    piece = b"k" * (64 * 1024)
    chunks = [piece] * (MAX_FORM_BYTES // len(piece) + 10)
    request, reads = _posted(FORM, chunks)
    with pytest.raises(ApiProblem) as caught:
        asyncio.run(_form(request))
    assert caught.value.status == 413
    assert len(reads) == MAX_FORM_BYTES // len(piece) + 1  # stopped at the first chunk over


def test_a_content_length_that_is_not_a_number_is_refused() -> None:
    request, reads = _posted({**FORM, "content-length": "lots"}, [b"a=1"])
    with pytest.raises(ApiProblem) as caught:
        asyncio.run(_form(request))
    assert caught.value.status == 400
    assert "'lots' is not a number" in caught.value.detail
    assert reads == []
