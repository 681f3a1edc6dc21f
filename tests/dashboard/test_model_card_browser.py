"""The champion's model card on the Model page: written by the real evaluate stage, logged by the real train run.

The home is a synthetic cohort of 200 patients (about 40 held out), trained and
evaluated through ``models.stages`` and logged with
``flows.tracking.train_run.log_training_run`` (the champion gate included), so the
card the page shows is the one the product writes, and its banner must be up:
far fewer than 200 held-out patients. The browser test saves
``test-artifacts/model_card.png``, copied to ``docs/img/model_card.png`` only with
``CLINFUSE_WRITE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from flows.serve.dashboard_process import streamlit_command
from tests.conftest import free_port
from tests.dashboard.test_browser import DOCS_IMG, _assert_no_error_box, _shot, _wait_healthy, _wait_text, browser  # noqa: F401

N_PATIENTS = 200
BANNER = "Not validated for clinical use"
MODEL_LINK = '//a[@data-testid="stSidebarNavLink"][.//span[@label="Model"]]'
"""The app's own navigation entry (titled "Model"), not Streamlit's pages-folder link drawn before app.py runs."""


@pytest.fixture(scope="module")
def card_home(tmp_path_factory) -> tuple[Path, dict, dict]:
    """(home, the card JSON in the report folder, the champion run's logged card) after train + evaluate + log."""
    import mlflow

    from flows.settings import Settings
    from flows.tracking.train_run import log_training_run
    from models import stages
    from models.held_out import split_held_out

    home = tmp_path_factory.mktemp("model-card") / "home"
    settings = Settings(home=home)
    settings.ensure_dirs()
    trained = stages.train(stages.TrainStageConfig(home=home, synthetic=N_PATIENTS, epochs=10, impute="zero",
                                                   seed=settings.seed))
    evaluation = stages.evaluate(stages.EvaluateConfig(home=home, model_dir=trained.model_dir,
                                                       synthetic=N_PATIENTS, n_boot=100, seed=settings.seed))
    _, held_out = split_held_out(stages.stage_features(home, (), N_PATIENTS, settings.seed), 0.2, settings.seed)
    before = mlflow.get_tracking_uri()
    try:
        result = log_training_run(trained.model_dir, held_out, settings=settings, config={"fusion": "early"},
                                  evaluation=evaluation, encoders={}, n_train=trained.n_train,
                                  held_out_fraction=0.2)
    finally:
        mlflow.set_tracking_uri(before)
        mlflow.set_registry_uri(before)
    client = mlflow.MlflowClient(settings.tracking_uri)
    logged = json.loads(Path(client.download_artifacts(result["run_id"], "evaluation/model_card.json",
                                                       str(home / "dl"))).read_text())
    return home, json.loads((evaluation.out_dir / "model_card.json").read_text()), logged


@pytest.mark.slow
def test_the_train_run_logs_the_card_with_the_candidates_the_gate_counted(card_home) -> None:
    home, local, logged = card_home
    assert logged == local  # the report folder's card, candidates filled in, is what MLflow holds
    assert logged["candidates"]["count"] == 1 and "champion gate" in logged["candidates"]["how"]
    assert logged["banner"].startswith(BANNER) and "fewer than 200" in logged["banner"]
    held = logged["data"]["splits"]["held-out"]["n"]
    assert held + logged["data"]["splits"]["training"]["n"] == N_PATIENTS
    assert logged["demographics_absent"] == ["site"]
    assert sum(r["n"] for r in logged["subgroups"] if r["attribute"] == "sex") == held


@pytest.mark.slow
def test_model_page_renders_the_card(app_for, card_home) -> None:
    home, _, logged = card_home
    at = app_for(home).run()
    at.switch_page("pages/model.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error if e.value.startswith(BANNER)] == [logged["banner"]]
    shown = {m.label: m.value for m in at.metric}
    assert shown["Held-out AUROC"] == f"{logged['performance']['auroc']:.3f}"
    assert shown["Candidates"] == "1"
    tables = [df.value for df in at.dataframe]
    subgroups = next(t for t in tables if "AUROC [95 % CI]" in t.columns)
    assert set(subgroups["attribute"]) >= {"sex", "age band", "availability"}
    assert "Not in the cohort table, so not checked: site." in [c.value for c in at.caption]


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.server
@pytest.mark.timeout(300)
def test_model_card_in_chromium(card_home, browser, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    home, _, logged = card_home
    port = free_port()
    env = {**os.environ, "CLINFUSE_HOME": str(home)}
    env.pop("CLINFUSE_DASHBOARD_PASSWORD", None)
    proc = subprocess.Popen(streamlit_command("127.0.0.1", port), cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        browser.get(url)  # the app signs the session in (open local demo), then its navigation opens the page
        WebDriverWait(browser, 90).until(lambda d: d.find_elements(By.XPATH, MODEL_LINK),
                                         message="the sidebar never offered the Model page")
        browser.find_element(By.XPATH, MODEL_LINK).click()
        _wait_text(browser, BANNER, timeout=120)
        _wait_text(browser, "Subgroups", timeout=120)  # the page draws top to bottom; the machine may be busy
        _wait_text(browser, "Limitations", timeout=120)
        _assert_no_error_box(browser)
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "Research and engineering use only" in body
        assert "1 candidate(s) compared on these held-out patients" in body
        WebDriverWait(browser, 120).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, 'img[src*="/media/"]')) >= 2,
                                          message="the card's ROC and reliability plots are not on the page")
        png = _shot(browser, "model_card.png", 1800)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    if os.environ.get("CLINFUSE_WRITE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, DOCS_IMG / "model_card.png")
