"""AppTest of every dashboard page on a written fixture home: rendering, filters, viewers, gates."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.dashboard.fixtures import FixtureHome, build_home


def _latest(fh: FixtureHome) -> pd.DataFrame:
    return pd.read_parquet(fh.home / "predictions" / f"{fh.latest_batch}.parquet")


def _no_errors(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _count_caption(at) -> str:
    return next(c.value for c in at.caption if "patients match" in c.value)


def test_worklist_lists_latest_batch(app_for, fixture_home: FixtureHome) -> None:
    at = app_for(fixture_home.home).run()
    _no_errors(at)
    table = at.dataframe[0].value
    assert len(table) == len(fixture_home.patient_ids)
    assert set(table["patient"]) == set(fixture_home.patient_ids)
    assert fixture_home.latest_batch in _count_caption(at)
    # Riskiest first by default.
    assert list(table["risk"]) == sorted(table["risk"], reverse=True)
    # Imputed and abstention flags match the store.
    latest = _latest(fixture_home).set_index("patient_id")
    shown = table.set_index("patient")
    assert shown.loc[fixture_home.patient_ids[1], "imputed"] == "ct"
    assert bool(shown.loc[fixture_home.patient_ids[2], "abstained"]) is True
    assert shown["abstained"].sum() == latest["abstain"].sum()
    assert at.get("download_button"), "CSV export button missing"


def test_worklist_filters_change_row_count(app_for, fixture_home: FixtureHome) -> None:
    latest = _latest(fixture_home)
    at = app_for(fixture_home.home).run()
    at.multiselect(key="wl_bands").set_value(["high"]).run()
    _no_errors(at)
    assert len(at.dataframe[0].value) == int((latest["risk"] >= 0.6).sum())

    at.multiselect(key="wl_bands").set_value([]).run()
    at.multiselect(key="wl_present").set_value(["ct", "eeg"]).run()
    want = int(((latest["mask_ct"] == "present") & (latest["mask_eeg"] == "present")).sum())
    assert len(at.dataframe[0].value) == want < len(latest)

    at.multiselect(key="wl_present").set_value([]).run()
    at.checkbox(key="wl_imputed").check().run()
    imputed = latest[[f"mask_{m}" for m in ("ct", "xray", "eeg", "note")]].eq("imputed").any(axis=1)
    assert len(at.dataframe[0].value) == int(imputed.sum()) > 0

    at.checkbox(key="wl_imputed").uncheck().run()
    at.checkbox(key="wl_abstain").check().run()
    assert len(at.dataframe[0].value) == int(latest["abstain"].sum()) > 0

    at.checkbox(key="wl_abstain").uncheck().run()
    target = fixture_home.patient_ids[5]
    at.text_input(key="wl_search").input(target[:8].upper()).run()
    assert target in set(at.dataframe[0].value["patient"])
    assert len(at.dataframe[0].value) < len(latest)


def test_worklist_model_version_scope_and_dates(app_for, fixture_home: FixtureHome) -> None:
    at = app_for(fixture_home.home).run()
    scope = at.selectbox(key="wl_scope")
    older = next(o for o in scope.options if fixture_home.older_batch in o)
    scope.set_value(older).run()
    _no_errors(at)
    assert fixture_home.older_batch in _count_caption(at)
    assert len(at.dataframe[0].value) == len(fixture_home.patient_ids)
    version1 = next(o for o in at.selectbox(key="wl_scope").options if o.startswith("Model version 1"))
    at.selectbox(key="wl_scope").set_value(version1).run()
    assert set(at.dataframe[0].value["model"]) == {"v1"}
    # The fixture's older batch ran on 2025-03-01; a range excluding it leaves nothing.
    import datetime as dt

    at.date_input(key="wl_dates").set_value((dt.date(2025, 3, 1), dt.date(2025, 3, 1))).run()
    assert len(at.dataframe[0].value) == len(fixture_home.patient_ids)


def test_open_patient_from_worklist(app_for, fixture_home: FixtureHome) -> None:
    at = app_for(fixture_home.home).run()
    pid = fixture_home.patient_ids[0]
    at.selectbox(key="wl_pick").set_value(pid).run()
    at.button(key="wl_open").click().run()
    _no_errors(at)
    assert any(t.value == f"Patient {pid}" for t in at.title)


def _patient(app_for, fh: FixtureHome, index: int):
    at = app_for(fh.home).run()
    at.switch_page("pages/patient.py")
    at.query_params["patient"] = fh.patient_ids[index]
    at.run()
    _no_errors(at)
    return at


def test_patient_with_every_modality_shows_viewers(app_for, fixture_home: FixtureHome) -> None:
    at = _patient(app_for, fixture_home, 0)
    pid = fixture_home.patient_ids[0]
    assert [t.label for t in at.tabs] == ["CT", "X-ray", "EEG", "Note"]
    assert not [i for i in at.info if "missing — not acquired" in i.value]
    slice_slider = at.slider(key=f"ct_{pid}_slice")
    assert slice_slider.max == 32
    slice_slider.set_value(3).run()
    _no_errors(at)
    assert any("Slice 3/32" in c.value for c in at.caption)
    at.radio(key=f"ct_{pid}_preset").set_value("custom").run()
    assert at.slider(key=f"ct_{pid}_width").value == 400
    assert [c for i in at.image for c in i.captions] == ["CT axial slice 3", "X-ray"]
    assert len(at.get("plotly_chart")) == 2  # contributions and EEG traces
    note_html = " ".join(m.value for m in at.markdown)
    assert 'title="negated finding">chest pain</mark>' in note_html
    assert 'title="finding">pneumonia</mark>' in note_html
    assert at.metric[0].label == "Calibrated risk"


def test_patient_missing_and_imputed_modalities(app_for, fixture_home: FixtureHome) -> None:
    at = _patient(app_for, fixture_home, 1)  # CT not acquired, imputed from donors 2 and 0
    assert at.tabs[0].label == "CT (imputed)"
    assert any("CT: missing — not acquired" in i.value and "imputed" in i.value for i in at.info)
    assert [c for i in at.image for c in i.captions] == ["X-ray"]  # never an empty CT
    links = at.get("page_link")
    donors = json.loads(_latest(fixture_home).set_index("patient_id").loc[fixture_home.patient_ids[1],
                                                                              "donors_json"])["ct"]
    assert len(links) == len(donors)
    labels = " ".join(link.proto.label for link in links)
    assert all(d["patient_id"] in labels for d in donors)
    assert all("patient=" in link.proto.query_string for link in links)


def test_patient_abstention_missing_and_quarantined(app_for, fixture_home: FixtureHome) -> None:
    at = _patient(app_for, fixture_home, 2)  # no EEG, abstained
    assert any("EEG: missing — not acquired" in i.value for i in at.info)
    assert any("Abstained" in w.value for w in at.warning)
    at = _patient(app_for, fixture_home, 3)  # EEG quarantined
    assert any("EEG: quarantined" in e.value and "0 data records" in e.value for e in at.error)


def test_patient_rejects_non_pseudonymous_id(app_for, fixture_home: FixtureHome) -> None:
    at = app_for(fixture_home.home).run()
    at.switch_page("pages/patient.py")
    at.query_params["patient"] = "MRN00100000"
    at.run()
    _no_errors(at)
    assert any("not a pseudonymous" in e.value for e in at.error)
    assert "MRN00100000" not in " ".join(t.value for t in at.title)


def test_original_ids_never_shown(app_for, tmp_path: Path) -> None:
    fh = build_home(tmp_path / "home", n_patients=8)
    leaked = pd.read_parquet(fh.home / "predictions" / f"{fh.latest_batch}.parquet").head(1)
    leaked["patient_id"] = "MRN00100001"
    leaked["batch_id"] = fh.latest_batch
    leaked.to_parquet(fh.home / "predictions" / "leak.parquet", index=False)
    at = app_for(fh.home).run()
    _no_errors(at)
    assert "MRN00100001" not in set(at.dataframe[0].value["patient"])
    assert any("not a pseudonym" in w.value for w in at.warning)


def test_empty_home_explains_what_to_do(app_for, tmp_path: Path) -> None:
    at = app_for(tmp_path / "empty").run()
    _no_errors(at)
    assert any("No predictions yet" in i.value for i in at.info)
    at.switch_page("pages/model.py").run()
    _no_errors(at)
    assert any("No MLflow registry yet" in i.value for i in at.info)


def test_password_gate(app_for, fixture_home: FixtureHome) -> None:
    at = app_for(fixture_home.home, password="s3cret-pass").run()
    _no_errors(at)
    assert not at.dataframe and at.title[0].value == "clinfuse — sign in"
    at.text_input(key="sign_in_password").input("wrong")
    at.form_submit_button[0].click().run()
    assert any("Wrong password" in e.value for e in at.error) and not at.dataframe
    at.text_input(key="sign_in_password").input("s3cret-pass")
    at.form_submit_button[0].click().run()
    _no_errors(at)
    assert len(at.dataframe[0].value) == len(fixture_home.patient_ids)


def test_batch_page_runs_the_batch_then_shows_worklist(app_for, tmp_path: Path, monkeypatch) -> None:
    """The page hands the folder to ``run_batch`` (a child ``clinfuse predict``, tested in
    test_batch_trigger); here a stand-in writes a real batch, and the worklist shows it."""
    import dashboard.batch_trigger as bt

    fh = build_home(tmp_path / "home", n_patients=6)
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "cohort.csv").write_text("patient_id,label\nMRN1,\n")
    calls: list[Path] = []

    def run_batch(cohort_dir: Path, prefect_api_url, progress, home: Path, **_: object) -> bt.BatchOutcome:
        calls.append(Path(cohort_dir))
        assert Path(home) == fh.home
        df = pd.read_parquet(fh.home / "predictions" / f"{fh.latest_batch}.parquet")
        df["batch_id"] = "batch-new"
        df["predicted_at"] = df["predicted_at"] + pd.Timedelta(days=1)
        df.to_parquet(fh.home / "predictions" / "batch-new.parquet", index=False)
        return bt.BatchOutcome(True, "Batch prediction finished: batch-new")

    monkeypatch.setattr(bt, "run_batch", run_batch)
    at = app_for(fh.home).run()
    at.switch_page("pages/batch.py").run()
    _no_errors(at)
    assert at.button(key="batch_run").disabled
    at.text_input(key="batch_folder").input(str(tmp_path / "nope")).run()
    assert any("is not a folder" in e.value for e in at.error)
    at.text_input(key="batch_folder").input(str(cohort)).run()
    at.button(key="batch_run").click().run()
    _no_errors(at)
    assert calls == [cohort]
    assert any("Batch prediction finished" in s.value for s in at.success)
    assert "batch-new" in _count_caption(at)


def test_batch_page_shows_why_a_batch_failed(app_for, tmp_path: Path, monkeypatch) -> None:
    import dashboard.batch_trigger as bt

    monkeypatch.setattr(bt, "run_batch", lambda *a, **k: bt.BatchOutcome(False, "`clinfuse predict` failed (exit 2): no cohort.csv"))
    at = app_for(tmp_path / "home").run()
    at.switch_page("pages/batch.py").run()
    at.text_input(key="batch_folder").input(str(tmp_path)).run()
    at.button(key="batch_run").click().run()
    _no_errors(at)
    assert any("failed (exit 2)" in e.value for e in at.error)
