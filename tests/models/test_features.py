"""encode_manifest (idempotent, bad input reported) and load_features (one row per patient)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from ingestion.modalities import PHANTOM_MODALITIES  # the default phantom draws no ECG
from models.encoders.image_features import CT_FEATURE_NAMES, XRAY_FEATURE_NAMES
from models.features.assemble import encode_manifest, latest_items, load_features
from models.stores.embeddings import EmbeddingStore
from tests.models.synthetic_arrays import _write_item, eeg_windows, write_synthetic_home




@pytest.fixture
def cohort_home(tmp_path: Path):
    home = tmp_path / "home"
    manifest, cohort = write_synthetic_home(home, n_patients=16, seed=1, bad_items=2)
    return home, manifest, cohort


def test_encode_is_idempotent_and_reports_bad_items(cohort_home, tmp_path: Path) -> None:
    home, manifest, cohort = cohort_home
    store = EmbeddingStore(home / "embeddings")
    calls: list[tuple[str, int, int]] = []
    cold = encode_manifest(manifest, home, store, note_encoder="tfidf", encoders_dir=home / "encoders",
                           quarantine_dir=home / "quarantine", progress=lambda *a: calls.append(a))
    ok = manifest[manifest["status"] == "ok"]
    bad = ok[ok["array_uri"].map(lambda u: (home / u).read_bytes().startswith(b"this is not"))]
    for m in ("ct", "xray", "eeg", "note"):
        n_unique = ok.loc[ok["modality"] == m, "content_sha256"].nunique()
        n_bad = bad.loc[bad["modality"] == m, "content_sha256"].nunique()
        assert cold.encoded[m] == n_unique - n_bad and cold.hits[m] == 0
    assert len(cold.failures) == len(bad) and all("cannot read" in f.reason for f in cold.failures)
    assert (home / "quarantine" / "encode_failures_eeg.parquet").exists()
    assert calls[-1][1] == calls[-1][2]
    warm = encode_manifest(manifest, home, store, note_encoder="tfidf", encoders_dir=home / "encoders")
    assert sum(warm.encoded.values()) == 0
    assert warm.hits == cold.encoded and warm.encoder_keys == cold.encoder_keys


def test_load_features_one_row_per_patient(cohort_home) -> None:
    home, manifest, cohort = cohort_home
    store = EmbeddingStore(home / "embeddings")
    report = encode_manifest(manifest, home, store, note_encoder="tfidf", encoders_dir=home / "encoders")
    # a newer EEG recording for the first patient must win over the older one
    pid = cohort["patient_id"].iloc[0]
    newer = _write_item(home, pid, "eeg", eeg_windows(np.random.default_rng(9), True), "npy",
                        manifest["ingested_at"].max() + timedelta(days=1))
    manifest2 = pd.concat([manifest, pd.DataFrame([newer])], ignore_index=True)
    report2 = encode_manifest(manifest2, home, store, modalities=("eeg",), encoders_dir=home / "encoders")
    assert report2.encoded["eeg"] == 1
    fs = load_features(manifest2, cohort, store, report.encoder_keys)
    assert fs.patient_ids == tuple(cohort["patient_id"])
    assert fs.dims() == {"ct": 64 + len(CT_FEATURE_NAMES), "xray": 64 + len(XRAY_FEATURE_NAMES), "eeg": 140,
                         "note": 64 + 30, "ecg": 0}  # no ECG in this home: an empty, always-missing block
    latest = latest_items(manifest2)
    failed = {f.content_sha256 for f in report.failures}
    for j, m in enumerate(fs.modalities):
        have = set(latest.loc[(latest["modality"] == m) & ~latest["content_sha256"].isin(failed), "patient_id"])
        assert {p for p, k in zip(fs.patient_ids, fs.mask[:, j]) if k} == have
        assert np.all(fs.embeddings[m][~fs.mask[:, j]] == 0)
    eeg_key = tuple(report.encoder_keys["eeg"])
    want = store.get_many([(newer["content_sha256"], *eeg_key)])
    np.testing.assert_array_equal(fs.embeddings["eeg"][0], next(iter(want.values())))
    # covariates stay raw (units as in the cohort table): no statistic of this cohort is applied here
    assert fs.covariates.shape == (16, 5) and fs.covariate_names == ("age", "sex", "crp", "wbc", "lactate")
    np.testing.assert_allclose(fs.covariates[:, 0], cohort["age"].astype(float))
    np.testing.assert_array_equal(fs.covariates[:, 1], (cohort["sex"] == "M").astype(float))
    alone = load_features(manifest2, cohort.iloc[[3]], store, report.encoder_keys)
    np.testing.assert_array_equal(alone.covariates[0], fs.covariates[3])  # same row alone or in the cohort
    assert fs.encoder_keys["eeg"] == eeg_key
    assert fs.labels.dtype == np.int64 and set(fs.labels) <= {0, 1}


def test_linear_probe_beats_chance_where_a_modality_carries_signal(tmp_path: Path) -> None:
    home = tmp_path / "home"
    manifest, cohort = write_synthetic_home(home, n_patients=48, seed=4, strength=0.9, missing_rate=0.0,
                                            modalities=("eeg",))
    store = EmbeddingStore(home / "embeddings")
    report = encode_manifest(manifest, home, store, modalities=("eeg",))
    fs = load_features(manifest, cohort, store, report.encoder_keys)
    auc = cross_val_score(LogisticRegression(max_iter=3000), fs.embeddings["eeg"], fs.labels, cv=4,
                          scoring="roc_auc").mean()
    assert auc > 0.75
    shuffled = np.random.default_rng(0).permutation(fs.labels)
    null = cross_val_score(LogisticRegression(max_iter=3000), fs.embeddings["eeg"], shuffled, cv=4,
                           scoring="roc_auc").mean()
    assert null < auc - 0.15


@pytest.mark.slow
def test_phantom_cohort_end_to_end(small_phantom: Path, tmp_path: Path) -> None:
    """Phantom DICOM/EDF/notes -> ingest -> encode -> FeatureSet whose mask matches the manifest."""
    from flows.settings import Settings
    from ingestion.driver.ingest import ingest
    from ingestion.manifest import read_manifest

    s = Settings(home=tmp_path / "home")
    ingest(small_phantom, small_phantom / "cohort.csv", s.home, s.pseudonym_secret.get_secret_value(),
           config=s.reader_config(), workers=1)
    manifest, cohort = read_manifest(s.manifest_path), pd.read_parquet(s.cohort_path)
    store = EmbeddingStore(s.embeddings_dir)
    report = encode_manifest(manifest, s.home, store, note_encoder="tfidf", encoders_dir=s.encoders_dir)
    assert report.failures == []
    fs = load_features(manifest, cohort, store, report.encoder_keys)
    assert len(fs) == len(cohort) == 16 and all(p.startswith("P") for p in fs.patient_ids)
    latest = latest_items(manifest)
    for j, m in enumerate(fs.modalities):
        assert fs.mask[:, j].sum() == (latest["modality"] == m).sum() > (-1 if m not in PHANTOM_MODALITIES else 0)
        assert np.isfinite(fs.embeddings[m]).all()
    assert fs.labels is not None and fs.covariates.shape[1] >= 4
