"""The features and the study a stage works on, built the one way every stage builds them.

Why apart from :mod:`models.stages`: train, evaluate, the train flow's champion gate and the
benchmarks all need "these patients' features, split by the run's study"; keeping that here (rather
than each caller splitting again) is what makes the study the only split.
"""

from __future__ import annotations

from pathlib import Path

from ingestion.home_layout import HomeLayout
from models.features.feature_set import FeatureSet
from models.features.stage_inputs import EncoderKeys, home_features, synthetic_features
from models.held_out import labelled
from models.study_definition import Study, study_for_features, study_for_home


def define_run_study(home: Path, features: FeatureSet, synthetic: int, seed: int, held_out_fraction: float,
                     review_labels: tuple[tuple[str, int], ...] = ()) -> Study:
    """The run's study: from the home's cohort table (or, for a synthetic cohort, from its labels).

    The one place a stage splits patients; ``features`` only serves a synthetic cohort, whose labels are
    its cohort's.
    """
    if synthetic > 0:
        return study_for_features(features, held_out_fraction=held_out_fraction, seed=seed)
    study = study_for_home(home, held_out_fraction=held_out_fraction, seed=seed, review_labels=dict(review_labels))
    if study is None:
        raise FileNotFoundError(f"no cohort table under {home}: run `clinfuse ingest` with a cohort first")
    return study


def stage_features(home: Path, encoder_keys: EncoderKeys, synthetic: int, seed: int,
                   review_labels: tuple[tuple[str, int], ...] = ()) -> FeatureSet:
    """Labelled patients from the home's store (with ``encoder_keys``; clinician-confirmed outcomes
    ``review_labels`` override the cohort's labels), or a synthetic cohort."""
    if synthetic > 0:
        return synthetic_features(synthetic, seed)[0]
    from models.features.review_labels import merge_review_labels

    features, _ = merge_review_labels(home_features(HomeLayout.at(home), dict(encoder_keys)), dict(review_labels))
    return labelled(features)


def held_out_set(home: Path, encoder_keys: EncoderKeys, synthetic: int, seed: int, held_out_fraction: float,
                 review_labels: tuple[tuple[str, int], ...] = ()) -> FeatureSet:
    """The study's held-out patients with ``encoder_keys``' embeddings, labelled by the cohort table only.

    Confirmed reviews never judge the model: they are entered beside its risk, so using them here
    would score the model with labels it helped produce (they feed training only).
    """
    features = stage_features(home, encoder_keys, synthetic, seed, review_labels)
    return define_run_study(home, features, synthetic, seed, held_out_fraction, review_labels).held_out_features(
        features)
