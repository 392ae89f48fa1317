"""Open the report of a real tiny pipeline run in headless Chromium.

Every ``<img>`` must decode (``naturalWidth > 0``), the console must stay free of errors, and a
full-page screenshot is saved to ``test-artifacts/report.png`` for people to look at.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from moa_features.report import build_report

from _helpers import make_demo_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # skipped without Chromium (tests/conftest.py)


@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    drv.set_page_load_timeout(120)
    yield drv
    drv.quit()


def test_report_renders_in_chromium(driver, tmp_path):
    paths = make_demo_run(tmp_path)
    html = build_report(paths["table"], run_dir=paths["run"], output=tmp_path / "reports" / "demo.html")
    driver.get(html.resolve().as_uri())
    state = driver.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(state) >= 10
    broken = [alt for alt, complete, w, h in state if not (complete and w > 0 and h > 0)]
    assert not broken, f"images that did not decode: {broken}"
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    sections = driver.execute_script("return Array.from(document.querySelectorAll('section h2')).map(h => h.innerText)")
    assert [s.split(".", 1)[1] for s in sections] == [
        "What the numbers mean",
        "Dataset",
        "Per-channel intensity",
        "Example images",
        "Discriminative features",
        "Models",
        "Phenotypic activity",
        "Channel votes",
        "Provenance",
    ]
    # the page fits a laptop screen: nothing wider than the window
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 1400
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / "report.png"
    out.write_bytes(base64.b64decode(shot["data"]))
    assert out.stat().st_size > 50_000
