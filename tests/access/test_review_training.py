"""End to end on a phantom cohort: ingest with a key writes the encrypted MRN map; two clinician reviews
become labels of the next training run, counted in MLflow."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.mark.slow
def test_reviews_feed_the_next_training_run(settings, small_phantom, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    from flows.access.reviews import PredictionRef, ReviewStore, access_db
    from flows.flows.ingest import ingest_flow
    from flows.prefect_env import prefect_settings
    from flows.settings import get_settings
    from flows.flows.train import train_flow
    from ingestion.deid.pseudonym import pseudonymise
    from ingestion.deid.reidentify import generate_key, reveal

    key = generate_key()
    monkeypatch.setenv("CLINFUSE_REID_KEY", key.decode())
    monkeypatch.setenv("CLINFUSE_NOTE_ENCODER", "tfidf")  # the review path, not the note encoder, is under test
    get_settings.cache_clear()
    try:
        with prefect_settings(settings):
            ingest_flow(source=str(small_phantom), cohort_csv=str(small_phantom / "cohort.csv"),
                        home=str(settings.home), exclude=[str(small_phantom / "answers.parquet")])
            secret = get_settings().model_copy(update={"home": settings.home}).pseudonym_secret.get_secret_value()
            originals = pd.read_csv(small_phantom / "cohort.csv", dtype=str)["patient_id"]
            for original in originals:
                assert reveal(settings.reid_map_path, key, pseudonymise(original, secret)) == original
            cohort = pd.read_parquet(settings.cohort_path)
            labelled = cohort[cohort["label"].notna()].reset_index(drop=True)
            store = ReviewStore(access_db(settings.access_dir))
            flipped = {}
            for _, row in labelled.head(2).iterrows():  # the clinician disagrees with the export's label
                outcome = "negative" if int(row["label"]) == 1 else "positive"
                store.add(row["patient_id"], outcome, "confirmed at follow-up", "c.clinician", "clinician",
                          PredictionRef(model_version="0"))
                flipped[row["patient_id"]] = outcome
            store.add(labelled.loc[2, "patient_id"], "uncertain", "", "c.clinician", "clinician")
            result = train_flow(home=str(settings.home), epochs=3, hidden=8)
        run_id = result["run_id"] if isinstance(result, dict) else result.run_id
        metrics = mlflow.get_run(run_id).data.metrics
    finally:
        get_settings.cache_clear()
    assert metrics["labels.from_review"] == 2 and metrics["labels.review_overrides"] == 2
    assert metrics["labels.from_cohort"] == len(labelled) - 2
    assert metrics["labels.reviews_without_features"] == 0
    assert not any(str(o).encode() in settings.reid_map_path.read_bytes() for o in originals)
