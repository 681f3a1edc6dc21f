"""Joint and finetune training on real array files with a known label signal.

The encoders must really change (new versions, new weight files that encoders load),
the store must hold the cohort under the new versions, and the returned model must
rank the patients it was trained on far better than chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from models.encoders import build_encoder
from models.features.assemble import encode_manifest, load_features, usable_items
from models.stores.embeddings import EmbeddingStore
from models.training.joint import JointConfig, train_joint
from models.training.pretrain import PretrainConfig, pretrain
from models.training.train import TrainConfig, train
from models.training.trained_model import TrainedModel
from tests.models.synthetic_arrays import write_synthetic_home

NAMES = {"ct": "ct-resnet3d", "xray": "xray-resnet2d", "eeg": "eeg-tcn-bands"}


def _home(root: Path, n: int, modalities: tuple[str, ...], bad_items: int = 0):
    """Arrays + manifest + cohort, encoded once with the seeded-init encoders (TF-IDF notes)."""
    torch.set_num_threads(1)
    home = root / "home"
    manifest, cohort = write_synthetic_home(home, n_patients=n, seed=1, strength=0.85, modalities=modalities,
                                            bad_items=bad_items)
    store = EmbeddingStore(home / "embeddings")
    keys = encode_manifest(manifest, home, store, modalities=modalities, note_encoder="tfidf",
                           encoders_dir=home / "encoders").encoder_keys
    features = load_features(manifest, cohort, store, keys, modalities=modalities)
    return home, manifest, cohort, store, keys, features


@pytest.mark.slow
def test_joint_training_changes_encoders_reencodes_and_learns(tmp_path: Path) -> None:
    mods = ("ct", "xray", "eeg", "note")
    home, manifest, cohort, store, keys, fs = _home(tmp_path, 40, mods, bad_items=1)
    stages: set[str] = set()
    res = train_joint(fs, manifest, cohort, home, store, home / "encoders",
                      TrainConfig(strategy="joint", epochs=60, patience=15, hidden=16), keys,
                      JointConfig(epochs=3, patience=3, batch_size=8),
                      progress=lambda epoch, row: stages.add(row["stage"]), quarantine_dir=home / "quarantine")
    assert stages == {"joint", "fusion"} and 1 <= len(res.history) <= 3
    assert res.learning_rates == {"fusion": 3e-3, "encoders": 3e-3}
    index = store.index()
    for m, name in NAMES.items():
        new = res.encoder_keys[m]
        assert res.started_from[m] is None  # joint starts from the seeded init
        assert new.version != keys[m].version and res.model.config.encoders[m] == new.version
        assert res.weights[m] == home / "encoders" / f"{name}-{new.version}.pt" and res.weights[m].is_file()
        assert build_encoder(m, encoders_dir=home / "encoders").version == new.version
        # every readable item of the modality is in the store under the new version
        shas = set(usable_items(manifest, [m])["content_sha256"])
        stored = set(index.loc[(index["encoder_name"] == name) & (index["encoder_version"] == new.version),
                               "content_sha256"])
        assert len(shas - stored) == (1 if m == "eeg" else 0)  # the corrupt EEG file only
    assert res.encoder_keys["note"] == keys["note"] and res.model.config.encoders["note"] == keys["note"].version
    assert sum("eeg arrays/eeg/" in s for s in res.skipped) == 1  # the bad file: reported once, not fatal
    assert (home / "quarantine" / "encode_failures_eeg.parquet").is_file()
    # the returned model is an ordinary TrainedModel on the new embeddings and it learned the signal
    assert res.model.network.dims["ct"] == res.features.dims()["ct"]
    auc = roc_auc_score(res.features.labels, res.model.predict_risk(res.features))
    assert auc > 0.75, auc
    out = res.model.save(tmp_path / "model")
    assert TrainedModel.load(out).config.encoders == res.model.config.encoders


@pytest.mark.slow
def test_finetune_starts_from_pretrained_weights_at_lower_lr(tmp_path: Path) -> None:
    mods = ("xray", "eeg", "note")
    home, manifest, cohort, store, keys, fs = _home(tmp_path, 30, mods)
    pre = pretrain(manifest, home, home / "encoders", modalities=mods, note_encoder="tfidf",
                   config=PretrainConfig(epochs=1, batch_size=10, seed=3))
    res = train_joint(fs, manifest, cohort, home, store, home / "encoders",
                      TrainConfig(strategy="finetune", epochs=40, hidden=16, lr=4e-3), keys,
                      JointConfig(epochs=2, batch_size=10, augment=False))
    assert res.learning_rates == {"fusion": 4e-3, "encoders": 4e-4}
    for m in ("xray", "eeg"):
        assert res.started_from[m] == pre.weights[m]  # loaded the pretrained file, not the seeded init
        assert res.encoder_keys[m].version not in (pre.versions[NAMES[m]], keys[m].version)
    assert np.isfinite(res.model.predict_risk(res.features)).all()


def test_joint_is_seeded_and_wrong_uses_are_refused(tmp_path: Path) -> None:
    mods = ("xray", "note")
    home, manifest, cohort, store, keys, fs = _home(tmp_path, 12, mods)
    runs = [train_joint(fs, manifest, cohort, home, store, home / "encoders",
                        TrainConfig(strategy="joint", epochs=3, hidden=8), keys, JointConfig(epochs=1, batch_size=6))
            for _ in range(2)]
    assert runs[0].encoder_keys["xray"] == runs[1].encoder_keys["xray"] != keys["xray"]  # same seed, same weights
    for f in (home / "encoders").glob("xray-*.pt"):
        f.unlink()  # finetune would start from the newest weights, whatever wrote them
    with pytest.raises(FileNotFoundError, match="clinfuse pretrain"):
        train_joint(fs, manifest, cohort, home, store, home / "encoders", TrainConfig(strategy="finetune"), keys)
    with pytest.raises(ValueError, match="train_joint"):
        train(fs, TrainConfig(strategy="joint"))  # needs the arrays: refused, never silently frozen
    with pytest.raises(ValueError, match="frozen"):
        train_joint(fs, manifest, cohort, home, store, home / "encoders", TrainConfig(strategy="frozen"), keys)
    with pytest.raises(ValueError, match="not implemented"):
        TrainConfig(strategy="end2end").validate()
