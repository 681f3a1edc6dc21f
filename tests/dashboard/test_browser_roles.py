"""Headless Chromium signs in as each role against the real Streamlit server: what each may see and do.

The sign-in page states the mode (named users) on loopback. Clinician: worklist, patient view, the reveal-MRN button (and the MRN after clicking), the review form;
no admin page even when the URL names it. Analyst: the pseudonymous patient view without reveal or review,
the model page. Admin: the audit trail, no worklist. A session left idle is sent back to sign-in.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from flows.access.audit import AuditLog
from flows.serve.dashboard_process import streamlit_command
from tests.conftest import free_port
from tests.dashboard.access_setup import PASSWORDS, build_access_home
from tests.dashboard.test_browser import _assert_no_error_box, _wait_healthy, _wait_text, browser  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(600)]

STALE_AFTER_MINUTES = 0.15  # 9 s for the stale-session test; the role test keeps the 15-minute default


@pytest.fixture
def access_server(tmp_path: Path, request: pytest.FixtureRequest):
    idle = getattr(request, "param", 15.0)
    ah = build_access_home(tmp_path / "home", n_patients=6)
    port = free_port()
    env = {**os.environ, "CLINFUSE_HOME": str(ah.fixture.home), "CLINFUSE_REID_KEY": ah.key.decode(),
           "CLINFUSE_SESSION_IDLE_MINUTES": str(idle)}
    env.pop("CLINFUSE_DASHBOARD_PASSWORD", None)
    proc = subprocess.Popen(streamlit_command("127.0.0.1", port), cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url, ah
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)


def _body(driver) -> str:
    return driver.find_element("tag name", "body").text


def _find(driver, by: str, selector: str, timeout: float = 30.0):
    """The element once it is drawn (Streamlit renders a page in several deltas)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.find_elements(by, selector), message=f"{selector} never drawn")
    return driver.find_element(by, selector)


def _sign_in(driver, url: str, user: str, path: str = "") -> None:
    from selenium.webdriver.common.by import By

    driver.get("about:blank")
    driver.get(url + path)  # a new page load is a new Streamlit session: signed out
    _wait_text(driver, "clinfuse — sign in", timeout=60)
    _find(driver, By.CSS_SELECTOR, 'input[aria-label="User name"]').send_keys(user)
    _find(driver, By.CSS_SELECTOR, 'input[aria-label="Password"]').send_keys(PASSWORDS[user])
    _find(driver, By.XPATH, "//button[.//p[text()='Sign in']]").click()
    _wait_text(driver, f"Signed in as {user}")


def _nav(driver) -> str:
    """The sidebar navigation's text ("" when only one page is offered: Streamlit then draws no menu)."""
    return " ".join(e.text for e in driver.find_elements("css selector", '[data-testid="stSidebarNav"]'))


def _open_patient(driver, pid: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _wait_text(driver, "Open patient view")
    picker = driver.find_element(By.CSS_SELECTOR, '[data-testid="stSelectbox"] input[aria-label*="Patient"]')
    picker.click()
    picker.send_keys(pid, Keys.ENTER)
    driver.find_element(By.XPATH, "//button[.//p[text()='Open patient view']]").click()
    _wait_text(driver, f"Patient {pid}")


def test_each_role_in_chromium(access_server, browser) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    url, ah = access_server
    pid = ah.fixture.patient_ids[0]
    mrn = ah.mrns[pid]

    browser.get(url)
    _wait_text(browser, "Sign-in: named users", timeout=60)  # the mode is stated before anyone signs in
    assert "open local demo" not in _body(browser)
    _sign_in(browser, url, "c.clinician")
    _wait_text(browser, "patients match")
    assert "Patient" in _nav(browser) and "Admin" not in _nav(browser) and "Model" not in _nav(browser)
    _find(browser, By.XPATH, "//button[.//p[text()='Export CSV']]").click()
    _open_patient(browser, pid)
    _wait_text(browser, "Reveal MRN")
    assert mrn not in _body(browser)
    browser.find_element(By.XPATH, "//button[.//p[text()='Reveal MRN']]").click()
    _wait_text(browser, f"MRN: {mrn}")
    assert "Record review" in _body(browser)
    _assert_no_error_box(browser)

    _sign_in(browser, url, "c.clinician", "/admin")  # the URL names the admin page
    time.sleep(2)
    assert "Audit trail" not in _body(browser) and "Admin" not in _nav(browser)

    _sign_in(browser, url, "a.analyst")
    _wait_text(browser, "patients match")
    assert "Model" in _nav(browser) and "Admin" not in _nav(browser)
    _open_patient(browser, pid)
    _wait_text(browser, "Calibrated risk")
    body = _body(browser)
    assert "Reveal MRN" not in body and "Record review" not in body and mrn not in body
    _assert_no_error_box(browser)

    _sign_in(browser, url, "d.admin")
    _wait_text(browser, "Audit trail")
    _wait_text(browser, "Intact")
    assert "Worklist" not in _nav(browser) and "Patient" not in _nav(browser)
    _wait_text(browser, "entries, newest first")  # the trail table (drawn on a canvas, so not in the text)

    trail = AuditLog(ah.fixture.home / "access" / "audit.jsonl")
    actions = [(e["user"], e["action"], e["patient_id"]) for e in trail.entries()]
    assert ("c.clinician", "reveal_mrn", pid) in actions and ("a.analyst", "view_patient", pid) in actions
    assert ("c.clinician", "export_csv", None) in actions
    assert not any(e[1] == "reveal_mrn" and e[0] != "c.clinician" for e in actions)
    assert trail.verify().ok


@pytest.mark.parametrize("access_server", [STALE_AFTER_MINUTES], indirect=True)
def test_stale_session_is_sent_back_to_sign_in(access_server, browser) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    url, _ = access_server
    _sign_in(browser, url, "a.analyst")
    _wait_text(browser, "patients match")
    time.sleep(STALE_AFTER_MINUTES * 60 + 3)
    browser.find_element(By.XPATH, "//*[@data-testid='stSidebarNav']//a[contains(., 'Model')]").click()
    _wait_text(browser, "expired")
    assert "clinfuse — sign in" in _body(browser) and "Registered versions" not in _body(browser)
