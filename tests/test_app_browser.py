"""The app in a real browser: launched by `moa_features.app.main`, driven by headless Chromium."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from moa_features.votes import VoteStore

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Loopback needs no proxy; a fresh opener also ignores the one urllib.request.urlopen caches
# process-wide from whatever proxy variables were set at its first use (another test's).
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited early with status {server.returncode}")
        try:
            with _LOCAL.open(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not become healthy within {timeout:.0f} s")


def _group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no process of the group ``pgid`` is left; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def chrome():
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail(f"the browser test needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1600,1500",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_app_in_headless_chromium(tmp_path, chrome, artifacts_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    from test_app import build_table

    table = build_table(tmp_path)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "app.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "moa_features.app", "--features", str(table), "--port", str(port), "--seed", "0"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    try:
        _wait_healthy(url, server)
        chrome.get(url)
        wait = WebDriverWait(chrome, 90)
        wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "What others saw"))
        images = "[data-testid='stImage'] img"
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, images)) == 12)
        wait.until(
            lambda d: all(img.get_property("naturalWidth") > 0 for img in d.find_elements(By.CSS_SELECTOR, images))
        )
        # tick three channels and submit, as a person would
        for label in ("w1 · Hoechst", "w3 · Phalloidin", "w5 · MitoTracker"):
            box = chrome.find_element(By.XPATH, f"//label[.//*[contains(text(), '{label}')]]")
            box.click()
        chrome.find_element(By.XPATH, "//button[.//*[text()='Submit vote']]").click()
        wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "your vote (w1, w3, w5)"))
        wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "1 vote for"))
        # the page scrolls inside Streamlit's main container: grow the window to show all of it
        height = chrome.execute_script("return document.querySelector(\"[data-testid='stMain']\").scrollHeight")
        chrome.set_window_size(1600, min(int(height) + 150, 6000))
        time.sleep(1.5)  # let the charts redraw at the new size before the screenshot
        shot = artifacts_dir / "app.png"
        assert chrome.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        rows = VoteStore(table.parent / "tiny.votes.sqlite").votes()
        assert rows["channels"].tolist() == ["w1,w3,w5"]
        assert rows["moa"].tolist() == ["Growth factor"]  # the most frequent MoA comes first
    finally:
        server.terminate()  # the launcher forwards SIGTERM to Streamlit
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        stopped = _group_gone(server.pid, timeout=20)
        if not stopped:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
    assert server.returncode is not None and stopped, "Streamlit outlived its launcher"
