"""The dashboard in Debian's headless Chromium against the app served by uvicorn (a thread,
a free 127.0.0.1 port) on the SIMULATED market of tests/support/dashboard_data.py: sign in
with a pasted key, visit every page and see its data and the SIMULATED banner, switch the
language both ways, submit a backtest from the form and watch its progress reach 100 % — a
real prefork worker runs it; the page follows it by polling (and by the API's server-sent
events once that endpoint exists) — then its report. Screenshots go to var/screenshots/
(dashboard-*.png).

Needs /usr/bin/chromium and /usr/bin/chromedriver (see test_flower_browser.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from quantbeat.api.app import create_app
from quantbeat.infra.settings import get_settings
from quantbeat.services import api_keys
from tests.integration.conftest import WorkerProcess, start_worker
from tests.integration.test_flower_browser import CHROMEDRIVER, CHROMIUM, PNG_MAGIC, _chromium
from tests.support import dashboard_data
from tests.support.flower import free_port

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "var" / "screenshots"
BANNER = "SIMULATED / 시뮬레이션"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's browser: apt-get install chromium chromium-driver",
    ),
]


class Served:
    """The app on uvicorn in a thread of this process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(get_settings(), address="127.0.0.1"),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="dashboard", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def world(
    database: str, redis_stores: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The seeded market, an admin key, a prefork cpu worker and the served app."""
    from tests.support.backtest_app import app as celery_app

    facts = dashboard_data.seed(database)
    key, _ = api_keys.create("dash-browser", ["admin"])
    worker: WorkerProcess = start_worker(
        "tests.support.backtest_app",
        queues="cpu",
        tmp_dir=tmp_path_factory.mktemp("dashboard-worker"),
        pool="prefork",
    )
    served = Served()
    try:
        worker.wait_ready(celery_app)
        yield {**facts, "key": key, "base": served.base, "worker": worker}
    finally:
        served.stop()
        worker.stop()


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    chrome = _chromium(tmp_path)
    try:
        yield chrome
    finally:
        chrome.quit()


def _shot(driver: webdriver.Chrome, name: str) -> Path:
    """A screenshot of the whole page (the window stretched to it) as dashboard-<name>.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": 1400, "height": min(height, 4000), "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    path = SHOTS / f"dashboard-{name}.png"
    try:
        assert driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 10_000  # a rendered page, not an empty canvas
    return path


def _text(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def _visit(driver: webdriver.Chrome, url: str, *expected: str) -> str:
    driver.get(url)
    text = _text(driver)
    assert BANNER in text, url
    for words in expected:
        assert words in text, (url, words, text[:1500])
    return text


def _set(driver: webdriver.Chrome, element_id: str, value: str) -> None:
    element = driver.find_element(By.ID, element_id)
    driver.execute_script("arguments[0].value = arguments[1];", element, value)


def test_every_page_in_chromium_and_a_backtest_followed_to_its_report(
    world: dict[str, Any], driver: webdriver.Chrome
) -> None:
    base = world["base"]
    driver.get(f"{base}/track-record")
    assert driver.current_url.startswith(f"{base}/login")
    assert "이 페이지를 보려면 로그인이 필요합니다." in _text(driver)
    _shot(driver, "login")
    driver.find_element(By.ID, "key").send_keys(world["key"])
    driver.find_element(By.ID, "login-submit").click()
    WebDriverWait(driver, 10).until(lambda d: d.current_url == f"{base}/track-record")

    gate = world["gate"]
    _visit(driver, f"{base}/", "마켓 게이트", f"{gate['score']:,.1f}", "섹터 강도", "KOSPI")
    assert driver.find_element(By.CSS_SELECTOR, "svg.gauge path.gauge-value").is_displayed()
    for sector in gate["sectors"]["sectors"][:3]:
        assert sector["name"] in _text(driver)
    _shot(driver, "overview-ko")

    driver.find_element(By.ID, "lang-en").click()
    WebDriverWait(driver, 10).until(lambda d: "Market Gate" in _text(d))
    assert "Sector strength" in _text(driver)
    _shot(driver, "overview-en")

    vcp = world["vcp"]
    _visit(driver, f"{base}/signals", "VCP signals", vcp["day"].isoformat(), *vcp["tickers"])
    _shot(driver, "signals")
    bet = world["closing"][0]
    stop = f"{bet['inputs']['exit_plan']['stop_loss']:,.0f}"
    _visit(
        driver, f"{base}/closing-bet", "Closing bet", bet["ticker"], dashboard_data.NEWS_TITLE, stop
    )
    _shot(driver, "closing-bet")
    _visit(driver, f"{base}/track-record", "KPIs by strategy", dashboard_data.PORTFOLIO)
    assert driver.find_element(By.CSS_SELECTOR, "svg.line-chart polyline.series").is_displayed()
    _shot(driver, "track-record")
    _visit(driver, f"{base}/data", "Freshness", "Gaps (daily candles)", "Dead letters",
           "retries_exhausted", "SIMULATED provider timeout")  # fmt: skip
    _shot(driver, "data")

    # a backtest from the form, followed live to 100 % and its report
    _visit(driver, f"{base}/backtests", "New backtest", dashboard_data.BACKTEST_ID[:12])
    Select(driver.find_element(By.ID, "strategy")).select_by_value("sma_crossover")
    tickers = " ".join(f"{900000 + i}" for i in range(12))
    driver.find_element(By.ID, "instruments").send_keys(tickers)
    _set(driver, "start", "2026-01-02")
    _set(driver, "end", dashboard_data.END.isoformat())
    driver.find_element(By.ID, "label").send_keys("browser run")
    driver.find_element(By.ID, "backtest-submit").click()
    WebDriverWait(driver, 10).until(lambda d: "/backtests/" in d.current_url)
    assert "Progress" in _text(driver)
    try:
        WebDriverWait(driver, 45, poll_frequency=0.2).until(
            lambda d: d.find_elements(By.ID, "report")
        )
    except Exception:
        raise AssertionError(
            f"no report on {driver.current_url}: {_text(driver)[:800]}\n{world['worker'].log()}"
        ) from None
    assert driver.find_element(By.ID, "bt-percent").text == "100%"
    assert driver.find_element(By.ID, "bt-bar").get_attribute("value") == "100"
    assert "completed" in driver.find_element(By.ID, "bt-state").text
    assert driver.find_element(By.ID, "m-total-return").text.endswith("%")
    assert driver.find_element(By.CSS_SELECTOR, "#report svg.line-chart polyline").is_displayed()
    _shot(driver, "backtest")

    driver.find_element(By.ID, "lang-ko").click()
    WebDriverWait(driver, 10).until(lambda d: "진행률" in _text(d))
    assert "완료" in _text(driver)
    driver.find_element(By.ID, "nav-overview").click()
    WebDriverWait(driver, 10).until(lambda d: "마켓 게이트" in _text(d))
