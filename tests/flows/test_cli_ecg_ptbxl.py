"""`clinfuse ingest -> encode -> train -> predict` on real PTB-XL ECG records with their reports (ECG + notes)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest


@pytest.mark.realdata
@pytest.mark.slow
def test_cli_whole_path_on_ptbxl_records_and_reports(realdata: Path, settings, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from benchmarks.realdata_ptbxl import convert, ptbxl_table
    from flows.cli import app
    from flows.prefect_env import prefect_settings
    from flows.settings import get_settings
    from ingestion.manifest import read_manifest
    from models.stores.predictions import read_latest_batch

    table = ptbxl_table(realdata)
    train_rows = pd.concat([g.head(20) for _, g in table.groupby("label")])
    new_rows = table.drop(train_rows.index).head(4)
    cohort = convert(train_rows, tmp_path / "src")
    convert(new_rows.assign(label=pd.NA), tmp_path / "new")
    monkeypatch.setenv("CLINFUSE_HOME", str(settings.home))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        with prefect_settings(settings):
            for args in (["ingest", "--source", str(tmp_path / "src"), "--cohort", str(cohort), "--workers", "1"],
                         ["encode", "--modality", "all"], ["train", "--epochs", "3"],
                         ["predict", "--source", str(tmp_path / "new"), "--cohort", str(tmp_path / "new" /
                                                                                      "cohort.csv"),
                          "--n-mc", "3"]):
                out = runner.invoke(app, args, env={"COLUMNS": "200"})
                assert out.exit_code == 0, (args[0], out.output)
    finally:
        get_settings.cache_clear()
    manifest = read_manifest(settings.manifest_path)
    ecg = manifest[manifest["modality"] == "ecg"]
    assert len(ecg) == 44 and (ecg["status"] == "ok").all()
    assert all(json.loads(m)["montage"] == "standard" for m in ecg["meta_json"])
    batch = read_latest_batch(settings.predictions_dir)
    assert len(batch) == 4 and (batch["mask_ecg"] == "present").all()
    assert batch["risk"].between(0, 1).all() and batch["contrib_ecg"].notna().all()
