"""`quantbeat flower` for integration tests: started in a subprocess on a free 127.0.0.1 port
with basic auth, on the test broker, its state kept in a given file; and its HTTP API."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

QUANTBEAT = str(Path(sys.executable).with_name("quantbeat"))
CREDENTIALS = "quant:fl0wer-Pw"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str, auth: str | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET; HTTP errors are returned, not raised."""
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def wait_for(condition: Callable[[], bool], seconds: float, interval: float = 0.3) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


class Flower:
    """`quantbeat flower` in a subprocess on a free localhost port, on the test broker,
    keeping its state in ``db``."""

    def __init__(self, tmp_path: Path, db: Path) -> None:
        self.tmp_path, self.db = tmp_path, db
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"flower-{self.port}.log"
        env = {
            **os.environ,
            "QUANTBEAT_FLOWER_BASIC_AUTH": CREDENTIALS,
            "QUANTBEAT_DATA_DIR": str(tmp_path / "data"),
            "QUANTBEAT_FLOWER_DB": str(db),
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [QUANTBEAT, "flower", f"--port={self.port}", "--address=127.0.0.1"],
                cwd=tmp_path,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if not wait_for(self._healthy, 40):
            self.stop()
            pytest.fail(f"flower never answered /healthcheck:\n{self.log()}")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"flower exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return http_get(f"{self.base}/healthcheck")[0] == 200
        except OSError:
            return False

    def api(self, path: str, **query: str) -> Any:
        """The decoded JSON of a GET on Flower's API (with credentials); fails on non-200."""
        url = f"{self.base}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        status, body = http_get(url, auth=CREDENTIALS)
        assert status == 200, f"{path} answered {status}:\n{self.log()}"
        return json.loads(body)

    def tasks(self, taskname: str | None = None) -> dict[str, dict[str, Any]]:
        """Flower's task list from /api/tasks, by task id."""
        tasks: dict[str, dict[str, Any]] = (
            self.api("/api/tasks", taskname=taskname) if taskname else self.api("/api/tasks")
        )
        return tasks

    def wait_listed(self, task_id: str, seconds: float, taskname: str | None = None) -> bool:
        return wait_for(lambda: task_id in self.tasks(taskname), seconds)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM (Flower saves its state on the way out), SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
