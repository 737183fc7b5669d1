"""Prometheus alerts into quantbeat's notifications (issue 22): a real Alertmanager (Debian's
prometheus-alertmanager) with the receiver of deploy/alertmanager/alertmanager.yml pointed at
the API served by uvicorn; an alert posted to Alertmanager arrives as an ``ops.alert`` event,
once, and its resolution as another; the endpoint refuses what is not an Alertmanager payload
and a key without the admin scope."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from db.engine import session_scope
from db.models import Event
from quant.notify.events import parse
from quant.notify.messages import render
from quantbeat.infra.settings import reset_settings
from quantbeat.services import api_keys
from tests.faults.servers import free_port
from tests.integration.conftest import ROOT
from tests.integration.helpers import eventually
from tests.support.api_server import served_api

pytestmark = pytest.mark.usefixtures("clean_db")


class Api:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=httpx.Timeout(30.0))
        self.admin_key = api_keys.create("alertmanager", ["admin"])[0]
        self.admin = {"Authorization": f"Bearer {self.admin_key}"}
        self.reader = {"X-API-Key": api_keys.create("reader", ["read"])[0]}


@pytest.fixture
def api() -> Iterator[Api]:
    reset_settings()
    api_keys.forget_cache()
    with served_api() as base:
        served = Api(base)
        try:
            yield served
        finally:
            served.http.close()
            api_keys.forget_cache()


def _alerts() -> list[dict[str, Any]]:
    with session_scope() as session:
        rows = session.execute(select(Event).where(Event.type == "ops.alert").order_by(Event.id))
        return [
            {"key": e.key, "payload": e.payload, "event_id": e.event_id, "at": e.at}
            for e in rows.scalars()
        ]


def _webhook(status: str = "firing", fingerprint: str = "3f2a9c1b0d4e5f60") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="QuantbeatWorkerDown"}',
        "status": status,
        "receiver": "quantbeat",
        "groupLabels": {"alertname": "QuantbeatWorkerDown"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": status,
                "labels": {
                    "alertname": "QuantbeatWorkerDown",
                    "severity": "critical",
                    "instance": "w1:9808",
                    "job": "quantbeat-worker-io",
                },
                "annotations": {
                    "summary": "Worker w1:9808 (quantbeat-worker-io) is not answering scrapes",
                    "description": "Prometheus could not scrape w1:9808 for 2 minutes.",
                    "runbook": "docs/runbooks/incidents.md#worker-down",
                },
                "startsAt": "2026-12-06T10:00:00.000Z",
                "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-06T10:20:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": fingerprint,
            }
        ],
    }


def test_the_endpoint_records_each_alert_once(api: Api) -> None:
    first = api.http.post("/api/v1/ops/alerts", json=_webhook(), headers=api.admin)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": 1, "recorded": 1, "duplicates": 0}
    again = api.http.post("/api/v1/ops/alerts", json=_webhook(), headers=api.admin)
    assert again.json() == {"received": 1, "recorded": 0, "duplicates": 1}  # a retry
    resolved = api.http.post("/api/v1/ops/alerts", json=_webhook("resolved"), headers=api.admin)
    assert resolved.json()["recorded"] == 1
    rows = _alerts()
    assert [r["payload"]["status"] for r in rows] == ["firing", "resolved"]
    firing = rows[0]["payload"]
    assert firing["alertname"] == "QuantbeatWorkerDown"
    assert firing["ends_at"] is None  # Alertmanager's 0001-01-01 means "not ended"
    envelope = parse(
        id=rows[0]["event_id"], type="ops.alert", version=1, at=rows[0]["at"], payload=firing
    )
    text = render(envelope, channel="telegram", language="en").parts[0]
    assert "Alert" in text
    assert "QuantbeatWorkerDown" in text
    assert "docs/runbooks/incidents.md#worker-down" in text


def test_the_endpoint_refuses_bad_payloads_and_keys(api: Api) -> None:
    bad_version = {**_webhook(), "version": "3"}
    refused = api.http.post("/api/v1/ops/alerts", json=bad_version, headers=api.admin)
    assert refused.status_code == 422
    assert "version '3' is not supported" in refused.json()["detail"]
    nameless = _webhook()
    nameless["alerts"][0]["labels"].pop("alertname")
    refused = api.http.post("/api/v1/ops/alerts", json=nameless, headers=api.admin)
    assert refused.status_code == 422
    assert "alerts.0.labels" in refused.json()["detail"]
    not_alerts = api.http.post("/api/v1/ops/alerts", json={"hello": 1}, headers=api.admin)
    assert not_alerts.status_code == 422
    assert api.http.post("/api/v1/ops/alerts", json=_webhook()).status_code == 401
    read_only = api.http.post("/api/v1/ops/alerts", json=_webhook(), headers=api.reader)
    assert read_only.status_code == 403
    assert _alerts() == []


@pytest.fixture
def alertmanager(api: Api, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("Alertmanager is not installed (make test installs prometheus-alertmanager)")
    # the shipped configuration, with the API's address, a test key file and short timers
    config = yaml.safe_load((ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    key = tmp_path / "api-key"
    key.write_text(api.admin_key)
    hook = config["receivers"][0]["webhook_configs"][0]
    hook["url"] = f"{api.base}/api/v1/ops/alerts"
    hook["http_config"]["authorization"]["credentials_file"] = str(key)
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for child in config["route"].get("routes", []):
        child.update(group_wait="1s", group_interval="1s")
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    port, cluster = free_port(), free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={path}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--cluster.listen-address=127.0.0.1:{cluster}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        assert eventually(ready, bool, timeout=30), (tmp_path / "alertmanager.log").read_text()
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_alertmanager_delivers_a_firing_and_a_resolved_alert(alertmanager: str) -> None:
    now = dt.datetime.now(dt.UTC)
    alert = {
        "labels": {
            "alertname": "QuantbeatQueueBacklogGrowing",
            "severity": "warning",
            "queue": "cpu",
        },
        "annotations": {
            "summary": "Queue cpu backlog is growing (400)",
            "runbook": "docs/runbooks/incidents.md#queue-backlog",
        },
        "startsAt": now.isoformat(),
    }
    posted = httpx.post(f"{alertmanager}/api/v2/alerts", json=[alert], timeout=10)
    assert posted.status_code == 200, posted.text
    rows = eventually(_alerts, lambda r: len(r) >= 1, timeout=30)
    assert rows[0]["payload"]["alertname"] == "QuantbeatQueueBacklogGrowing"
    assert rows[0]["payload"]["labels"]["queue"] == "cpu"
    assert rows[0]["payload"]["status"] == "firing"
    # resolved: an end in the past
    ended = {**alert, "endsAt": dt.datetime.now(dt.UTC).isoformat()}
    assert httpx.post(f"{alertmanager}/api/v2/alerts", json=[ended], timeout=10).status_code == 200
    rows = eventually(
        _alerts, lambda r: any(x["payload"]["status"] == "resolved" for x in r), timeout=30
    )
    assert [r["payload"]["status"] for r in rows] == ["firing", "resolved"]  # each once
