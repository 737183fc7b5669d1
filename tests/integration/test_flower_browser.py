"""`quantbeat flower` end to end: a real worker runs a real quantbeat task, Flower (behind basic
auth) records it, Debian's headless Chromium shows it on the Tasks page (screenshot saved to
var/screenshots/flower-tasks.png), and the task history survives a Flower restart.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian: ``apt-get install chromium
chromium-driver``; ``make test`` installs them when run as root).
"""

from __future__ import annotations

import base64
import os
import resource
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.flower import CREDENTIALS, Flower, http_get, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = ROOT / "var" / "screenshots" / "flower-tasks.png"
# A real production task, cheap and harmless: drops cache entries of an unknown instrument.
TASK = "quantbeat.indicators.invalidate"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _missing_browser() -> list[str]:
    return [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]


@pytest.fixture(scope="module")
def flower_run(
    celery_app: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[Flower], str]]:
    """A running Flower that has seen one successful ``TASK`` run by the session worker:
    ``([flower], task_id)``; the list lets a test restart Flower for the tests after it."""
    tmp_path = tmp_path_factory.mktemp("flower")
    db = tmp_path / "state" / "flower.db"
    running = [Flower(tmp_path, db)]
    try:
        # Flower subscribes to task events some time after it answers HTTP, and events sent
        # before that are lost: send until one run shows up, then wait for its final state.
        seen: str | None = None
        for _ in range(6):
            result = celery_app.send_task(TASK, args=[["KRX:FLOWERTEST"]])
            assert result.get(timeout=30) == {"instruments": 1, "removed": 0}
            if running[0].wait_listed(result.id, 3, TASK):
                seen = result.id
                break
        assert seen is not None, f"flower never listed a {TASK} task:\n{running[0].log()}"
        flower = running[0]
        final = wait_for(lambda: flower.tasks(TASK)[seen]["state"] == "SUCCESS", 10)
        assert final, flower.tasks(TASK)[seen]
        yield running, seen
    finally:
        running[0].stop()


def _chromium(tmp_path: Path) -> webdriver.Chrome:
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespaces for the sandbox
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    # Both paths given: Selenium Manager is not consulted (and downloads nothing). The driver
    # gets a minimal environment of its own: nothing a test put in this process's
    # environment reaches the browser. Debian's chromedriver dies at start with SIGTRAP
    # (status -5) when an address-space limit (RLIMIT_AS) is inherited: a unit test capped the
    # pytest process like a pool child and never restored it (fixed in tests/unit/
    # test_process.py). A failed launch is still tried again, and the error carries this
    # process's limits and load if it never starts; the checks start after it.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
    }
    delays = (1.0, 2.0, 4.0, 8.0)
    for attempt, delay in enumerate((*delays, None)):
        service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"), env=env)
        try:
            return webdriver.Chrome(service=service, options=options)
        except WebDriverException as exc:
            if "unexpectedly exited" not in str(exc):
                raise
            if delay is None:
                limits = {
                    name: resource.getrlimit(getattr(resource, name))
                    for name in ("RLIMIT_AS", "RLIMIT_NOFILE", "RLIMIT_NPROC")
                }
                raise AssertionError(
                    f"chromedriver did not start in {attempt + 1} tries: {exc}; limits "
                    f"{limits}, threads here {threading.active_count()}, load "
                    f"{os.getloadavg()}"
                ) from exc
            time.sleep(delay)
    raise AssertionError("unreachable")


@pytest.mark.skipif(
    bool(_missing_browser()),
    reason=f"missing {', '.join(_missing_browser())}: install Debian's browser with `apt-get "
    "install chromium chromium-driver` (`make test` does so when run as root)",
)
def test_flower_tasks_page_in_headless_chromium(
    flower_run: tuple[list[Flower], str], tmp_path: Path
) -> None:
    running, task_id = flower_run
    flower = running[0]
    # Without (or with wrong) credentials: 401, for the page and for its data.
    assert http_get(f"{flower.base}/tasks")[0] == 401
    assert http_get(f"{flower.base}/tasks/datatable")[0] == 401
    assert http_get(f"{flower.base}/tasks", auth="quant:wrong")[0] == 401

    driver = _chromium(tmp_path)
    try:
        # Credentials in the URL would not reach the page's XHR (datatable) requests; an
        # Authorization header on every request of the tab does.
        token = base64.b64encode(CREDENTIALS.encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
        )
        driver.get(f"{flower.base}/tasks")

        def task_row_shown(d: webdriver.Chrome) -> bool:
            rows = d.find_elements(By.CSS_SELECTOR, "#tasks-table tbody tr")
            return any(TASK in row.text and "SUCCESS" in row.text for row in rows)

        try:
            WebDriverWait(driver, 20, poll_frequency=0.3).until(task_row_shown)
        except Exception:
            driver.save_screenshot(str(tmp_path / "flower-tasks-failed.png"))
            raise AssertionError(
                f"no {TASK} row on {driver.current_url} (title {driver.title!r}); screenshot "
                f"{tmp_path / 'flower-tasks-failed.png'}\n{driver.page_source[-3000:]}"
            ) from None
        table = driver.find_element(By.ID, "tasks-table").text
        assert task_id in table or task_id[:8] in table
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(SCREENSHOT))
        assert driver.save_screenshot(str(tmp_path / "flower-tasks.png"))
    finally:
        driver.quit()
    png = SCREENSHOT.read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert len(png) > 10_000  # a rendered page, not an empty canvas


def test_flower_keeps_task_history_across_restarts(flower_run: tuple[list[Flower], str]) -> None:
    running, task_id = flower_run
    first = running[0]
    first.stop()
    assert first.proc.returncode == 0, first.log()
    assert list(first.db.parent.glob(first.db.name + "*")), "flower saved no state file"
    restarted = Flower(first.tmp_path, first.db)
    running[0] = restarted
    task = restarted.tasks(TASK).get(task_id)
    assert task is not None, f"task {task_id} lost across the restart:\n{restarted.log()}"
    assert task["name"] == TASK
    assert task["state"] == "SUCCESS"
