"""The HTTP API's foundation through real PostgreSQL and Redis: API keys (scopes, refusal
reasons, revocation), per-key rate limits shared through Redis, problem details, request
ids, conditional GETs, gzip, CORS, metrics, open mode, the ``api-key`` CLI and ``quantbeat
api`` as a process."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from structlog.testing import LogCapture

from db.engine import session_scope
from db.models import ApiKey
from quantbeat.api import create_app
from quantbeat.api.middleware import MAX_BODY
from quantbeat.api.security import require
from quantbeat.cli import main as cli
from quantbeat.infra.logging import configure_logging
from quantbeat.infra.settings import Settings, get_settings, reset_settings
from quantbeat.services import api_keys
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration

QUANTBEAT = str(Path(sys.executable).with_name("quantbeat"))


@pytest.fixture
def settings(clean_db: str, redis_stores: None) -> Iterator[Settings]:
    reset_settings()
    api_keys.forget_cache()
    yield get_settings()
    api_keys.forget_cache()


def _app(settings: Settings, **changes: Any) -> FastAPI:
    app = create_app(settings.model_copy(update=changes) if changes else settings)

    @app.get("/api/v1/_probe/boom")
    def boom() -> None:
        raise RuntimeError("password=hunter2 broke it")

    @app.get("/api/v1/_probe/admin")
    def probe(principal: api_keys.Principal = Depends(require("admin"))) -> dict[str, str]:  # noqa: B008
        return {"name": principal.name}

    return app


def _key(name: str, *scopes: str, **kwargs: Any) -> str:
    token, _ = api_keys.create(name, scopes or ("read",), **kwargs)
    return token


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_refusal_names_its_reason(settings: Settings) -> None:
    client = TestClient(_app(settings))
    reader = _key("reader", "read")
    revoked = _key("gone", "read")
    api_keys.revoke("gone")
    expired = _key("old", "read", expires_days=1e-9)
    time.sleep(0.01)

    def refusal(headers: dict[str, str], path: str = "/api/v1/market/gate/history") -> Any:
        response = client.get(path, headers=headers)
        assert response.headers["content-type"] == "application/problem+json"
        return response.status_code, response.json()

    status, body = refusal({})
    assert status == 401
    assert "an API key is required" in body["detail"]
    assert body["type"] == "/problems/unauthorized"
    assert body["instance"].endswith("/history")
    status, body = refusal({"X-API-Key": "not-a-key"})
    assert status == 401
    assert "malformed API key" in body["detail"]
    status, body = refusal(_auth("qb_0123456789_" + "A" * 40))
    assert status == 401
    assert body["detail"] == "unknown API key"
    status, body = refusal(_auth(revoked))
    assert status == 401
    assert "'gone' was revoked" in body["detail"]
    status, body = refusal(_auth(expired))
    assert status == 401
    assert "'old' expired at" in body["detail"]
    status, body = refusal(_auth(reader), "/api/v1/_probe/admin")
    assert status == 403
    assert "'reader' lacks the scope 'admin'" in body["detail"]
    assert "it has read" in body["detail"]
    # The presented key never comes back in a refusal.
    assert reader not in json.dumps(body)

    ok = client.get("/api/v1/market/gate/history", headers={"X-API-Key": reader})
    assert ok.status_code == 200
    assert ok.json() == []
    admin = _key("root", "admin")
    assert client.get("/api/v1/_probe/admin", headers=_auth(admin)).json() == {"name": "root"}
    # admin implies read
    assert client.get("/api/v1/market/gate/history", headers=_auth(admin)).status_code == 200
    used = {k["name"]: k for k in api_keys.list_keys()}
    assert used["reader"]["last_used_at"] is not None
    assert used["gone"]["state"] == "revoked"
    assert used["old"]["state"] == "expired"
    assert used["root"]["last_used_at"] is not None


def test_a_revoked_key_is_refused_by_a_running_app_within_the_cache_time(
    settings: Settings,
) -> None:
    client = TestClient(_app(settings))
    token = _key("soon-gone", "read")
    assert client.get("/api/v1/market/gate/history", headers=_auth(token)).status_code == 200
    # Revoked elsewhere (another process): this process's cache forgets it within 5 s.
    with session_scope() as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.name == "soon-gone")
            .values(revoked_at=dt.datetime.now(dt.UTC))
        )
    deadline = time.monotonic() + api_keys.CACHE_SECONDS + 2
    status = 200
    while time.monotonic() < deadline and status == 200:
        status = client.get("/api/v1/market/gate/history", headers=_auth(token)).status_code
        time.sleep(0.2)
    assert status == 401


def test_a_keys_rate_is_shared_by_every_api_process_through_redis(settings: Settings) -> None:
    # Two apps stand for two API processes: the budget is the key's, not the process's.
    first, second = TestClient(_app(settings)), TestClient(_app(settings))
    token = _key("slow", "read", rate_per_minute=6)  # burst 1, then one every 10 s
    assert first.get("/api/v1/market/gate/history", headers=_auth(token)).status_code == 200
    refused = second.get("/api/v1/market/gate/history", headers=_auth(token))
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 10
    body = refused.json()
    assert body["type"] == "/problems/rate-limited"
    assert "'slow' is over its rate of 6 requests a minute" in body["detail"]
    # Another key is not affected.
    other = _key("fast", "read")
    assert second.get("/api/v1/market/gate/history", headers=_auth(other)).status_code == 200


def test_bad_input_unknown_paths_and_methods_are_problems(settings: Settings) -> None:
    client = TestClient(_app(settings))
    headers = _auth(_key("reader", "read"))
    bad = client.get("/api/v1/market/gate/history?limit=0", headers=headers)
    assert bad.status_code == 422
    body = bad.json()
    assert body["errors"][0]["field"] == "query.limit"
    assert body["detail"].startswith("query.limit: ")
    assert "(got '0')" in body["detail"]
    for loose in ("1.0", "1_000", "+5", " 7"):  # integers only as digits, on every route
        for path in ("/api/v1/scans", "/api/v1/backtests", "/api/v1/market/gate/history"):
            refused = client.get(path, params={"limit": loose}, headers=headers)
            assert refused.status_code == 422, (path, loose)
            assert refused.json()["errors"][0]["field"] == "query.limit"
    bad_date = client.get("/api/v1/market/gate?date=2026-13-01", headers=headers).json()
    assert bad_date["status"] == 422
    assert bad_date["errors"][0]["field"] == "query.date"
    missing = client.get("/api/v1/market/gate", headers=headers).json()
    assert missing["status"] == 404
    assert "no Market Gate stored" in missing["detail"]
    unknown = client.get("/api/v1/nothing-here", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "no resource at /api/v1/nothing-here"
    wrong = client.post("/api/v1/market/gate", headers=headers)
    assert wrong.status_code == 405
    assert "POST is not allowed" in wrong.json()["detail"]


def test_request_ids_conditional_gets_gzip_and_metrics(settings: Settings) -> None:
    client = TestClient(_app(settings))
    headers = _auth(_key("reader", "read"))
    captured = LogCapture()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, captured],
        cache_logger_on_first_use=False,
    )
    try:
        given = client.get(
            "/api/v1/market/gate/history", headers={**headers, "X-Request-ID": "trace-42"}
        )
        replaced = client.get(
            "/api/v1/market/gate/history", headers={**headers, "X-Request-ID": "bad id; <script>"}
        )
    finally:
        structlog.reset_defaults()
        configure_logging("INFO")
    assert given.headers["x-request-id"] == "trace-42"
    assert given.headers["server-timing"].startswith("app;dur=")
    assert replaced.headers["x-request-id"] != "bad id; <script>"
    assert len(replaced.headers["x-request-id"]) == 32
    lines = [e for e in captured.entries if e["event"] == "api.request"]
    assert [e["request_id"] for e in lines] == ["trace-42", replaced.headers["x-request-id"]]
    assert lines[0]["route"] == "/api/v1/market/gate/history"
    assert lines[0]["status"] == 200

    etag = given.headers["etag"]
    assert given.headers["cache-control"] == "private, max-age=15"
    again = client.get("/api/v1/market/gate/history", headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag

    spec = client.get("/api/v1/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert spec.headers["content-encoding"] == "gzip"
    assert "/api/v1/market/gate" in spec.json()["paths"]
    raw = client.get("/api/v1/openapi.json", headers={"Accept-Encoding": "identity"}).content
    assert (
        "content-encoding"
        not in client.get("/api/v1/openapi.json", headers={"Accept-Encoding": "identity"}).headers
    )
    assert len(gzip.compress(raw)) < len(raw)

    text = client.get("/metrics").text
    assert (
        'quantbeat_api_requests_total{method="GET",route="/api/v1/market/gate/history",'
        'status="304"} 1.0'
    ) in text
    assert 'quantbeat_api_request_duration_seconds_count{method="GET",route="/api/v1/market' in text


def test_oversized_bodies_head_requests_and_unexpected_errors(settings: Settings) -> None:
    client = TestClient(_app(settings), raise_server_exceptions=False)
    token = _key("runner", "run")
    big = client.post("/api/v1/backtests", content=b"x" * (MAX_BODY + 1), headers=_auth(token))
    assert big.status_code == 413
    assert big.json()["type"] == "/problems/request-too-large"
    assert big.headers["x-request-id"] == big.json()["request_id"]
    lying = client.post(
        "/api/v1/backtests", content=b"{}", headers={**_auth(token), "Content-Length": "abc"}
    )
    assert lying.status_code in (400, 413)
    head = client.head("/api/v1/market/gate/history", headers=_auth(token))
    assert head.status_code == 200
    assert head.content == b""
    assert (
        head.headers["etag"]
        == client.get("/api/v1/market/gate/history", headers=_auth(token)).headers["etag"]
    )
    broken = client.get("/api/v1/_probe/boom", headers={"X-Request-ID": "trace-500"})
    assert broken.status_code == 500
    assert broken.headers["x-request-id"] == "trace-500"
    assert broken.json()["request_id"] == "trace-500"
    assert "hunter2" not in broken.text
    # A key pasted as a request id is not echoed back.
    pasted = client.get("/health/live", headers={"X-Request-ID": token[:60]})
    assert pasted.headers["x-request-id"] != token[:60]


def test_cors_allows_only_the_configured_origins(settings: Settings) -> None:
    client = TestClient(_app(settings, api_cors_origins=["https://desk.example"]))
    preflight = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-api-key",
    }
    allowed = client.options(
        "/api/v1/market/gate", headers={"Origin": "https://desk.example", **preflight}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://desk.example"
    refused = client.options(
        "/api/v1/market/gate", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in refused.headers
    # Without the setting no origin is allowed.
    plain = TestClient(_app(settings)).options(
        "/api/v1/market/gate", headers={"Origin": "https://desk.example", **preflight}
    )
    assert "access-control-allow-origin" not in plain.headers


def _local(app: FastAPI, host: str = "127.0.0.1") -> TestClient:
    """A client on this host (loopback address) naming ``host`` in its requests."""
    return TestClient(app, base_url=f"http://{host}:8080", client=("127.0.0.1", 50000))


def test_open_mode_only_on_loopback_and_never_in_production(settings: Settings) -> None:
    app = _app(settings, api_open=True)
    assert app.state.open
    for host in ("127.0.0.1", "localhost", "[::1]"):
        assert _local(app, host).get("/api/v1/market/gate/history").status_code == 200
    # Open mode never grants admin.
    refused = _local(app).get("/api/v1/_probe/admin")
    assert refused.status_code == 403
    assert "'open' lacks the scope 'admin'" in refused.json()["detail"]
    # A page that rebinds its own name to 127.0.0.1 sends its own Host: no open access.
    assert _local(app, "evil.example").get("/api/v1/market/gate/history").status_code == 401
    # Nor from another host.
    remote = TestClient(app, base_url="http://127.0.0.1:8080", client=("192.0.2.7", 40000))
    assert remote.get("/api/v1/market/gate/history").status_code == 401
    for address, env in (("0.0.0.0", "development"), ("127.0.0.1", "production")):
        closed = create_app(
            settings.model_copy(update={"api_open": True, "env": env}), address=address
        )
        assert _local(closed).get("/api/v1/market/gate/history").status_code == 401


def test_a_cross_site_post_with_only_ambient_credentials_is_refused(settings: Settings) -> None:
    app = _app(settings, api_open=True)
    body = {"strategy": "sma_crossover"}  # refused before the body matters
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"}, {"Origin": "null"}):  # fmt: skip
        answer = _local(app).post("/api/v1/backtests", json=body, headers=headers)
        assert answer.status_code == 403, headers
        assert "started by another site is refused" in answer.json()["detail"]
    # The dashboard's cookie alike.
    token = _key("desk", "run")
    keyed = TestClient(app, base_url="http://127.0.0.1:8080", client=("192.0.2.7", 40000))
    keyed.cookies.set("qb_key", token)
    crossed = keyed.post("/api/v1/backtests", json=body, headers={"Origin": "https://x.example"})
    assert crossed.status_code == 403
    # A key in a header is not ambient: the same request is judged on its body (422 here).
    direct = keyed.post(
        "/api/v1/backtests", json=body, headers={"Origin": "https://x.example", **_auth(token)}
    )
    assert direct.status_code == 422
    # Same-origin requests pass the check.
    same = _local(app).post(
        "/api/v1/backtests", json=body, headers={"Origin": "http://127.0.0.1:8080"}
    )
    assert same.status_code == 422


def test_api_key_cli_creates_lists_and_revokes(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["api-key", "create", "desk", "--scope", "read", "--scope", "run"]) == 0
    out = capsys.readouterr().out
    token = out.strip().splitlines()[-1]
    assert token.startswith("qb_")
    assert "shown once" in out
    assert api_keys.authenticate(token).scopes == frozenset({"read", "run"})
    assert cli.main(["api-key", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(k["name"], k["scopes"], k["state"]) for k in listed] == [
        ("desk", ["read", "run"], "active")
    ]
    # Only the hash is stored.
    assert token not in json.dumps(listed)
    with session_scope() as session:
        stored = session.scalars(select(ApiKey.key_hash)).all()
    assert stored == [api_keys.hash_key(token)]
    assert token not in stored
    assert cli.main(["api-key", "create", "desk", "--scope", "read"]) == 2
    assert "a key named 'desk' exists already" in capsys.readouterr().err
    assert cli.main(["api-key", "create", "x", "--scope", "write"]) == 2
    assert "unknown scope 'write'" in capsys.readouterr().err
    assert cli.main(["api-key", "revoke", "desk"]) == 0
    with pytest.raises(api_keys.KeyRefused, match="revoked"):
        api_keys.authenticate(token)
    assert cli.main(["api-key", "revoke", "nobody"]) == 2


def _get(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_quantbeat_api_serves_on_loopback_and_refuses_open_elsewhere(
    settings: Settings, tmp_path: Path
) -> None:
    token = _key("desk", "read")
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        [QUANTBEAT, "api", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=log
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("serving API and dashboard on http://127.0.0.1:"), line
        base = line.split(" on ", 1)[1].split()[0].rstrip("/")
        assert _get(f"{base}/health/live", {}) == (200, {"status": "alive"})
        assert _get(f"{base}/api/v1/market/gate/history", {})[0] == 401
        assert _get(f"{base}/api/v1/market/gate/history", _auth(token)) == (200, [])
        # A key sent where it does not belong (a request id, a query) never reaches the log.
        misplaced = {"X-Request-ID": token[:64], "X-API-Key": token}
        assert _get(f"{base}/api/v1/market/gate/history?note={token}", misplaced)[0] == 200
        assert _get(f"{base}/api/v1/market/gate?date={token}", {})[0] == 401
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
    written = (tmp_path / "api.log").read_text()
    assert '"event": "api.request"' in written  # one JSON line per request, on stderr
    secret = token.split("_", 2)[2]
    assert secret[:32] not in written
    refused = subprocess.run(
        [QUANTBEAT, "api", "--open", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 3, refused.stderr
    assert "--open serves without API keys and is refused on 0.0.0.0" in refused.stderr
