"""Issue 20's done-when, as a user does it: with only an API key (made by ``quantbeat
api-key create``), against ``quantbeat api`` and a worker running as their own processes on
PostgreSQL and Redis, see today's gate and signals, read a past signal's
outcome, submit a backtest, follow its progress to the end and open its report — in each
format. (The browser side of the same journey: tests/integration/test_dashboard_browser.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from db.engine import session_scope
from db.models import Instrument, SignalOutcome
from tests.integration.conftest import ROOT, WorkerProcess
from tests.integration.test_portfolio import START
from tests.support.dashboard_data import seed

pytestmark = pytest.mark.integration

QUANTBEAT = str(Path(sys.executable).with_name("quantbeat"))


@pytest.fixture(scope="module")
def stack(
    database: str, worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The seeded SIMULATED market, the session's worker (it consumes cpu) and ``quantbeat
    api`` as its own process: yields the API's base URL and the seed's facts."""
    facts = seed(database)
    tmp = tmp_path_factory.mktemp("journey")
    log = (tmp / "api.log").open("wb")
    api = subprocess.Popen(
        [QUANTBEAT, "api", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "QUANTBEAT_REPORT_DIR": str(tmp / "reports")},
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        assert api.stdout is not None
        line = api.stdout.readline().decode()
        assert " on http://127.0.0.1:" in line, (tmp / "api.log").read_text()
        yield line.split(" on ", 1)[1].split()[0].rstrip("/"), facts
    finally:
        api.terminate()
        api.wait(15)
        log.close()


def _key() -> str:
    made = subprocess.run(
        [QUANTBEAT, "api-key", "create", "trader", "--scope", "run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


def _events(http: httpx.Client, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    with http.stream("GET", path) as response:
        assert response.status_code == 200
        event, data = "message", ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif line == "" and data:
                yield event, json.loads(data)
                event, data = "message", ""


def test_a_user_with_only_a_key_reads_the_day_and_runs_a_backtest_to_its_report(
    stack: tuple[str, dict[str, Any]],
) -> None:
    base, facts = stack
    key = _key()
    http = httpx.Client(
        base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=60
    )
    # Without the key: a clear refusal.
    assert httpx.get(f"{base}/api/v1/market/gate").status_code == 401

    gate = http.get("/market/gate").json()
    assert gate["color"] == facts["gate"]["color"]
    assert gate["trade_date"] == facts["end"].isoformat()
    assert gate["simulated"] is True

    latest = {s["strategy"]: s for s in http.get("/signals/latest").json()["strategies"]}
    assert latest["vcp"]["run_id"] == facts["vcp"]["run_id"]
    assert {s["ticker"] for s in latest["vcp"]["signals"]} == set(facts["vcp"]["tickers"])
    today = http.get(
        "/signals",
        params={"strategy": "closing_bet", "date": facts["end"].isoformat(), "phase": "final"},
    ).json()["items"]
    assert {s["ticker"] for s in today} == {c["ticker"] for c in facts["closing"]}

    # A past signal and where it went: the one the track record closed first.
    with session_scope() as session:
        closed = session.execute(
            select(SignalOutcome.signal_id, SignalOutcome.net_return)
            .where(SignalOutcome.state == "closed")
            .order_by(SignalOutcome.signal_id)
            .limit(1)
        ).one()
        tickers = session.scalars(
            select(Instrument.ticker).where(Instrument.market == "KOSPI").limit(5)
        ).all()
    detail = http.get(f"/signals/{closed.signal_id}").json()
    assert detail["outcome"]["state"] == "closed"
    assert detail["outcome"]["net_return"] == pytest.approx(closed.net_return)

    spec = {
        "strategy": "sma_crossover",
        "instruments": [f"KOSPI:{t}" for t in tickers],
        "start": START.isoformat(),
        "end": facts["end"].isoformat(),
    }
    submitted = http.post("/backtests", json=spec)
    assert submitted.status_code == 202, submitted.text
    run = submitted.json()
    assert submitted.headers["location"] == f"/api/v1/backtests/{run['run_id']}"

    progress: list[float] = []
    last: dict[str, Any] = {}
    for event, data in _events(http, f"/backtests/{run['run_id']}/events"):
        if event == "progress":
            progress.append(data["progress"])
        if event == "end":
            last = data
            break
    assert last["state"] == "completed", last
    assert progress == sorted(progress)
    assert progress[-1] == 100

    status = http.get(f"/backtests/{run['run_id']}").json()
    assert status["state"] == "completed"
    assert status["progress"] == 100
    html = http.get(f"/backtests/{run['run_id']}/report", params={"format": "html"})
    assert html.headers["content-type"].startswith("text/html")
    assert "<html" in html.text.lower()
    png = http.get(f"/backtests/{run['run_id']}/report", params={"format": "png"})
    assert png.content.startswith(b"\x89PNG")
    csv = http.get(f"/backtests/{run['run_id']}/report", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0]
