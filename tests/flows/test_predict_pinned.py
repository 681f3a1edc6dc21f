"""Prediction end to end: pinned to the champion's encoder versions after a pretrain, and batch-invariant.

A champion is registered, then `pretrain` saves newer encoder weights; the
predict flow must still encode with the champion's versions. The same patient
scored through `clinfuse predict` alone, and inside a 4-patient batch of the
predict flow, gets identical risk, interval, contributions and abstain decision.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

COMPARED = ["risk", "risk_low", "risk_high", "predicted_class", "abstain", "abstain_reason"]


@pytest.mark.slow
def test_predict_uses_champion_encoders_after_pretrain_and_is_batch_invariant(settings, small_phantom, tmp_path,
                                                                             monkeypatch, ingested_phantom_home):
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.flows.ingest import ingest_flow
    from flows.flows.evaluate import champion_model
    from flows.flows.predict import predict_flow
    from flows.prefect_env import prefect_settings
    from flows.flows.train import train_flow
    from ingestion.manifest import read_manifest
    from ingestion.phantom import generate_cohort
    from models.stores.embeddings import EmbeddingStore
    from models.encoders import build_encoder
    from models.stores.predictions import read_latest_batch
    from models.predict_stage import recorded_encoder_keys
    from models.training.pretrain import PretrainConfig, pretrain
    from models.training.trained_model import TrainedModel
    from tests.shared_home import copy_ingested

    copy_ingested(ingested_phantom_home, settings.home)  # the ingest below then finds every item done
    new = tmp_path / "new"
    generate_cohort(new, 4, seed=99, missing_rate=0.25, eeg_seconds=(20, 20))
    with prefect_settings(settings):
        ingest_flow(source=str(small_phantom), cohort_csv=str(small_phantom / "cohort.csv"), home=str(settings.home))
        train_flow(home=str(settings.home), epochs=3)
        champion = TrainedModel.load(champion_model(settings)[0])
        pinned = {m: tuple(k) for m, k in recorded_encoder_keys(champion) if k is not None}
        assert pinned, "the champion records the encoder versions it was trained on"
        report = pretrain(read_manifest(settings.manifest_path), settings.home, settings.encoders_dir,
                          config=PretrainConfig(epochs=1, batch_size=8), note_encoder=settings.note_encoder)
        newest = {m: tuple(build_encoder(m, encoders_dir=settings.encoders_dir, seed=settings.seed).key())
                  for m in pinned if m != "note"}
        changed = [m for m in newest if newest[m] != pinned[m]]
        assert report.versions and changed, "pretrain saved newer encoder versions"
        result = predict_flow(source=str(new), home=str(settings.home), n_mc=5)
    assert {m: tuple(k) for m, k in result["encoder_keys"].items() if k is not None} == pinned
    batch = read_latest_batch(settings.predictions_dir).set_index("patient_id")
    # every new item is in the store under the champion's key; none was encoded with the newest weights
    index = EmbeddingStore(settings.embeddings_dir).index()
    new_shas = set(read_manifest(settings.manifest_path).query("patient_id in @batch.index")["content_sha256"])
    for m in changed:
        rows = index[index["content_sha256"].isin(new_shas) & (index["encoder_name"] == pinned[m][0])]
        assert set(rows["encoder_version"]) == {pinned[m][1]}, m

    one = pd.read_csv(new / "cohort.csv").iloc[[2]]
    one.to_csv(tmp_path / "one.csv", index=False)
    from flows.settings import get_settings

    monkeypatch.setenv("CLINFUSE_HOME", str(settings.home))
    get_settings.cache_clear()  # the CLI reads settings through this cache: make it see the test's home
    try:
        with prefect_settings(settings):
            out = CliRunner().invoke(app, ["predict", "--source", str(new), "--cohort", str(tmp_path / "one.csv"),
                                           "--n-mc", "5"])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    alone = read_latest_batch(settings.predictions_dir).set_index("patient_id")
    assert len(alone) == 1 and alone.index[0] in batch.index
    pid = alone.index[0]
    contrib = [c for c in batch.columns if c.startswith("contrib_")]
    np.testing.assert_allclose(alone.loc[pid, ["risk", "risk_low", "risk_high", *contrib]].astype(float),
                               batch.loc[pid, ["risk", "risk_low", "risk_high", *contrib]].astype(float), atol=1e-6)
    for col in ("predicted_class", "abstain", "abstain_reason"):
        assert alone.loc[pid, col] == batch.loc[pid, col], col
