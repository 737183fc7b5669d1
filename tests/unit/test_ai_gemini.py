"""GeminiAnalyzer against the local fake Gemini server: parsing, the request it sends, and the
mapping of every failure onto quant.errors (no retries of its own, no key in any message)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from pathlib import Path
from typing import Any, TypeVar

import pytest

from quant.ai import (
    PROMPT_VERSION,
    AiRequestRejected,
    Analysis,
    AnalysisRequest,
    Analyzer,
    GeminiAnalyzer,
    InvalidAiOutput,
    NewsInput,
    build_prompt,
)
from quant.errors import (
    ConfigError,
    PermanentError,
    RateLimited,
    ServiceUnavailable,
    TransientError,
    ValidationError,
)
from quant.retry_after import parse_retry_after
from tests.support import fake_gemini as fg
from tests.support.fake_gemini import FakeGemini, requests_in_window

E = TypeVar("E", bound=Exception)

API_KEY = "AIzaSyFAKE-test-key-0123456789abcdefghij"
MODEL = "gemini-3.5-flash"
ROOT = Path(__file__).resolve().parents[2]
PROMPT_MARKER = "반도체 장비 3천억원 공급계약 체결 MARKER-7f3a"


def _request() -> AnalysisRequest:
    day = dt.date(2026, 11, 20)
    candles = [
        {
            "date": (day - dt.timedelta(days=25 - i)).isoformat(),
            "open": 70_000 + 100 * i,
            "high": 71_000 + 100 * i,
            "low": 69_500 + 100 * i,
            "close": 70_500 + 100 * i,
            "volume": 1_000_000,
            "traded_value": 70_500_000_000,
        }
        for i in range(26)
    ]
    return AnalysisRequest(
        instrument="KOSPI:005930",
        name="삼성전자",
        trade_date=day,
        strategy="closing_bet",
        signal={"score": 11, "grade": "A", "entry_price": 73_000, "status": "candidate"},
        candles=candles,
        flows=[{"date": "2026-11-20", "foreign_net_krw": 5e9, "institution_net_krw": None}],
        news=[
            NewsInput(
                title=PROMPT_MARKER,
                summary="삼성전자가 대형 고객사와 공급계약을 체결했다.",
                source="연합뉴스",
                url="https://example.com/1",
                published_at=dt.datetime(2026, 11, 20, 9, 30),
            )
        ],
    )


@pytest.fixture
def fake():
    with FakeGemini() as server:
        yield server


@pytest.fixture
def analyzer(fake):
    gemini = GeminiAnalyzer(API_KEY, MODEL, base_url=fake.base_url, timeout=5.0)
    yield gemini
    gemini.close()


def _raises(analyzer: GeminiAnalyzer, kind: type[E]) -> E:
    with pytest.raises(kind) as info:
        analyzer.analyze(_request())
    return info.value


def _assert_clean(exc: BaseException) -> None:
    """Neither the message, nor the args, nor the printed traceback show the key or prompt."""
    text = "".join(traceback.format_exception(exc)) + repr(exc.args) + repr(vars(exc))
    assert API_KEY not in text
    assert "MARKER-7f3a" not in text


# -- success -----------------------------------------------------------------------------


def test_success_parses_the_analysis_with_tokens_model_and_latency(fake, analyzer):
    fake.script(
        fg.ok(
            sentiment=0.8,
            catalyst="3천억원 규모 반도체 장비 공급계약 체결.",
            risk_flags=["large order concentration"],
            confidence=0.75,
            news_score=3,
            usage={"promptTokenCount": 812, "candidatesTokenCount": 64, "totalTokenCount": 900},
        )
    )
    outcome = analyzer.analyze(_request())
    assert outcome.analysis == Analysis(
        sentiment=0.8,
        catalyst="3천억원 규모 반도체 장비 공급계약 체결.",
        risk_flags=["large order concentration"],
        confidence=0.75,
        news_score=3,
    )
    assert (outcome.analyzer, outcome.model, outcome.prompt_version) == (
        "gemini",
        MODEL,
        PROMPT_VERSION,
    )
    assert (outcome.prompt_tokens, outcome.output_tokens, outcome.total_tokens) == (812, 64, 900)
    assert 0 < outcome.latency_ms < 5000
    assert isinstance(analyzer, Analyzer)


def test_latency_covers_the_wait_for_the_answer(fake, analyzer):
    fake.script(fg.ok(delay=0.3))
    assert analyzer.analyze(_request()).latency_ms >= 300


def test_missing_usage_metadata_gives_none_tokens(fake, analyzer):
    fake.script(fg.ok(usage={}))
    outcome = analyzer.analyze(_request())
    assert (outcome.prompt_tokens, outcome.output_tokens, outcome.total_tokens) == (None,) * 3


def test_the_request_carries_the_key_the_prompt_and_the_json_schema_config(fake, analyzer):
    request = _request()
    analyzer.analyze(request)
    [entry] = fake.log
    assert entry.path == f"/v1/models/{MODEL}:generateContent"
    assert entry.model == MODEL
    assert entry.api_key == API_KEY
    assert entry.status == 200
    assert entry.prompt == build_prompt(request)
    config = entry.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == Analysis.model_json_schema()
    assert config["responseJsonSchema"]["properties"]["news_score"]["maximum"] == 3


def test_a_code_fenced_json_answer_is_accepted(fake, analyzer):
    answer = {
        "sentiment": 0.1,
        "catalyst": "x",
        "risk_flags": [],
        "confidence": 0.2,
        "news_score": 1,
    }
    text = f"```json\n{json.dumps(answer)}\n```"
    fake.script(fg.malformed(text))
    assert analyzer.analyze(_request()).analysis.news_score == 1


def test_one_analyzer_serves_several_threads(fake, analyzer):
    results: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(analyzer.analyze(_request()).analysis.news_score)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [2] * 8
    assert len(fake.log) == 8


def test_prepare_sets_the_client_up_without_a_request(fake, analyzer, monkeypatch):
    built: list[object] = []
    real = GeminiAnalyzer._client

    def counting(self: GeminiAnalyzer) -> object:
        client = real(self)
        if client not in built:
            built.append(client)
        return client

    monkeypatch.setattr(GeminiAnalyzer, "_client", counting)
    analyzer.prepare()  # what a paced caller does before taking its slot
    assert len(built) == 1
    assert fake.log == []
    analyzer.analyze(_request())
    assert len(built) == 1  # the request used the client prepare() built
    assert len(fake.log) == 1


# -- transient failures ----------------------------------------------------------------------


def test_429_with_retry_after_is_rate_limited(fake, analyzer):
    fake.script(fg.status(429, retry_after=2), default=fg.ok())
    exc = _raises(analyzer, RateLimited)
    assert isinstance(exc, TransientError)
    assert exc.retry_after == 2.0
    assert "429" in str(exc)
    assert "RESOURCE_EXHAUSTED" in str(exc)
    assert MODEL in str(exc)
    assert len(fake.log) == 1  # the SDK did not retry into the ok answer queued behind it


def test_429_without_retry_after_has_no_delay(fake, analyzer):
    fake.script(fg.status(429))
    assert _raises(analyzer, RateLimited).retry_after is None


def test_429_retry_info_in_the_body_gives_the_delay(fake, analyzer):
    info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}
    fake.script(fg.status(429, details=[info]))
    assert _raises(analyzer, RateLimited).retry_after == 37.0


def test_the_retry_after_header_wins_over_retry_info(fake, analyzer):
    info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}
    fake.script(fg.status(429, retry_after=3, details=[info]))
    assert _raises(analyzer, RateLimited).retry_after == 3.0


@pytest.mark.parametrize("code", [500, 502, 503, 504, 408])
def test_server_errors_are_service_unavailable(fake, analyzer, code):
    fake.script(fg.status(code), default=fg.ok())
    exc = _raises(analyzer, ServiceUnavailable)
    assert str(code) in str(exc)
    assert exc.retry_after is None
    assert len(fake.log) == 1


def test_503_with_retry_after_carries_it(fake, analyzer):
    fake.script(fg.status(503, retry_after=5))
    exc = _raises(analyzer, ServiceUnavailable)
    assert exc.retry_after == 5.0
    assert "UNAVAILABLE" in str(exc)


def test_a_slow_answer_times_out_as_service_unavailable(fake):
    analyzer = GeminiAnalyzer(API_KEY, MODEL, base_url=fake.base_url, timeout=0.3)
    fake.script(fg.ok(delay=3), default=fg.ok())
    started = time.monotonic()
    exc = _raises(analyzer, ServiceUnavailable)
    assert time.monotonic() - started < 2.5
    assert "timed out" in str(exc)
    assert len(fake.log) == 1
    _assert_clean(exc)


def test_an_unreachable_server_is_service_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    analyzer = GeminiAnalyzer(API_KEY, MODEL, base_url=f"http://127.0.0.1:{port}", timeout=2)
    exc = _raises(analyzer, ServiceUnavailable)
    assert "could not be reached" in str(exc)
    _assert_clean(exc)


# -- permanent failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "google_status"),
    [
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (501, "UNKNOWN"),
    ],
)
def test_client_errors_are_rejected_permanently(fake, analyzer, code, google_status):
    fake.script(fg.status(code), default=fg.ok())
    exc = _raises(analyzer, AiRequestRejected)
    assert isinstance(exc, PermanentError)
    assert not isinstance(exc, TransientError)
    assert (exc.code, exc.status, exc.model) == (code, google_status, MODEL)
    assert f"HTTP {code} {google_status}" in str(exc)
    assert len(fake.log) == 1


def test_a_wrong_key_is_rejected(fake):
    with FakeGemini(api_key="the-right-key") as strict:
        analyzer = GeminiAnalyzer(API_KEY, MODEL, base_url=strict.base_url)
        exc = _raises(analyzer, AiRequestRejected)
    assert exc.code == 400
    assert "API key not valid" in str(exc)
    _assert_clean(exc)


def test_malformed_json_is_invalid_output(fake, analyzer):
    fake.script(fg.malformed())
    exc = _raises(analyzer, InvalidAiOutput)
    assert isinstance(exc, ValidationError)
    assert isinstance(exc, PermanentError)
    assert "not valid JSON" in str(exc)
    assert "unterminated" in str(exc)  # an excerpt of what came back


def test_a_schema_violation_names_the_field(fake, analyzer):
    fake.script(fg.schema_violation("news_score", 7))
    exc = _raises(analyzer, InvalidAiOutput)
    assert exc.field == "news_score"
    assert exc.value == 7
    assert "news_score" in str(exc)
    assert "7" in str(exc)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sentiment", 1.5),
        ("confidence", -0.1),
        ("catalyst", "x" * 401),
        ("risk_flags", [f"flag {i}" for i in range(9)]),
        ("news_score", "three"),
        ("unexpected", 1),
    ],
)
def test_every_schema_rule_is_enforced(fake, analyzer, field, value):
    fake.script(fg.schema_violation(field, value))
    exc = _raises(analyzer, InvalidAiOutput)
    assert exc.field == field
    assert field in str(exc)


def test_a_missing_field_is_named(fake, analyzer):
    answer = {k: v for k, v in fg.DEFAULT_ANALYSIS.items() if k != "confidence"}
    fake.script(fg.malformed(json.dumps(answer)))
    exc = _raises(analyzer, InvalidAiOutput)
    assert exc.field == "confidence"
    assert "Field required" in str(exc)


def test_a_safety_blocked_candidate_is_invalid_output(fake, analyzer):
    fake.script(fg.blocked("SAFETY"))
    exc = _raises(analyzer, InvalidAiOutput)
    assert exc.finish_reason == "SAFETY"
    assert "finishReason=SAFETY" in str(exc)


def test_a_blocked_prompt_is_invalid_output(fake, analyzer):
    fake.script(fg.prompt_blocked("SAFETY"))
    exc = _raises(analyzer, InvalidAiOutput)
    assert "blockReason=SAFETY" in str(exc)


def test_a_non_json_body_is_invalid_output(fake, analyzer):
    fake.script(fg.raw(200, "<html>proxy error</html>", {"Content-Type": "text/html"}))
    exc = _raises(analyzer, InvalidAiOutput)
    assert "not JSON" in str(exc)


def test_a_candidate_without_text_is_invalid_output(fake, analyzer):
    fake.script(fg.raw(200, {"candidates": [{"content": {"parts": []}, "finishReason": "STOP"}]}))
    exc = _raises(analyzer, InvalidAiOutput)
    assert "empty answer" in str(exc)


# -- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "kind"),
    [
        (fg.status(429, retry_after=2), RateLimited),
        (fg.status(503), ServiceUnavailable),
        (fg.status(400), AiRequestRejected),
        (fg.status(403), AiRequestRejected),
        (fg.status(400, message=f"API key {API_KEY} is not valid"), AiRequestRejected),
        (fg.status(400, message=f"Invalid value in contents: {PROMPT_MARKER}"), AiRequestRejected),
        (fg.status(500, message=f"key={API_KEY}"), ServiceUnavailable),
        (fg.malformed(), InvalidAiOutput),
        (fg.schema_violation(), InvalidAiOutput),
        (fg.blocked(), InvalidAiOutput),
        (fg.raw(200, "not json"), InvalidAiOutput),
    ],
)
def test_no_message_or_traceback_shows_the_key_or_the_prompt(fake, analyzer, step, kind):
    fake.script(step)
    exc = _raises(analyzer, kind)
    assert MODEL in str(exc)
    _assert_clean(exc)


def test_the_analyzer_repr_hides_the_key(fake, analyzer):
    assert API_KEY not in repr(analyzer)
    assert MODEL in repr(analyzer)


@pytest.mark.parametrize(
    "exc",
    [
        RateLimited("slow down", retry_after=2.0),
        AiRequestRejected("nope", code=403, status="PERMISSION_DENIED", model=MODEL),
        InvalidAiOutput("bad", field="news_score", value=7, model=MODEL, finish_reason="STOP"),
    ],
)
def test_errors_survive_pickling(exc):
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is type(exc)
    assert str(clone) == str(exc)
    assert vars(clone) == vars(exc)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("", MODEL), {}), ((API_KEY, " "), {}), ((API_KEY, MODEL), {"timeout": 0})],
)
def test_bad_settings_are_config_errors(args, kwargs):
    with pytest.raises(ConfigError) as info:
        GeminiAnalyzer(*args, **kwargs)
    assert API_KEY not in str(info.value)


def test_an_unsupported_base_url_scheme_is_a_config_error():
    analyzer = GeminiAnalyzer(API_KEY, MODEL, base_url="ftp://127.0.0.1:1/")
    _raises(analyzer, ConfigError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 40.0),  # 100 s after the epoch, "now" = 60
        ("Thu, 01 Jan 1970 00:00:10 GMT", 0.0),  # already past
        ("-1", None),
        ("soon", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=60.0) == expected


# -- the fake itself (others drive it from other processes) ---------------------------------


def test_storm_rate_limits_the_first_requests_then_answers(fake, analyzer):
    fake.script(default=fg.storm(first=3, retry_after=1))
    delays = [_raises(analyzer, RateLimited).retry_after for _ in range(3)]
    assert delays == [1.0, 1.0, 1.0]
    assert analyzer.analyze(_request()).analysis.news_score == 2
    assert analyzer.analyze(_request()).analysis.news_score == 2
    assert [e.status for e in fake.log] == [429, 429, 429, 200, 200]


def test_a_probabilistic_storm_is_reproducible_by_seed(fake, analyzer):
    def run() -> list[int]:
        fake.clear_log()
        fake.script(default=fg.storm(probability=0.5, seed=42))
        for _ in range(20):
            with contextlib.suppress(RateLimited):
                analyzer.analyze(_request())
        return [e.status for e in fake.log]

    first = run()
    assert first == run()
    assert 3 <= first.count(429) <= 17


def test_requests_in_window():
    assert requests_in_window([], 1.0) == 0
    assert requests_in_window([0.0, 0.5, 0.99, 1.0, 1.5, 3.0], 1.0) == 3
    assert requests_in_window([0.0, 0.1, 0.2], 0.05) == 1
    assert requests_in_window([0.0, 1.0, 2.0], 10.0) == 3


def _http(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_script_and_log_over_http(fake, analyzer):
    assert _http("POST", f"{fake.base_url}/_script", {"queue": [fg.status(503)]}) == {"ok": True}
    _raises(analyzer, ServiceUnavailable)
    analyzer.analyze(_request())
    log = _http("GET", f"{fake.base_url}/_log")
    assert log["count"] == 2
    assert [r["status"] for r in log["requests"]] == [503, 200]
    assert {r["api_key"] for r in log["requests"]} == {API_KEY}
    assert {r["model"] for r in log["requests"]} == {MODEL}
    assert "body" not in log["requests"][0]
    with_bodies = _http("GET", f"{fake.base_url}/_log?since=1&bodies=1")
    assert [r["seq"] for r in with_bodies["requests"]] == [2]
    assert with_bodies["requests"][0]["body"]["contents"]
    assert _http("POST", f"{fake.base_url}/_script", fg.status(404)) == {"ok": True}
    _raises(analyzer, AiRequestRejected)
    assert _http("DELETE", f"{fake.base_url}/_log") == {"ok": True}
    assert _http("GET", f"{fake.base_url}/_log")["count"] == 0


def test_the_fake_runs_as_a_separate_process_and_dumps_its_log_on_sigterm(tmp_path):
    log_file = tmp_path / "log.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.fake_gemini",
            "--port",
            "0",
            "--mode",
            "storm",
            "--first",
            "1",
            "--retry-after",
            "4",
            "--log-file",
            str(log_file),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = json.loads(process.stdout.readline())["base_url"]
        analyzer = GeminiAnalyzer(API_KEY, MODEL, base_url=base_url)
        assert _raises(analyzer, RateLimited).retry_after == 4.0
        assert analyzer.analyze(_request()).analysis.news_score == 2
        assert _http("GET", f"{base_url}/_log")["count"] == 2
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    dumped = json.loads(log_file.read_text())
    assert [r["status"] for r in dumped["requests"]] == [429, 200]
    assert all(r["t_wall"] > 0 and r["t_monotonic"] > 0 for r in dumped["requests"])
