"""Headless Chromium drives the real Streamlit server: worklist -> patient -> CT slider, with screenshots.

Screenshots land in test-artifacts/ (gitignored); the last two are copied to
docs/img/worklist.png and docs/img/patient.png for the README (copied there only with
CLINFUSE_WRITE_SCREENSHOTS=1, so a test run leaves the working tree clean).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from flows.serve.dashboard_process import streamlit_command
from tests.conftest import REPO_ROOT, free_port
from tests.dashboard.fixtures import build_home

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO_ROOT / "test-artifacts"
DOCS_IMG = REPO_ROOT / "docs" / "img"

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(240)]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout} s")


@pytest.fixture
def server(tmp_path: Path):
    fh = build_home(tmp_path / "home", n_patients=30)
    port = free_port()
    env = {**os.environ, "CLINFUSE_HOME": str(fh.home)}
    env.pop("CLINFUSE_DASHBOARD_PASSWORD", None)
    proc = subprocess.Popen(streamlit_command("127.0.0.1", port), cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url, fh
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def browser(tmp_path: Path):
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("headless Chromium is absent: install Debian's chromium and chromium-driver "
                    "(scripts/ensure-system-packages.sh) to run the browser test")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1000"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_text(driver, text: str, timeout: float = 30.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: text in d.find_element("tag name", "body").text,
                                         message=f"text {text!r} never appeared")


def _assert_no_error_box(driver) -> None:
    boxes = driver.find_elements("css selector", '[data-testid="stException"]')
    assert not boxes, boxes[0].text


def _shot(driver, name: str, height: int) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.set_window_size(1400, height)
    time.sleep(1.0)  # let plots and images settle after the resize
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


def _pick_patient(driver, pid: str) -> None:
    """Choose `pid` in the worklist's picker and wait until the picker holds it.

    Typing and pressing Enter at once raced the combobox on a loaded machine (CI opened another
    patient): keystrokes sent before the list opens only edit the text. So type until the list
    offers `pid`, click that option, and check the value survives leaving the field.
    """
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    box = driver.find_element(By.CSS_SELECTOR, '[data-testid="stSelectbox"]:has(input[aria-label*="Patient"])')
    picker = box.find_element(By.CSS_SELECTOR, 'input[aria-label*="Patient"]')
    for _ in range(6):
        picker.click()
        picker.send_keys(Keys.CONTROL, "a")
        picker.send_keys(Keys.BACKSPACE)
        for ch in pid:
            picker.send_keys(ch)
        try:
            option = WebDriverWait(driver, 5).until(
                lambda d: next((o for o in d.find_elements(By.CSS_SELECTOR, '[role="option"]') if pid in o.text),
                               False))
        except TimeoutException:
            continue
        option.click()
        picker.send_keys(Keys.TAB)
        try:
            WebDriverWait(driver, 5).until(lambda d: picker.get_attribute("value") == pid)
            return
        except TimeoutException:
            continue
    raise AssertionError(f"the patient picker never took {pid!r}; it shows {picker.get_attribute('value')!r}")


def test_worklist_to_patient_in_chromium(server, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url, fh = server
    pid = fh.patient_ids[0]
    browser.get(url)
    _wait_text(browser, "patients match", timeout=60)
    _wait_text(browser, "Export CSV")
    assert "30 of 30 patients match" in browser.find_element(By.TAG_NAME, "body").text
    _assert_no_error_box(browser)
    worklist_png = _shot(browser, "01-worklist.png", 1000)

    # Choose the patient in the worklist's picker and open their view.
    _pick_patient(browser, pid)
    browser.find_element(By.XPATH, "//button[.//p[text()='Open patient view']]").click()
    _wait_text(browser, f"Patient {pid}")
    _wait_text(browser, "Calibrated risk")
    _wait_text(browser, "CT axial slice 17")
    _assert_no_error_box(browser)
    assert f"patient={pid}" in browser.current_url

    # Move the CT slice slider five steps with the keyboard.
    from selenium.webdriver.common.action_chains import ActionChains

    range_input = browser.find_element(By.CSS_SELECTOR, 'input[type="range"][aria-label="CT slice"]')
    browser.find_element(By.XPATH, "//input[@aria-label='CT slice']/../..").click()
    browser.execute_script("arguments[0].focus()", range_input)
    ActionChains(browser).send_keys(*([Keys.ARROW_RIGHT] * 5)).perform()
    WebDriverWait(browser, 30).until(
        lambda d: "CT axial slice 22" in d.find_element(By.TAG_NAME, "body").text,
        message="the CT slice did not move to 22")
    _assert_no_error_box(browser)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Window" in body and "soft tissue" in body
    patient_png = _shot(browser, "02-patient.png", 1500)

    if os.environ.get("CLINFUSE_WRITE_SCREENSHOTS") == "1":  # refresh the README's pictures only when asked
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(worklist_png, DOCS_IMG / "worklist.png")
        shutil.copyfile(patient_png, DOCS_IMG / "patient.png")
