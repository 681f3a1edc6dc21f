"""Clinician-confirmed outcomes feed training only; evaluation judges the model on the cohort's labels and
shows agreement with the confirmed outcomes apart.

A confirmed outcome is entered right below the model's risk (the dashboard's review form), so a held-out
figure computed on it would count the model's own influence. Here one training and one held-out patient get
a confirmed outcome that contradicts the cohort table: the training patient's label changes, the held-out
metrics do not, and the report and model card say where each label came from.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ingestion.cohort import write_cohort
from ingestion.manifest import write_manifest
from models.features.stage_inputs import as_encoder_keys
from models.stages import EncodeConfig, EvaluateConfig, TrainStageConfig, encode, evaluate, stage_features, train
from models.study_definition import study_for_home
from tests.models.synthetic_arrays import write_synthetic_home

MODS = ("eeg", "note")


@pytest.mark.slow
def test_reviews_change_training_labels_and_never_the_held_out_metrics(tmp_path: Path) -> None:
    home = tmp_path / "home"
    manifest, cohort = write_synthetic_home(home, n_patients=40, seed=4, missing_rate=0.0, modalities=MODS)
    write_manifest(manifest[manifest["status"] == "ok"].reset_index(drop=True), home / "manifest.parquet")
    write_cohort(cohort.astype({"label": "Int8"}), home / "cohort.parquet")
    keys = as_encoder_keys(dict(encode(EncodeConfig(home=home, modalities=MODS, note_encoder="tfidf")).encoder_keys))
    study = study_for_home(home, held_out_fraction=0.2, seed=7)
    label = dict(zip(cohort["patient_id"], cohort["label"].astype(int)))
    trainee, judged = study.training[0], study.held_out[0]
    reviews = tuple(sorted({trainee: 1 - label[trainee], judged: 1 - label[judged]}.items()))

    trained = train(TrainStageConfig(home=home, encoder_keys=keys, epochs=2, hidden=8, impute="zero",
                                     review_labels=reviews))
    assert dict(trained.study.label_source)[trainee] == "review"
    training = trained.study.training_features(stage_features(home, keys, 0, 7, reviews))
    assert training.labels[list(training.patient_ids).index(trainee)] == 1 - label[trainee]  # reviews train

    plain = evaluate(EvaluateConfig(home=home, model_dir=trained.model_dir, encoder_keys=keys, n_boot=50))
    plain_report = plain.report.read_text()
    reviewed = evaluate(EvaluateConfig(home=home, model_dir=trained.model_dir, encoder_keys=keys, n_boot=50,
                                       review_labels=reviews))
    # the held-out figures are the cohort labels' figures, with or without the contradicting review
    for name in ("auroc", "auroc_low", "auroc_high", "ece", "brier"):
        if name in plain.metrics:
            assert reviewed.metrics[name] == pytest.approx(plain.metrics[name], nan_ok=True), name
    assert reviewed.n_held_out == plain.n_held_out == len(study.held_out)
    # agreement is reported apart: the judged patient's review contradicts its cohort label
    assert reviewed.metrics["review_n"] == 1 and reviewed.metrics["review_agree_cohort"] == 0.0
    report = reviewed.report.read_text()
    section = report.split("## Clinician-confirmed outcomes (agreement only)", 1)
    assert len(section) == 2 and "Held-out patients with a confirmed outcome: 1." in section[1]
    assert "Clinician-confirmed outcomes" not in plain_report
    card = json.loads((reviewed.out_dir / "model_card.json").read_text())
    assert card["data"]["label_provenance"] == {"cohort table": len(study.held_out),
                                                 "clinician-confirmed, agreement only": 1}
    assert np.isfinite(reviewed.metrics["review_agree_model"])
