"""Nothing fitted sees a held-out or a to-be-predicted patient.

The whole fitting path of a home runs twice on real files (EEG arrays, note
JSON): the TF-IDF/SVD note fit, contrastive pretraining with its BatchNorm
recalibration, re-encoding, and training (covariate scaler, imputer, network
with early stopping, calibrator). Between the runs a held-out patient's and a
prediction patient's files change; no fitted artifact may change. Changing a
training patient's note, as a control, does change them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from models.features.assemble import encode_manifest, fit_patient_ids, load_features
from models.stores.embeddings import EmbeddingStore
from models.training.pretrain import PretrainConfig, pretrain
from models.training.train import TrainConfig, train
from tests.models.synthetic_arrays import write_synthetic_home

MODS = ("eeg", "note")


def _fit_everything(home: Path, manifest: pd.DataFrame, cohort: pd.DataFrame, fit: tuple[str, ...]) -> dict:
    """Encoders, embeddings and model fitted from ``home``; returns a fingerprint of every fitted artifact."""
    enc_dir, store = home / "encoders", EmbeddingStore(home / "embeddings")
    encode_manifest(manifest, home, store, MODS, encoders_dir=enc_dir, note_encoder="tfidf", fit_patients=fit)
    mine = manifest[manifest["patient_id"].isin(fit)]
    pretrain(mine, home, enc_dir, modalities=MODS, config=PretrainConfig(epochs=1, batch_size=8),
             note_encoder="tfidf")
    report = encode_manifest(manifest, home, store, MODS, encoders_dir=enc_dir, note_encoder="tfidf",
                             fit_patients=fit)
    features = load_features(manifest, cohort, store, report.encoder_keys, modalities=MODS)
    keep = np.isin(features.patient_ids, fit)
    train_fs = features.subset(keep)
    train_fs = type(train_fs)(**{**train_fs.__dict__, "labels": np.asarray(train_fs.labels).astype(int)})
    model = train(train_fs, TrainConfig(epochs=5, hidden=8, patience=5, seed=1))
    out = model.save(home / "model")
    state = {k: v.numpy().tobytes() for k, v in torch.load(out / "model.pt", weights_only=True).items()}
    meta = json.loads((out / "model.json").read_text())
    return {"encoder_files": sorted(p.name for p in enc_dir.iterdir()),
            "network": hashlib.sha256(b"".join(state[k] for k in sorted(state))).hexdigest(),
            "imputer": hashlib.sha256((out / "imputer" / "imputer.npz").read_bytes()).hexdigest(),
            "calibrator": meta["calibrator"], "scaler": meta["scaler"], "history": meta["history"]}


def _rewrite(home: Path, manifest: pd.DataFrame, pid: str) -> pd.DataFrame:
    """New content for every item of ``pid`` (louder EEG, another note text), as a re-ingest would record it."""
    manifest = manifest.copy()
    for i in np.flatnonzero((manifest["patient_id"] == pid).to_numpy() & (manifest["status"] == "ok").to_numpy()):
        path = home / manifest.at[i, "array_uri"]
        if path.suffix == ".npy":
            blob = np.load(path) * 3.0 + 1.0
            path.unlink()
            np.save(path, blob)
            data = path.read_bytes()
        else:
            note = json.loads(path.read_text())
            note["text"] = "ASSESSMENT: brand new words seen only here: zyxomatosis quorblitis " * 3
            data = json.dumps(note).encode()
            path.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        manifest.loc[i, ["content_sha256", "item_id"]] = sha
    return manifest


@pytest.mark.slow
def test_changing_held_out_or_prediction_patients_files_changes_no_fitted_artifact(tmp_path: Path) -> None:
    base = tmp_path / "base"
    manifest, cohort = write_synthetic_home(base, n_patients=26, seed=5, missing_rate=0.0, modalities=MODS)
    manifest = manifest[manifest["status"] == "ok"].reset_index(drop=True)
    cohort.loc[24:, "label"] = np.nan  # two patients of a prediction batch: no label
    held_out = tuple(cohort["patient_id"].iloc[:5])
    fit = fit_patient_ids(cohort, held_out)
    assert len(fit) == 19 and not set(fit) & set(held_out) and cohort["patient_id"].iloc[25] not in fit
    homes = {name: shutil.copytree(base, tmp_path / name) for name in ("a", "b", "c")}
    first = _fit_everything(homes["a"], manifest, cohort, fit)

    changed = _rewrite(homes["b"], manifest, held_out[0])
    changed = _rewrite(homes["b"], changed, cohort["patient_id"].iloc[25])
    assert not changed["content_sha256"].equals(manifest["content_sha256"])
    assert _fit_everything(homes["b"], changed, cohort, fit) == first

    control = _rewrite(homes["c"], manifest, fit[0])  # a training patient: the fit must notice
    again = _fit_everything(homes["c"], control, cohort, fit)
    assert again["encoder_files"] != first["encoder_files"] and again["network"] != first["network"]
