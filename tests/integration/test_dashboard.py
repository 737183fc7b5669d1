"""The dashboard through the real app on PostgreSQL and Redis: every page renders a SIMULATED
market (tests/support/dashboard_data.py) with its data, the SIMULATED banner, and labels in
Korean and English; an empty database shows "not collected yet" everywhere; signing in
keeps the key in an HttpOnly SameSite=Strict cookie (Secure over https) and says why a key
is refused; POST forms without the CSRF token are refused; a backtest is submitted from the
form; pages render in well under 300 ms server-side."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from db.backtests import FINAL_STATES, create_run, finish
from db.engine import session_scope
from db.models import BacktestRun
from quantbeat.api.app import create_app
from quantbeat.api.dashboard.pages import CSRF_COOKIE, MAX_FORM_BYTES
from quantbeat.api.security import COOKIE
from quantbeat.infra.settings import get_settings, reset_settings
from quantbeat.services import api_keys, backtests
from tests.support import dashboard_data
from workers.app import app as worker_app

pytestmark = pytest.mark.integration

PAGES = ("/", "/signals", "/closing-bet", "/track-record", "/backtests", "/data")
BANNER = "SIMULATED / 시뮬레이션"
EMPTY_KO, EMPTY_EN = "아직 수집되지 않음", "Not collected yet"


def _app(**changes: Any) -> FastAPI:
    settings = get_settings().model_copy(update=changes)
    return create_app(settings, address="127.0.0.1")


def _csrf(client: TestClient) -> str:
    client.get("/login")
    token = client.cookies.get(CSRF_COOKIE)
    assert token
    return token


def sign_in(client: TestClient, key: str, next_path: str = "/") -> Any:
    return client.post(
        "/login",
        data={"key": key, "csrf": _csrf(client), "next": next_path},
        follow_redirects=False,
    )


@pytest.fixture(scope="module")
def world(database: str, redis_stores: None) -> dict[str, Any]:
    """Each page rendered on an empty database (open mode), then the seeded market and three
    keys (read, run, admin)."""
    dashboard_data.empty(database)
    with TestClient(
        _app(api_open=True), base_url="http://127.0.0.1:8080", client=("127.0.0.1", 50000)
    ) as client:
        blank = {path: client.get(path) for path in PAGES}
        blank_en = {path: client.get(f"{path}?lang=en") for path in PAGES}
    facts = dashboard_data.seed(database)
    keys = {
        scope: api_keys.create(f"dash-{scope}", [scope])[0] for scope in ("read", "run", "admin")
    }
    return {**facts, "blank": blank, "blank_en": blank_en, "keys": keys}


@pytest.fixture(scope="module")
def app(world: dict[str, Any]) -> FastAPI:
    return _app()


@pytest.fixture
def admin(app: FastAPI, world: dict[str, Any]) -> Iterator[TestClient]:
    with TestClient(app) as client:
        assert sign_in(client, world["keys"]["admin"]).status_code == 303
        yield client


@pytest.fixture
def reader(app: FastAPI, world: dict[str, Any]) -> Iterator[TestClient]:
    with TestClient(app) as client:
        assert sign_in(client, world["keys"]["read"]).status_code == 303
        yield client


def _text(html: str) -> str:
    """The page's visible text, roughly (tags dropped, whitespace folded)."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return unescape(" ".join(re.sub(r"<[^>]+>", " ", body).split()))


def test_an_empty_database_shows_not_collected_on_every_page(world: dict[str, Any]) -> None:
    for path in PAGES:
        ko, en = world["blank"][path], world["blank_en"][path]
        assert ko.status_code == 200, (path, ko.text[:500])
        assert en.status_code == 200, (path, en.text[:500])
        assert EMPTY_KO in ko.text, path
        assert EMPTY_EN in en.text, path
        assert BANNER in ko.text  # the simulated market is this deployment's source


def test_without_a_key_every_page_redirects_to_login_which_says_so(app: FastAPI) -> None:
    with TestClient(app) as client:
        for path in (*PAGES, "/backtests/" + dashboard_data.BACKTEST_ID):
            found = client.get(path, follow_redirects=False)
            assert found.status_code == 303, path
            target = urlsplit(found.headers["location"])
            assert target.path == "/login"
            assert parse_qs(target.query)["next"] == [path]
        page = client.get("/login?next=/signals")
        assert "이 페이지를 보려면 로그인이 필요합니다." in page.text
        assert client.get("/login?next=/signals&lang=en").text.count("Sign in to see this page.")


def test_a_refused_key_is_named_on_the_login_page(app: FastAPI, world: dict[str, Any]) -> None:
    with TestClient(app) as client:
        bad = sign_in(client, "qb_0123456789_" + "x" * 40)
        assert bad.status_code == 401
        assert "unknown API key" in bad.text
        assert COOKIE not in client.cookies
        malformed = sign_in(client, "hunter2")
        assert malformed.status_code == 401
        assert "malformed API key" in malformed.text
        assert "hunter2" not in malformed.text  # the key is never echoed
    token, _ = api_keys.create("dash-revoked", ["read"])
    api_keys.revoke("dash-revoked")
    with TestClient(app) as client:
        sent = {"Cookie": f"{COOKIE}={token}"}
        assert client.get("/", headers=sent, follow_redirects=False).status_code == 303
        page = client.get("/login?next=/", headers=sent)
        assert "API key 'dash-revoked' was revoked" in _text(page.text)


def test_signing_in_sets_an_httponly_strict_cookie_and_signing_out_clears_it(
    app: FastAPI, world: dict[str, Any]
) -> None:
    key = world["keys"]["read"]
    with TestClient(app) as client:
        done = sign_in(client, key, "/track-record")
        assert done.status_code == 303
        assert done.headers["location"] == "/track-record"
        cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith(COOKIE))
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
        assert client.get("/track-record").status_code == 200
        # an open redirect is not followed: only local paths
        assert sign_in(client, key, "https://evil.example/").headers["location"] == "/"
        assert sign_in(client, key, "//evil.example/").headers["location"] == "/"
        # signing out needs the token too
        refused = client.post("/logout", data={"csrf": "wrong" * 8}, follow_redirects=False)
        assert refused.status_code == 403
        assert client.get("/", follow_redirects=False).status_code == 200
        out = client.post("/logout", data={"csrf": client.cookies[CSRF_COOKIE]},
                          follow_redirects=False)  # fmt: skip
        assert out.status_code == 303
        assert out.headers["location"] == "/login?out=1"
        assert COOKIE not in client.cookies
        assert client.get("/", follow_redirects=False).status_code == 303
        assert "로그아웃되었습니다." in client.get("/login?out=1").text
    with TestClient(app, base_url="https://testserver") as client:
        done = sign_in(client, key)
        cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith(COOKIE))
        assert "Secure" in cookie


def test_posts_without_the_csrf_token_are_refused(app: FastAPI, world: dict[str, Any]) -> None:
    with TestClient(app) as client:
        # no token field at all, and a field that is not this browser's token
        assert client.post("/login", data={"key": world["keys"]["read"]}).status_code == 403
        _csrf(client)
        forged = client.post("/login", data={"key": world["keys"]["read"], "csrf": "x" * 43})
        assert forged.status_code == 403
        assert "CSRF" in forged.text
        assert COOKIE not in client.cookies
        assert sign_in(client, world["keys"]["run"]).status_code == 303
        with session_scope() as session:
            before = session.execute(select(func.count()).select_from(BacktestRun)).scalar_one()
        form = {"strategy": "sma_crossover", "instruments": "900001", "start": "2026-02-02",
                "end": "2026-06-30", "initial_cash": "1e8", "params": "", "label": ""}  # fmt: skip
        assert client.post("/backtests", data=form, follow_redirects=False).status_code == 403
        forged = client.post("/backtests", data={**form, "csrf": "y" * 43}, follow_redirects=False)
        assert forged.status_code == 403
        with session_scope() as session:
            after = session.execute(select(func.count()).select_from(BacktestRun)).scalar_one()
        assert after == before


def test_the_overview_shows_the_gate_sectors_indices_and_counts(
    admin: TestClient, world: dict[str, Any]
) -> None:
    page = admin.get("/")
    assert page.status_code == 200
    text, gate = _text(page.text), world["gate"]
    assert BANNER in text
    assert "마켓 게이트" in text
    assert f"{gate['score']:,.1f}" in text
    assert gate["reason"] in text
    assert f'class="badge c-{gate["color"].lower()}"' in page.text
    assert '<svg class="gauge"' in page.text
    sectors = gate["sectors"]["sectors"]
    assert len(sectors) >= 5
    for sector in sectors:
        assert sector["name"] in text
    assert '<svg class="bar-chart"' in page.text
    assert "KOSPI" in text
    assert "USD/KRW" in text
    counts = re.search(r'id="open-positions">(\d+)<', page.text)
    assert counts is not None
    assert int(counts.group(1)) == world["portfolio"]["positions"]
    assert re.search(r'id="jobs-failed">1<', page.text)
    assert f"{world['end'].isoformat()}" in text  # the signals' day
    assert re.search(r"<td>closing_bet</td><td class=\"num\">3</td>", page.text)
    assert "<td>closing_bet (preliminary)</td>" in page.text
    assert EMPTY_KO not in text


def test_the_vcp_page_lists_the_latest_run_and_filters_by_date(
    reader: TestClient, world: dict[str, Any]
) -> None:
    vcp = world["vcp"]
    page = reader.get("/signals")
    text = _text(page.text)
    assert page.status_code == 200
    assert vcp["day"].isoformat() in text
    assert f"#{vcp['run_id']}" in text
    rows = re.findall(r"<tr>\s*<td class=\"num\">\d+</td>", page.text)
    assert len(rows) == vcp["count"]
    for ticker in vcp["tickers"]:
        assert ticker in text
    assert BANNER in text
    older = reader.get("/signals?date=2026-03-03")
    assert older.status_code == 200
    assert "<h2>2026-03-03 · vcp</h2>" in older.text
    assert f"<h2>{vcp['day'].isoformat()} · vcp</h2>" in page.text
    bad = reader.get("/signals?date=03/03/2026")
    assert bad.status_code == 422
    assert "query.date must be an ISO date (YYYY-MM-DD), got '03/03/2026'" in _text(bad.text)


def _cards(html: str) -> list[dict[str, str]]:
    """The closing-bet page's cards: instrument, entry, stop and target as shown."""
    found = re.findall(
        r'<span class="muted">([A-Z]+:[0-9A-Z]+)</span>.*?<dd class="entry">([^<]*)</dd>.*?'
        r'<dd class="stop">([^<]*)</dd>.*?<dd class="target">([^<]*)</dd>',
        html,
        flags=re.S,
    )
    return [{"instrument": i, "entry": e, "stop": s, "target": t} for i, e, s, t in found]


def _shown(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def test_the_closing_bet_page_shows_cards_news_gate_and_both_phases(
    reader: TestClient, world: dict[str, Any]
) -> None:
    page = reader.get("/closing-bet")
    text = _text(page.text)
    assert page.status_code == 200
    assert world["end"].isoformat() in text
    for bet in world["closing"]:
        assert bet["ticker"] in text
        assert f"{bet['entry_price']:,.0f}" in text
        assert bet["reasons"][0] in text
    assert dashboard_data.NEWS_TITLE in text
    assert dashboard_data.CATALYST in text
    assert "결정 시점의 마켓 게이트" in text
    assert world["gate"]["reason"] in text  # the final decision: the day's gate
    assert re.search(r'id="count-final">3<', page.text)
    assert f"#{world['closing_runs']['final']}" in text
    # the page shows the API's decision of the same day: same cards, entries, stops, targets
    api = reader.get(f"/api/v1/closing-bet/{world['end']}")
    assert api.status_code == 200
    decision = api.json()
    assert decision["run_id"] == world["closing_runs"]["final"]
    expected = [
        {"instrument": c["instrument"], "entry": _shown(c["entry"]), "stop": _shown(c["stop"]),
         "target": _shown(c["target"])}
        for c in decision["cards"]
    ]  # fmt: skip
    assert len(expected) == len(world["closing"])
    assert _cards(page.text) == expected
    assert all(c["stop"] != "–" for c in expected)
    prelim = reader.get(f"/closing-bet?date={world['end']}&phase=preliminary")
    assert prelim.status_code == 200
    assert "예비 (장중 15:10)" in _text(prelim.text)
    # the preliminary decision was taken at 15:10, before the day's gate was computed
    assert "그 시점에 저장된 마켓 게이트가 없습니다." in _text(prelim.text)
    early = reader.get(f"/api/v1/closing-bet/{world['end']}?phase=preliminary").json()
    assert early["run_id"] == world["closing_runs"]["preliminary"]
    assert re.search(rf'id="count-preliminary">{early["count"]}<', prelim.text)
    assert _cards(prelim.text) == [
        {"instrument": c["instrument"], "entry": _shown(c["entry"]), "stop": _shown(c["stop"]),
         "target": _shown(c["target"])}
        for c in early["cards"]
    ]  # fmt: skip
    assert reader.get("/closing-bet?phase=noon").status_code == 422
    # a day without a decision: the page says why, as the API does (404)
    missing = reader.get("/closing-bet?date=2026-01-05")
    assert missing.status_code == 404
    assert "no closing-bet decision of 2026-01-05 stored" in _text(missing.text)
    assert 'id="closing-show"' in missing.text  # the date picker stays usable


def test_the_track_record_shows_kpis_and_equity_curves(
    reader: TestClient, world: dict[str, Any]
) -> None:
    page = reader.get("/track-record?lang=en")
    text = _text(page.text)
    assert page.status_code == 200
    assert "KPIs by strategy" in text
    assert "KPIs by grade" in text
    for group in world["track"]["groups"]:
        assert group in text
    closed = sum(k["count"] for k in world["track"]["groups"].values())
    assert closed > 0
    assert "Textbook" in text or "Strong" in text
    assert dashboard_data.PORTFOLIO in text
    assert f"{world['portfolio']['equity']:,.0f}" in text
    assert '<polyline class="series"' in page.text
    assert BANNER in text


def test_the_backtests_pages_list_submit_and_report(
    app: FastAPI, world: dict[str, Any], reader: TestClient
) -> None:
    listed = reader.get("/backtests")
    assert dashboard_data.BACKTEST_ID[:12] in listed.text
    assert 'id="needs-run"' in listed.text  # a read key sees no form
    assert 'id="backtest-form"' not in listed.text
    refused = reader.post("/backtests", data={"csrf": reader.cookies[CSRF_COOKIE]},
                          follow_redirects=False)  # fmt: skip
    assert refused.status_code == 403
    assert "lacks the scope 'run'" in _text(refused.text)

    done = reader.get(f"/backtests/{dashboard_data.BACKTEST_ID}?lang=en")
    text = _text(done.text)
    assert "+4.25%" in text
    assert "1.87" in text
    assert '<polyline class="series"' in done.text
    assert f"/api/v1/backtests/{dashboard_data.BACKTEST_ID}/report?format=png" in done.text
    assert "backtest.js" not in done.text  # finished: no live updates
    missing = reader.get("/backtests/" + "0" * 32)
    assert missing.status_code == 404
    assert "no backtest run" in missing.text

    with TestClient(app) as client:
        assert sign_in(client, world["keys"]["run"]).status_code == 303
        page = client.get("/backtests")
        assert 'id="backtest-form"' in page.text
        token = client.cookies[CSRF_COOKIE]
        form = {"csrf": token, "strategy": "sma_crossover", "instruments": "900001, 900002",
                "start": "2026-02-02", "end": "2026-06-30", "initial_cash": "50,000,000",
                "params": '{"fast": 5, "slow": 20}', "label": "<b>dash</b>"}  # fmt: skip
        sent = client.post("/backtests", data=form, follow_redirects=False)
        assert sent.status_code == 303, sent.text[:2000]
        run_id = sent.headers["location"].rsplit("/", 1)[-1]
        with session_scope() as session:
            run = session.get(BacktestRun, run_id)
            assert run is not None
            assert run.origin == "dashboard"
            assert run.spec["params"] == {"fast": 5, "slow": 20}
            assert run.spec["initial_cash"] == 50_000_000.0
        shown = client.get(f"/backtests/{run_id}")
        assert shown.status_code == 200
        assert "&lt;b&gt;dash&lt;/b&gt;" in shown.text  # autoescaped
        assert "<b>dash</b>" not in shown.text
        assert f'data-poll="/backtests/{run_id}/progress"' in shown.text
        # no worker consumes it here (unless the session's is up): live updates until final
        unfinished = 'data-final="0"' in shown.text
        assert ("/static/backtest.js" in shown.text) is unfinished
        live = client.get(f"/backtests/{run_id}/progress").json()
        assert live["state"] in ("queued", "running", *FINAL_STATES)
        assert 0 <= live["progress"] <= 100
        assert set(live) >= {"state", "progress", "eta_s"}
        for change, words in (
            ({"strategy": "nope"}, "unknown strategy 'nope'"),
            ({"params": "{fast"}, "params: not JSON"),
            ({"params": "[1]"}, "params: a JSON object is needed"),
            ({"initial_cash": "lots"}, "initial_cash: 'lots' is not a number"),
            ({"instruments": "NOPE:1"}, "unknown instrument(s)"),
        ):
            bad = client.post("/backtests", data={**form, **change}, follow_redirects=False)
            assert bad.status_code == 422, change
            assert words in _text(bad.text), (change, _text(bad.text)[:800])
            assert 'id="form-error"' in bad.text
    # the run must not reach a worker of a later test
    backtests.cancel(run_id, wait=0.5)
    worker_app.control.purge()


def test_the_data_page_shows_freshness_gaps_jobs_and_dead_letters(
    admin: TestClient, reader: TestClient, world: dict[str, Any]
) -> None:
    page = admin.get("/data")
    text = _text(page.text)
    assert page.status_code == 200
    assert world["end"].isoformat() in text  # the latest candles
    assert 'id="dataset-candles"' in page.text
    assert "결측 구간 (일봉)" in text
    missing = re.search(r'id="gaps-missing-candles">(\d+)<', page.text)
    assert missing is not None
    assert int(missing.group(1)) > 0  # the seed's halted sessions are gaps
    # the same report as the API's /data/status (the page reuses it up to a minute)
    api = admin.get("/api/v1/data/status").json()
    assert int(missing.group(1)) == api["gaps"]["candles"]["missing"]
    assert f'id="jobs-failed">{api["jobs"]["failed"]}<' in page.text
    assert "quantbeat.collect.daily_candles" in text
    assert "SIMULATED provider timeout" in text
    assert "retries_exhausted" in text
    limited = reader.get("/data")
    assert limited.status_code == 200
    assert 'id="needs-admin"' in limited.text
    assert "retries_exhausted" not in limited.text


def test_labels_follow_the_language_chosen_and_kept_in_a_cookie(admin: TestClient) -> None:
    english = admin.get("/?lang=en")
    assert "Market Gate" in english.text
    assert "Sector strength" in english.text
    assert '<html lang="en">' in english.text
    assert admin.cookies.get("qb_lang") == "en"
    again = admin.get("/signals")
    assert "VCP signals" in again.text
    assert "Rank" in again.text
    korean = admin.get("/signals?lang=ko")
    assert "순위" in korean.text
    assert '<html lang="ko">' in korean.text
    assert "Rank</th>" not in korean.text
    assert admin.get("/?lang=xx").status_code == 200  # unknown: the cookie's language
    assert '<html lang="ko">' in admin.get("/?lang=xx").text


def test_every_page_has_the_banner_csp_and_its_server_time(admin: TestClient) -> None:
    for path in PAGES:
        admin.get(path)  # warm caches and imports once
        page = admin.get(path)
        assert page.status_code == 200, path
        assert BANNER in page.text, path
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        # The server's time is reported (benchmarks/api.py measures it; tests never time).
        assert re.fullmatch(r"app;dur=[0-9.]+", page.headers["server-timing"]), path
        assert not re.search(r'(src|href|action)="(https?:)?//', page.text), path  # offline


@pytest.fixture
def krx_market(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("QUANTBEAT_MARKET_SOURCE", "krx")
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


def test_the_banner_follows_the_rows_when_the_market_is_real(
    krx_market: None, world: dict[str, Any]
) -> None:
    with TestClient(_app()) as client:
        assert sign_in(client, world["keys"]["admin"]).status_code == 303
        # the seeded rows are simulated: the banner stays
        for path in ("/", "/signals", "/closing-bet", "/track-record"):
            assert BANNER in client.get(path).text, path
        # the data page reports that the latest stored data is simulated
        assert BANNER in client.get("/data").text
        # pages showing no simulated row (nor the sign-in form) carry none
        assert BANNER not in client.get("/login").text
        assert BANNER not in client.get("/backtests").text


def test_open_mode_needs_no_key(world: dict[str, Any]) -> None:
    with TestClient(
        _app(api_open=True), base_url="http://127.0.0.1:8080", client=("127.0.0.1", 50000)
    ) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "개방 모드 (키 없음)" in page.text
        assert 'id="logout"' not in page.text
        assert client.get("/data").status_code == 200


def test_cookies_are_secure_in_production_behind_a_plain_http_proxy(
    world: dict[str, Any],
) -> None:
    # Behind the TLS proxy uvicorn sees http: QUANTBEAT_ENV=production marks them Secure anyway
    with TestClient(_app(env="production")) as client:
        form = client.get("/login")
        csrf = next(c for c in form.headers.get_list("set-cookie") if c.startswith(CSRF_COOKIE))
        assert "Secure" in csrf
        token = re.match(rf"{CSRF_COOKIE}=([^;]+)", csrf)
        assert token is not None
        done = client.post(
            "/login",
            data={"key": world["keys"]["read"], "csrf": token.group(1), "next": "/"},
            headers={"Cookie": f"{CSRF_COOKIE}={token.group(1)}"},
            follow_redirects=False,
        )
        assert done.status_code == 303
        cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith(COOKIE))
        assert "Secure" in cookie
        assert "HttpOnly" in cookie


def test_a_form_announced_over_the_limit_is_refused_before_it_is_read(app: FastAPI) -> None:
    with TestClient(app) as client:
        token = _csrf(client)
        big = client.post(
            "/login",
            content=b"csrf=" + token.encode() + b"&key=" + b"k" * MAX_FORM_BYTES,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert big.status_code == 413
        assert f"over {MAX_FORM_BYTES} bytes" in big.text


def test_the_progress_endpoint_reads_the_live_state_and_errors_are_masked(
    reader: TestClient, world: dict[str, Any]
) -> None:
    run_id = "e" * 32
    with session_scope() as session:
        create_run(session, run_id, strategy="sma_crossover", total=4,
                   spec={"strategy": "sma_crossover", "instruments": ["KOSPI:900000"],
                         "start": "2026-03-02", "end": "2026-04-10"})  # fmt: skip
    store = backtests.state_store()
    store.update(run_id, {"state": "running", "progress": 0.42, "eta": 7.0, "done": 1})
    live = reader.get(f"/backtests/{run_id}/progress")
    assert live.status_code == 200
    # PostgreSQL still says queued: these figures are the live state's
    assert live.json() == {"state": "running", "progress": 42.0, "eta_s": 7.0}
    secret = "ProviderError: GET https://u:hunter2@data.example/x?api_key=sekrit42 failed"
    with session_scope() as session:
        row = session.get(BacktestRun, run_id)
        assert row is not None
        assert row.state == "queued"
        finish(session, run_id, state="failed", error=secret)
    store.update(run_id, {"state": "failed"})
    ended = reader.get(f"/backtests/{run_id}/progress").json()
    assert ended == {"state": "failed", "progress": 0.0, "eta_s": 0.0}  # PostgreSQL's word
    page = reader.get(f"/backtests/{run_id}")
    api = reader.get(f"/api/v1/backtests/{run_id}").json()
    for shown in (page.text, api["error"], backtests.status(run_id)["error"]):
        assert "hunter2" not in shown
        assert "sekrit42" not in shown
    assert api["error"] in unescape(page.text)
    assert "***" in api["error"]
    assert 'id="bt-error"' in page.text
    assert "/static/backtest.js" not in page.text  # ended: nothing to follow


def test_the_signals_page_is_the_apis_latest_decision_and_any_day_ranked_alike(
    reader: TestClient, world: dict[str, Any]
) -> None:
    vcp = world["vcp"]
    latest = reader.get("/api/v1/signals/latest", params={"strategy": "vcp"}).json()
    (decision,) = latest["strategies"]
    page = reader.get("/signals")
    shown = re.findall(r"<tr>\s*<td class=\"num\">(\d+)</td><td>([^<]+)</td>", page.text)
    assert shown == [(str(s["rank"]), s["instrument"]) for s in decision["signals"]]
    assert decision["run_id"] == vcp["run_id"]
    same_day = reader.get(f"/signals?date={vcp['day']}")
    assert re.findall(r"<tr>\s*<td class=\"num\">(\d+)</td><td>([^<]+)</td>", same_day.text) == (
        shown
    )
    assert f"#{vcp['run_id']}" in same_day.text
    # a day of stored signals without a scan run: listed, and said to have no run
    older = reader.get("/signals?date=2026-03-03")
    listed = reader.get(
        "/api/v1/signals", params={"date": "2026-03-03", "strategy": "vcp", "phase": "final"}
    ).json()["items"]
    rows = re.findall(r"<tr>\s*<td class=\"num\">\d+</td><td>([^<]+)</td>", older.text)
    assert sorted(rows) == sorted(i["instrument"] for i in listed)
    assert "이 날짜의 스캔 실행 기록이 없습니다" in older.text
