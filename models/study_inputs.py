"""The features and the study a stage works on, built the one way every stage builds them.

Why apart from :mod:`models.stages`: train, evaluate, the train flow's champion gate and the
benchmarks all need "these patients' features, split by the run's study"; keeping that here (rather
than each caller splitting again) is what makes the study the only split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ingestion.home_layout import HomeLayout
from models.features.feature_set import FeatureSet
from models.features.stage_inputs import EncoderKeys, as_encoder_keys, home_features
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
        from models.simulation.phantom_features import synthetic_features  # the phantom only when asked for

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


@dataclass(frozen=True)
class HeldOutPatients:
    """The run's held-out patients (its :class:`Study`, as built by train), embedded by whichever encoder
    versions are asked for: the champion gate's ``features_for``.

    Why: the gate compares the candidate with the champion patient by patient, and the champion must be
    scored on embeddings of the encoder versions *it* was trained on; the candidate's embeddings have the same
    dimension after a pretrain or a joint run, so scoring on them "works" and judges another model. It reads
    the study train made rather than building it again, and is a frozen dataclass rather than a closure so the
    train flow can hand it to a Prefect task.
    """

    home: Path
    synthetic: int
    seed: int
    study: Study
    review_labels: tuple[tuple[str, int], ...] = ()
    device: str = "cpu"
    note_model_cache: Path | None = None

    def features(self, encoder_keys: dict | EncoderKeys) -> FeatureSet:
        """The study's held-out patients with the stored embeddings of ``encoder_keys`` (cohort labels only)."""
        keys = as_encoder_keys(dict(encoder_keys))
        return self.study.held_out_features(stage_features(self.home, keys, self.synthetic, self.seed,
                                                           self.review_labels))

    def __call__(self, encoder_keys: dict | EncoderKeys) -> FeatureSet:
        """:meth:`features`, after encoding the held-out items the store lacks under ``encoder_keys`` with
        exactly those weights."""
        keys = as_encoder_keys(dict(encoder_keys))
        if not self.synthetic and any(k is not None for _, k in keys):
            self._encode_pinned(dict(keys))
        return self.features(keys)

    def _encode_pinned(self, keys: dict) -> None:
        """Only the held-out patients' items: the rest of the home is not the gate's business."""
        from ingestion.manifest import read_manifest
        from models.features.assemble import encode_pinned
        from models.stores.embeddings import EmbeddingStore

        layout = HomeLayout.at(self.home)
        manifest = read_manifest(layout.manifest_path)
        manifest = manifest[manifest["patient_id"].astype(str).isin(set(self.study.held_out))]
        encode_pinned(manifest, layout.root, EmbeddingStore(layout.embeddings_dir), keys, layout.encoders_dir,
                      device=self.device, seed=self.seed, quarantine_dir=layout.quarantine_dir,
                      note_model_cache=self.note_model_cache)
