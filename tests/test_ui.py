"""The MLflow UI in a real browser: `make ui` on the store of a small real sweep, read in Chromium.

A 2-job sweep (estimator=maf,mdn, tiny budgets, calibration diagnostics on) writes a temporary
SQLite store; `make ui PORT=<free> MLRUNS=<store>` serves it; headless Chromium (Debian's
chromium and chromedriver, driven by Selenium; scripts/install_system_packages.sh installs
them, nothing is downloaded) opens the link sbilab prints and checks what a person would look
at. Every checked page is saved under SCREENSHOTS. Marked slow: about 4 min on 2 busy cores,
most of it the sweep and the UI's start-up.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

import pytest
from conftest import ROOT, run_train
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

#: where the screenshots of the checked pages go (outputs/ is ignored by git)
SCREENSHOTS = ROOT / "outputs" / "ui-screenshots"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
#: the launch flags that work headless in CI containers (no GPU, no sandbox, no network side traffic)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1680,1050")
#: seconds a page may take to show what is checked (the UI fetches after it loads; the machine may be busy)
PATIENCE = 120

SWEEP = ["trainer=fast", "diagnostics=fast", "diagnostics.num_test=50", "diagnostics.num_posterior_samples=50",
         "diagnostics.num_ppc=10", "simulation.num_simulations=200", "estimator=maf,mdn"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict:
    """A finished 2-job sweep in a temporary store: its parent, children and experiment."""
    root = tmp_path_factory.mktemp("ui-store")
    result = run_train(["--multirun", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *SWEEP,
                        f"tracking.uri=sqlite:///{root}/mlflow.db", f"tracking.artifact_location=file://{root}/artifacts",
                        f"paths.cache_dir={root}/cache", f"hydra.sweep.dir={root}/multirun"], timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    experiment_id = client.get_experiment_by_name("hodgkin_huxley").experiment_id
    runs = client.search_runs([experiment_id])
    parent = next(r for r in runs if r.data.tags.get("sbilab.role") == "sweep")
    children = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                      key=lambda r: r.info.run_name)
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    printed = next(line for line in result.stdout.splitlines() if line.startswith("sbilab: open it with"))
    return {"root": root, "client": client, "experiment_id": experiment_id, "parent": parent,
            "children": children, "link": printed.split("then ", 1)[1].strip()}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ui(sweep) -> Iterator[str]:
    """`make ui` on the sweep's store, on a free port; its base URL once it answers."""
    port = _free_port()
    log = open(sweep["root"] / "ui.log", "w")
    server = subprocess.Popen(["make", "-s", "ui", f"PORT={port}", f"MLRUNS={sweep['root']}"], cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, (sweep["root"] / "ui.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "make ui did not answer within 240 s"
            time.sleep(1)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # make, mlflow and its uvicorn workers
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(server.pid, signal.SIGKILL)  # uvicorn's graceful shutdown waits on idle connections
        except ProcessLookupError:
            pass
        server.wait()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Headless Chromium with a fresh profile (what a first visit sees), driven by Debian's chromedriver."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Chromium is not installed: run scripts/install_system_packages.sh (CI does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="sbilab-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _page_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _open(driver, url: str, ready: Callable[[object], object]) -> None:
    """Load ``url`` and wait until ``ready(driver)`` holds; close the assistant panel MLflow opens on a first visit."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, PATIENCE).until(ready)
    for close in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        if close.is_displayed():
            close.click()


def _wait(driver, condition: Callable[[object], object]) -> object:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, PATIENCE).until(condition)


def _show_whole_description(driver) -> None:
    """Unfold a run's description (the UI shows its first lines, then "Show more")."""
    from selenium.webdriver.common.by import By

    for more in driver.find_elements(By.XPATH, "//*[normalize-space(text())='Show more']"):
        more.click()
    _wait(driver, lambda d: not d.find_elements(By.XPATH, "//*[normalize-space(text())='Show more']"))


def _shows(*texts: str) -> Callable[[object], bool]:
    return lambda driver: all(text in _page_text(driver) for text in texts)


def _run_url(base: str, sweep: dict, run, tab: str = "") -> str:
    return f"{base}/#/experiments/{sweep['experiment_id']}/runs/{run.info.run_id}{tab}?workflowType=machine_learning"


def test_the_printed_link_opens_the_model_training_view_with_the_parent_its_children_and_their_data(
        sweep, ui, browser):
    from selenium.webdriver.common.by import By

    parent, children = sweep["parent"], sweep["children"]
    assert sweep["link"].endswith(f"/runs/{parent.info.run_id}?workflowType=machine_learning")
    # the link sbilab printed, on this server: the parent's page in the model-training view
    _open(browser, f"{ui}/#{urlsplit(sweep['link']).fragment}", _shows(parent.info.run_name, "Child runs"))
    assert "Judges" not in _page_text(browser)  # the GenAI sidebar (Traces, Judges, Prompts) is not shown
    # the experiment's runs table: the parent, expanded, lists both children with their training data
    _open(browser, f"{ui}/#/experiments/{sweep['experiment_id']}?workflowType=machine_learning",
          _shows(parent.info.run_name, "Dataset"))
    assert "Judges" not in _page_text(browser)
    browser.find_element(By.CSS_SELECTOR, f"div[role='row'][row-id='{parent.info.run_id}'] "
                                          "[col-id='attributes.`Run Name`'] button").click()
    _wait(browser, _shows(*(child.info.run_name for child in children)))

    def row_text(run_id: str) -> str:  # the grid splits a row over its pinned and scrolling parts
        return " ".join(cell.text for cell in browser.find_elements(By.CSS_SELECTOR, f"div[row-id='{run_id}']"))

    for child in children:
        (dataset,) = child.inputs.dataset_inputs
        assert f"{dataset.dataset.name} ({dataset.dataset.digest})" in row_text(child.info.run_id)
    # the same simulations (one cache key) are the same dataset for both runs
    assert len({child.inputs.dataset_inputs[0].dataset.digest for child in children}) == 1
    browser.save_screenshot(str(SCREENSHOTS / "01_experiment_runs.png"))


def test_a_child_run_leads_with_its_verdict_and_its_gate_table(sweep, ui, browser):
    from selenium.webdriver.common.by import By

    child = sweep["children"][0]
    verdict = child.data.tags["sbilab.gates"]
    _open(browser, _run_url(ui, sweep, child), _shows(f"Calibration gates: {verdict.upper()}"))
    _show_whole_description(browser)
    gates = json.loads(Path(sweep["client"].download_artifacts(child.info.run_id, "diagnostics/gates.json"))
                       .read_text())
    tables = browser.find_elements(By.CSS_SELECTOR, "table")
    gate_rows = [row.text for table in tables for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert [row.split()[0] for row in gate_rows] == [check["name"] for check in gates["checks"]]
    assert [row.split()[-1] for row in gate_rows] == ["pass" if c["passed"] else "fail" for c in gates["checks"]]
    dataset = child.inputs.dataset_inputs[0].dataset
    assert dataset.name in _page_text(browser) and "Training" in _page_text(browser)  # the Datasets panel
    browser.save_screenshot(str(SCREENSHOTS / "02_run_overview.png"))


def test_a_child_runs_loss_curve_is_drawn(sweep, ui, browser):
    from selenium.webdriver.common.by import By

    child = sweep["children"][0]
    _open(browser, _run_url(ui, sweep, child, "/model-metrics"), _shows("Add chart"))
    browser.find_element(By.CSS_SELECTOR, "input[placeholder='Search metric charts']").send_keys("val/loss")
    _wait(browser, _shows(f"{child.info.run_name} (val/loss)", "Step"))  # the line chart's legend and x axis
    epochs = int(child.data.metrics["train/epochs"])
    points = _wait(browser, lambda d: [p for p in d.find_elements(By.CSS_SELECTOR, ".main-svg .scatterlayer .point")])
    assert len(points) == epochs  # one marker per logged epoch
    browser.save_screenshot(str(SCREENSHOTS / "03_run_metrics.png"))


def test_an_artifact_image_is_shown(sweep, ui, browser):
    from matplotlib.image import imread
    from selenium.webdriver.common.by import By

    child = sweep["children"][0]
    _open(browser, _run_url(ui, sweep, child, "/artifacts"), _shows("posterior_samples.npy", "plots"))
    browser.find_element(By.XPATH, "//*[normalize-space(text())='plots']").click()
    _wait(browser, _shows("sbc_ecdf.png"))
    browser.find_element(By.XPATH, "//*[normalize-space(text())='sbc_ecdf.png']").click()

    def shown_width(driver) -> int:
        widths = [driver.execute_script("return arguments[0].complete ? arguments[0].naturalWidth : 0", image)
                  for image in driver.find_elements(By.CSS_SELECTOR, "img[src^='blob:']")]
        return max(widths, default=0)

    width = _wait(browser, shown_width)
    png = Path(sweep["client"].download_artifacts(child.info.run_id, "plots/sbc_ecdf.png"))
    assert width == imread(png).shape[1]  # the figure itself, decoded by the browser
    browser.save_screenshot(str(SCREENSHOTS / "04_artifact_sbc_ecdf.png"))


def test_the_parent_describes_the_sweep_with_links_to_its_children(sweep, ui, browser):
    from selenium.webdriver.common.by import By

    parent, children = sweep["parent"], sweep["children"]
    _open(browser, _run_url(ui, sweep, parent), _shows("2 child runs (2 FINISHED)", "swept: estimator"))
    _show_whole_description(browser)
    _wait(browser, _shows(*(child.info.run_name for child in children)))
    links = {a.text: a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "table a")}
    for child in children:
        assert links[child.info.run_name].endswith(f"#/experiments/{sweep['experiment_id']}/runs/{child.info.run_id}")
    rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "table tbody tr")]
    for child in children:
        row = next(r for r in rows if r.startswith(child.info.run_name))
        assert child.data.tags["sbilab.gates"] in row.split() and child.data.tags["choice.estimator"] in row.split()
    browser.save_screenshot(str(SCREENSHOTS / "05_parent_overview.png"))


def test_the_chart_view_groups_the_runs_by_their_verdict(sweep, ui, browser):
    from selenium.webdriver.common.by import By

    children = sweep["children"]
    _open(browser, f"{ui}/#/experiments/{sweep['experiment_id']}?workflowType=machine_learning",
          _shows(sweep["parent"].info.run_name))
    chart_view = browser.find_element(By.CSS_SELECTOR, "input[name='runs-view-mode'][value='CHART']")
    browser.execute_script("arguments[0].click()", chart_view)  # the radio's own input sits under its icon
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "input[placeholder='Search metric charts']"))
    browser.find_element(By.XPATH, "//*[normalize-space(text())='Group by']").click()
    _wait(browser, lambda d: d.find_elements(By.XPATH, "//*[normalize-space(text())='sbilab.gates']"))[0].click()
    browser.find_element(By.TAG_NAME, "body").send_keys("\ue00c")  # Escape closes the menu
    browser.find_element(By.CSS_SELECTOR, "input[placeholder='Search metric charts']").send_keys("gates/")
    verdicts = [child.data.tags["sbilab.gates"] for child in children]
    _wait(browser, _shows("Group by: sbilab.gates", *(f"Group: {v}" for v in set(verdicts)), "gates/pass"))
    assert {child.data.metrics["gates/pass"] for child in children} == {float(v == "pass") for v in verdicts}
    assert browser.find_elements(By.CSS_SELECTOR, ".main-svg")  # the gates/pass chart is drawn
    browser.save_screenshot(str(SCREENSHOTS / "06_chart_by_verdict.png"))
