"""Reports opened in a real browser: headless Chromium (Debian's chromium + chromium-driver) via Selenium.

For the report of a binary run, a regression run, a tuned run, a run whose gate failed, a run that failed
validation, and a comparison page: every section is there, the page logs no JavaScript error, and every
plot was drawn — its traces exist in the SVG (lines with a path, bars, markers or a heatmap image), its
screenshot has coloured pixels (the traces' colours, not just grey axes), and every <img> decoded to a
picture whose pixels are not all one colour. Chromium is installed with apt-get when missing (CI runs as
root with apt access); where it cannot be installed the test skips and says why.
"""

from __future__ import annotations

import io
import os
import shutil
import time

import pytest

from trainpipe.reports.build import write_comparison, write_report
from trainpipe.pipeline.runs import compare_runs
from trainpipe.team.apt import apt_install

pytestmark = pytest.mark.e2e

RUN_SECTIONS = ["header", "data", "training", "evaluation", "slices", "importance", "tuning", "monitoring", "lineage"]
# This machine's network is closed: nothing may phone home, and a fresh profile each time.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1300,900"]
PACKAGES = ["chromium", "chromium-driver"]

MARKS_JS = """
return [...document.querySelectorAll('.plot')].map((el) => {
  const marks = [...el.querySelectorAll('.trace path, .trace image, .hm image')].filter((m) =>
    (m.getAttribute('d') || m.getAttribute('href') || m.getAttribute('xlink:href') || '').length > 8);
  return {id: el.id, svg: el.querySelectorAll('svg.main-svg').length, marks: marks.length, text: el.textContent};
});
"""
IMAGES_JS = """
return [...document.querySelectorAll('img')].map((img) => {
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  if (!img.naturalWidth) return {width: 0, colours: 0};
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < px.length && seen.size < 50; i += 4 * 97) seen.add(px[i] + ',' + px[i + 1] + ',' + px[i + 2]);
  return {width: img.naturalWidth, colours: seen.size};
});
"""


def _install() -> str | None:
    """apt-get install the browser; None when done, else why it could not be."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "needs root and apt-get to install them"
    proc = apt_install(list(PACKAGES))  # one apt-get at a time, whoever else installs (team/apt.py)
    if proc.returncode == 0:
        return None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return f"apt-get install {' '.join(PACKAGES)} failed: {lines[-1] if lines else proc.returncode}"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        problem = _install()
        if problem or not (shutil.which("chromium") and shutil.which("chromedriver")):
            pytest.fail(f"headless Chromium is not installed (Debian packages {', '.join(PACKAGES)}) and this "
                        f"machine cannot install it: {problem or 'the packages gave no chromium/chromedriver'}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    yield driver
    driver.quit()


def coloured_pixels(png: bytes) -> int:
    """Pixels with a clear hue (trace colours), not the greys of axes, grid and text."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(1 for r, g, b in image.getdata() if max(r, g, b) - min(r, g, b) > 40)


def open_page(driver, path, timeout: float = 90) -> str:
    driver.get(path.resolve().as_uri())
    deadline = time.monotonic() + timeout
    while (state := driver.execute_script("return document.body.dataset.plots")) == "pending":
        assert time.monotonic() < deadline, f"plots still pending after {timeout} s in {path}"
        time.sleep(0.1)
    return state


def check_page(driver, path, sections: list[str], plots: bool) -> dict:
    from selenium.webdriver.common.by import By

    state = open_page(driver, path)
    assert state == ("ready" if plots else "none"), state
    found = [el.get_attribute("id") for el in driver.find_elements(By.CSS_SELECTOR, "section.report")]
    assert found == sections
    for key in sections:
        assert driver.find_element(By.CSS_SELECTOR, f"section#{key} h2").is_displayed()
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    drawn = driver.execute_script(MARKS_JS)
    for plot in drawn:
        assert plot["svg"] >= 1 and plot["marks"] >= 1, plot
        element = driver.find_element(By.ID, plot["id"])
        driver.execute_script("arguments[0].scrollIntoView()", element)
        assert coloured_pixels(element.screenshot_as_png) > 50, f"{plot['id']} in {path.name} looks blank"
    images = driver.execute_script(IMAGES_JS)
    for image in images:
        assert image["width"] > 0 and image["colours"] > 1, image
    return {"plots": len(drawn), "images": len(images),
            "missing": [el.get_attribute("id") for el in
                        driver.find_elements(By.CSS_SELECTOR, "section.report[data-missing='yes']")]}


@pytest.mark.timeout(1200)  # a first install of Chromium with apt-get can take minutes
def test_reports_open_in_chromium_with_every_section_and_every_plot_drawn(browser, report_runs, tmp_path):
    pages = {}
    for kind in ("binary", "regression", "tuned", "gate_failed"):
        pages[kind] = check_page(browser, written(report_runs.get(kind), tmp_path / f"{kind}.html"), RUN_SECTIONS,
                                 plots=True)
    # 8 plots of the run itself; the monitoring section adds MLflow's system-metric plots when the sampler logged
    # any (a long enough run), and a second run adds its drift chart (the first run is its champion)
    assert pages["binary"]["plots"] >= 8 and pages["regression"]["plots"] >= 5
    assert pages["tuned"]["images"] == 1 and "tuning" not in pages["tuned"]["missing"]
    assert pages["gate_failed"]["missing"] == ["tuning"] and pages["gate_failed"]["plots"] >= 9

    failed = check_page(browser, written(report_runs.get("validate_failed"), tmp_path / "validate.html"),
                        RUN_SECTIONS, plots=False)
    assert failed["missing"] == ["training", "evaluation", "slices", "tuning"]

    comparison = compare_runs(f"sqlite:///{report_runs.store}/mlflow.db",
                              [report_runs.get("binary").name, report_runs.get("regression").name])
    page = tmp_path / "compare.html"
    write_comparison(comparison, page)
    compared = check_page(browser, page, ["runs", "metrics", "curves", "params"], plots=True)
    assert compared["plots"] >= 2


def written(run_dir, out):
    write_report(run_dir, out, strict=True)
    return out
