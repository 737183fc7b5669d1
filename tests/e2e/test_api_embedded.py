"""``quantbeat api`` on the embedded default (a fresh directory, no QUANTBEAT_* variables, no
services): a backtest submitted over HTTP runs on the API process's in-process worker (the
in-memory broker), its progress streams to ``end`` and its report is served. SQLite and the
in-memory broker are the subject here (the embedded default), not stand-ins."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

QUANTBEAT = str(Path(sys.executable).with_name("quantbeat"))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTBEAT_")}
    env["QUANTBEAT_SIM_UNIVERSE_SIZE"] = "20"
    return env


def test_a_backtest_submitted_to_the_embedded_api_runs_in_its_process(tmp_path: Path):
    filled = subprocess.run(
        [QUANTBEAT, "collect", "backfill", "--from", "2026-05-04", "--to", "2026-11-20",
         "--market", "KOSPI", "--dataset", "candles"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert filled.returncode == 0, filled.stderr[-3000:]
    with sqlite3.connect(tmp_path / "var" / "quantbeat.sqlite") as db:
        names = [
            f"{m}:{t}"
            for m, t in db.execute(
                "SELECT market, ticker FROM instruments WHERE market = 'KOSPI' LIMIT 4"
            )
        ]
    assert len(names) == 4

    server = subprocess.Popen(
        [QUANTBEAT, "api", "--open", "--port", "0"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("serving API and dashboard on http://127.0.0.1:"), line
        base = line.split(" on ", 1)[1].split("/ ", 1)[0].rstrip("/")
        with httpx.Client(base_url=base, timeout=60.0) as http:
            spec = {
                "strategy": "sma_crossover",
                "instruments": names,
                "start": "2026-07-01",
                "end": "2026-11-20",
            }
            submitted = http.post("/api/v1/backtests", json=spec)
            assert submitted.status_code == 202, submitted.text
            urls = submitted.json()
            events: list[tuple[str, dict[str, object]]] = []
            with http.stream("GET", urls["events_url"]) as stream:
                kind = ""
                for text in stream.iter_lines():
                    if text.startswith("event:"):
                        kind = text[6:].strip()
                    elif text.startswith("data:"):
                        events.append((kind, json.loads(text[5:])))
            assert events[-1][0] == "end", events
            assert events[-1][1]["state"] == "completed", events
            assert events[-2][1] == {"state": "completed", "progress": 100.0, "eta_s": 0.0}
            status = http.get(urls["status_url"]).json()
            assert status["state"] == "completed"
            assert status["done"] == 4
            assert status["finished_at"].endswith("Z")  # UTC, though SQLite stores it naive
            report = http.get(urls["report_url"])
            assert report.status_code == 200
            assert urls["run_id"] in report.text
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        finally:
            if server.poll() is None:
                server.kill()
    # Ctrl-C: served requests drain, the in-process worker stops, exit 130 (as any command)
    assert server.returncode == 130, server.stderr.read() if server.stderr else ""
