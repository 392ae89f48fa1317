"""Open reports in headless Chromium at 1400 px: the tiny demo screen, a real run on it, a real BBBC021 run.

Every ``<img>`` must decode (``naturalWidth > 0``), the console must stay free of errors, nothing
may be wider than the window (the page, and every table without scrolling), every figure says
the level it is drawn at, and a run's page holds the per-treatment table. Full-page screenshots
go to ``test-artifacts/`` for people to look at.
"""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from moa_features.pipeline import train_command
from moa_features.report import build_report

from _helpers import BBBC021, make_demo_run, missing_reason

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
PROFILES = BBBC021 / "BBBC021_feature_selected_mad_robustize.csv"
LEVEL = re.compile(r"\blevel\b|\(example site\)")

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
    text = html.read_text()
    per_section = {h: s.count("<img") for h, s in re.findall(r"<h2[^>]*>(.*?)</h2>(.*?)(?=<h2|\Z)", text, re.S)}
    assert text.count("<img") >= 10, f"figures per section: {per_section}"
    open_fully(driver, html, text.count("<img"))
    state = driver.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(state) == text.count("<img"), f"figures per section in the file: {per_section}"
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
    assert_fits_and_labelled(driver)
    screenshot(driver, "report.png")


def open_fully(driver, html: Path, n_images: int) -> None:
    """Load the page and wait until it is parsed and holds all ``n_images`` images (large pages of data URIs)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(html.resolve().as_uri())
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script("return document.readyState === 'complete' && document.images.length") >= n_images
    )


def assert_fits_and_labelled(driver) -> None:
    """Nothing wider than the 1400 px window, no table that needs scrolling, every figure titled with its level."""
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 1400
    wide = driver.execute_script(
        "return Array.from(document.querySelectorAll('.table-wrap'))"
        ".filter(w => w.scrollWidth > w.clientWidth + 1).map(w => w.querySelector('h3')?.innerText)"
    )
    assert not wide, f"tables wider than the page: {wide}"
    titles = driver.execute_script("return Array.from(document.querySelectorAll('figure h3')).map(h => h.innerText)")
    assert titles and not [t for t in titles if not LEVEL.search(t)], titles


def screenshot(driver, name: str) -> None:
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / name
    out.write_bytes(base64.b64decode(shot["data"]))
    assert out.stat().st_size > 50_000


def treatment_rows(driver) -> list[list[str]]:
    """The rows of the per-treatment table (treatment, true MoA, active, predictions...)."""
    return driver.execute_script(
        "const w = Array.from(document.querySelectorAll('.table-wrap'))"
        ".find(w => (w.querySelector('h3')?.innerText || '').startsWith('Every held-out treatment'));"
        "if (!w) return [];"
        "return Array.from(w.querySelectorAll('tbody tr')).map(r => Array.from(r.cells).map(c => c.innerText));"
    )


def test_the_demo_screen_trained_and_reported_as_a_user_does(driver, tmp_path, monkeypatch):
    """Extract the tiny demo screen, `moa-features train` it (which writes the report), open the page."""
    paths = make_demo_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "models" / "demo-run"
    status = train_command([str(paths["table"]), "-o", str(run), "--models", "knn", "--permutations", "20"])
    assert status == 0
    page = tmp_path / "reports" / "demo-run.html"  # named after the run
    driver.get(page.resolve().as_uri())
    assert_fits_and_labelled(driver)
    rows = treatment_rows(driver)
    assert len(rows) == len(pd.read_csv(run / "treatment_predictions.csv").query("model == 'knn'"))
    assert all(r[-1].endswith(("✓", "✗")) for r in rows)
    screenshot(driver, "report-demo-run.png")


@pytest.mark.skipif(not PROFILES.is_file(), reason=missing_reason(PROFILES))
def test_a_bbbc021_run_report_fits_and_answers_per_treatment(driver, tmp_path):
    run = tmp_path / "models" / "bbbc021"
    argv = [str(PROFILES), "-o", str(run), "--treatment", "Metadata_Compound", "--exclude-label", "DMSO",
            "--models", "knn", "--folds", "4", "--permutations", "20", "--no-report"]  # fmt: skip
    assert train_command(argv) == 0
    page = build_report(PROFILES, run_dir=run, output=tmp_path / "reports" / "bbbc021.html")
    driver.get(page.resolve().as_uri())
    assert_fits_and_labelled(driver)
    rows = treatment_rows(driver)
    assert len(rows) == 103 and {r[0].split("@")[0] for r in rows} >= {"taxol", "cytochalasin B", "AZ138"}
    body = driver.find_element("tag name", "body").text
    assert "632 wells" in body and "330" in body  # well-level profiles; the DMSO wells found as controls
    screenshot(driver, "report-bbbc021.png")
