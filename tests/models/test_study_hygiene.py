"""Held-out hygiene on the product path: the stage functions the CLI and flows run fit nothing on a
held-out or prediction-only patient.

``tests/models/test_no_exposure.py`` proves the library can keep them out when a caller filters by
hand; here nobody filters: ``models.stages.encode`` (TF-IDF fit), ``pretrain`` (contrastive loss and
BatchNorm statistics) and ``train`` must take the split from the one study definition. Before the
study definition, encode fitted the TF-IDF on every note and pretraining saw every ingested patient,
so changing a held-out patient's note changed the encoders.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ingestion.cohort import write_cohort
from ingestion.manifest import write_manifest
from models.features.stage_inputs import as_encoder_keys
from models.held_out import held_out_mask
from models.stages import EncodeConfig, PretrainStageConfig, TrainStageConfig, encode, pretrain, train
from models.study_definition import define_study, fit_ids_sha256, read_fitted_on
from models.training.pretrain_config import PretrainConfig
from tests.models.synthetic_arrays import write_synthetic_home
from tests.models.test_no_exposure import _rewrite

MODS = ("eeg", "note")


def _write_home(home: Path, manifest: pd.DataFrame, cohort: pd.DataFrame) -> None:
    write_manifest(manifest, home / "manifest.parquet")
    write_cohort(cohort.astype({"label": "Int8"}), home / "cohort.parquet")


def _fit_through_stages(home: Path) -> dict:
    """encode (fits the TF-IDF) -> pretrain -> encode again -> train, exactly as the flows call them."""
    encode(EncodeConfig(home=home, modalities=MODS, note_encoder="tfidf", seed=7))
    pre = pretrain(PretrainStageConfig(home=home, pretrain=PretrainConfig(epochs=1, batch_size=8, seed=7),
                                       note_encoder="tfidf"))
    keys = encode(EncodeConfig(home=home, modalities=MODS, note_encoder="tfidf", seed=7)).encoder_keys
    trained = train(TrainStageConfig(home=home, encoder_keys=as_encoder_keys(dict(keys)), epochs=3, hidden=8,
                                     impute="zero", seed=7))
    encoders = sorted(p for p in (home / "encoders").iterdir() if p.suffix in (".pt", ".pkl"))
    return {"pretrain": pre, "trained": trained,
            "encoders": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in encoders},
            "sidecars": {p.name: read_fitted_on(p) for p in encoders},
            "model": read_fitted_on(trained.model_dir),
            "model_json": json.loads((trained.model_dir / "model.json").read_text())["calibrator"]}


@pytest.mark.slow
def test_stages_fit_nothing_on_held_out_or_prediction_patients(tmp_path: Path) -> None:
    base = tmp_path / "base"
    manifest, cohort = write_synthetic_home(base, n_patients=30, seed=5, missing_rate=0.0, modalities=MODS)
    manifest = manifest[manifest["status"] == "ok"].reset_index(drop=True)
    cohort.loc[27:, "label"] = np.nan  # a prediction batch: no label
    ids = tuple(cohort["patient_id"])
    held = held_out_mask(ids, 0.2, 7)  # the rule, recomputed here rather than read from the study
    labelled = cohort["label"].notna().to_numpy()
    expected_fit = tuple(p for p, h, y in zip(ids, held, labelled) if y and not h)
    held_out = [p for p, h, y in zip(ids, held, labelled) if y and h]
    prediction = [p for p, y in zip(ids, labelled) if not y]
    assert held_out and prediction and len(expected_fit) >= 15

    homes = {name: shutil.copytree(base, tmp_path / name) for name in ("a", "b")}
    _write_home(homes["a"], manifest, cohort)
    changed = _rewrite(homes["b"], manifest, held_out[0])
    changed = _rewrite(homes["b"], changed, prediction[0])
    _write_home(homes["b"], changed, cohort)
    first, second = _fit_through_stages(homes["a"]), _fit_through_stages(homes["b"])

    # every fitted artifact records the training patients, and only them
    want = fit_ids_sha256(expected_fit)
    assert first["model"]["fit_patients_sha256"] == want and first["model"]["n_patients"] == len(expected_fit)
    assert first["pretrain"].fit_patients_sha256 == want
    assert first["sidecars"] and all(s is not None and s["fit_patients_sha256"] == want
                                     for s in first["sidecars"].values()), first["sidecars"]
    assert first["trained"].study.fit_sha256() == want
    assert not set(first["trained"].study.training) & set(held_out + prediction)
    # and changing a held-out or a prediction patient's files changes none of them
    assert first["encoders"] == second["encoders"]
    assert first["model_json"] == second["model_json"]


def test_study_keeps_review_labels_out_of_the_held_out_judgement() -> None:
    ids = tuple(f"P{i:012x}" for i in range(200))
    labels = [float(i % 2) for i in range(190)] + [np.nan] * 10
    held = held_out_mask(ids, 0.2, 7)
    held_labelled = next(i for i in range(190) if held[i])
    held_unlabelled = next((i for i in range(190, 200) if held[i]), None)
    train_unlabelled = next(i for i in range(190, 200) if not held[i])
    reviews = {ids[held_labelled]: 1 - int(labels[held_labelled]), ids[train_unlabelled]: 1}
    if held_unlabelled is not None:
        reviews[ids[held_unlabelled]] = 1
    study = define_study(ids, labels, reviews, held_out_fraction=0.2, seed=7)

    assert ids[train_unlabelled] in study.training and ("review" in dict(study.label_source)[ids[train_unlabelled]])
    position = study.held_out.index(ids[held_labelled])
    assert study.held_out_labels[position] == int(labels[held_labelled])  # the cohort's label, not the review's
    if held_unlabelled is not None:
        assert ids[held_unlabelled] in study.excluded  # a review alone never makes a held-out label
    assert set(study.training).isdisjoint(study.held_out) and set(study.training).isdisjoint(study.excluded)
    assert len(study.training) + len(study.held_out) + len(study.excluded) == len(ids)
