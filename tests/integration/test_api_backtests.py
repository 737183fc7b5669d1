"""Backtests and scans over HTTP through real PostgreSQL, Redis and a real prefork Celery
worker: submit (202, Location, idempotency), progress as server-sent events up to ``end``,
reports (HTML, PNG, CSV), cancel of a running run and of a finished one, invalid specs named
by field, scopes, and scan runs (list, detail, events).

The API is served by uvicorn on a free port in a thread of this process (the streams are
read over real HTTP with httpx); the runs go through the test worker's own broker (as in
tests/integration/test_backtests.py), which the services send to here."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from sqlalchemy import func, select

from db.engine import session_scope
from db.models import BacktestRun, BacktestTrade
from db.scans import add_chunk_result, finish_run, start_run
from quantbeat.api.streams import open_streams
from quantbeat.infra.settings import reset_settings
from quantbeat.services import api_keys
from quantbeat.services import backtests as backtest_service
from tests.conftest import TEST_REDIS_URL
from tests.integration.conftest import WorkerProcess, start_worker
from tests.integration.helpers import eventually, sessions_since, small_kospi_history
from tests.support.api_server import served_api

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 20)
FIRST = dt.date(2026, 5, 4)
BROKER, BACKEND = f"{TEST_REDIS_URL}/11", f"{TEST_REDIS_URL}/12"


def _client() -> Celery:
    client = Celery("api-backtest-client")
    client.config_from_object("celeryconfig")
    client.conf.update(broker_url=BROKER, result_backend=BACKEND)
    return client


CLIENT = _client()


@pytest.fixture(scope="module")
def names(database: str) -> list[str]:
    """Simulated KOSPI candles (about 140 sessions) for a 40-instrument universe."""
    found = small_kospi_history(database, FIRST.isoformat(), DAY.isoformat())
    assert len(found) >= 12
    return found


@pytest.fixture(scope="module")
def cpu_worker(
    names: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A prefork worker on the cpu queue of its own broker, with the test strategies."""
    import tests.support.backtest_app  # noqa: F401  (the test strategies, for validation)

    for url in (BROKER, BACKEND):
        redis.Redis.from_url(url).flushdb()
    proc = start_worker(
        "tests.support.backtest_app",
        queues="cpu",
        tmp_dir=tmp_path_factory.mktemp("api-backtest-worker"),
        env={"QUANTBEAT_BROKER_URL": BROKER, "QUANTBEAT_RESULT_BACKEND": BACKEND},
        pool="prefork",
    )
    try:
        proc.wait_ready(CLIENT)
        yield proc
    finally:
        proc.stop()


class Api:
    """The served API: its base URL, a client, and keys of each scope."""

    def __init__(self, base: str, reports: Path) -> None:
        self.base = base
        self.reports = reports
        self.http = httpx.Client(base_url=base, timeout=httpx.Timeout(30.0))
        self.runner = {"Authorization": f"Bearer {api_keys.create('runner', ['run'])[0]}"}
        self.reader = {"X-API-Key": api_keys.create("reader", ["read"])[0]}


@pytest.fixture(scope="module")
def api(cpu_worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """uvicorn serving ``create_app()`` on a free port in a thread; the backtest service
    sends to the test worker's broker."""
    reports = tmp_path_factory.mktemp("reports")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QUANTBEAT_REPORT_DIR", str(reports))
        reset_settings()
        api_keys.forget_cache()
        patch.setattr(backtest_service, "worker_app", CLIENT)
        with served_api() as base:
            served = Api(base, reports)
            try:
                yield served
            finally:
                served.http.close()
    reset_settings()
    api_keys.forget_cache()


def _spec(names: list[str], strategy: str = "sma_crossover", **extra: Any) -> dict[str, Any]:
    return {
        "strategy": strategy,
        "instruments": names,
        "start": "2026-07-01",
        "end": DAY.isoformat(),
        **extra,
    }


def sse(api: Api, path: str, headers: dict[str, str]) -> Generator[tuple[str, dict[str, Any]]]:
    """The events of the stream at ``path`` as ``(event, data)``, comments skipped; the
    connection closes when the caller stops iterating."""
    with api.http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        event: str | None = None
        data: list[str] = []
        for line in response.iter_lines():
            if line == "":
                if data:
                    yield event or "message", json.loads("\n".join(data))
                event, data = None, []
            elif line.startswith(":"):
                continue
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())


def _run_count() -> int:
    with session_scope() as session:
        return int(session.execute(select(func.count()).select_from(BacktestRun)).scalar_one())


def test_a_submitted_backtest_streams_its_progress_to_the_end_and_serves_its_report(api, names):
    spec = _spec(names[:6], "test_slow", params={"sleep": 0.25}, initial_cash=50_000_000.0)
    submitted = api.http.post("/api/v1/backtests", json=spec, headers=api.runner)
    assert submitted.status_code == 202, submitted.text
    body = submitted.json()
    run_id = body["run_id"]
    assert submitted.headers["location"] == f"/api/v1/backtests/{run_id}" == body["status_url"]
    assert body["events_url"] == f"/api/v1/backtests/{run_id}/events"
    assert body["report_url"] == f"/api/v1/backtests/{run_id}/report"
    assert body["created"] is True

    events = list(sse(api, body["events_url"], api.reader))
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "end", kinds
    assert set(kinds[:-1]) == {"progress"}, kinds
    progress = [data for kind, data in events if kind == "progress"]
    assert all(set(p) == {"state", "progress", "eta_s"} for p in progress)
    percents = [p["progress"] for p in progress]
    assert percents == sorted(percents), percents  # never goes back
    # ~1.5 s of signal building: the stream saw the run working, part done
    assert any(p["state"] == "running" and 0 < p["progress"] < 100 for p in progress), progress
    assert progress[-1] == {"state": "completed", "progress": 100.0, "eta_s": 0.0}
    end = events[-1][1]
    assert end["state"] == "completed"
    assert end["run_id"] == run_id
    assert end["progress"] == 100.0
    assert end["error"] is None
    assert end["done"] == 6
    assert open_streams() == 0

    status = api.http.get(body["status_url"], headers=api.reader)
    assert status.status_code == 200
    assert status.headers["cache-control"] == "private, no-cache"  # live state: revalidate
    row = status.json()
    assert row["state"] == "completed"
    assert row["progress"] == 100.0
    assert row["eta_s"] == 0.0
    assert (row["done"], row["total"]) == (6, 6)
    assert row["metrics"]["trades"] == row["summary"]["closed_trades"]
    assert row["started_at"] <= row["finished_at"]
    listed = api.http.get("/api/v1/backtests", params={"limit": 5}, headers=api.reader).json()
    assert run_id in [r["run_id"] for r in listed]

    html = api.http.get(body["report_url"], headers=api.reader)
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in html.headers["content-security-policy"]
    assert run_id in html.text
    assert "<html" in html.text.lower()
    assert (api.reports / f"backtest-{run_id}.html").read_text(encoding="utf-8") == html.text
    png = api.http.get(body["report_url"], params={"format": "png"}, headers=api.reader)
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    trades = api.http.get(body["report_url"], params={"format": "csv"}, headers=api.reader)
    assert trades.status_code == 200
    assert trades.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(trades.text)))
    with session_scope() as session:
        stored = session.execute(
            select(func.count()).where(BacktestTrade.run_id == run_id)
        ).scalar_one()
    assert len(rows) == stored
    assert {r["symbol"] for r in rows} <= set(names[:6])
    equity = api.http.get(
        body["report_url"], params={"format": "csv", "table": "equity"}, headers=api.reader
    )
    lines = equity.text.splitlines()
    assert lines[0] == "day,equity"
    assert len(lines) - 1 == sessions_since("2026-07-01")
    assert float(lines[-1].split(",")[1]) == pytest.approx(row["summary"]["final_equity"])

    ended = api.http.delete(body["status_url"], headers=api.runner)
    assert ended.status_code == 409
    assert ended.headers["content-type"] == "application/problem+json"
    assert f"backtest {run_id} already ended completed" in ended.json()["detail"]


def test_a_running_backtest_is_cancelled_and_its_stream_ends_cancelled(api, names):
    spec = _spec(names[:3], "test_endless", soft_time_limit=40, time_limit=50)
    run_id = api.http.post("/api/v1/backtests", json=spec, headers=api.runner).json()["run_id"]
    path = f"/api/v1/backtests/{run_id}"
    stream = sse(api, f"{path}/events", api.reader)
    seen = []
    for kind, data in stream:
        seen.append((kind, data))
        if data["state"] == "running":
            break
    assert seen[-1][1]["state"] == "running", seen
    assert open_streams() == 1

    # A second watcher that goes away: its stream ends on the server too.
    second = sse(api, f"{path}/events", api.reader)
    assert next(second)[0] == "progress"
    assert open_streams() == 2
    second.close()
    assert eventually(open_streams, lambda n: n == 1, timeout=5) == 1

    report = api.http.get(f"{path}/report", headers=api.reader)
    assert report.status_code == 409
    assert "not finished yet" in report.json()["detail"]

    refused = api.http.delete(path, headers=api.reader)  # read-only key
    assert refused.status_code == 403
    cancelled = api.http.delete(path, headers=api.runner)
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["state"] in ("cancelled", "running")  # its worker stops it next

    rest = list(stream)
    assert rest[-1][0] == "end", rest
    assert rest[-1][1]["state"] == "cancelled"
    assert rest[-1][1]["error"] == "cancelled while running"
    assert eventually(open_streams, lambda n: n == 0, timeout=5) == 0
    assert api.http.get(path, headers=api.reader).json()["state"] == "cancelled"
    again = api.http.delete(path, headers=api.runner)
    assert again.status_code == 409
    assert "already ended cancelled" in again.json()["detail"]
    report = api.http.get(f"{path}/report", headers=api.reader)
    assert report.status_code == 409
    assert "ended cancelled" in report.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"strategy": "nope"}, "body.strategy", "unknown strategy 'nope'"),
        ({"start": None}, "body.start", "valid date"),
        ({"end": "2099-01-01"}, "body.end", "in the future"),
        ({"start": "2026-11-20", "end": "2026-11-01"}, "body.start", "must be before end"),
        ({"instruments": ["KOSPI:999999"]}, "body.instruments", "unknown instrument(s)"),
        ({"instruments": ["KOSPI:00\x0000"]}, "body.instruments", "NUL character"),
        ({"params": {"fast": 50, "slow": 20}}, "body.params.fast", "fast < slow"),
        ({"execution": {"fees": 0.5}}, "body.execution.fees", "fees must be in"),
        ({"initial_cash": -1}, "body.initial_cash", "greater than 0"),
        ({"colour": "red"}, "body.colour", "Extra inputs are not permitted"),
    ],
)
def test_an_invalid_spec_is_a_422_naming_its_field_and_records_nothing(
    api, names, change, field, says
):
    before = _run_count()
    response = api.http.post(
        "/api/v1/backtests", json={**_spec(names[:2]), **change}, headers=api.runner
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["errors"][0]["field"] == field, problem
    assert says in problem["detail"], problem
    assert _run_count() == before


def test_keys_without_the_run_scope_cannot_submit(api, names):
    before = _run_count()
    refused = api.http.post("/api/v1/backtests", json=_spec(names[:2]), headers=api.reader)
    assert refused.status_code == 403
    assert "lacks the scope 'run'" in refused.json()["detail"]
    anonymous = api.http.post("/api/v1/backtests", json=_spec(names[:2]))
    assert anonymous.status_code == 401
    assert _run_count() == before


def test_a_submission_with_an_idempotency_key_is_recorded_once(api, names):
    spec = _spec(names[:2])
    key = {"Idempotency-Key": f"nightly-{time.time_ns()}"}
    first = api.http.post("/api/v1/backtests", json=spec, headers={**api.runner, **key})
    before = _run_count()
    again = api.http.post("/api/v1/backtests", json=spec, headers={**api.runner, **key})
    assert first.status_code == again.status_code == 202
    assert first.json()["created"] is True
    assert again.json()["created"] is False
    assert again.json()["run_id"] == first.json()["run_id"]
    assert _run_count() == before
    other = api.http.post("/api/v1/backtests", json=_spec(names[:3]), headers={**api.runner, **key})
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "header.Idempotency-Key"
    assert "different spec" in other.json()["detail"]
    assert _run_count() == before
    bad = api.http.post(
        "/api/v1/backtests", json=spec, headers={**api.runner, "Idempotency-Key": "a b"}
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "header.Idempotency-Key"


def test_unknown_and_malformed_run_ids(api):
    unknown = "0" * 32
    for path in ("", "/events", "/report"):
        response = api.http.get(f"/api/v1/backtests/{unknown}{path}", headers=api.reader)
        assert response.status_code == 404, (path, response.text)
        assert f"no backtest run '{unknown}'" in response.json()["detail"]
    assert api.http.delete(f"/api/v1/backtests/{unknown}", headers=api.runner).status_code == 404
    malformed = api.http.get("/api/v1/backtests/a%00b", headers=api.reader)
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["field"] == "path.run_id"


def test_a_real_scan_is_listed_with_its_counts_and_streams_to_its_end(api, names):
    started = CLIENT.send_task(
        "quantbeat.scans.run",
        kwargs={
            "strategy": "closing_bet",
            "trade_date": DAY.isoformat(),
            "market": "KOSPI",
            "chunk_size": 4,
        },
    ).get(timeout=60)
    run_id = started["run_id"]
    events = list(sse(api, f"/api/v1/scans/{run_id}/events", api.reader))
    assert events[-1][0] == "end"
    progress = [data for kind, data in events if kind == "progress"]
    assert progress[-1]["state"] == "completed"
    assert progress[-1]["progress"] == 100.0
    end = events[-1][1]
    assert end["run_id"] == run_id
    assert end["state"] == "completed"
    assert end["total"] == started["total"] == len(names)
    assert end["chunks"] == started["chunks"] == -(-len(names) // 4)

    detail = api.http.get(f"/api/v1/scans/{run_id}", headers=api.reader).json()
    assert detail["scanned"] + detail["failed"] == detail["total"]
    assert detail["coverage"] == f"{detail['scanned']}/{detail['total']}"
    assert detail["progress"] == 100.0
    assert detail["finished_at"] is not None
    listed = api.http.get(
        "/api/v1/scans", params={"strategy": "closing-bet", "limit": 5}, headers=api.reader
    ).json()
    assert listed[0]["run_id"] == run_id
    assert listed[0]["candidates"] == detail["candidates"]
    other = api.http.get("/api/v1/scans", params={"strategy": "vcp"}, headers=api.reader)
    assert run_id not in [r["run_id"] for r in other.json()]
    unknown = api.http.get("/api/v1/scans", params={"strategy": "nope"}, headers=api.reader)
    assert unknown.status_code == 422
    assert "unknown strategy 'nope'" in unknown.json()["detail"]
    assert api.http.get("/api/v1/scans/99999999", headers=api.reader).status_code == 404
    assert api.http.get("/api/v1/scans/0", headers=api.reader).status_code == 422


def test_a_scan_s_progress_is_the_share_of_the_universe_its_finished_chunks_covered(api):
    with session_scope() as session:
        run_id = start_run(
            session,
            strategy="vcp",
            trade_date=DAY,
            params={"markets": ["KOSPI"], "chunk_size": 5},
            total=10,
            chunks=2,
            data_version=None,
        )
    stream = sse(api, f"/api/v1/scans/{run_id}/events", api.reader)
    kind, data = next(stream)
    assert (kind, data["state"], data["progress"], data["eta_s"]) == (
        "progress",
        "running",
        0.0,
        None,
    )
    with session_scope() as session:  # the first chunk: 4 evaluated, 1 failed
        add_chunk_result(session, run_id, scanned=4, failed=1, candidates=2)
    kind, data = next(stream)
    assert (kind, data["state"], data["progress"]) == ("progress", "running", 50.0)
    assert data["eta_s"] is not None
    assert data["eta_s"] >= 0
    with session_scope() as session:
        add_chunk_result(session, run_id, scanned=4, failed=0, candidates=1)  # one missing
        finish_run(session, run_id, state="completed")
    rest = list(stream)
    assert [k for k, _ in rest] == ["progress", "end"]
    assert rest[0][1] == {"state": "completed", "progress": 100.0, "eta_s": 0.0}
    assert (rest[1][1]["scanned"], rest[1][1]["failed"], rest[1][1]["candidates"]) == (8, 1, 3)
